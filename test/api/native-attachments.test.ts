import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import request from 'supertest';
import { startTestGateway, uploadToBoth, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance, makeNonImage } from '../helpers/dicom-factory';

/*
 * Attachments of the embedded core against a real Orthanc 1.10.1, on the same files and "UserContentType".
 * Documented differences:
 *  - the storage area never compresses: GET .../attachments/{name} lists the operations served, without Orthanc's
 *    "compress" and "uncompress" (StorageCompression is not supported) and "uuid" (listed by Orthanc 1.10, which
 *    has no such route: 404);
 *  - revisions are stored (see native-metadata.test.ts): after a second PUT, GET gives the ETag the PUT answered;
 *  - a resource addressed at another level (/series/{instance id}/attachments/...) is 404 here for every method,
 *    and so is a PUT on a resource that does not exist (Orthanc 1.10 answers 200 and stores an orphan file);
 *  - error bodies: an Orthanc-style JSON body where Orthanc sends none (403), generic OrthancError of 400/409.
 *  Each attachment has its own UUID on each server, so "Uuid" and the Content-Disposition file name differ.
 */
const USER_CONTENT_TYPE = { notes: 1024, report: [1025, 'application/pdf'], last: 65535 };
const ORTHANC_ONLY_OPERATIONS = ['compress', 'uncompress', 'uuid'];

interface Answer {
  status: number;
  headers: Record<string, string | undefined>;
  body: Buffer;
}

function md5(data: string | Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

describe('native attachments: same answers as Orthanc 1.10', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;
  const ids: Array<{ ID: string; ParentSeries: string; ParentStudy: string; ParentPatient: string }> = [];

  beforeAll(async () => {
    [gateway, orthanc] = await Promise.all([
      startTestGateway('embedded', { UserContentType: USER_CONTENT_TYPE }),
      startOrthanc({ extraConfig: { UserContentType: USER_CONTENT_TYPE } }),
    ]);
    const common = { PatientID: 'P-ATT', StudyInstanceUID: '1.2.826.0.1.3680043.8.498.888' };
    ids.push(...(await uploadToBoth(gateway, orthanc, [makeInstance({ ...common, seed: 'att-ct', InstanceNumber: 1 }), makeNonImage({ ...common, kind: 'sr', seed: 'att-sr' })])));
  });
  afterAll(async () => {
    await gateway?.close();
    await orthanc?.stop();
  });

  async function ours(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Answer> {
    let call = request(gateway.app)[method.toLowerCase() as 'get'](path).set(headers);
    if (body !== undefined) call = call.type('application/octet-stream').send(body);
    const response = await call.buffer(true).parse((res, done) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => done(null, Buffer.concat(chunks)));
    });
    return { status: response.status, headers: response.headers as Record<string, string>, body: response.body as Buffer };
  }

  async function theirs(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Answer> {
    const response = await fetch(orthanc.url + path, { method, body, headers });
    return { status: response.status, headers: Object.fromEntries(response.headers), body: Buffer.from(await response.arrayBuffer()) };
  }

  const json = (answer: Answer): unknown => JSON.parse(answer.body.toString('utf8'));

  /** Same status; for 2xx/304 the same ETag, Content-Type and body (JSON compared as values, "Uuid" left out). */
  async function same(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<Answer> {
    const [a, b] = [await ours(method, path, body, headers), await theirs(method, path, body, headers)];
    expect([method, path, a.status]).toEqual([method, path, b.status]);
    if (b.status >= 300 && b.status !== 304) return a;
    expect([path, a.headers.etag]).toEqual([path, b.headers.etag]);
    const type = b.headers['content-type'];
    if (type) expect(a.headers['content-type']).toContain(type);
    if (type?.startsWith('application/json') && b.body.length > 0) {
      const [mine, reference] = [json(a), json(b)] as Array<Record<string, unknown>>;
      if (Array.isArray(reference)) expect(mine).toEqual(reference.filter((op) => !ORTHANC_ONLY_OPERATIONS.includes(op as string)));
      else expect({ ...mine, Uuid: undefined }).toEqual({ ...reference, Uuid: undefined });
    } else {
      expect(Buffer.compare(a.body, b.body)).toBe(0);
    }
    return a;
  }

  const OPERATIONS = ['', '/size', '/compressed-size', '/md5', '/compressed-md5', '/info', '/is-compressed', '/data', '/compressed-data'];

  it('lists and reads the DICOM attachment of every instance', async () => {
    for (const { ID } of ids) {
      await same('GET', `/instances/${ID}/attachments`);
      await same('GET', `/instances/${ID}/attachments?full`);
      for (const name of ['dicom', '1']) for (const operation of OPERATIONS) await same('GET', `/instances/${ID}/attachments/${name}${operation}`);
      const data = await same('GET', `/instances/${ID}/attachments/dicom/data`);
      const info = json(await ours('GET', `/instances/${ID}/attachments/dicom/info`)) as { Uuid: string; UncompressedMD5: string };
      expect(data.headers['content-disposition']).toBe(`filename="${info.Uuid}.dcm"`);
      expect((await request(gateway.app).get(`/instances/${ID}`)).body.FileUuid).toBe(info.Uuid);
      expect(md5(data.body)).toBe(info.UncompressedMD5);
      await same('GET', `/instances/${ID}/attachments/dicom/data`, undefined, { 'If-None-Match': data.headers.etag as string });
      await same('POST', `/instances/${ID}/attachments/dicom/verify-md5`);
    }
    const [{ ParentSeries, ParentStudy, ParentPatient }] = ids;
    for (const path of [`/series/${ParentSeries}`, `/studies/${ParentStudy}`, `/patients/${ParentPatient}`]) {
      await same('GET', `${path}/attachments`);
      await same('GET', `${path}/attachments?full`);
    }
    // a system attachment Orthanc 1.10 does not write for an uncompressed storage area, an unknown name, an unknown resource
    for (const path of ['dicom-until-pixel-data', 'dicom-until-pixel-data/info', 'notes', 'notes/data', 'nope', 'nope/size', 'dicom/nope']) {
      await same('GET', `/instances/${ids[0].ID}/attachments/${path}`);
    }
    for (const path of ['/instances/00000000-00000000-00000000-00000000-00000000/attachments', '/studies/bad/attachments/dicom/size']) await same('GET', path);
  });

  it('writes, replaces and deletes user attachments at every level, with revisions', async () => {
    const [{ ID, ParentSeries, ParentStudy, ParentPatient }] = ids;
    for (const path of [`/instances/${ID}`, `/series/${ParentSeries}`, `/studies/${ParentStudy}`, `/patients/${ParentPatient}`]) {
      const first = await same('PUT', `${path}/attachments/notes`, 'first notes');
      expect(first.headers.etag).toBe(`"0-${md5('first notes')}"`);
      await same('PUT', `${path}/attachments/report`, '%PDF-1.4 not really');
      await same('PUT', `${path}/attachments/2000`, Buffer.from([0, 1, 2, 255]));
      await same('GET', `${path}/attachments`);
      await same('GET', `${path}/attachments?full`);
      for (const name of ['notes', '1024', 'report', '2000']) for (const operation of OPERATIONS) await same('GET', `${path}/attachments/${name}${operation}`);
      const report = await ours('GET', `${path}/attachments/report/data`);
      expect(report.headers['content-type']).toBe('application/pdf');
      expect(report.headers['content-disposition']).toMatch(/^filename="[0-9a-f-]{36}"$/);
      await same('POST', `${path}/attachments/report/verify-md5`);

      const second = await same('PUT', `${path}/attachments/notes`, 'second');
      expect(second.headers.etag).toBe(`"1-${md5('second')}"`);
      expect((await ours('GET', `${path}/attachments/notes/info`)).headers.etag).toBe(second.headers.etag);
      await same('PUT', `${path}/attachments/notes`, 'x', { 'If-Match': `"0-${md5('first notes')}"` });
      await same('PUT', `${path}/attachments/notes`, 'x', { 'If-Match': 'zz' });
      await same('DELETE', `${path}/attachments/notes`, undefined, { 'If-Match': '"0-zz"' });
      await same('DELETE', `${path}/attachments/notes`, undefined, { 'If-Match': '0' });
      const third = await ours('PUT', `${path}/attachments/notes`, 'third', { 'If-Match': second.headers.etag as string });
      expect([third.status, third.headers.etag]).toEqual([200, `"2-${md5('third')}"`]);
      expect((await ours('GET', `${path}/attachments/notes/data`)).body.toString()).toBe('third');
      expect((await theirs('PUT', `${path}/attachments/notes`, 'third')).status).toBe(200);
      await same('DELETE', `${path}/attachments/2000`);
      await same('DELETE', `${path}/attachments/2000`);
      await same('GET', `${path}/attachments/2000/size`);
    }
    // the user attachments count in the disk usage, as in Orthanc
    const reference = json(await theirs('GET', '/statistics')) as { TotalDiskSize: string };
    expect((await request(gateway.app).get('/statistics')).body.TotalDiskSize).toBe(reference.TotalDiskSize);
  });

  it('refuses to write system attachments, unknown names and types outside the user range', async () => {
    const id = ids[1].ID;
    for (const name of ['dicom', '1', 'dicom-until-pixel-data', '500', '1023', '65536', 'nope']) {
      await same('PUT', `/instances/${id}/attachments/${name}`, 'x');
      await same('DELETE', `/instances/${id}/attachments/${name}`);
    }
    await same('GET', `/instances/${id}/attachments/dicom/info`);
    for (const path of ['/instances/00000000-00000000-00000000-00000000-00000000', '/studies/bad']) {
      await same('DELETE', `${path}/attachments/notes`);
      // Orthanc 1.10 answers 200 and keeps the file of a resource that does not exist
      expect((await ours('PUT', `${path}/attachments/notes`, 'x')).status).toBe(404);
    }
    for (const [method, suffix] of [['GET', 'dicom/size'], ['PUT', 'notes'], ['DELETE', 'notes']]) {
      expect([method, (await ours(method, `/series/${id}/attachments/${suffix}`, method === 'PUT' ? 'x' : undefined)).status]).toEqual([method, 404]);
    }
  });

  // Not compared: Orthanc 1.10 verifies what its storage cache holds, which a test cannot empty.
  it('reports a file whose bytes changed on disk in verify-md5 (500, Orthanc\'s CorruptedFile message)', async () => {
    const { ID, ParentStudy } = ids[1];
    await same('PUT', `/studies/${ParentStudy}/attachments/last`, 'will be damaged');
    await same('POST', `/studies/${ParentStudy}/attachments/last/verify-md5`);
    const { Uuid } = json(await ours('GET', `/studies/${ParentStudy}/attachments/last/info`)) as { Uuid: string };
    writeFileSync(join(gateway.dir, 'storage', Uuid.slice(0, 2), Uuid.slice(2, 4), Uuid), 'damaged');
    const damaged = await ours('POST', `/studies/${ParentStudy}/attachments/last/verify-md5`);
    expect([damaged.status, (json(damaged) as { Message: string }).Message]).toEqual([500, 'Corrupted file (e.g. inconsistent MD5 hash)']);
    await same('POST', `/instances/${ID}/attachments/dicom/verify-md5`);
  });

  it('streams a large attachment and removes the files of a deleted study and of its ancestors', async () => {
    const { ID, ParentStudy, ParentSeries, ParentPatient } = ids[0];
    const large = randomBytes(6 * 1024 * 1024);
    await same('PUT', `/instances/${ID}/attachments/last`, large);
    const data = await ours('GET', `/instances/${ID}/attachments/last/data`);
    expect([data.body.length, md5(data.body)]).toEqual([large.length, md5(large)]);
    await same('PUT', `/series/${ParentSeries}/attachments/last`, 'series notes');

    // deleting the only study deletes its patient too: every file goes, the attachments of the series, the study
    // and the patient (written by the tests above) included
    expect((await request(gateway.app).delete(`/studies/${ParentStudy}`)).status).toBe(200);
    expect((await request(gateway.app).get(`/patients/${ParentPatient}`)).status).toBe(404);
    expect((await request(gateway.app).get(`/studies/${ParentStudy}/attachments`)).status).toBe(404);
    const storage = join(gateway.dir, 'storage');
    const leftovers = readdirSync(storage, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && /^[0-9a-f-]{36}$/.test(e.name));
    expect(leftovers.map((e) => e.name)).toEqual([]);
    expect((await request(gateway.app).get('/statistics')).body.TotalDiskSize).toBe('0');
    expect(existsSync(join(storage, 'index.sqlite'))).toBe(true);
  });

  it('records each change in /changes', async () => {
    const stored = await request(gateway.app).post('/instances').send(makeInstance({ seed: 'att-changes' }));
    const before = (await request(gateway.app).get('/changes?last')).body.Last as number;
    await request(gateway.app).put(`/instances/${stored.body.ID}/attachments/notes`).send('n').expect(200);
    await request(gateway.app).delete(`/instances/${stored.body.ID}/attachments/notes`).expect(200);
    const changes = (await request(gateway.app).get(`/changes?since=${before}`)).body.Changes as Array<{ ChangeType: string; ID: string }>;
    expect(changes.filter((c) => !c.ChangeType.startsWith('Stable')).map((c) => [c.ChangeType, c.ID])).toEqual([
      ['UpdatedAttachment', stored.body.ID],
      ['UpdatedAttachment', stored.body.ID],
    ]);
  });
});

describe('user attachments and MaximumStorageSize', () => {
  it('recycle the oldest other patient to make room, and are refused (507) when larger than the storage area', async () => {
    const gateway = await startTestGateway('embedded', { MaximumStorageSize: 1, UserContentType: USER_CONTENT_TYPE });
    try {
      const a = (await request(gateway.app).post('/instances').send(makeInstance({ seed: 'recycle-a', PatientID: 'A' }))).body;
      const b = (await request(gateway.app).post('/instances').send(makeInstance({ seed: 'recycle-b', PatientID: 'B' }))).body;
      await request(gateway.app).put(`/patients/${a.ParentPatient}/attachments/notes`).send(randomBytes(600 * 1024)).expect(200);
      // 2 x 600 kB do not fit in 1 MB: patient A, the least recently stored, goes; B, whose study gets the file, stays
      await request(gateway.app).put(`/studies/${b.ParentStudy}/attachments/notes`).send(randomBytes(600 * 1024)).expect(200);
      expect((await request(gateway.app).get('/patients')).body).toEqual([b.ParentPatient]);
      const size = Number((await request(gateway.app).get('/statistics')).body.TotalDiskSize);
      expect(size).toBeGreaterThan(600 * 1024);
      expect(size).toBeLessThanOrEqual(1024 * 1024);
      const refused = await request(gateway.app).put(`/studies/${b.ParentStudy}/attachments/last`).send(randomBytes(1024 * 1024 + 1));
      expect(refused.status).toBe(507);
      expect((await request(gateway.app).get(`/studies/${b.ParentStudy}/attachments`)).body).toEqual(['notes']);
      expect((await request(gateway.app).get('/statistics')).body.TotalDiskSize).toBe(String(size));
      // no file left behind: B's instance and its study's attachment, nothing in tmp/
      const storage = join(gateway.dir, 'storage');
      const files = readdirSync(storage, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && /^[0-9a-f-]{36}$/.test(e.name));
      expect(files).toHaveLength(2);
      expect(readdirSync(join(storage, 'tmp'))).toEqual([]);
    } finally {
      await gateway.close();
    }
  });
});
