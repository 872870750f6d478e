/**
 * The DICOM network side of the embedded core against real peers: DCMTK (echoscu, storescu, findscu, movescu, storescp, dcmdump)
 * and a real Orthanc with its DICOM server. Everything on free loopback ports, every process stopped at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGatewayProcess, removeDir, type GatewayProcess } from '../helpers/gateway-process';
import { freePort, startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeStudy, TransferSyntax } from '../helpers/dicom-factory';
import { runTool, startStorescp, waitForPort, type ToolRun } from '../helpers/dcmtk';

const AET = 'GATEWAY';
/** Values of a tag in the answers findscu -v dumps ("(0010,0010) PN [DOE^JOHN ]"), without the DICOM padding (space, or NUL for UIDs). */
function dumpedAll(output: string, tag: string): string[] {
  // the answers come after the request identifiers, which findscu -v dumps first
  const start = output.indexOf('Find Response');
  const answers = start < 0 ? '' : output.slice(start);
  return [...answers.matchAll(new RegExp(`\\(${tag}\\) [A-Z]{2} \\[([^\\]]*)\\]`, 'g'))].map((m) => m[1].replace(/[\s\0]+$/, ''));
}

function dumped(output: string, tag: string): string | undefined {
  return dumpedAll(output, tag)[0];
}

/** The SOP Instance UID of a DICOM file, read by dcmdump (so that what a peer wrote is checked by DCMTK, not by us). */
async function sopInstanceUidOf(file: string): Promise<string> {
  const run = await runTool('dcmdump', ['-q', '+P', '0008,0018', file]);
  const match = /\(0008,0018\) UI \[([^\]]*)\]/.exec(run.output);
  if (!match) throw new Error(`dcmdump found no SOPInstanceUID in ${file}: ${run.output}`);
  return match[1].replace(/[\s\0]+$/, '');
}

/** A TCP relay to `port` that counts the connections through it: how many associations a client opened. */
async function countingRelay(port: number): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
  let count = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    count += 1;
    const upstream = connect(port, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
    }
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the relay has no port');
  return {
    port: address.port,
    connections: () => count,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Offset of the data set in a Part 10 file: preamble, DICM, then the meta group whose length is its first element. */
function datasetBytes(file: Buffer): Buffer {
  const groupLength = file.readUInt32LE(132 + 8);
  return file.subarray(132 + 12 + groupLength);
}

describe('DICOM network (SCP and /modalities) against real peers', () => {
  let gateway: GatewayProcess;
  let dicomPort: number;
  let work: string;
  const children: ChildProcess[] = [];

  const api = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> => {
    const response = await fetch(`${gateway.url}${path}`, {
      method,
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    return { status: response.status, json: text === '' ? undefined : JSON.parse(text) };
  };

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'dicom-network-'));
    dicomPort = await freePort();
    gateway = await startGatewayProcess({
      DicomServerEnabled: true,
      DicomAet: AET,
      DicomPort: dicomPort,
      LogExportedResources: true,
      // findscu may query us (C-FIND is only answered to known modalities, as in Orthanc)
      DicomModalities: { finder: ['FINDSCU', '127.0.0.1', 1] },
    });
    await waitForPort(dicomPort, 'the gateway DICOM server');
  });

  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    await gateway?.stop();
    if (gateway) removeDir(gateway.dir);
    rmSync(work, { recursive: true, force: true });
  });

  it('answers C-ECHO from echoscu', async () => {
    const run = await runTool('echoscu', ['-aet', 'ECHOSCU', '-aec', AET, '127.0.0.1', String(dicomPort)]);
    expect(run).toMatchObject({ code: 0 });
  });

  it('stores what storescu sends, visible at once, byte for byte in the transfer syntax it was sent in', async () => {
    const study = makeStudy({ PatientID: 'NET-STORE', seriesCount: 1, instancesPerSeries: 2, transferSyntax: TransferSyntax.ImplicitVRLittleEndian });
    const files = study.buffers.map((buffer, n) => {
      const file = join(work, `implicit-${n}.dcm`);
      writeFileSync(file, buffer);
      return file;
    });
    // -xi: propose implicit VR little endian only, so that the bytes travel as they are in the files
    const run = await runTool('storescu', ['-xi', '-aet', 'STORESCU', '-aec', AET, '127.0.0.1', String(dicomPort), ...files]);
    expect(run).toMatchObject({ code: 0 });

    const found = await api('POST', '/tools/find', { Level: 'Instance', Query: { PatientID: 'NET-STORE' } });
    expect(found.json).toHaveLength(2);
    for (const id of found.json as string[]) {
      const syntax = await (await fetch(`${gateway.url}/instances/${id}/metadata/TransferSyntax`)).text();
      expect(syntax).toBe(TransferSyntax.ImplicitVRLittleEndian);
      const stored = Buffer.from(await (await fetch(`${gateway.url}/instances/${id}/file`)).arrayBuffer());
      const sent = study.buffers.map(datasetBytes).find((b) => b.equals(datasetBytes(stored)));
      expect(sent).toBeDefined();
    }
  });

  it('stores a compressed (RLE) instance as received', async () => {
    const study = makeStudy({ PatientID: 'NET-RLE', seriesCount: 1, instancesPerSeries: 1, transferSyntax: TransferSyntax.RLELossless });
    const file = join(work, 'rle.dcm');
    writeFileSync(file, study.buffers[0]);
    const run = await runTool('storescu', ['-xr', '-aet', 'STORESCU', '-aec', AET, '127.0.0.1', String(dicomPort), file]);
    expect(run).toMatchObject({ code: 0 });
    const [id] = (await api('POST', '/tools/find', { Level: 'Instance', Query: { PatientID: 'NET-RLE' } })).json as string[];
    expect(await (await fetch(`${gateway.url}/instances/${id}/metadata/TransferSyntax`)).text()).toBe(TransferSyntax.RLELossless);
    const stored = Buffer.from(await (await fetch(`${gateway.url}/instances/${id}/file`)).arrayBuffer());
    expect(datasetBytes(stored).equals(datasetBytes(study.buffers[0]))).toBe(true);
  });

  it('accepts only the transfer syntaxes of /tools/accepted-transfer-syntaxes, answering as Orthanc 1.10', async () => {
    const orthanc = await startOrthanc();
    try {
      const theirs = async (method: string, body?: string): Promise<{ status: number; json: unknown }> => {
        const response = await fetch(`${orthanc.url}/tools/accepted-transfer-syntaxes`, { method, body });
        return { status: response.status, json: await response.json() };
      };
      const ours = (method: string, body?: string): Promise<{ status: number; json: unknown }> => api(method, '/tools/accepted-transfer-syntaxes', body);
      expect((await ours('GET')).json).toEqual((await theirs('GET')).json);
      for (const body of ['["1.2.840.10008.1.2.4.*", "1.2.840.10008.1.2"]', '"9.9"', '"1.2.840.10008.1.2.?"']) {
        expect([body, await ours('PUT', body)]).toEqual([body, await theirs('PUT', body)]);
      }
      expect((await ours('PUT', '{"a":1}')).status).toBe((await theirs('PUT', '{"a":1}')).status);
    } finally {
      await orthanc.stop();
    }

    const study = makeStudy({ PatientID: 'NET-SYNTAX', seriesCount: 1, instancesPerSeries: 1, transferSyntax: TransferSyntax.RLELossless });
    const file = join(work, 'syntax-rle.dcm');
    writeFileSync(file, study.buffers[0]);
    const find = async (): Promise<unknown> => (await api('POST', '/tools/find', { Level: 'Instance', Query: { PatientID: 'NET-SYNTAX' } })).json;
    // implicit little endian only: the RLE context is refused, nothing is stored
    expect((await api('PUT', '/tools/accepted-transfer-syntaxes', '"1.2.840.10008.1.2"')).json).toEqual(['1.2.840.10008.1.2']);
    const refused = await runTool('storescu', ['-xr', '-aet', 'STORESCU', '-aec', AET, '127.0.0.1', String(dicomPort), file]);
    expect(refused.code).not.toBe(0);
    expect(await find()).toEqual([]);
    // every syntax again
    await api('PUT', '/tools/accepted-transfer-syntaxes', '"*"');
    expect(await runTool('storescu', ['-xr', '-aet', 'STORESCU', '-aec', AET, '127.0.0.1', String(dicomPort), file])).toMatchObject({ code: 0 });
    expect(await find()).toHaveLength(1);
  });

  it('answers C-FIND from findscu at study and series level with the requested keys', async () => {
    const study = makeStudy({ PatientID: 'NET-FIND', PatientName: 'FIND^ME', seriesCount: 2, instancesPerSeries: 1, StudyDescription: 'NETWORK' });
    for (const buffer of study.buffers) expect((await fetch(`${gateway.url}/instances`, { method: 'POST', body: buffer })).status).toBe(200);
    const common = ['-v', '-aet', 'FINDSCU', '-aec', AET, '-S', '127.0.0.1', String(dicomPort)];
    const studies = await runTool('findscu', [
      ...common,
      '-k', 'QueryRetrieveLevel=STUDY',
      '-k', 'PatientID=NET-FIND',
      '-k', 'PatientName',
      '-k', 'StudyInstanceUID',
      '-k', 'StudyDescription',
      '-k', 'NumberOfStudyRelatedSeries',
    ]);
    expect(studies.code).toBe(0);
    expect(studies.output.match(/Find Response: \d+ \(Pending\)/g)).toHaveLength(1);
    expect(dumped(studies.output, '0010,0010')).toBe('FIND^ME');
    expect(dumped(studies.output, '0020,000d')).toBe(study.StudyInstanceUID);
    expect(dumped(studies.output, '0008,1030')).toBe('NETWORK');
    expect(dumped(studies.output, '0020,1206')).toBe('2');
    expect(dumped(studies.output, '0008,0054')).toBe(AET);

    const series = await runTool('findscu', [
      ...common,
      '-k', 'QueryRetrieveLevel=SERIES',
      '-k', `StudyInstanceUID=${study.StudyInstanceUID}`,
      '-k', 'SeriesInstanceUID',
      '-k', 'Modality',
    ]);
    expect(series.code).toBe(0);
    expect(series.output.match(/Find Response: \d+ \(Pending\)/g)).toHaveLength(2);
    expect(dumpedAll(series.output, '0020,000e').sort()).toEqual(study.series.map((s) => s.SeriesInstanceUID).sort());
  });

  it('refuses C-FIND from an AE title that is not a known modality', async () => {
    const run = await runTool('findscu', ['-v', '-aet', 'STRANGER', '-aec', AET, '-S', '127.0.0.1', String(dicomPort), '-k', 'QueryRetrieveLevel=STUDY', '-k', 'PatientID']);
    expect(run.output).not.toMatch(/\(Pending\)/);
    expect(run.output).toMatch(/Refused|a700/i);
  });

  it('answers C-FIND from findscu at patient level (Patient Root) with a PatientName wildcard and a date range', async () => {
    const born = (PatientID: string, PatientName: string, PatientBirthDate: string, StudyDate: string) =>
      makeStudy({ PatientID, PatientName, PatientBirthDate, StudyDate, seriesCount: 1, instancesPerSeries: 1 });
    const studies = [
      born('NET-WILD-1', 'WILDCARD^ONE', '19550505', '20200315'),
      born('NET-WILD-2', 'WILDCARD^TWO', '19700101', '20210101'),
      born('NET-TAME-1', 'TAME^ONE', '19550505', '20200315'),
    ];
    for (const study of studies) for (const buffer of study.buffers) expect((await fetch(`${gateway.url}/instances`, { method: 'POST', body: buffer })).status).toBe(200);
    const patientRoot = ['-v', '-aet', 'FINDSCU', '-aec', AET, '-P', '127.0.0.1', String(dicomPort), '-k', 'QueryRetrieveLevel=PATIENT', '-k', 'PatientID'];

    const wild = await runTool('findscu', [...patientRoot, '-k', 'PatientName=WILDCARD^*', '-k', 'PatientBirthDate']);
    expect(wild.code).toBe(0);
    expect(dumpedAll(wild.output, '0010,0020').sort()).toEqual(['NET-WILD-1', 'NET-WILD-2']);
    expect(dumpedAll(wild.output, '0010,0010').sort()).toEqual(['WILDCARD^ONE', 'WILDCARD^TWO']);

    const ranged = await runTool('findscu', [...patientRoot, '-k', 'PatientName=*ONE', '-k', 'PatientBirthDate=19500101-19601231']);
    expect(ranged.code).toBe(0);
    expect(dumpedAll(ranged.output, '0010,0020').sort()).toEqual(['NET-TAME-1', 'NET-WILD-1']);
    expect(dumpedAll(ranged.output, '0010,0030')).toEqual(['19550505', '19550505']);

    // a study-level date range (open-ended "from" form) combined with the wildcard
    const since = await runTool('findscu', [
      '-v', '-aet', 'FINDSCU', '-aec', AET, '-S', '127.0.0.1', String(dicomPort),
      '-k', 'QueryRetrieveLevel=STUDY', '-k', 'PatientName=WILD?ARD*', '-k', 'StudyDate=20201201-', '-k', 'StudyInstanceUID',
    ]);
    expect(since.code).toBe(0);
    expect(dumpedAll(since.output, '0020,000d')).toEqual([studies[1].StudyInstanceUID]);
    expect(dumpedAll(since.output, '0008,0020')).toEqual(['20210101']);
  });

  it('answers C-FIND from findscu at instance level (IMAGE) with the SOP Instance UIDs of a series', async () => {
    const study = makeStudy({ PatientID: 'NET-IMAGE', seriesCount: 2, instancesPerSeries: 3 });
    for (const buffer of study.buffers) expect((await fetch(`${gateway.url}/instances`, { method: 'POST', body: buffer })).status).toBe(200);
    const [series] = study.series;
    const images = await runTool('findscu', [
      '-v', '-aet', 'FINDSCU', '-aec', AET, '-S', '127.0.0.1', String(dicomPort),
      '-k', 'QueryRetrieveLevel=IMAGE',
      '-k', `StudyInstanceUID=${study.StudyInstanceUID}`,
      '-k', `SeriesInstanceUID=${series.SeriesInstanceUID}`,
      '-k', 'SOPInstanceUID',
      '-k', 'InstanceNumber',
    ]);
    expect(images.code).toBe(0);
    expect(images.output.match(/Find Response: \d+ \(Pending\)/g)).toHaveLength(3);
    expect(dumpedAll(images.output, '0008,0018').sort()).toEqual(series.instances.map((i) => i.tags.SOPInstanceUID).sort());
    expect(dumpedAll(images.output, '0020,0013').sort()).toEqual(['1', '2', '3']);
    expect(dumpedAll(images.output, '0020,000e')).toEqual([series.SeriesInstanceUID, series.SeriesInstanceUID, series.SeriesInstanceUID]);
  });

  it('moves a study to storescp when movescu asks (C-MOVE SCP), and refuses an unknown destination', async () => {
    const received = join(work, 'moved');
    const storescp = await startStorescp('MOVEDEST', received);
    children.push(storescp.child);
    try {
      // movescu must be a known modality allowed to move; the destination must be known by its AE title
      expect((await api('PUT', '/modalities/mover', { AET: 'MOVESCU', Host: '127.0.0.1', Port: 1, AllowMove: true })).status).toBe(200);
      expect((await api('PUT', '/modalities/movedest', ['MOVEDEST', '127.0.0.1', storescp.port])).status).toBe(200);
      const study = makeStudy({ PatientID: 'NET-MOVESCU', seriesCount: 2, instancesPerSeries: 2 });
      for (const buffer of study.buffers) expect((await fetch(`${gateway.url}/instances`, { method: 'POST', body: buffer })).status).toBe(200);
      const moveTo = (destination: string): Promise<ToolRun> =>
        runTool('movescu', [
          '-v', '-S', '-aet', 'MOVESCU', '-aec', AET, '-aem', destination,
          '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${study.StudyInstanceUID}`,
          '127.0.0.1', String(dicomPort),
        ]);

      const moved = await moveTo('MOVEDEST');
      expect(moved.code).toBe(0);
      expect(moved.output).toMatch(/Received Final Move Response \(Success\)/);
      // storescp wrote each file before answering its C-STORE, and our final C-MOVE answer came after the last one
      const files = readdirSync(received);
      expect(files).toHaveLength(4);
      const uids = await Promise.all(files.map((file) => sopInstanceUidOf(join(received, file))));
      expect(uids.sort()).toEqual(study.series.flatMap((s) => s.instances.map((i) => i.tags.SOPInstanceUID)).sort());

      const unknown = await moveTo('NOWHERE');
      // 0xA801: Refused, move destination unknown (PS3.4 C.4.2.1.5)
      expect(unknown.output).toMatch(/Received Final Move Response \(Refused: .*Destination.*Unknown\)/i);
      expect(readdirSync(received)).toHaveLength(4);
    } finally {
      await api('DELETE', '/modalities/mover');
      await api('DELETE', '/modalities/movedest');
      storescp.child.kill('SIGTERM');
    }
  });

  it('manages /modalities and sends resources to storescp with /store, recording the exports', async () => {
    const scpPort = await freePort();
    const received = join(work, 'received');
    rmSync(received, { recursive: true, force: true });
    mkdirSync(received);
    const storescp = spawn('storescp', ['-aet', 'STORESCP', '-od', received, String(scpPort)], { stdio: 'ignore' });
    children.push(storescp);
    await waitForPort(scpPort, 'storescp');

    expect((await api('PUT', '/modalities/scp', ['STORESCP', '127.0.0.1', scpPort])).status).toBe(200);
    expect((await api('GET', '/modalities')).json).toEqual(['finder', 'scp']);
    const expanded = (await api('GET', '/modalities?expand')).json as Record<string, Record<string, unknown>>;
    expect(expanded.scp).toMatchObject({ AET: 'STORESCP', Host: '127.0.0.1', Port: scpPort, Manufacturer: 'Generic', AllowStore: true });
    expect(await api('POST', '/modalities/scp/echo', { Timeout: 5 })).toEqual({ status: 200, json: {} });

    const study = makeStudy({ PatientID: 'NET-SEND', seriesCount: 1, instancesPerSeries: 3 });
    const ids: string[] = [];
    for (const buffer of study.buffers) ids.push((await (await fetch(`${gateway.url}/instances`, { method: 'POST', body: buffer })).json()).ID);
    const studyId = ((await api('POST', '/tools/lookup', study.StudyInstanceUID)).json as Array<{ ID: string }>)[0].ID;
    await api('DELETE', '/exports');

    const sent = await api('POST', '/modalities/scp/store', { Resources: [studyId], Timeout: 10 });
    expect(sent).toEqual({
      status: 200,
      json: { Description: 'REST API', FailedInstancesCount: 0, InstancesCount: 3, LocalAet: AET, ParentResources: [studyId], RemoteAet: 'STORESCP' },
    });
    const single = await api('POST', '/modalities/scp/store', ids[0]);
    expect(single.json).toMatchObject({ InstancesCount: 1, ParentResources: [ids[0]] });
    // storescp writes one file per received instance (named by modality and SOP Instance UID: the re-sent one replaces itself)
    expect(readdirSync(received)).toHaveLength(3);
    const exports = (await api('GET', '/exports')).json as { Exports: Array<Record<string, unknown>> };
    expect(exports.Exports).toHaveLength(4);
    expect(exports.Exports[0]).toMatchObject({ RemoteModality: 'STORESCP', ResourceType: 'Instance', PatientID: 'NET-SEND', StudyInstanceUID: study.StudyInstanceUID });

    expect((await api('DELETE', '/modalities/scp')).status).toBe(200);
    expect((await api('GET', '/modalities')).json).toEqual(['finder']);
    storescp.kill('SIGTERM');
  });

  it('answers an Orthanc-style error when a modality is unknown or unreachable', async () => {
    expect((await api('POST', '/modalities/nobody/echo', {})).status).toBe(404);
    const closed = await freePort();
    await api('PUT', '/modalities/down', { AET: 'DOWN', Host: '127.0.0.1', Port: closed });
    const failed = await api('POST', '/modalities/down/echo', { Timeout: 2 });
    expect(failed.status).toBe(502);
    expect(failed.json).toMatchObject({ HttpStatus: 502, OrthancError: 'Error in the network protocol', Method: 'POST', Uri: '/modalities/down/echo' });
    expect((await api('PUT', '/modalities/bad', { AET: 'X', Host: '127.0.0.1', Port: 'nope' })).status).toBe(400);
    await api('DELETE', '/modalities/down');
  });

  describe('with a real Orthanc', () => {
    let orthanc: OrthancProcess;

    beforeAll(async () => {
      // Orthanc must know us to accept our C-FIND/C-MOVE and to send to us as a C-MOVE destination
      orthanc = await startOrthanc({ dicomServer: true, extraConfig: { DicomModalities: { gateway: [AET, '127.0.0.1', dicomPort] } } });
      const put = await api('PUT', '/modalities/orthanc', { AET: orthanc.aet, Host: '127.0.0.1', Port: orthanc.dicomPort });
      expect(put.status).toBe(200);
    });

    afterAll(async () => {
      await orthanc?.stop();
    });

    it('echoes Orthanc', async () => {
      expect(await api('POST', '/modalities/orthanc/echo', '')).toEqual({ status: 200, json: {} });
    });

    it('queries Orthanc, reads the answers and retrieves a study into the core by C-MOVE', async () => {
      const study = makeStudy({ PatientID: 'NET-QR', PatientName: 'REMOTE^PAT', seriesCount: 2, instancesPerSeries: 2, StudyDescription: 'IN ORTHANC' });
      for (const buffer of study.buffers) await uploadToOrthanc(orthanc.url, buffer);

      const query = await api('POST', '/modalities/orthanc/query', { Level: 'Study', Query: { PatientID: 'NET-QR', StudyDescription: '', PatientName: '' } });
      expect(query.status).toBe(200);
      const { ID, Path } = query.json as { ID: string; Path: string };
      expect(Path).toBe(`/queries/${ID}`);
      expect((await api('GET', `${Path}/answers`)).json).toEqual(['0']);
      expect(await (await fetch(`${gateway.url}${Path}/level`)).text()).toBe('Study');
      expect(await (await fetch(`${gateway.url}${Path}/modality`)).text()).toBe('orthanc');
      expect((await api('GET', `${Path}/query`)).json).toMatchObject({ PatientID: 'NET-QR' });
      const simplified = (await api('GET', `${Path}/answers/0/content?simplify`)).json;
      expect(simplified).toMatchObject({ PatientID: 'NET-QR', PatientName: 'REMOTE^PAT', StudyDescription: 'IN ORTHANC', StudyInstanceUID: study.StudyInstanceUID });
      const full = (await api('GET', `${Path}/answers/0/content`)).json as Record<string, unknown>;
      expect(full['0020,000d']).toEqual({ Name: 'StudyInstanceUID', Type: 'String', Value: study.StudyInstanceUID });

      expect((await api('POST', '/tools/lookup', study.StudyInstanceUID)).json).toEqual([]);
      const retrieve = await api('POST', `${Path}/answers/0/retrieve`, { TargetAet: AET, Timeout: 20 });
      expect(retrieve.status).toBe(200);
      expect(retrieve.json).toMatchObject({ RemoteAet: orthanc.aet, TargetAet: AET, Query: [{ StudyInstanceUID: study.StudyInstanceUID }] });
      const found = await api('POST', '/tools/find', { Level: 'Instance', Query: { StudyInstanceUID: study.StudyInstanceUID } });
      expect(found.json).toHaveLength(4);
    });

    it('moves a list of resources and retrieves a multi-answer query in one association each', async () => {
      const studies = [1, 2].map((n) => makeStudy({ PatientID: `NET-BATCH-${n}`, StudyDescription: 'BATCH', seriesCount: 1, instancesPerSeries: 2 }));
      for (const study of studies) for (const buffer of study.buffers) await uploadToOrthanc(orthanc.url, buffer);
      // the same Orthanc behind a relay that counts connections: one connection = one association
      const relay = await countingRelay(orthanc.dicomPort);
      try {
        await api('PUT', '/modalities/relayed', { AET: orthanc.aet, Host: '127.0.0.1', Port: relay.port });
        const inCore = async (): Promise<number> =>
          ((await api('POST', '/tools/find', { Level: 'Instance', Query: { StudyDescription: 'BATCH' } })).json as string[]).length;

        const moved = await api('POST', '/modalities/relayed/move', {
          Level: 'Series',
          Resources: studies.map((s) => ({ StudyInstanceUID: s.StudyInstanceUID, SeriesInstanceUID: s.series[0].SeriesInstanceUID })),
          Timeout: 20,
        });
        expect(moved.status).toBe(200);
        expect(relay.connections()).toBe(1);
        expect(await inCore()).toBe(4);

        for (const study of studies) {
          const [id] = ((await api('POST', '/tools/lookup', study.StudyInstanceUID)).json as Array<{ ID: string }>).map((r) => r.ID);
          await api('DELETE', `/studies/${id}`);
        }
        const query = await api('POST', '/modalities/relayed/query', { Level: 'Study', Query: { StudyDescription: 'BATCH' } });
        const { Path } = query.json as { Path: string };
        expect((await api('GET', `${Path}/answers`)).json).toEqual(['0', '1']);
        const before = relay.connections();
        const retrieved = await api('POST', `${Path}/retrieve`, { Timeout: 20 });
        expect(retrieved.status).toBe(200);
        expect((retrieved.json as { Query: unknown[] }).Query).toHaveLength(2);
        expect(relay.connections() - before).toBe(1);
        expect(await inCore()).toBe(4);
      } finally {
        await api('DELETE', '/modalities/relayed');
        await relay.close();
      }
    });

    it('lets Orthanc query us and move a study to itself (C-FIND and C-MOVE SCP)', async () => {
      await api('PUT', '/modalities/orthanc', { AET: orthanc.aet, Host: '127.0.0.1', Port: orthanc.dicomPort, AllowFind: true, AllowMove: true });
      const study = makeStudy({ PatientID: 'NET-MOVE', seriesCount: 1, instancesPerSeries: 2 });
      for (const buffer of study.buffers) await fetch(`${gateway.url}/instances`, { method: 'POST', body: buffer });

      const orthancApi = async (path: string, body: unknown): Promise<unknown> => {
        const response = await fetch(`${orthanc.url}${path}`, { method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
        expect(response.status).toBe(200);
        return response.json();
      };
      const query = (await orthancApi('/modalities/gateway/query', { Level: 'Series', Query: { StudyInstanceUID: study.StudyInstanceUID, SeriesInstanceUID: '' } })) as { ID: string };
      const answers = (await (await fetch(`${orthanc.url}/queries/${query.ID}/answers?expand&simplify`)).json()) as Array<Record<string, string>>;
      expect(answers.map((a) => a.SeriesInstanceUID)).toEqual([study.series[0].SeriesInstanceUID]);

      await orthancApi('/modalities/gateway/move', { Level: 'Study', Resources: [{ StudyInstanceUID: study.StudyInstanceUID }], TargetAet: orthanc.aet });
      const inOrthanc = (await orthancApi('/tools/find', { Level: 'Instance', Query: { StudyInstanceUID: study.StudyInstanceUID } })) as string[];
      expect(inOrthanc).toHaveLength(2);
    });
  });
});

describe('DICOM server policy keys (DicomAlwaysAllow*, DicomCheckCalledAet) against DCMTK', () => {
  let gateway: GatewayProcess;
  let dicomPort: number;
  let work: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'dicom-policy-'));
    dicomPort = await freePort();
    gateway = await startGatewayProcess({
      DicomServerEnabled: true,
      DicomAet: AET,
      DicomPort: dicomPort,
      DicomAlwaysAllowEcho: false,
      DicomAlwaysAllowStore: false,
      DicomAlwaysAllowFind: true,
      DicomCheckCalledAet: true,
      DicomModalities: { known: ['KNOWN', '127.0.0.1', 1] },
    });
    await waitForPort(dicomPort, 'the gateway DICOM server');
  });

  afterAll(async () => {
    await gateway?.stop();
    if (gateway) removeDir(gateway.dir);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('refuses an association that calls another AE title', async () => {
    const run = await runTool('echoscu', ['-v', '-aet', 'KNOWN', '-aec', 'SOMEONE', '127.0.0.1', String(dicomPort)]);
    expect(run.code).not.toBe(0);
    expect(run.output).toMatch(/Association Rejected/);
    expect(run.output).toMatch(/Called AE Title Not Recognized/i);
  });

  it('answers C-ECHO and C-STORE to known modalities only, C-FIND to anyone', async () => {
    // 0x0124: Refused, not authorized (DCMTK does not name it for these services)
    const echoFrom = (aet: string): Promise<ToolRun> => runTool('echoscu', ['-v', '-aet', aet, '-aec', AET, '127.0.0.1', String(dicomPort)]);
    expect((await echoFrom('KNOWN')).output).toMatch(/Received Echo Response \(Success\)/);
    expect((await echoFrom('STRANGER')).output).toMatch(/Received Echo Response \(.*0x0?124\)/);

    const study = makeStudy({ PatientID: 'NET-POLICY', seriesCount: 1, instancesPerSeries: 1 });
    const file = join(work, 'policy.dcm');
    writeFileSync(file, study.buffers[0]);
    const storeFrom = (aet: string): Promise<ToolRun> => runTool('storescu', ['-v', '-aet', aet, '-aec', AET, '127.0.0.1', String(dicomPort), file]);
    expect((await storeFrom('STRANGER')).output).toMatch(/Received Store Response \(.*0x0?124\)/);
    const stored = async (): Promise<number> =>
      ((await (await fetch(`${gateway.url}/tools/find`, { method: 'POST', body: JSON.stringify({ Level: 'Instance', Query: { PatientID: 'NET-POLICY' } }) })).json()) as string[]).length;
    expect(await stored()).toBe(0);
    expect((await storeFrom('KNOWN')).output).toMatch(/Received Store Response \(Success\)/);
    expect(await stored()).toBe(1);

    const found = await runTool('findscu', ['-v', '-aet', 'STRANGER', '-aec', AET, '-S', '127.0.0.1', String(dicomPort), '-k', 'QueryRetrieveLevel=STUDY', '-k', 'PatientID=NET-POLICY']);
    expect(dumpedAll(found.output, '0010,0020')).toEqual(['NET-POLICY']);
  });
});

// keep the helper honest: datasetBytes must find the data set of a file we wrote ourselves
test('datasetBytes skips the file meta group', () => {
  const [buffer] = makeStudy({ seriesCount: 1, instancesPerSeries: 1 }).buffers;
  const dataset = datasetBytes(buffer);
  expect(dataset.readUInt16LE(0)).toBe(0x0008);
});
