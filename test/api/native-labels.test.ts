import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { makeInstance } from '../helpers/dicom-factory';

/*
 * Labels are Orthanc 1.12's (the book's "Labels" section); Orthanc 1.10 has none, so these tests check the
 * behaviour the book describes instead of comparing answers: GET/PUT/DELETE /{level}/{id}/labels/{label} (200,
 * empty body), GET /{level}/{id}/labels and /tools/labels (sorted lists), "Labels" in the resource JSON, and
 * "Labels" + "LabelsConstraint" (All by default, Any, None) in /tools/find. A label is 1 to 64 letters, digits,
 * "_" or "-" (Orthanc 1.12's rule), else 400.
 */
describe('native labels (Orthanc 1.12 semantics)', () => {
  let gateway: TestGateway;
  const studies: Array<{ ID: string; ParentStudy: string; ParentSeries: string; ParentPatient: string }> = [];

  beforeAll(async () => {
    gateway = await startTestGateway('embedded');
    for (const seed of ['labels-a', 'labels-b', 'labels-c']) {
      studies.push((await request(gateway.app).post('/instances').send(makeInstance({ seed, PatientID: `P-${seed}` }))).body);
    }
  });
  afterAll(async () => {
    await gateway?.close();
  });

  const app = (): ReturnType<typeof request> => request(gateway.app);

  it('adds, tests, lists and removes labels at every level', async () => {
    const { ID, ParentSeries, ParentStudy, ParentPatient } = studies[0];
    for (const path of [`/patients/${ParentPatient}`, `/studies/${ParentStudy}`, `/series/${ParentSeries}`, `/instances/${ID}`]) {
      expect((await app().get(`${path}/labels`)).body).toEqual([]);
      expect((await app().get(`${path}/labels/zeta`)).status).toBe(404);
      for (const label of ['zeta', 'Alpha', 'under_score-1', 'zeta']) {
        const put = await app().put(`${path}/labels/${label}`).send('');
        expect([put.status, put.text, put.headers['content-type']]).toEqual([200, '', 'text/plain']);
      }
      expect((await app().get(`${path}/labels`)).body).toEqual(['Alpha', 'under_score-1', 'zeta']);
      expect((await app().get(path)).body.Labels).toEqual(['Alpha', 'under_score-1', 'zeta']);
      const test = await app().get(`${path}/labels/Alpha`);
      expect([test.status, test.text]).toEqual([200, '']);
      // labels are case-sensitive
      expect((await app().get(`${path}/labels/alpha`)).status).toBe(404);
      expect((await app().delete(`${path}/labels/Alpha`)).status).toBe(200);
      expect((await app().delete(`${path}/labels/Alpha`)).status).toBe(200);
      expect((await app().get(`${path}/labels/Alpha`)).status).toBe(404);
      expect((await app().get(`${path}/labels`)).body).toEqual(['under_score-1', 'zeta']);
    }
    // only the resource labelled has the label
    expect((await app().get(`/studies/${studies[1].ParentStudy}/labels`)).body).toEqual([]);
  });

  it('refuses invalid labels and unknown resources', async () => {
    const path = `/studies/${studies[1].ParentStudy}`;
    for (const label of ['with%20space', 'caf%C3%A9', 'a.b', 'x'.repeat(65)]) {
      for (const method of ['get', 'put', 'delete'] as const) {
        const answer = await app()[method](`${path}/labels/${label}`);
        expect([method, label, answer.status]).toEqual([method, label, 400]);
        expect(answer.body.Message).toMatch(/^A label must be a non-empty, alphanumeric string with at most 64 characters/);
      }
    }
    expect((await app().put(`${path}/labels/${'x'.repeat(64)}`)).status).toBe(200);
    expect((await app().delete(`${path}/labels/${'x'.repeat(64)}`)).status).toBe(200);
    for (const unknown of ['/studies/00000000-00000000-00000000-00000000-00000000', `/series/${studies[1].ParentStudy}`, '/patients/nope']) {
      expect((await app().get(`${unknown}/labels`)).status).toBe(404);
      expect((await app().put(`${unknown}/labels/x`)).status).toBe(404);
      expect((await app().get(`${unknown}/labels/x`)).status).toBe(404);
      expect((await app().delete(`${unknown}/labels/x`)).status).toBe(404);
    }
  });

  it('finds resources by labels with All, Any and None, and lists every label in /tools/labels', async () => {
    const [a, b, c] = studies.map((s) => s.ParentStudy);
    await app().put(`/studies/${a}/labels/train`).expect(200);
    await app().put(`/studies/${a}/labels/reviewed`).expect(200);
    await app().put(`/studies/${b}/labels/test`).expect(200);
    await app().put(`/studies/${b}/labels/reviewed`).expect(200);
    await app().put(`/series/${studies[2].ParentSeries}/labels/train`).expect(200);

    const find = async (body: Record<string, unknown>): Promise<string[]> => {
      const answer = await app().post('/tools/find').send({ Level: 'Study', Query: {}, ...body });
      expect(answer.status).toBe(200);
      return (answer.body as string[]).sort();
    };
    expect(await find({ Labels: ['reviewed'] })).toEqual([a, b].sort());
    expect(await find({ Labels: ['train', 'reviewed'] })).toEqual([a]);
    expect(await find({ Labels: ['train', 'reviewed'], LabelsConstraint: 'All' })).toEqual([a]);
    expect(await find({ Labels: ['train', 'test'], LabelsConstraint: 'Any' })).toEqual([a, b].sort());
    expect(await find({ Labels: ['train'], LabelsConstraint: 'None' })).toEqual([b, c].sort());
    expect(await find({ Labels: ['train', 'test'], LabelsConstraint: 'None' })).toEqual([c]);
    expect(await find({ Labels: ['nobody'], LabelsConstraint: 'Any' })).toEqual([]);
    // a label is matched at the level searched: the series of c is labelled, not its study
    const series = await app().post('/tools/find').send({ Level: 'Series', Query: {}, Labels: ['train'], Expand: true });
    expect(series.body.map((s: { ID: string; Labels: string[] }) => [s.ID, s.Labels])).toEqual([[studies[2].ParentSeries, ['train']]]);
    expect((await app().post('/tools/count-resources').send({ Level: 'Study', Query: {}, Labels: ['reviewed'] })).body).toEqual({ Count: 2 });

    for (const body of [{ Labels: ['not valid'] }, { Labels: [''] }, { Labels: ['ok'], LabelsConstraint: 'Some' }, { Labels: 'train' }]) {
      expect((await app().post('/tools/find').send({ Level: 'Study', Query: {}, ...body })).status).toBe(400);
    }

    const all = (await app().get('/tools/labels')).body as string[];
    expect(all).toEqual([...new Set(all)].sort());
    expect(all).toEqual(expect.arrayContaining(['reviewed', 'test', 'train', 'under_score-1', 'zeta']));
  });

  it('forgets the labels of deleted resources', async () => {
    for (const study of studies) await app().delete(`/patients/${study.ParentPatient}`).expect(200);
    expect((await app().get('/tools/labels')).body).toEqual([]);
  });
});
