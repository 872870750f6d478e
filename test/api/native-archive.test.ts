/**
 * Archives, DICOMDIR media and numpy arrays of the embedded core, compared with a real Orthanc 1.10.1 on the
 * same files: ZIP entry names and bytes, DICOMDIR structure and keys (through DCMTK's dcmdump), job
 * contents, numpy bytes, and the statuses of bad requests.
 *
 * Deliberate differences (asserted below):
 *  - `?filename=` names a GET archive/media download (Orthanc 1.11 does; 1.10.1 ignores it);
 *  - the DICOMDIR's meta header is ours (Media Storage SOP Instance UID, Implementation Class UID and
 *    Version Name), so record offsets differ by that length: structures are compared offset-free;
 *  - transcoded files are dcmjs's, not DCMTK's: their transfer syntax is compared, not their bytes;
 *  - synchronous archives are not listed in /jobs;
 *  - the numpy answer is streamed (chunked, or with a Content-Length for .npy) where Orthanc buffers it;
 *  - numpy of an instance without image (a PDF) is a 400 where Orthanc answers 500 "not implemented".
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import yauzl from 'yauzl';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance, makeNonImage, TransferSyntax } from '../helpers/dicom-factory';
import { dumpDicomDir, structureOf } from '../helpers/dicomdir-dump';
import { runTool } from '../helpers/dcmtk';
import { removeDir, startGatewayProcess } from '../helpers/gateway-process';

/** Entry name → bytes of a ZIP. */
function unzip(buffer: Buffer): Promise<Map<string, Buffer>> {
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(buffer, { lazyEntries: true }, (error, zip) => {
      if (error || !zip) return reject(error);
      const entries = new Map<string, Buffer>();
      zip.on('entry', (entry: yauzl.Entry) => {
        zip.openReadStream(entry, (streamError, stream) => {
          if (streamError || !stream) return reject(streamError);
          const chunks: Buffer[] = [];
          stream.on('data', (chunk: Buffer) => chunks.push(chunk));
          stream.on('end', () => {
            entries.set(entry.fileName, Buffer.concat(chunks));
            zip.readEntry();
          });
        });
      });
      zip.on('end', () => resolve(entries));
      zip.on('error', reject);
      zip.readEntry();
    });
  });
}

function binary(res: NodeJS.ReadableStream, done: (error: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (chunk: Buffer) => chunks.push(chunk));
  res.on('end', () => done(null, Buffer.concat(chunks)));
}

interface Answer {
  status: number;
  headers: Record<string, string | undefined>;
  body: Buffer;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The transfer syntax a Part 10 file declares (0002,0010), read from its meta group. */
function transferSyntaxOf(file: Buffer): string {
  const at = file.indexOf(Buffer.from([0x02, 0x00, 0x10, 0x00, 0x55, 0x49]), 132);
  return file.toString('latin1', at + 8, at + 8 + file.readUInt16LE(at + 6)).replace(/\0$/, '');
}

/** Runs dcmmkdir on an extracted media: it reads our DICOMDIR and checks the files against its records. */
async function dcmmkdirCheck(entries: Map<string, Buffer>): Promise<{ code: number; output: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'media-'));
  try {
    for (const [name, bytes] of entries) {
      const path = join(dir, ...name.split('/'));
      if (name.includes('/')) mkdirSync(join(dir, name.split('/')[0]), { recursive: true });
      writeFileSync(path, bytes);
    }
    const images = [...entries.keys()].filter((name) => name !== 'DICOMDIR');
    return await runTool('dcmmkdir', ['+U', '-w', '+id', dir, '+D', join(dir, 'DICOMDIR'), ...images]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const STUDY = '1.2.826.0.1.3680043.8.498.5151';

describe('native archives: the same ZIP entries as Orthanc 1.10', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;
  const ids: Array<{ ID: string; ParentSeries: string; ParentStudy: string; ParentPatient: string }> = [];

  beforeAll(async () => {
    [gateway, orthanc] = await Promise.all([startTestGateway('embedded'), startOrthanc()]);
    const common = { PatientID: 'P-ZIP', PatientName: 'Ünal^Ayşe', StudyInstanceUID: STUDY, AccessionNumber: 'A-1', StudyDescription: 'Head/Neck' };
    const seriesUid = '1.2.826.0.1.3680043.8.498.5152';
    const uploads = [
      makeInstance({ ...common, Modality: 'MR', SeriesDescription: 'T1', seed: 'zip-a' }),
      // a second "MR T1" series: its folder becomes "MR T1-2"
      makeInstance({ ...common, Modality: 'MR', SeriesDescription: 'T1', SeriesInstanceUID: seriesUid, seed: 'zip-b', InstanceNumber: 2 }),
      makeInstance({ ...common, Modality: 'MR', SeriesDescription: 'T1', SeriesInstanceUID: seriesUid, seed: 'zip-c', InstanceNumber: 1 }),
      makeNonImage({ ...common, kind: 'pdf', seed: 'zip-pdf' }),
      makeInstance({ PatientID: 'OTHER', PatientName: 'Doe^John', Modality: 'CT', seed: 'zip-other' }),
      // numpy: 12 bits stored with a CT rescale, signed with a fractional slope, 2 frames of 8 bits, RGB
      makeInstance({ PatientID: 'NPY', Modality: 'CT', BitsStored: 12, RescaleSlope: 1, RescaleIntercept: -1024, seed: 'npy-ct' }),
      makeInstance({ PatientID: 'NPY', Modality: 'CT', PixelRepresentation: 1, RescaleSlope: 0.5, RescaleIntercept: -1, seed: 'npy-signed' }),
      makeInstance({ PatientID: 'NPY', Modality: 'MR', BitsAllocated: 8, NumberOfFrames: 2, seed: 'npy-frames' }),
      makeInstance({ PatientID: 'NPY', Modality: 'OT', SamplesPerPixel: 3, seed: 'npy-rgb' }),
      // a series of 3 slices stored in an order that is not their order along the normal
      ...[20, -5, 7.5].map((z, i) =>
        makeInstance({
          PatientID: 'NPY', Modality: 'CT', SeriesInstanceUID: '1.2.826.0.1.3680043.8.498.5160', StudyInstanceUID: '1.2.826.0.1.3680043.8.498.5159',
          InstanceNumber: i + 1, RescaleIntercept: -1024, RescaleSlope: 1, seed: `npy-slice-${i}`,
          extraElements: { '00200032': { vr: 'DS', Value: [0, 0, z] }, '00200037': { vr: 'DS', Value: [1, 0, 0, 0, 1, 0] } },
        }),
      ),
    ];
    for (const file of uploads) {
      await request(gateway.app).post('/instances').send(file);
      ids.push(await uploadToOrthanc(orthanc.url, file));
    }
  });
  afterAll(async () => {
    await gateway?.close();
    await orthanc?.stop();
  });

  async function compare(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Map<string, Buffer>> {
    const req = method === 'GET' ? request(gateway.app).get(path) : request(gateway.app).post(path).send(JSON.stringify(body ?? {}));
    const ours = await req.buffer(true).parse(binary);
    const reference = await fetch(orthanc.url + path, { method, body: method === 'POST' ? JSON.stringify(body ?? {}) : undefined });
    expect(ours.status).toBe(200);
    expect(ours.headers['content-type']).toBe('application/zip');
    expect(ours.headers['content-disposition']).toBe(reference.headers.get('content-disposition'));
    const theirs = await unzip(Buffer.from(await reference.arrayBuffer()));
    const mine = await unzip(ours.body as Buffer);
    expect([...mine.keys()].sort()).toEqual([...theirs.keys()].sort());
    for (const [name, bytes] of theirs) expect([name, Buffer.compare(mine.get(name) as Buffer, bytes)]).toEqual([name, 0]);
    return mine;
  }

  it('archives a patient, a study and a series (GET and POST)', async () => {
    const [first] = ids;
    const patient = await compare('GET', `/patients/${first.ParentPatient}/archive`);
    expect([...patient.keys()]).toContain('PZIP nal Aye/A1 HeadNeck/MR T1-2/MR000000.dcm');
    await compare('GET', `/studies/${first.ParentStudy}/archive`);
    await compare('POST', `/studies/${first.ParentStudy}/archive`, {});
    await compare('GET', `/series/${ids[1].ParentSeries}/archive`);
  });

  it('creates an archive of resources of mixed levels', async () => {
    const entries = await compare('POST', '/tools/create-archive', { Resources: [ids[3].ID, ids[0].ParentSeries, ids[4].ParentPatient] });
    expect(entries.size).toBe(3);
  });

  it('refuses bad requests as Orthanc does', async () => {
    expect((await request(gateway.app).post('/tools/create-archive').send('junk')).status).toBe(400);
    expect((await request(gateway.app).post('/tools/create-archive').send('{}')).status).toBe(400);
    expect((await request(gateway.app).post('/tools/create-archive').send('{"Resources": ["nope"]}')).status).toBe(404);
    expect((await request(gateway.app).get('/studies/nope/archive')).status).toBe(404);
  });

  /** The same request to the gateway and to Orthanc. */
  async function both(method: 'GET' | 'POST', path: string, body?: string): Promise<[Answer, Answer]> {
    const req = method === 'GET' ? request(gateway.app).get(path) : request(gateway.app).post(path).send(body ?? '');
    const ours = await req.buffer(true).parse(binary);
    const reference = await fetch(orthanc.url + path, { method, body: method === 'POST' ? (body ?? '') : undefined });
    const theirs: Answer = { status: reference.status, headers: Object.fromEntries(reference.headers), body: Buffer.from(await reference.arrayBuffer()) };
    return [{ status: ours.status, headers: ours.headers as Record<string, string>, body: ours.body as Buffer }, theirs];
  }

  /** Media answers: same files, same DICOMDIR structure and keys, a DICOMDIR DCMTK accepts with the files. */
  async function compareMedia(ours: Answer, theirs: Answer): Promise<Map<string, Buffer>> {
    expect([ours.status, theirs.status]).toEqual([200, 200]);
    expect(ours.headers['content-type']).toBe('application/zip');
    expect(ours.headers['content-disposition']).toBe(theirs.headers['content-disposition']);
    const mine = await unzip(ours.body);
    const reference = await unzip(theirs.body);
    expect([...mine.keys()]).toEqual([...reference.keys()]);
    for (const [name, bytes] of reference) {
      if (name !== 'DICOMDIR') expect([name, Buffer.compare(mine.get(name) as Buffer, bytes)]).toEqual([name, 0]);
    }
    const [ourDir, theirDir] = await Promise.all([dumpDicomDir(mine.get('DICOMDIR') as Buffer), dumpDicomDir(reference.get('DICOMDIR') as Buffer)]);
    expect(ourDir.code).toBe(0);
    expect(ourDir.root['0002,0002']).toBe('MediaStorageDirectoryStorage');
    expect(structureOf(ourDir)).toEqual(structureOf(theirDir));
    return mine;
  }

  it('creates DICOMDIR media with the files and records of Orthanc (GET, POST, batches, extended)', async () => {
    const [first, , , pdf, other] = ids;
    const patient = await compareMedia(...(await both('GET', `/patients/${first.ParentPatient}/media`)));
    expect([...patient.keys()]).toEqual(['IMAGES/IM0', 'IMAGES/IM1', 'IMAGES/IM2', 'IMAGES/IM3', 'DICOMDIR']);
    // DCMTK reads the DICOMDIR back and finds each image file consistent with its record
    const images = new Map([...patient].filter(([name, bytes]) => name === 'DICOMDIR' || !bytes.includes(Buffer.from('1.2.840.10008.5.1.4.1.1.104.1'))));
    const check = await dcmmkdirCheck(images);
    expect([check.code, check.output]).toEqual([0, expect.not.stringMatching(/^E:/m)]);
    await compareMedia(...(await both('GET', `/studies/${first.ParentStudy}/media?extended`)));
    await compareMedia(...(await both('POST', `/series/${ids[1].ParentSeries}/media`, JSON.stringify({ Extended: true }))));
    await compareMedia(...(await both('POST', '/tools/create-media', JSON.stringify({ Resources: [pdf.ID, first.ParentSeries, other.ParentPatient] }))));
    const extended = await compareMedia(...(await both('POST', '/tools/create-media-extended', JSON.stringify([first.ParentStudy]))));
    expect((await dumpDicomDir(extended.get('DICOMDIR') as Buffer)).output).toContain('SeriesDescription');
  });

  it('transcodes archives and media when asked, as Orthanc (files in the new syntax, DICOMDIR saying so)', async () => {
    const implicit = TransferSyntax.ImplicitVRLittleEndian;
    const [ours, theirs] = await both('GET', `/studies/${ids[0].ParentStudy}/archive?transcode=${implicit}`);
    expect([ours.status, theirs.status]).toEqual([200, 200]);
    const [mine, reference] = await Promise.all([unzip(ours.body), unzip(theirs.body)]);
    expect([...mine.keys()].sort()).toEqual([...reference.keys()].sort());
    for (const [name, bytes] of mine) expect([name, transferSyntaxOf(bytes)]).toEqual([name, transferSyntaxOf(reference.get(name) as Buffer)]);
    expect(new Set([...mine.values()].map(transferSyntaxOf))).toEqual(new Set([implicit]));
    const [media, theirMedia] = await both('POST', `/studies/${ids[0].ParentStudy}/media`, JSON.stringify({ Transcode: implicit }));
    const ourDir = await dumpDicomDir((await unzip(media.body)).get('DICOMDIR') as Buffer);
    const theirDir = await dumpDicomDir((await unzip(theirMedia.body)).get('DICOMDIR') as Buffer);
    expect(structureOf(ourDir)).toEqual(structureOf(theirDir));
    expect(ourDir.records.filter((r) => r.type === 'IMAGE').map((r) => r.keys['0004,1512'])).toEqual(['LittleEndianImplicit', 'LittleEndianImplicit', 'LittleEndianImplicit', 'LittleEndianImplicit']);
  });

  /** Polls a job (bounded) until it is done; its final JSON. */
  async function finished(get: (path: string) => Promise<Record<string, unknown>>, id: string): Promise<Record<string, unknown>> {
    for (let i = 0; i < 200; i++) {
      const job = await get(`/jobs/${id}`);
      if (job.State === 'Success' || job.State === 'Failure') return job;
      await sleep(50);
    }
    throw new Error(`job ${id} did not finish`);
  }

  it('runs asynchronous archives as jobs whose output is /jobs/{id}/archive; only the newest output is kept', async () => {
    const ourGet = async (path: string): Promise<Record<string, unknown>> => (await request(gateway.app).get(path).expect(200)).body as Record<string, unknown>;
    const theirGet = async (path: string): Promise<Record<string, unknown>> => (await (await fetch(orthanc.url + path)).json()) as Record<string, unknown>;
    const submit = async (path: string, body: unknown): Promise<[string, string]> => {
      const [ours, theirs] = await both('POST', path, JSON.stringify(body));
      const mine = JSON.parse(ours.body.toString()) as { ID: string; Path: string };
      expect(Object.keys(mine).sort()).toEqual(Object.keys(JSON.parse(theirs.body.toString())).sort());
      expect(mine.Path).toBe(`/jobs/${mine.ID}`);
      return [mine.ID, (JSON.parse(theirs.body.toString()) as { ID: string }).ID];
    };
    const [ourMedia, theirMedia] = await submit(`/studies/${ids[0].ParentStudy}/media`, { Synchronous: false });
    const [ourJob, theirJob] = await Promise.all([finished(ourGet, ourMedia), finished(theirGet, theirMedia)]);
    expect([ourJob.State, ourJob.Type, ourJob.Progress]).toEqual(['Success', 'Media', 100]);
    expect(ourJob.Type).toBe(theirJob.Type);
    const [ourContent, theirContent] = [ourJob.Content, theirJob.Content] as Array<Record<string, unknown>>;
    expect(Object.keys(ourContent).sort()).toEqual(Object.keys(theirContent).sort());
    for (const key of ['Description', 'InstancesCount', 'UncompressedSize', 'UncompressedSizeMB']) expect([key, ourContent[key]]).toEqual([key, theirContent[key]]);
    expect(Number(ourContent.ArchiveSize)).toBeGreaterThan(0);
    const [download, theirDownload] = await Promise.all([
      request(gateway.app).get(`/jobs/${ourMedia}/archive`).buffer(true).parse(binary),
      fetch(`${orthanc.url}/jobs/${theirMedia}/archive`),
    ]);
    expect(download.headers['content-disposition']).toBe(theirDownload.headers.get('content-disposition'));
    expect(Number(ourContent.ArchiveSize)).toBe((download.body as Buffer).length);
    const theirBytes = Buffer.from(await theirDownload.arrayBuffer());
    await compareMedia(
      { status: download.status, headers: { ...download.headers, 'content-disposition': 'same' }, body: download.body as Buffer },
      { status: theirDownload.status, headers: { 'content-disposition': 'same' }, body: theirBytes },
    );
    // a second asynchronous archive (with a transcoding): the first one's ZIP is gone, in Orthanc too
    const [ourArchive, theirArchive] = await submit('/tools/create-archive', { Resources: [ids[4].ParentPatient], Asynchronous: true, Transcode: TransferSyntax.ImplicitVRLittleEndian });
    const [second, theirSecond] = await Promise.all([finished(ourGet, ourArchive), finished(theirGet, theirArchive)]);
    expect([second.State, second.Type, (second.Content as Record<string, unknown>).Transcode]).toEqual(['Success', 'Archive', TransferSyntax.ImplicitVRLittleEndian]);
    expect((second.Content as Record<string, unknown>).Transcode).toBe((theirSecond.Content as Record<string, unknown>).Transcode);
    const [gone, theirGone] = await both('GET', `/jobs/${ourMedia}/archive`);
    expect(gone.status).toBe(404);
    expect((await fetch(`${orthanc.url}/jobs/${theirMedia}/archive`)).status).toBe(404);
    expect(JSON.parse(gone.body.toString()).Details).toBe('Job has no such output: archive');
    expect(theirGone.status).toBe(404); // (our id is unknown to Orthanc)
    const archive = await request(gateway.app).get(`/jobs/${ourArchive}/archive`).buffer(true).parse(binary).expect(200);
    const theirArchiveBytes = Buffer.from(await (await fetch(`${orthanc.url}/jobs/${theirArchive}/archive`)).arrayBuffer());
    expect([...(await unzip(archive.body as Buffer)).keys()]).toEqual([...(await unzip(theirArchiveBytes)).keys()]);
    expect((await request(gateway.app).get(`/jobs/${ourArchive}/nothing`)).status).toBe(404);
  });

  it('names a GET download after ?filename= (Orthanc 1.11; 1.10.1 ignores it) and refuses a name that breaks the header', async () => {
    const [ours, theirs] = await both('GET', `/series/${ids[1].ParentSeries}/archive?filename=my%20series.zip`);
    expect(ours.headers['content-disposition']).toBe('filename="my series.zip"');
    expect(theirs.headers['content-disposition']).toBe(`filename="${ids[1].ParentSeries}.zip"`);
    expect((await request(gateway.app).get(`/series/${ids[1].ParentSeries}/media?filename=a%22b.zip`)).status).toBe(400);
  });

  it('refuses bad archive options with the statuses of Orthanc', async () => {
    const study = ids[0].ParentStudy;
    const cases: Array<[string, string, string?]> = [
      ['POST', `/studies/${study}/archive`, ''],
      ['POST', `/studies/${study}/media`, '{"Extended": "yes"}'],
      ['POST', `/studies/${study}/media`, '{"Transcode": 5}'],
      ['POST', `/studies/${study}/archive`, '{"Transcode": "1.2.3"}'],
      ['GET', `/studies/${study}/archive?transcode=1.2.3`],
      ['POST', '/tools/create-media', '{"Resources": [1]}'],
      ['POST', '/tools/create-media', JSON.stringify([ids[0].ID])],
      ['GET', '/studies/nope/media'],
    ];
    for (const [method, path, body] of cases) {
      const [ours, theirs] = await both(method as 'GET' | 'POST', path, body);
      expect([method, path, body, ours.status]).toEqual([method, path, body, theirs.status]);
    }
  });

  describe('numpy', () => {
    const NPY = { ct: 5, signed: 6, frames: 7, rgb: 8, slice: 9 };

    async function sameBytes(path: string): Promise<Buffer> {
      const [ours, theirs] = await both('GET', path);
      expect([path, ours.status]).toEqual([path, theirs.status]);
      if (theirs.status !== 200) {
        expect(JSON.parse(ours.body.toString()).HttpStatus).toBe(theirs.status);
        return ours.body;
      }
      expect(ours.headers['content-type']).toBe(theirs.headers['content-type']);
      if (path.includes('compress')) {
        const [mine, reference] = await Promise.all([unzip(ours.body), unzip(theirs.body)]);
        expect([...mine.keys()]).toEqual(['arr_0']);
        expect([path, Buffer.compare(mine.get('arr_0') as Buffer, reference.get('arr_0') as Buffer)]).toEqual([path, 0]);
      } else {
        expect([path, ours.body.length, Buffer.compare(ours.body, theirs.body)]).toEqual([path, theirs.body.length, 0]);
      }
      return ours.body;
    }

    it('gives the bytes of Orthanc for instances, frames and options', async () => {
      for (const index of [NPY.ct, NPY.signed, NPY.frames, NPY.rgb]) {
        const id = ids[index].ID;
        await sameBytes(`/instances/${id}/numpy`);
        await sameBytes(`/instances/${id}/numpy?rescale=0`);
        await sameBytes(`/instances/${id}/numpy?compress=1&rescale=false`);
        await sameBytes(`/instances/${id}/frames/0/numpy`);
      }
      const frame = await sameBytes(`/instances/${ids[NPY.frames].ID}/frames/1/numpy?compress`);
      expect(frame.subarray(0, 2).toString('latin1')).toBe('PK');
      // the fractional slope is floored, as Orthanc does
      const signed = await sameBytes(`/instances/${ids[NPY.signed].ID}/numpy`);
      expect(signed.toString('latin1', 10, 80)).toContain("'descr': '<f4'");
    });

    it('orders a series along its normal, as Orthanc', async () => {
      const body = await sameBytes(`/series/${ids[NPY.slice].ParentSeries}/numpy`);
      expect(body.toString('latin1', 10, 90)).toContain("'shape': (3, 16,16,1)");
      await sameBytes(`/series/${ids[NPY.slice].ParentSeries}/numpy?rescale=0&compress=true`);
    });

    it('refuses what Orthanc refuses', async () => {
      // a PDF: no Pixel Data is a bad request here; Orthanc answers 500 ("not implemented")
      const [pdf, theirPdf] = await both('GET', `/instances/${ids[3].ID}/numpy`);
      expect([pdf.status, JSON.parse(pdf.body.toString()).Message, theirPdf.status]).toEqual([400, 'Bad file format', 500]);
      await sameBytes(`/instances/${ids[NPY.frames].ID}/frames/2/numpy`);
      await sameBytes(`/instances/${ids[NPY.frames].ID}/numpy?compress=yes`);
      await sameBytes('/instances/nope/numpy');
      await sameBytes('/series/nope/numpy');
    });
  });
});

/** VmRSS of a process, in bytes (Linux). */
function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN) * 1024;
}

describe('native archives are streamed', () => {
  it('serves a ~200 MB archive with the gateway process growing by less than 100 MB', async () => {
    const started = Date.now();
    const gateway = await startGatewayProcess({});
    try {
      const MIB = 1 << 20;
      const uploading = Date.now();
      let study = '';
      // 100 instances of 2 MiB of random pixels: incompressible, so the ZIP is ~200 MB too
      for (let i = 0; i < 100; i++) {
        const file = makeInstance({
          PatientID: 'BIG', StudyInstanceUID: '1.2.826.0.1.3680043.8.498.5170', SeriesInstanceUID: '1.2.826.0.1.3680043.8.498.5171',
          Rows: 1024, Columns: 1024, BitsAllocated: 16, InstanceNumber: i + 1, seed: `big-${i}`, pixelData: randomBytes(2 * MIB),
        });
        const answer = await fetch(`${gateway.url}/instances`, { method: 'POST', body: new Uint8Array(file) });
        study = ((await answer.json()) as { ParentStudy: string }).ParentStudy;
      }
      const pid = gateway.child.pid as number;
      const downloading = Date.now();
      await sleep(500);
      const baseline = rssOf(pid);
      let peak = baseline;
      const sampler = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 50);
      let received = 0;
      try {
        const response = await fetch(`${gateway.url}/studies/${study}/archive`);
        expect(response.status).toBe(200);
        // a slow reader: the gateway must wait for it rather than buffer the archive
        for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
          received += chunk.length;
          if (received % (16 * MIB) < chunk.length) await sleep(20);
        }
      } finally {
        clearInterval(sampler);
      }
      const seconds = (from: number, to: number): string => ((to - from) / 1000).toFixed(1);
      process.stdout.write(
        `archive ${(received / MIB).toFixed(1)} MiB in ${seconds(downloading, Date.now())} s (start ${seconds(started, uploading)} s, upload ${seconds(uploading, downloading)} s), ` +
          `gateway RSS ${(baseline / MIB).toFixed(0)} → peak ${(peak / MIB).toFixed(0)} MiB\n`,
      );
      expect(received).toBeGreaterThan(200 * 1e6);
      expect(peak - baseline).toBeLessThan(100 * MIB);
    } finally {
      await gateway.stop();
      removeDir(gateway.dir);
    }
  }, 420_000);
});
