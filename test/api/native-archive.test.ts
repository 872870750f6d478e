import request from 'supertest';
import yauzl from 'yauzl';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance, makeNonImage } from '../helpers/dicom-factory';

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
});
