/**
 * "ReadOnly": true (server/read-only.ts): every route that writes answers 403 with an Orthanc-style JSON
 * body and leaves the store as it was; reads, including the POSTs that only read, keep working.
 */
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { makeInstance, makeStudy } from '../helpers/dicom-factory';
import { storedFiles } from '../helpers/stored-files';
import { isWrite, writeRoutes } from '../../src/server/read-only';

describe('ReadOnly: true on the embedded core', () => {
  let gateway: TestGateway;
  let instanceId: string;
  let studyId: string;
  let studyUid: string;
  let sopUid: string;
  let seriesUid: string;
  let filesBefore: string[];

  beforeAll(async () => {
    gateway = await startTestGateway('embedded', {
      ReadOnly: true,
      DicomModalities: { pacs: ['PACS', '127.0.0.1', 1] },
      // a server that is not there: reads to it may fail (502), but never with our 403
      DicomWeb: { Servers: { remote: { Url: 'http://127.0.0.1:1/dicom-web/', Timeout: 1 } } },
    });
    const study = makeStudy({ seed: 'read-only', PatientID: 'RO-1', seriesCount: 1, instancesPerSeries: 2 });
    // the core itself is not behind the HTTP guard: it is how data gets in for this test
    for (const buffer of study.buffers) {
      const stored = await gateway.core.storeInstance({ buffer });
      instanceId = stored.ID;
      studyId = stored.ParentStudy;
    }
    studyUid = study.StudyInstanceUID;
    seriesUid = study.series[0].SeriesInstanceUID;
    sopUid = study.series[0].instances[0].tags.SOPInstanceUID;
    filesBefore = storedFiles(gateway.config.storageDirectory);
  });
  afterAll(async () => {
    await gateway?.close();
  });

  const newFile = (): Buffer => makeInstance({ PatientID: 'RO-NEW', seed: 'read-only-new' });

  const writes: Array<[string, () => request.Test]> = [
    ['POST /instances', () => request(gateway.app).post('/instances').type('application/dicom').send(newFile())],
    ['POST /INSTANCES/ (case, trailing slash)', () => request(gateway.app).post('/INSTANCES/').type('application/dicom').send(newFile())],
    ['POST //instances (doubled slash)', () => request(gateway.app).post('//instances').type('application/dicom').send(newFile())],
    ['STOW POST /dicom-web/studies', () => request(gateway.app).post('/dicom-web/studies').type('multipart/related; type="application/dicom"; boundary=x').send('--x--')],
    ['STOW POST /dicom-web/studies/{uid}', () => request(gateway.app).post(`/dicom-web/studies/${studyUid}`).type('multipart/related; type="application/dicom"; boundary=x').send('--x--')],
    ['DELETE /instances/{id}', () => request(gateway.app).delete(`/instances/${instanceId}`)],
    ['DELETE /studies/{id}', () => request(gateway.app).delete(`/studies/${studyId}`)],
    ['DELETE /changes', () => request(gateway.app).delete('/changes')],
    ['DELETE /dicom-web/servers/{name}', () => request(gateway.app).delete('/dicom-web/servers/remote')],
    ['PUT /modalities/{name}', () => request(gateway.app).put('/modalities/other').send(['OTHER', '127.0.0.1', 104])],
    ['PUT /dicom-web/servers/{name}', () => request(gateway.app).put('/dicom-web/servers/other').send({ Url: 'http://127.0.0.1:2/' })],
    ['POST /dicom-web/servers/{name}/retrieve', () => request(gateway.app).post('/dicom-web/servers/remote/retrieve').send({ Resources: [{ Study: studyUid }] })],
    ['POST /tools/bulk-delete', () => request(gateway.app).post('/tools/bulk-delete').send({ Resources: [studyId] })],
    ['POST /modalities/{name}/move', () => request(gateway.app).post('/modalities/pacs/move').send({ Level: 'Study', Resources: [{ StudyInstanceUID: studyUid }] })],
    ['POST /queries/{id}/retrieve', () => request(gateway.app).post('/queries/abc/retrieve').send('')],
    ['POST /jobs/{id}/resubmit', () => request(gateway.app).post('/jobs/abc/resubmit')],
  ];

  it.each(writes)('%s answers 403 with an Orthanc-style JSON error', async (_name, send) => {
    const res = await send();
    expect(res.status).toBe(403);
    expect(res.type).toBe('application/json');
    expect(res.body).toMatchObject({ HttpError: 'Forbidden', HttpStatus: 403, Message: 'This gateway is read-only' });
  });

  it('changed nothing: same resources, same files, same configuration', async () => {
    const instances = await request(gateway.app).get('/instances');
    expect(instances.status).toBe(200);
    expect(instances.body).toHaveLength(2);
    expect(storedFiles(gateway.config.storageDirectory)).toEqual(filesBefore);
    expect((await request(gateway.app).get('/dicom-web/servers')).body).toEqual(['remote']);
    expect((await request(gateway.app).get('/modalities')).body).toEqual(['pacs']);
  });

  const reads: Array<[string, () => request.Test]> = [
    ['GET /instances', () => request(gateway.app).get('/instances')],
    ['GET /studies/{id}', () => request(gateway.app).get(`/studies/${studyId}`)],
    ['GET /instances/{id}/file', () => request(gateway.app).get(`/instances/${instanceId}/file`)],
    ['GET /studies/{id}/archive', () => request(gateway.app).get(`/studies/${studyId}/archive`)],
    ['POST /studies/{id}/archive', () => request(gateway.app).post(`/studies/${studyId}/archive`).send({})],
    ['POST /tools/find', () => request(gateway.app).post('/tools/find').send({ Level: 'Study', Query: {} })],
    ['POST /tools/count-resources', () => request(gateway.app).post('/tools/count-resources').send({ Level: 'Instance', Query: {} })],
    ['POST /tools/lookup', () => request(gateway.app).post('/tools/lookup').type('text/plain').send(studyUid)],
    ['POST /tools/create-archive', () => request(gateway.app).post('/tools/create-archive').send({ Resources: [studyId] })],
    ['QIDO GET /dicom-web/studies', () => request(gateway.app).get('/dicom-web/studies')],
    ['WADO-RS metadata', () => request(gateway.app).get(`/dicom-web/studies/${studyUid}/metadata`)],
    ['WADO-URI', () => request(gateway.app).get(`/wado?requestType=WADO&studyUID=${studyUid}&seriesUID=${seriesUid}&objectUID=${sopUid}&contentType=application/dicom`)],
  ];

  it.each(reads)('%s still answers 200', async (_name, send) => {
    const res = await send().buffer(true);
    expect(res.status).toBe(200);
  });

  it.each([
    ['get', { Uri: '/studies' }],
    ['qido', { Uri: '/studies' }],
    ['stow', { Resources: [studyId] }],
  ])('the client primitive POST /dicom-web/servers/{name}/%s passes the guard (it does not write here)', async (name, body) => {
    const res = await request(gateway.app).post(`/dicom-web/servers/remote/${name}`).send(body);
    expect(res.status).not.toBe(403);
  });
});

describe('the list of write routes', () => {
  const routes = writeRoutes('/dicom-web/');
  it.each([
    ['POST', '/instances'],
    ['POST', '/Instances/'],
    ['POST', '/%69nstances'],
    ['POST', '/dicom-web/studies'],
    ['POST', '/DICOM-WEB/studies/1.2.3/'],
    ['POST', '/studies/x/modify'],
    ['POST', '/queries/q/answers/0/retrieve'],
    ['PUT', '/anything'],
    ['DELETE', '/anything'],
  ])('%s %s is a write', (method, path) => {
    expect(isWrite(method, path, routes)).toBe(true);
  });
  it.each([
    ['GET', '/instances'],
    ['POST', '/tools/find'],
    ['POST', '/tools/lookup'],
    ['POST', '/tools/create-archive'],
    ['POST', '/studies/x/archive'],
    ['POST', '/dicom-web/servers/remote/stow'],
    ['POST', '/modalities/pacs/store'],
    ['POST', '/jobs/j/cancel'],
  ])('%s %s is a read', (method, path) => {
    expect(isWrite(method, path, routes)).toBe(false);
  });
});
