/**
 * Hostile identifiers in every route that turns an id or a UID into a file read: traversal (raw and
 * percent-encoded), NUL bytes, wildcards, very long ids, Unicode. Each must be a 4xx Orthanc-style JSON
 * answer: never a 500, never the bytes of a file outside the store.
 */
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { makeInstance } from '../helpers/dicom-factory';

const HOSTILE_IDS: readonly string[] = [
  '..%2f..%2f..%2f..%2fetc%2fpasswd',
  '..%2F..%2F..%2F..%2Fetc%2Fpasswd',
  '%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd',
  '..%5c..%5c..%5cetc%5cpasswd',
  '%2fetc%2fpasswd',
  'abc%00def',
  '%00',
  '*',
  '%2a',
  '.',
  '..',
  'x'.repeat(5000),
  encodeURIComponent('ü漢字\u202e'),
  '1.2.3%0d%0aX-Injected:%20yes',
  'f689ddd2-662f8fe1-8b18180d-ec2a2cee-937917af%2f..%2f..',
];

/** Raw traversal: the whole path, because "../" moves out of the route before any parameter. */
const RAW_TRAVERSALS: readonly string[] = [
  '/instances/../../../../etc/passwd',
  '/instances/x/../../../../etc/passwd/file',
  '/dicom-web/studies/../../../../etc/passwd',
  '/studies/..%2f..%2f/../../etc/passwd/archive',
];

const ROUTES: ReadonlyArray<(id: string) => string> = [
  (id) => `/instances/${id}/file`,
  (id) => `/instances/${id}/tags`,
  (id) => `/instances/${id}/content/0010-0010`,
  (id) => `/instances/${id}/frames/1/raw`,
  (id) => `/instances/${id}/pdf`,
  (id) => `/studies/${id}/archive`,
  (id) => `/series/${id}/media`,
  (id) => `/patients/${id}`,
  (id) => `/dicom-web/studies/${id}`,
  (id) => `/dicom-web/studies/${id}/metadata`,
  (id) => `/dicom-web/studies/${id}/series/${id}/instances/${id}`,
  (id) => `/dicom-web/studies/${id}/series/${id}/instances/${id}/frames/1`,
  (id) => `/dicom-web/studies/${id}/series/${id}/instances/${id}/bulk/7FE00010`,
  (id) => `/dicom-web/studies/${id}/rendered`,
  (id) => `/wado?requestType=WADO&studyUID=${id}&seriesUID=${id}&objectUID=${id}`,
  (id) => `/wado?requestType=WADO&studyUID=1.2&seriesUID=1.2&objectUID=${id}&contentType=application/dicom`,
];

describe('path safety on the embedded core', () => {
  let gateway: TestGateway;

  beforeAll(async () => {
    gateway = await startTestGateway('embedded');
    // a store that is not empty: a lookup that went wrong would have something to find
    await gateway.core.storeInstance({ buffer: makeInstance({ seed: 'path-safety', PatientID: 'PS-1' }) });
  });
  afterAll(async () => {
    await gateway?.close();
  });

  const expectRefused = (res: request.Response, url: string): void => {
    const text = res.text ?? '';
    // say which URL failed: these run as one loop
    expect({ url, status: res.status, ok: res.status >= 400 && res.status < 500 }).toEqual({ url, status: res.status, ok: true });
    expect(res.type).toBe('application/json');
    expect(res.body).toMatchObject({ HttpStatus: res.status });
    expect(text).not.toMatch(/root:.*:0:0:/);
    expect(res.headers['x-injected']).toBeUndefined();
  };

  it.each(ROUTES.map((route) => [route('{id}'), route] as const))('%s refuses every hostile id with a 4xx JSON answer', async (_name, route) => {
    for (const id of HOSTILE_IDS) {
      const url = route(id);
      const res = await request(gateway.app).get(url).buffer(true);
      expectRefused(res, url);
    }
  });

  it.each(RAW_TRAVERSALS)('GET %s (raw "../") is a 4xx JSON answer', async (url) => {
    expectRefused(await request(gateway.app).get(url).buffer(true), url);
  });

  it('still serves the stored instance afterwards', async () => {
    expect((await request(gateway.app).get('/instances')).body).toHaveLength(1);
  });
});
