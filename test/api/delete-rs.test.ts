import request from 'supertest';
import { CORE_KINDS, startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { makeStudy } from '../helpers/dicom-factory';

const ROOT = '/dicom-web';

describe.each(CORE_KINDS)('DELETE of studies, series and instances by UID (%s core)', (kind) => {
  let gateway: TestGateway;
  const study = makeStudy({ seed: `delete-rs-${kind}`, seriesCount: 2, instancesPerSeries: 2, Rows: 4, Columns: 4 });
  const [a, b] = study.series;

  beforeAll(async () => {
    gateway = await startTestGateway(kind);
    for (const buffer of study.buffers) await gateway.core.storeInstance({ buffer });
  }, 60_000);
  afterAll(async () => gateway?.close());

  const count = async (): Promise<number> => ((await request(gateway.app).get('/instances').expect(200)).body as string[]).length;

  it('deletes one instance, then a series, then the study, each with 204', async () => {
    const instanceUid = a.instances[0].tags.SOPInstanceUID;
    await request(gateway.app).delete(`${ROOT}/studies/${study.StudyInstanceUID}/series/${a.SeriesInstanceUID}/instances/${instanceUid}`).expect(204);
    expect(await count()).toBe(3);
    await request(gateway.app).get(`${ROOT}/studies/${study.StudyInstanceUID}/series/${a.SeriesInstanceUID}/instances/${instanceUid}`).expect(404);
    await request(gateway.app).delete(`${ROOT}/studies/${study.StudyInstanceUID}/series/${a.SeriesInstanceUID}`).expect(204);
    expect(await count()).toBe(2);
    // a series UID under another study is unknown here
    await request(gateway.app).delete(`${ROOT}/studies/1.2.3/series/${b.SeriesInstanceUID}`).expect(404);
    expect(await count()).toBe(2);
    await request(gateway.app).delete(`${ROOT}/studies/${study.StudyInstanceUID}`).expect(204);
    expect(await count()).toBe(0);
    const gone = await request(gateway.app).delete(`${ROOT}/studies/${study.StudyInstanceUID}`).expect(404);
    expect(gone.body).toMatchObject({ HttpStatus: 404 });
  });

  it('names DELETE in Allow on resource routes, not on their metadata', async () => {
    const put = await request(gateway.app).put(`${ROOT}/studies/${study.StudyInstanceUID}`).expect(405);
    expect(put.headers.allow).toBe('GET, DELETE');
    const metadata = await request(gateway.app).delete(`${ROOT}/studies/${study.StudyInstanceUID}/metadata`).expect(405);
    expect(metadata.headers.allow).toBe('GET');
  });
});

describe('DELETE by UID in ReadOnly mode', () => {
  it('is refused with 403 and deletes nothing', async () => {
    const study = makeStudy({ seed: 'delete-rs-ro', seriesCount: 1, instancesPerSeries: 1, Rows: 4, Columns: 4 });
    const gateway = await startTestGateway('embedded', { ReadOnly: true });
    try {
      await gateway.core.storeInstance({ buffer: study.buffers[0] });
      await request(gateway.app).delete(`${ROOT}/studies/${study.StudyInstanceUID}`).expect(403);
      expect((await request(gateway.app).get('/instances').expect(200)).body).toHaveLength(1);
    } finally {
      await gateway.close();
    }
  });
});
