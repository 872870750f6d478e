import request from 'supertest';
import { join } from 'node:path';
import archiver from 'archiver';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance, newUid } from '../helpers/dicom-factory';
import { orthancId } from '../../src/core/orthanc-ids';
import { storedFiles as storageFiles } from '../helpers/stored-files';

/** Files of the storage area, tmp/ included (nothing may be left anywhere), minus the SQLite index. */
function storedFiles(storage: string): string[] {
  return storageFiles(storage, { withTmp: true });
}

async function zipOf(files: Array<[string, Buffer]>): Promise<Buffer> {
  const archive = archiver('zip');
  const chunks: Buffer[] = [];
  archive.on('data', (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise<void>((resolve, reject) => {
    archive.on('end', () => resolve());
    archive.on('error', reject);
  });
  for (const [name, data] of files) archive.append(data, { name });
  await archive.finalize();
  await done;
  return Buffer.concat(chunks);
}

describe('native REST API of the embedded core: POST /instances and browsing', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;

  beforeAll(async () => {
    orthanc = await startOrthanc();
  });
  afterAll(async () => {
    await orthanc.stop();
  });
  beforeEach(async () => {
    gateway = await startTestGateway('embedded');
  });
  afterEach(async () => {
    await gateway.close();
  });

  it('stores a file with the same identifiers and answer as a real Orthanc', async () => {
    const file = makeInstance({ PatientID: 'P-42', PatientName: 'Doe^Jane', seed: 'ids' });
    const ours = await request(gateway.app).post('/instances').set('Content-Type', 'application/dicom').send(file);
    const theirs = await uploadToOrthanc(orthanc.url, file);
    expect(ours.status).toBe(200);
    expect(ours.body).toEqual({ ...theirs, Status: 'Success' });
    expect(Object.keys(ours.body).sort()).toEqual(Object.keys(theirs).sort());

    const again = await request(gateway.app).post('/instances').send(file);
    expect(again.body.Status).toBe('AlreadyStored');
    expect(again.body.ID).toBe(ours.body.ID);
  });

  it('hashes identifiers as Orthanc does (the CT_small example of DESIGN.md)', () => {
    // pydicom's CT_small.dcm: PatientID 1CT1 and its UIDs give these documented Orthanc identifiers
    const study = '1.3.6.1.4.1.5962.1.2.1.20040119072730.12322';
    const series = '1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322';
    const sop = '1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322';
    expect(orthancId('1CT1', study)).toBe('8a8cf898-ca27c490-d0c7058c-929d0581-2bbf104d');
    expect(orthancId('1CT1', study, series, sop)).toBe('f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af');
  });

  it('answers resources with the JSON shapes of Orthanc', async () => {
    const file = makeInstance({ PatientID: 'SHAPE', StudyDescription: 'Shapes', Modality: 'MR', InstanceNumber: 7, seed: 'shape' });
    const stored = (await request(gateway.app).post('/instances').send(file)).body;
    await uploadToOrthanc(orthanc.url, file);
    const paths = [
      `/patients/${stored.ParentPatient}`,
      `/studies/${stored.ParentStudy}`,
      `/series/${stored.ParentSeries}`,
      `/instances/${stored.ID}`,
    ];
    for (const path of paths) {
      const ours = await request(gateway.app).get(path);
      const theirs = await (await fetch(orthanc.url + path)).json();
      expect(ours.status).toBe(200);
      // Labels is Orthanc 1.12's addition; the rest must match Orthanc 1.10 key for key
      const ourKeys = Object.keys(ours.body).filter((k) => k !== 'Labels').sort();
      expect(ourKeys).toEqual(Object.keys(theirs).sort());
      expect(ours.body.MainDicomTags).toEqual(theirs.MainDicomTags);
      for (const key of ['ID', 'Type', 'ParentPatient', 'ParentStudy', 'ParentSeries', 'Studies', 'Series', 'Instances', 'IndexInSeries', 'FileSize']) {
        expect(ours.body[key]).toEqual(theirs[key]);
      }
    }
    const study = (await request(gateway.app).get(`/studies/${stored.ParentStudy}`)).body;
    expect(study.PatientMainDicomTags.PatientID).toBe('SHAPE');
    expect((await request(gateway.app).get(`/instances/${stored.ID}`)).body.IndexInSeries).toBe(7);
  });

  it('navigates between levels and lists with expand, since and limit', async () => {
    const study = newUid();
    const series = newUid();
    const ids: string[] = [];
    for (let i = 1; i <= 3; i++) {
      const res = await request(gateway.app)
        .post('/instances')
        .send(makeInstance({ PatientID: 'NAV', StudyInstanceUID: study, SeriesInstanceUID: series, InstanceNumber: i }));
      ids.push(res.body.ID);
    }
    const first = (await request(gateway.app).get(`/instances/${ids[0]}`)).body;
    expect((await request(gateway.app).get('/instances')).body).toEqual(ids);
    expect((await request(gateway.app).get('/instances?since=1&limit=1')).body).toEqual([ids[1]]);
    const expanded = (await request(gateway.app).get('/studies?expand')).body;
    expect(expanded).toHaveLength(1);
    expect(expanded[0].Type).toBe('Study');
    const seriesJson = (await request(gateway.app).get(`/series/${first.ParentSeries}`)).body;
    const seriesInstances = (await request(gateway.app).get(`/series/${first.ParentSeries}/instances`)).body;
    expect(seriesInstances.map((i: { ID: string }) => i.ID)).toEqual(seriesJson.Instances);
    expect(seriesJson.Instances).toEqual(ids);
    const patient = (await request(gateway.app).get(`/instances/${ids[2]}/patient`)).body;
    expect(patient.MainDicomTags.PatientID).toBe('NAV');
    const studyOfSeries = (await request(gateway.app).get(`/series/${first.ParentSeries}/study`)).body;
    expect(studyOfSeries.Series).toEqual([first.ParentSeries]);
    expect((await request(gateway.app).get(`/patients/${patient.ID}/instances`)).body).toHaveLength(3);
    expect((await request(gateway.app).get('/instances?limit=abc')).status).toBe(400);
  });

  it('streams the stored file back byte for byte', async () => {
    const file = makeInstance({ seed: 'bytes' });
    const stored = (await request(gateway.app).post('/instances').send(file)).body;
    const res = await request(gateway.app).get(`/instances/${stored.ID}/file`).buffer(true).parse((r, cb) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => cb(null, Buffer.concat(chunks)));
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/dicom');
    expect(Buffer.compare(res.body as Buffer, file)).toBe(0);
    const metadata = (await request(gateway.app).get(`/instances/${stored.ID}/metadata?expand`)).body;
    expect(metadata.TransferSyntax).toBe('1.2.840.10008.1.2.1');
    expect((await request(gateway.app).get(`/instances/${stored.ID}/metadata/TransferSyntax`)).text).toBe('1.2.840.10008.1.2.1');
  });

  it('stores every DICOM file of a ZIP archive and skips the rest', async () => {
    const a = makeInstance({ PatientID: 'ZIP' });
    const b = makeInstance({ PatientID: 'ZIP' });
    const zip = await zipOf([
      ['dir/a.dcm', a],
      ['b.dcm', b],
      ['README.txt', Buffer.from('not dicom')],
    ]);
    const res = await request(gateway.app).post('/instances').send(zip);
    expect(res.status).toBe(200);
    expect(res.body).toHaveLength(2);
    expect(res.body.map((r: { Status: string }) => r.Status)).toEqual(['Success', 'Success']);
    expect((await request(gateway.app).get('/statistics')).body.CountInstances).toBe(2);
  });

  it('refuses bad input with Orthanc-style errors and keeps nothing of it', async () => {
    const storage = join(gateway.dir, 'storage');
    const notDicom = await request(gateway.app).post('/instances').send(Buffer.from('hello, I am not DICOM at all'.repeat(10)));
    expect(notDicom.status).toBe(400);
    expect(notDicom.body).toMatchObject({ HttpStatus: 400, HttpError: 'Bad Request', Method: 'POST', Uri: '/instances' });
    expect(typeof notDicom.body.Message).toBe('string');

    const full = makeInstance({ seed: 'truncated' });
    const truncated = await request(gateway.app).post('/instances').send(full.subarray(0, 300));
    expect(truncated.status).toBe(400);

    const noSop = makeInstance({ extraElements: { '00080018': { vr: 'UI', Value: [] } } });
    const missing = await request(gateway.app).post('/instances').send(noSop);
    expect(missing.status).toBe(400);
    expect(missing.body.Message).toMatch(/SOPInstanceUID/);

    const empty = await request(gateway.app).post('/instances').send(Buffer.alloc(0));
    expect(empty.status).toBe(400);

    const multipart = await request(gateway.app).post('/instances').set('Content-Type', 'multipart/related; boundary=x').send('--x--');
    expect(multipart.status).toBe(415);

    expect(storedFiles(storage)).toEqual([]);
    expect((await request(gateway.app).get('/statistics')).body.CountInstances).toBe(0);
    expect((await request(gateway.app).get('/patients')).body).toEqual([]);

    const unknown = await request(gateway.app).get('/studies/01234567-89abcdef-01234567-89abcdef-01234567');
    expect(unknown.status).toBe(404);
    expect(unknown.body.HttpStatus).toBe(404);
    expect((await request(gateway.app).get('/studies/../../etc/passwd')).status).toBe(404);
  });

  it('stores concurrent uploads of the same instance once', async () => {
    const file = makeInstance({ seed: 'race' });
    const answers = await Promise.all(Array.from({ length: 8 }, () => request(gateway.app).post('/instances').send(file)));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(answers.filter((a) => a.body.Status === 'Success')).toHaveLength(1);
    expect(storedFiles(join(gateway.dir, 'storage'))).toHaveLength(1);
    expect((await request(gateway.app).get('/instances')).body).toHaveLength(1);
  });

  it('deletes resources with their descendants, then empty ancestors, and records changes', async () => {
    const study = newUid();
    const series = newUid();
    const one = (await request(gateway.app).post('/instances').send(makeInstance({ PatientID: 'DEL', StudyInstanceUID: study, SeriesInstanceUID: series }))).body;
    const two = (await request(gateway.app).post('/instances').send(makeInstance({ PatientID: 'DEL', StudyInstanceUID: study, SeriesInstanceUID: series }))).body;
    const removed = await request(gateway.app).delete(`/instances/${one.ID}`);
    expect(removed.body).toEqual({ RemainingAncestor: { ID: one.ParentSeries, Path: `/series/${one.ParentSeries}`, Type: 'Series' } });
    expect(storedFiles(join(gateway.dir, 'storage'))).toHaveLength(1);
    const last = await request(gateway.app).delete(`/instances/${two.ID}`);
    expect(last.body).toEqual({ RemainingAncestor: null });
    expect((await request(gateway.app).get('/patients')).body).toEqual([]);
    expect(storedFiles(join(gateway.dir, 'storage'))).toEqual([]);
    expect((await request(gateway.app).delete(`/instances/${two.ID}`)).status).toBe(404);

    const changes = (await request(gateway.app).get('/changes?limit=100')).body;
    const types = changes.Changes.map((c: { ChangeType: string }) => c.ChangeType);
    expect(types.slice(0, 4)).toEqual(['NewPatient', 'NewStudy', 'NewSeries', 'NewInstance']);
    expect(types.filter((t: string) => t === 'Deleted')).toHaveLength(5);
    expect(changes.Done).toBe(true);
    const page = (await request(gateway.app).get('/changes?limit=2')).body;
    expect(page.Changes).toHaveLength(2);
    expect(page.Done).toBe(false);
    expect(page.Last).toBe(page.Changes[1].Seq);
    expect((await request(gateway.app).get('/changes?last')).body.Changes).toHaveLength(1);
    await request(gateway.app).delete('/changes');
    expect((await request(gateway.app).get('/changes')).body.Changes).toEqual([]);
  });

  it('answers /system, /statistics and /plugins', async () => {
    const system = (await request(gateway.app).get('/system')).body;
    expect(system).toMatchObject({ DicomAet: 'ORTHANC', HttpPort: 8042, Name: 'dicomweb-gateway' });
    expect(typeof system.ApiVersion).toBe('number');
    expect((await request(gateway.app).get('/plugins')).body).toEqual(['dicom-web']);
    expect((await request(gateway.app).get('/plugins/dicom-web')).body.ID).toBe('dicom-web');
    const stats = (await request(gateway.app).get('/statistics')).body;
    expect(stats).toMatchObject({ CountPatients: 0, CountInstances: 0, TotalDiskSizeMB: 0 });
  });
});
