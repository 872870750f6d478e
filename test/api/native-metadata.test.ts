import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import request from 'supertest';
import { startTestGateway, uploadToBoth, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance, makeNonImage, TransferSyntax } from '../helpers/dicom-factory';

/*
 * Metadata of the embedded core against a real Orthanc 1.10.1, on the same files and the same "UserMetadata".
 * Documented differences:
 *  - the metadata that describe who sent a file (RemoteAET, RemoteIP, HttpUsername, CalledAET) are not recorded;
 *  - revisions are stored: after a second PUT, GET gives the ETag "1-md5" the PUT answered. Orthanc 1.10 on its
 *    default SQLite index answers the PUT with "1-md5" but keeps revision 0 (its book: only the PostgreSQL and
 *    ODBC indexes support revisions), so an If-Match with the ETag its own PUT gave is refused there;
 *  - a resource addressed at another level (/series/{instance id}/metadata/...) is 404 for every method here;
 *    Orthanc 1.10 checks the level when reading but PUT and DELETE write to the resource anyway;
 *  - errors carry an Orthanc-style JSON body where Orthanc sends none (403, 404 of a missing value), and the
 *    OrthancError/OrthancStatus of 400 and 409 answers are the generic ones of their HTTP status.
 */
const NOT_RECORDED = ['RemoteAET', 'RemoteIP', 'HttpUsername', 'CalledAET'];
const USER_METADATA = { Sample: 1024, Comment: 1025, Last: 65535 };

function files(): Buffer[] {
  const common = { PatientID: 'P-META', PatientName: 'Meta^Data', StudyInstanceUID: '1.2.826.0.1.3680043.8.498.777', StudyDescription: 'Metadata' };
  return [
    makeInstance({ ...common, seed: 'meta-ct', Modality: 'CT', InstanceNumber: 7 }),
    makeInstance({ ...common, seed: 'meta-big', Modality: 'MR', InstanceNumber: 2, transferSyntax: TransferSyntax.ExplicitVRBigEndian }),
    makeNonImage({ ...common, kind: 'pdf', seed: 'meta-pdf' }),
  ];
}

interface Answer {
  status: number;
  etag?: string;
  type?: string;
  text: string;
}

describe('native metadata: same answers as Orthanc 1.10', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;
  const ids: Array<{ ID: string; ParentSeries: string; ParentStudy: string; ParentPatient: string }> = [];

  beforeAll(async () => {
    [gateway, orthanc] = await Promise.all([
      startTestGateway('embedded', { UserMetadata: USER_METADATA }),
      startOrthanc({ extraConfig: { UserMetadata: USER_METADATA } }),
    ]);
    ids.push(...(await uploadToBoth(gateway, orthanc, files())));
  });
  afterAll(async () => {
    await gateway?.close();
    await orthanc?.stop();
  });

  async function ours(method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Answer> {
    let call = request(gateway.app)[method.toLowerCase() as 'get'](path).set(headers);
    if (body !== undefined) call = call.send(body);
    const response = await call.buffer(true).parse((res, done) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => done(null, Buffer.concat(chunks).toString('utf8')));
    });
    return { status: response.status, etag: response.headers.etag, type: response.headers['content-type'], text: response.body as string };
  }

  async function theirs(method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Answer> {
    const response = await fetch(orthanc.url + path, { method, body, headers });
    return { status: response.status, etag: response.headers.get('etag') ?? undefined, type: response.headers.get('content-type') ?? undefined, text: await response.text() };
  }

  /** Same status, and the same ETag and body when Orthanc sends them (200/304). */
  async function same(method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Answer> {
    const [a, b] = [await ours(method, path, body, headers), await theirs(method, path, body, headers)];
    expect([method, path, a.status]).toEqual([method, path, b.status]);
    if (b.status < 300 || b.status === 304) {
      expect(a.etag).toBe(b.etag);
      if (b.text !== '' && b.type?.startsWith('application/json')) expect(JSON.parse(a.text)).toEqual(JSON.parse(b.text));
      else expect(a.text).toBe(b.text);
      if (b.type) expect(a.type).toContain(b.type);
    }
    return a;
  }

  const levels = (): string[] => {
    const [{ ID, ParentSeries, ParentStudy, ParentPatient }] = ids;
    return [`/instances/${ID}`, `/series/${ParentSeries}`, `/studies/${ParentStudy}`, `/patients/${ParentPatient}`];
  };

  it('lists the metadata Orthanc records at ingest, at every level', async () => {
    for (const path of [...ids.map(({ ID }) => `/instances/${ID}`), ...levels().slice(1)]) {
      const mine = JSON.parse((await ours('GET', `${path}/metadata`)).text) as string[];
      const reference = JSON.parse((await theirs('GET', `${path}/metadata`)).text) as string[];
      expect(mine).toEqual(reference.filter((name) => !NOT_RECORDED.includes(name)));
      const expanded = JSON.parse((await ours('GET', `${path}/metadata?expand`)).text) as Record<string, string>;
      const referenceExpanded = JSON.parse((await theirs('GET', `${path}/metadata?expand`)).text) as Record<string, string>;
      expect(Object.keys(expanded)).toEqual(Object.keys(referenceExpanded).filter((name) => !NOT_RECORDED.includes(name)));
      for (const [name, value] of Object.entries(expanded)) {
        // dates are when each server received the file
        if (name === 'ReceptionDate' || name === 'LastUpdate') expect(value).toMatch(/^\d{8}T\d{6}$/);
        else expect([name, value]).toEqual([name, referenceExpanded[name]]);
      }
    }
    // the offset of Pixel Data in the file, as Orthanc computes it (none in the PDF)
    expect(JSON.parse((await ours('GET', `/instances/${ids[0].ID}/metadata?expand`)).text).PixelDataOffset).toMatch(/^\d+$/);
  });

  it('reads one metadata by name or number, with ETag and If-None-Match', async () => {
    const id = ids[0].ID;
    for (const name of ['IndexInSeries', '1', 'TransferSyntax', '9', 'SopClassUid', 'Origin', 'PixelDataOffset']) await same('GET', `/instances/${id}/metadata/${name}`);
    const { etag } = await same('GET', `/instances/${id}/metadata/IndexInSeries`);
    expect(etag).toBe('"0-8f14e45fceea167a5a36dedd4bea2543"'); // revision 0, MD5 of "7"
    await same('GET', `/instances/${id}/metadata/IndexInSeries`, undefined, { 'If-None-Match': etag as string });
    // unknown name: 404 (Orthanc's "inexistent item"); known but absent, numbers outside the user range: 404
    for (const name of ['NoSuchName', 'Sample', '1024', '500', '0', '70000', 'ModifiedFrom']) {
      expect([name, (await ours('GET', `/instances/${id}/metadata/${name}`)).status]).toEqual([name, (await theirs('GET', `/instances/${id}/metadata/${name}`)).status]);
    }
    expect(JSON.parse((await ours('GET', `/instances/${id}/metadata/NoSuchName`)).text).Message).toBe('Accessing an inexistent item');
  });

  it('writes and deletes user metadata at every level, by name or number, with revisions', async () => {
    for (const path of levels()) {
      // first write: revision 0 on both; the value is the body, as given
      await same('PUT', `${path}/metadata/Sample`, 'first value é');
      await same('GET', `${path}/metadata/Sample`);
      await same('GET', `${path}/metadata/1024`);
      await same('PUT', `${path}/metadata/2000`, 'undeclared number');
      await same('PUT', `${path}/metadata/Last`, '');
      await same('GET', `${path}/metadata/2000`);
      // a second write answers revision 1 on both
      const second = await same('PUT', `${path}/metadata/Sample`, 'second');
      expect(second.etag).toBe(`"1-${md5('second')}"`);
      // here the stored revision is 1 (Orthanc's SQLite index keeps 0): the ETag of GET is the one PUT gave
      expect((await ours('GET', `${path}/metadata/Sample`)).etag).toBe(second.etag);
      // If-Match: a stale or wrong ETag is 409 on both, a malformed one 400, the current one is accepted
      await same('PUT', `${path}/metadata/Sample`, 'x', { 'If-Match': `"7-${md5('second')}"` });
      await same('PUT', `${path}/metadata/Sample`, 'x', { 'If-Match': `"0-${md5('stale')}"` });
      await same('PUT', `${path}/metadata/Sample`, 'x', { 'If-Match': 'garbage' });
      await same('DELETE', `${path}/metadata/Sample`, undefined, { 'If-Match': '"-1-abc"' });
      const third = await ours('PUT', `${path}/metadata/Sample`, 'third', { 'If-Match': second.etag as string });
      expect([third.status, third.etag]).toEqual([200, `"2-${md5('third')}"`]);
      expect((await theirs('PUT', `${path}/metadata/Sample`, 'third', { 'If-Match': `"0-${md5('second')}"` })).status).toBe(200);
      // If-Match on a value that does not exist yet is ignored, as in Orthanc 1.10
      await same('PUT', `${path}/metadata/Comment`, 'new', { 'If-Match': '"3-abc"' });
      // delete: a wrong ETag is 409, then 200, then 404
      await same('DELETE', `${path}/metadata/Comment`, undefined, { 'If-Match': '"0-abc"' });
      await same('DELETE', `${path}/metadata/Comment`, undefined, { 'If-Match': `"0-${md5('new')}"` });
      await same('DELETE', `${path}/metadata/Comment`);
      await same('DELETE', `${path}/metadata/2000`);
      expect(JSON.parse((await ours('GET', `${path}/metadata`)).text)).toEqual(
        (JSON.parse((await theirs('GET', `${path}/metadata`)).text) as string[]).filter((name) => !NOT_RECORDED.includes(name)),
      );
    }
  });

  it('refuses to write system metadata, unknown names and numbers outside the user range', async () => {
    const id = ids[1].ID;
    for (const name of ['IndexInSeries', 'LastUpdate', 'RemoteAET', '1', '500', '1023', '65536', 'NoSuchName']) {
      await same('PUT', `/instances/${id}/metadata/${name}`, 'x');
      await same('DELETE', `/instances/${id}/metadata/${name}`);
    }
    // the system value is untouched
    await same('GET', `/instances/${id}/metadata/IndexInSeries`);
    const calls = [['GET', '/metadata'], ['GET', '/metadata/Sample'], ['PUT', '/metadata/Sample'], ['DELETE', '/metadata/Sample']];
    for (const path of ['/instances/00000000-00000000-00000000-00000000-00000000', '/studies/bad']) {
      for (const [method, suffix] of calls) {
        expect([method, path, (await ours(method, `${path}${suffix}`, method === 'PUT' ? 'x' : undefined)).status]).toEqual([method, path, 404]);
        expect((await theirs(method, `${path}${suffix}`, method === 'PUT' ? 'x' : undefined)).status).toBe(404);
      }
    }
    // an instance addressed as a series: 404 for every call here (Orthanc 1.10 writes and deletes through it)
    for (const [method, suffix] of calls) expect((await ours(method, `/series/${id}${suffix}`, method === 'PUT' ? 'x' : undefined)).status).toBe(404);
  });

  it('records each change of metadata in /changes and lists the configured names in /system', async () => {
    const path = `/instances/${ids[2].ID}`;
    const before = (await request(gateway.app).get('/changes?last')).body.Last as number;
    await same('PUT', `${path}/metadata/Comment`, 'a');
    await same('DELETE', `${path}/metadata/Comment`);
    const changes = (await request(gateway.app).get(`/changes?since=${before}`)).body.Changes as Array<{ ChangeType: string; ID: string; ResourceType: string }>;
    expect(changes.filter((c) => !c.ChangeType.startsWith('Stable')).map((c) => [c.ChangeType, c.ID, c.ResourceType])).toEqual([
      ['UpdatedMetadata', ids[2].ID, 'Instance'],
      ['UpdatedMetadata', ids[2].ID, 'Instance'],
    ]);
    expect((await request(gateway.app).get('/system')).body.UserMetadata).toEqual(USER_METADATA);
  });
});

describe('an index written before revisions', () => {
  it('opens, keeps its metadata and gains revisions', async () => {
    const first = await startTestGateway('embedded', { UserMetadata: USER_METADATA });
    let second: TestGateway | undefined;
    try {
      const stored = await request(first.app).post('/instances').send(makeInstance({ seed: 'migration', InstanceNumber: 3 }));
      const id = stored.body.ID as string;
      const before = (await request(first.app).get(`/instances/${id}/metadata?expand`)).body as Record<string, string>;
      await first.core.close();
      // take the index back to the previous layout: no revision columns, user_version 0
      const db = new Database(join(first.dir, 'storage', 'index.sqlite'));
      db.exec('ALTER TABLE metadata DROP COLUMN revision; ALTER TABLE attachments DROP COLUMN revision');
      db.pragma('user_version = 0');
      db.close();

      second = await startTestGateway('embedded', { UserMetadata: USER_METADATA, StorageDirectory: join(first.dir, 'storage') });
      expect((await request(second.app).get(`/instances/${id}/metadata?expand`)).body).toEqual(before);
      expect((await request(second.app).get(`/instances/${id}/metadata/IndexInSeries`)).headers.etag).toBe(`"0-${md5('3')}"`);
      expect((await request(second.app).get(`/instances/${id}/attachments/dicom/info`)).status).toBe(200);
      expect((await request(second.app).put(`/instances/${id}/metadata/Sample`).send('v1')).headers.etag).toBe(`"0-${md5('v1')}"`);
      expect((await request(second.app).put(`/instances/${id}/metadata/Sample`).send('v2')).headers.etag).toBe(`"1-${md5('v2')}"`);
      expect((await request(second.app).get(`/instances/${id}/file`)).status).toBe(200);
      const reopened = new Database(join(first.dir, 'storage', 'index.sqlite'), { readonly: true });
      expect(reopened.pragma('user_version', { simple: true })).toBe(1);
      reopened.close();
    } finally {
      await second?.close();
      await first.close().catch(() => undefined);
    }
  });
});

function md5(text: string): string {
  return createHash('md5').update(text).digest('hex');
}
