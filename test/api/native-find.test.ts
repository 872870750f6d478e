import Database from 'better-sqlite3';
import { join } from 'node:path';
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance, newUid } from '../helpers/dicom-factory';

/** /tools/find and /tools/lookup of the embedded core, answer for answer against a real Orthanc on the same files. */
describe('native /tools/find and /tools/lookup of the embedded core', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;
  const studies = [
    { PatientID: 'F1', PatientName: 'SMITH^JOHN', StudyDate: '20200115', Modality: 'CT', AccessionNumber: 'A1', StudyDescription: 'Chest [plain]' },
    { PatientID: 'F2', PatientName: 'Smithers^Anna', StudyDate: '20210601', Modality: 'MR', AccessionNumber: 'A2', StudyDescription: 'Head' },
    { PatientID: 'F3', PatientName: 'JONES^BOB', StudyDate: '20211231', Modality: 'CT', AccessionNumber: 'A3', StudyDescription: 'Abdomen' },
    { PatientID: 'F4', PatientName: 'Doe^Jane', StudyDate: '20220301', Modality: 'US', AccessionNumber: 'B4', StudyDescription: 'Heart' },
    { PatientID: 'F5', PatientName: 'Straße^Anna', StudyDate: '20230101', Modality: 'MR', AccessionNumber: 'B5', StudyDescription: 'Knee' },
  ];
  const studyUids = studies.map(() => newUid());

  beforeAll(async () => {
    [gateway, orthanc] = await Promise.all([startTestGateway('embedded'), startOrthanc()]);
    for (const [i, s] of studies.entries()) {
      const file = makeInstance({ ...s, StudyInstanceUID: studyUids[i] });
      const ours = await request(gateway.app).post('/instances').send(file);
      expect(ours.status).toBe(200);
      await uploadToOrthanc(orthanc.url, file);
    }
    // a second series in the first study, so ModalitiesInStudy has two values
    const extra = makeInstance({ ...studies[0], StudyInstanceUID: studyUids[0], Modality: 'SR' });
    await request(gateway.app).post('/instances').send(extra);
    await uploadToOrthanc(orthanc.url, extra);
  });
  afterAll(async () => {
    await Promise.all([gateway.close(), orthanc.stop()]);
  });

  async function both(body: Record<string, unknown>): Promise<[unknown, unknown]> {
    const ours = await request(gateway.app).post('/tools/find').send(JSON.stringify(body));
    expect(ours.status).toBe(200);
    const theirs = await fetch(`${orthanc.url}/tools/find`, { method: 'POST', body: JSON.stringify(body) });
    expect(theirs.status).toBe(200);
    return [ours.body, await theirs.json()];
  }

  const sorted = (ids: unknown): string[] => [...(ids as string[])].sort();

  it.each([
    ['exact', { PatientID: 'F3' }],
    ['wildcard *', { PatientName: 'SMITH*' }],
    ['wildcard after a literal prefix, in its case', { PatientName: 'Smith*' }],
    ['UID', { StudyInstanceUID: studyUids[2] }],
    ['wildcard ?', { PatientID: 'F?' }],
    ['date range a-b', { StudyDate: '20210101-20211231' }],
    ['open range a-', { StudyDate: '20211231-' }],
    ['open range -b', { StudyDate: '-20210601' }],
    ['list', { AccessionNumber: 'A1\\B4' }],
    ['brackets are literal', { StudyDescription: 'Chest [plain]' }],
    ['tag spelling', { '0008,0050': 'A2' }],
    ['universal', { PatientName: '*' }],
  ])('matches %s as Orthanc does (case-sensitive)', async (_name, query) => {
    const [ours, theirs] = await both({ Level: 'Study', Query: query, CaseSensitive: true });
    expect(sorted(ours)).toEqual(sorted(theirs));
    expect((ours as string[]).length).toBeGreaterThan(0);
  });

  it.each([
    ['the series of a study', 'Series'],
    ['the instances of a study', 'Instance'],
  ])('finds %s by the UID above them as Orthanc does', async (_name, level) => {
    const [ours, theirs] = await both({ Level: level, Query: { StudyInstanceUID: studyUids[0] } });
    expect(sorted(ours)).toEqual(sorted(theirs));
    expect(ours).toHaveLength(2);
  });

  it('matches a case-sensitive wildcard whose ? stands for a character that upper-cases to two (ß)', async () => {
    const found = (await request(gateway.app).post('/tools/find').send({ Level: 'Patient', Query: { PatientName: 'Stra?e^*' }, CaseSensitive: true })).body;
    expect(found).toHaveLength(1);
    const none = (await request(gateway.app).post('/tools/find').send({ Level: 'Patient', Query: { PatientName: 'stra?e^*' }, CaseSensitive: true })).body;
    expect(none).toEqual([]);
  });

  it('matches a lower-level attribute on any descendant (Orthanc 1.10 matches nothing there)', async () => {
    const [ours, theirs] = await both({ Level: 'Study', Query: { Modality: 'US' }, CaseSensitive: true });
    expect(theirs).toEqual([]);
    const us = (await request(gateway.app).post('/tools/find').send({ Level: 'Study', Query: { PatientID: 'F4' } })).body;
    expect(ours).toEqual(us);
    expect(us).toHaveLength(1);
  });

  it('matches case-insensitively by default, and as Orthanc with CaseSensitive false', async () => {
    const ours = (await request(gateway.app).post('/tools/find').send({ Level: 'Patient', Query: { PatientName: 'smith*' } })).body;
    expect(ours).toHaveLength(2);
    const [insensitive, theirs] = await both({ Level: 'Patient', Query: { PatientName: 'smith*' }, CaseSensitive: false });
    expect(sorted(insensitive)).toEqual(sorted(theirs));
    const [sensitive] = await both({ Level: 'Patient', Query: { PatientName: 'smith*' }, CaseSensitive: true });
    expect(sensitive).toEqual([]);
  });

  it('expands answers like Orthanc, with Limit and Since paging in a stable order', async () => {
    const [ours, theirs] = await both({ Level: 'Series', Query: { Modality: 'CT' }, Expand: true });
    const strip = (list: unknown): unknown =>
      (list as Array<Record<string, unknown>>).map(({ ID, MainDicomTags, ParentStudy, Type }) => ({ ID, MainDicomTags, ParentStudy, Type })).sort((a, b) => String(a.ID).localeCompare(String(b.ID)));
    expect(strip(ours)).toEqual(strip(theirs));
    const all = (await request(gateway.app).post('/tools/find').send({ Level: 'Study', Query: {} })).body as string[];
    expect(all).toHaveLength(studies.length);
    const second = (await request(gateway.app).post('/tools/find').send({ Level: 'Study', Query: {}, Limit: 1, Since: 1 })).body;
    expect(second).toEqual([all[1]]);
    const filteredPage = (await request(gateway.app).post('/tools/find').send({ Level: 'Study', Query: { Modality: 'CT' }, Limit: 1, Since: 1 })).body;
    const filtered = (await request(gateway.app).post('/tools/find').send({ Level: 'Study', Query: { Modality: 'CT' } })).body;
    expect(filteredPage).toEqual([filtered[1]]);
  });

  it('answers RequestedTags, computed ones included', async () => {
    const res = await request(gateway.app)
      .post('/tools/find')
      .send({
        Level: 'Study',
        Query: { PatientID: 'F1' },
        Expand: true,
        RequestedTags: ['ModalitiesInStudy', 'NumberOfStudyRelatedSeries', 'NumberOfStudyRelatedInstances', 'PatientName', '0008,0016', 'Rows'],
      });
    expect(res.status).toBe(200);
    expect(res.body).toHaveLength(1);
    expect(res.body[0].RequestedTags).toMatchObject({
      ModalitiesInStudy: 'CT\\SR',
      NumberOfStudyRelatedSeries: '2',
      NumberOfStudyRelatedInstances: '2',
      PatientName: 'SMITH^JOHN',
      SOPClassUID: '1.2.840.10008.5.1.4.1.1.2',
    });
    expect(res.body[0].RequestedTags.Rows).toMatch(/^\d+$/);
    const byModality = (await request(gateway.app).post('/tools/find').send({ Level: 'Study', Query: { ModalitiesInStudy: 'SR\\US' } })).body;
    expect(byModality).toHaveLength(2);
  });

  it('matches attributes outside the index on the files (a private tag)', async () => {
    const file = makeInstance({
      PatientID: 'PRIV',
      extraElements: { '00090010': { vr: 'LO', Value: ['Lunit'] }, '00091001': { vr: 'LO', Value: ['score-7'] } },
    });
    await request(gateway.app).post('/instances').send(file);
    const found = (await request(gateway.app).post('/tools/find').send({ Level: 'Instance', Query: { '0009,1001': 'score-*' } })).body;
    expect(found).toHaveLength(1);
    const none = (await request(gateway.app).post('/tools/find').send({ Level: 'Instance', Query: { '0009,1001': 'other' } })).body;
    expect(none).toEqual([]);
  });

  it('looks up DICOM identifiers as Orthanc does', async () => {
    const ours = (await request(gateway.app).post('/tools/lookup').send(studyUids[2])).body;
    const theirs = await (await fetch(`${orthanc.url}/tools/lookup`, { method: 'POST', body: studyUids[2] })).json();
    expect(ours).toEqual(theirs);
    expect((await request(gateway.app).post('/tools/lookup').send('1.2.3.4.5.6.7')).body).toEqual([]);
    const count = (await request(gateway.app).post('/tools/count-resources').send({ Level: 'Study', Query: { Modality: 'CT', PatientID: 'F*' } })).body;
    expect(count).toEqual({ Count: 2 });
  });

  it('refuses malformed /tools/find requests with 400', async () => {
    const cases: unknown[] = ['{not json', { Level: 'Nope', Query: {} }, { Level: 'Study', Query: { NotAKeyword: 'x' } }, { Level: 'Study', Query: { PatientID: 3 } }, { Level: 'Study', Query: {}, Limit: -1 }, []];
    for (const body of cases) {
      const res = await request(gateway.app).post('/tools/find').send(typeof body === 'string' ? body : JSON.stringify(body));
      expect(res.status).toBe(400);
      expect(res.body.HttpStatus).toBe(400);
    }
    expect((await request(gateway.app).post('/tools/bulk-delete').send({ Resources: ['../etc'] })).status).toBe(400);
  });
});

describe('an index written with a (tag, value) index of its own', () => {
  it('drops it when opened and still finds by exact, case-sensitive value', async () => {
    const first = await startTestGateway('embedded');
    let second: TestGateway | undefined;
    try {
      expect((await request(first.app).post('/instances').send(makeInstance({ PatientID: 'OldLayout' }))).status).toBe(200);
      await first.core.close();
      const file = join(first.dir, 'storage', 'index.sqlite');
      const db = new Database(file);
      db.exec('CREATE INDEX tag_index_value ON tag_index(tag, value)');
      db.close();

      second = await startTestGateway('embedded', { StorageDirectory: join(first.dir, 'storage') });
      const found = await request(second.app).post('/tools/find').send({ Level: 'Patient', Query: { PatientID: 'OldLayout' }, CaseSensitive: true });
      expect(found.body).toHaveLength(1);
      const reopened = new Database(file, { readonly: true });
      const indexes = reopened.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tag_index'").all() as Array<{ name: string }>;
      reopened.close();
      expect(indexes.map((i) => i.name).sort()).toEqual(['tag_index_folded', 'tag_index_resource']);
    } finally {
      await second?.close();
      await first.close().catch(() => undefined);
    }
  });
});

describe('the status of a series in /tools/find answers', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway('embedded');
  });
  afterAll(async () => {
    await gateway.close();
  });

  it('gives a series its status from the count of its instances, with or without NumberOfSeriesRelatedInstances asked', async () => {
    const study = newUid();
    const series = newUid();
    // ImagesInAcquisition 2: Orthanc's expected number of instances
    for (let i = 1; i <= 2; i++) {
      const file = makeInstance({ PatientID: 'F6', StudyInstanceUID: study, SeriesInstanceUID: series, InstanceNumber: i, extraElements: { '00201002': { vr: 'IS', Value: [2] } } });
      expect((await request(gateway.app).post('/instances').send(file)).status).toBe(200);
    }
    for (const requested of [['NumberOfSeriesRelatedInstances'], []]) {
      const found = await request(gateway.app)
        .post('/tools/find')
        .send({ Level: 'Series', Query: { SeriesInstanceUID: series }, Expand: true, ResponseContent: ['MainDicomTags'], RequestedTags: requested });
      expect(found.status).toBe(200);
      expect(found.body).toHaveLength(1);
      expect(found.body[0]).toMatchObject({ ExpectedNumberOfInstances: 2, Status: 'Complete' });
      if (requested.length > 0) expect(found.body[0].RequestedTags).toEqual({ NumberOfSeriesRelatedInstances: '2' });
    }
  });
});
