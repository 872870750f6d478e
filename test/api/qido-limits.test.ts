/**
 * QIDO-RS result cap (DicomWeb.QidoMaxResults): a search never answers more than the cap, and when it
 * leaves matches out that the client's limit would have allowed, it says so with the PS3.18 §8.3.4.4
 * Warning ("299 {host}: The number of results exceeded the maximum supported by the server...").
 */
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { makeInstance } from '../helpers/dicom-factory';
import { pageLimits } from '../../src/dicomweb/qido-rs';

const WARNING = /^299 gateway\.test:8042 "The number of results exceeded the maximum supported by the server\. Additional results can be requested\."$/;

describe('QIDO-RS with DicomWeb.QidoMaxResults = 3 and 5 studies', () => {
  let gateway: TestGateway;

  beforeAll(async () => {
    gateway = await startTestGateway('embedded', { DicomWeb: { QidoMaxResults: 3 } });
    for (let i = 0; i < 5; i++) await gateway.core.storeInstance({ buffer: makeInstance({ seed: `qido-limit-${i}`, PatientID: `LIM-${i}` }) });
  });
  afterAll(async () => {
    await gateway?.close();
  });

  const search = (query: string): request.Test =>
    request(gateway.app).get(`/dicom-web/studies${query}`).set('Host', 'gateway.test:8042').set('Accept', 'application/dicom+json');

  it.each([
    ['', 3, true],
    ['?limit=10', 3, true],
    ['?limit=4', 3, true],
    ['?offset=1', 3, true],
    ['?limit=3', 3, false],
    ['?limit=2', 2, false],
    ['?offset=2', 3, false],
    ['?offset=3', 2, false],
    ['?offset=3&limit=10', 2, false],
  ])('GET /studies%s answers %d matches, Warning: %s', async (query, count, warned) => {
    const res = await search(query);
    expect(res.status).toBe(200);
    expect(res.body).toHaveLength(count);
    if (warned) expect(res.headers.warning).toMatch(WARNING);
    else expect(res.headers.warning).toBeUndefined();
  });

  it('pages through every match, without repeats, by offset', async () => {
    const first = await search('');
    const rest = await search('?offset=3');
    const uids = [...first.body, ...rest.body].map((d: Record<string, { Value: string[] }>) => d['0020000D'].Value[0]);
    expect(new Set(uids).size).toBe(5);
  });

  it('keeps a hostile Host header out of the Warning', async () => {
    const res = await request(gateway.app).get('/dicom-web/studies').set('Host', 'evil" 299 x "y');
    expect(res.status).toBe(200);
    expect(res.headers.warning).toMatch(/^299 evil299xy "The number/);
  });
});

describe('pageLimits', () => {
  it.each([
    [0, 10000, { page: 10000, askCore: 10001, capped: true }],
    [5, 10000, { page: 5, askCore: 5, capped: false }],
    [10000, 10000, { page: 10000, askCore: 10000, capped: false }],
    [20000, 10000, { page: 10000, askCore: 10001, capped: true }],
  ])('limit %d under a cap of %d', (limit, cap, expected) => {
    expect(pageLimits(limit, cap)).toEqual(expected);
  });

  it('defaults to 10,000 when DicomWeb.QidoMaxResults is not set', async () => {
    const gateway = await startTestGateway('embedded');
    try {
      expect(gateway.config.dicomWeb.qidoMaxResults).toBe(10000);
    } finally {
      await gateway.close();
    }
  });
});
