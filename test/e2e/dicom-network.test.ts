/**
 * The DICOM network side of the embedded core against real peers: DCMTK (echoscu, storescu, findscu, storescp)
 * and a real Orthanc with its DICOM server. Everything on free loopback ports, every process stopped at the end.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGatewayProcess, removeDir, type GatewayProcess } from '../helpers/gateway-process';
import { freePort, startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeStudy, TransferSyntax } from '../helpers/dicom-factory';

const AET = 'GATEWAY';
const TOOL_TIMEOUT_MS = 20_000;

interface ToolRun {
  code: number;
  output: string;
}

/** Runs a DCMTK tool to completion (bounded), with its exit code and everything it printed. */
function runTool(tool: string, args: string[]): Promise<ToolRun> {
  return new Promise((resolve) => {
    execFile(tool, args, { timeout: TOOL_TIMEOUT_MS }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, output: `${stdout}${stderr}` });
    });
  });
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function waitForPort(port: number, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await portAnswers(port))) {
    if (Date.now() > deadline) throw new Error(`${what} did not listen on port ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

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

// keep the helper honest: datasetBytes must find the data set of a file we wrote ourselves
test('datasetBytes skips the file meta group', () => {
  const [buffer] = makeStudy({ seriesCount: 1, instancesPerSeries: 1 }).buffers;
  const dataset = datasetBytes(buffer);
  expect(dataset.readUInt16LE(0)).toBe(0x0008);
});
