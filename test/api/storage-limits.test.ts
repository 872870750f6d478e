import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance } from '../helpers/dicom-factory';
import { storedFiles } from '../helpers/stored-files';

/*
 * MaximumStorageSize / MaximumPatientCount recycling and /patients/{id}/protected of the embedded core, against a
 * real Orthanc 1.10.1 (+ DICOMweb plugin 1.7) fed the same files in the same order. Deliberate differences:
 *  - a full store (nothing left to recycle, an instance larger than MaximumStorageSize, a full disk) is answered
 *    507 Insufficient Storage; Orthanc answers 500 with the same Message, Details, OrthancError and OrthancStatus (19);
 *  - a full disk: Orthanc answers 500 "Cannot write to file" (14) and leaves the partial file in its storage;
 *    here 507 "The file storage is full", and neither a file nor an index row stays behind;
 *  - STOW-RS on a full store lists the refused instances in FailedSOPSequence with 0xA700 (Out of Resources) and
 *    answers 202/409; the plugin answers 200 and drops them silently;
 *  - /patients/{id}/protected of an unknown patient is 404 (Orthanc: 400 "Parameter out of range" for an identifier
 *    or an unknown one); a bad PUT body is 400 "Bad file format" as in Orthanc, with OrthancError
 *    "Bad request" (8) where Orthanc says "Bad file format" (15); a 405 has a JSON body (Orthanc's is empty).
 */

/** 295,888 bytes: three fit in MaximumStorageSize 1 (MB), a fourth needs a recycling. */
function large(patientId: string, seed: string, rows = 384): Buffer {
  return makeInstance({ PatientID: patientId, seed, Rows: rows, Columns: 384, BitsAllocated: 16 });
}

function small(patientId: string, seed: string): Buffer {
  return makeInstance({ PatientID: patientId, seed });
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

/** The same requests to both servers. */
class Pair {
  constructor(
    readonly gateway: TestGateway,
    readonly orthanc: OrthancProcess,
  ) {}

  async upload(file: Buffer): Promise<[Answer, Answer]> {
    const ours = await request(this.gateway.app).post('/instances').send(file);
    const response = await fetch(`${this.orthanc.url}/instances`, { method: 'POST', body: new Uint8Array(file) });
    return [{ status: ours.status, body: ours.body }, { status: response.status, body: (await response.json()) as Record<string, unknown> }];
  }

  /** PatientID of every stored patient, on both sides (sorted). */
  async patients(): Promise<[string[], string[]]> {
    const ours = (await request(this.gateway.app).get('/patients?expand')).body as Array<{ MainDicomTags: { PatientID: string } }>;
    const theirs = (await (await fetch(`${this.orthanc.url}/patients?expand`)).json()) as typeof ours;
    return [ours.map((p) => p.MainDicomTags.PatientID).sort(), theirs.map((p) => p.MainDicomTags.PatientID).sort()];
  }

  async expectPatients(expected: string[]): Promise<void> {
    const [ours, theirs] = await this.patients();
    expect(theirs).toEqual(expected);
    expect(ours).toEqual(expected);
  }

  async protect(patientId: string, value: string): Promise<void> {
    const id = (await request(this.gateway.app).post('/tools/lookup').send(patientId)).body;
    const orthancId = (await (await fetch(`${this.orthanc.url}/tools/lookup`, { method: 'POST', body: patientId })).json()) as Array<{ ID: string }>;
    expect(id[0].ID).toBe(orthancId[0].ID);
    expect((await request(this.gateway.app).put(`/patients/${id[0].ID}/protected`).send(value)).status).toBe(200);
    expect((await fetch(`${this.orthanc.url}/patients/${orthancId[0].ID}/protected`, { method: 'PUT', body: value })).status).toBe(200);
  }

  async statistics(): Promise<[Record<string, unknown>, Record<string, unknown>]> {
    return [(await request(this.gateway.app).get('/statistics')).body, (await (await fetch(`${this.orthanc.url}/statistics`)).json()) as Record<string, unknown>];
  }

  async close(): Promise<void> {
    await this.gateway.close();
    await this.orthanc.stop();
  }
}

async function startPair(config: Record<string, unknown>): Promise<Pair> {
  const [gateway, orthanc] = await Promise.all([startTestGateway('embedded', config), startOrthanc({ dicomWeb: true, extraConfig: config })]);
  return new Pair(gateway, orthanc);
}

/** Orthanc's answer for a full store, but for the HTTP status (500 there, 507 here). */
function expectFullStore([ours, theirs]: [Answer, Answer], details: string): void {
  expect(theirs.status).toBe(500);
  expect(ours.status).toBe(507);
  for (const key of ['Message', 'Details', 'OrthancError', 'OrthancStatus', 'Method', 'Uri']) expect(ours.body[key]).toEqual(theirs.body[key]);
  expect(ours.body).toMatchObject({ Message: 'The file storage is full', Details: details, OrthancStatus: 19, HttpStatus: 507 });
}

describe('MaximumPatientCount', () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await startPair({ MaximumPatientCount: 2 });
  });
  afterAll(async () => pair?.close());

  it('recycles the least recently stored patient, never a protected one, and refuses when none is left', async () => {
    for (const file of [small('A', 'a1'), small('B', 'b1'), small('A', 'a2')]) {
      const [ours, theirs] = await pair.upload(file);
      expect([ours.status, ours.body.Status]).toEqual([theirs.status, theirs.body.Status]);
    }
    await pair.expectPatients(['A', 'B']);
    // A received an instance after B: B is the least recently stored
    await pair.upload(small('C', 'c1'));
    await pair.expectPatients(['A', 'C']);
    // protected then unprotected: A becomes the most recently stored, so C goes first
    await pair.protect('A', '1');
    await pair.protect('A', '0');
    await pair.upload(small('D', 'd1'));
    await pair.expectPatients(['A', 'D']);

    await pair.protect('A', '1');
    await pair.protect('D', 'true');
    const before = await pair.statistics();
    expectFullStore(await pair.upload(small('E', 'e1')), 'Cannot recycle more patients');
    await pair.expectPatients(['A', 'D']);
    // nothing was lost, nothing was added
    expect(await pair.statistics()).toEqual(before);
    // an instance of a stored patient adds no patient: accepted
    const [ours, theirs] = await pair.upload(small('D', 'd2'));
    expect([ours.status, ours.body.Status]).toEqual([200, 'Success']);
    expect(theirs.status).toBe(200);
    expect(ours.body.ID).toBe(theirs.body.ID);
  });
});

describe('MaximumStorageSize', () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await startPair({ MaximumStorageSize: 1 });
  });
  afterAll(async () => pair?.close());

  it('recycles patients until a new instance fits, keeping the patient of the new instance', async () => {
    for (const [patient, seed] of [['A', 'a1'], ['B', 'b1'], ['C', 'c1']]) {
      const [ours, theirs] = await pair.upload(large(patient, seed));
      expect(ours.status).toBe(200);
      expect(theirs.status).toBe(200);
    }
    await pair.expectPatients(['A', 'B', 'C']);
    // a 4th file does not fit: the oldest patient (A) goes; B becomes the most recently stored
    await pair.upload(large('B', 'b2'));
    await pair.expectPatients(['B', 'C']);
    await pair.upload(large('D', 'd1'));
    await pair.expectPatients(['B', 'D']);
    const [ours, theirs] = await pair.statistics();
    expect(ours.TotalDiskSize).toBe(theirs.TotalDiskSize);
    expect(ours.CountInstances).toBe(theirs.CountInstances);
  });

  it('refuses an instance larger than the whole storage area without recycling anything', async () => {
    const [before] = await pair.patients();
    const huge = large('E', 'e1', 1500);
    expectFullStore(await pair.upload(huge), `Cannot store an instance of size ${huge.length} bytes in a storage area limited to 1048576`);
    const [after] = await pair.patients();
    expect(after).toEqual(before);
  });

  it('refuses when only the patient of the new instance could be recycled', async () => {
    for (const patient of (await request(pair.gateway.app).get('/patients')).body as string[]) {
      await request(pair.gateway.app).delete(`/patients/${patient}`).expect(200);
    }
    for (const patient of (await (await fetch(`${pair.orthanc.url}/patients`)).json()) as string[]) {
      await fetch(`${pair.orthanc.url}/patients/${patient}`, { method: 'DELETE' });
    }
    for (const seed of ['f1', 'f2', 'f3']) {
      const [ours, theirs] = await pair.upload(large('F', seed));
      expect([ours.status, theirs.status]).toEqual([200, 200]);
    }
    expectFullStore(await pair.upload(large('F', 'f4')), 'Cannot recycle more patients');
    await pair.expectPatients(['F']);
    const [ours, theirs] = await pair.statistics();
    expect(ours.CountInstances).toBe(3);
    expect(ours.TotalDiskSize).toBe(theirs.TotalDiskSize);
    expect(storedFiles(pair.gateway.config.storageDirectory)).toHaveLength(3);
  });

  it('STOW-RS stores what fits and lists the rest with 0xA700 (the plugin drops it silently)', async () => {
    // F (three instances, ~888 kB) is protected: one more instance fits after recycling nothing, the second does not
    await pair.protect('F', '1');
    for (const patient of (await request(pair.gateway.app).get('/patients')).body as string[]) {
      expect((await request(pair.gateway.app).get(`/patients/${patient}/protected`)).text).toBe('1');
    }
    const fits = makeInstance({ PatientID: 'F', seed: 'f-small' });
    const refused = large('G', 'g1');
    const boundary = 'LimitsBoundary';
    const body = Buffer.concat([
      ...[fits, refused].flatMap((file) => [Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), file, Buffer.from('\r\n')]),
      Buffer.from(`--${boundary}--\r\n`),
    ]);
    const type = `multipart/related; type="application/dicom"; boundary=${boundary}`;
    const ours = await request(pair.gateway.app).post('/dicom-web/studies').set('content-type', type).set('accept', 'application/dicom+json').send(body);
    const response = await fetch(`${pair.orthanc.url}/dicom-web/studies`, { method: 'POST', headers: { 'content-type': type, accept: 'application/dicom+json' }, body: new Uint8Array(body) });
    const theirs = (await response.json()) as Record<string, { Value?: Array<Record<string, { Value: unknown[] }>> }>;
    // the plugin: 200, the stored instance listed, the refused one nowhere
    expect(response.status).toBe(200);
    expect(theirs['00081199'].Value).toHaveLength(1);
    expect(theirs['00081198'].Value).toBeUndefined();

    expect(ours.status).toBe(202);
    const failed = ours.body['00081198'].Value as Array<Record<string, { Value: unknown[] }>>;
    expect(failed).toHaveLength(1);
    expect(failed[0]['00081155'].Value).toEqual([sopUid(refused)]);
    expect(failed[0]['00081197'].Value).toEqual([0xa700]);
    const stored = ours.body['00081199'].Value as Array<Record<string, { Value: unknown[] }>>;
    expect(stored.map((item) => item['00081155'].Value[0])).toEqual([sopUid(fits)]);
    await pair.expectPatients(['F']);
    expect((await request(pair.gateway.app).get('/statistics')).body.CountInstances).toBe(4);
  });
});

function sopUid(file: Buffer): string {
  // the factory writes SOPInstanceUID (0008,0018) once, explicit VR: find it after its tag and VR
  const at = file.indexOf(Buffer.from([0x08, 0x00, 0x18, 0x00, 0x55, 0x49]));
  const length = file.readUInt16LE(at + 6);
  return file.toString('latin1', at + 8, at + 8 + length).replace(/\0$/, '');
}

describe('/patients/{id}/protected', () => {
  let pair: Pair;
  let ours: string;
  let theirs: string;
  beforeAll(async () => {
    pair = await startPair({});
    const [a, b] = await pair.upload(small('P', 'p1'));
    ours = a.body.ParentPatient as string;
    theirs = b.body.ParentPatient as string;
    expect(ours).toBe(theirs);
  });
  afterAll(async () => pair?.close());

  async function both(method: string, path: string, body?: string): Promise<[{ status: number; type: string; text: string }, { status: number; type: string; text: string }]> {
    const response = await fetch(pair.orthanc.url + path, { method, body });
    const reference = { status: response.status, type: response.headers.get('content-type') ?? '', text: await response.text() };
    let call = request(pair.gateway.app)[method.toLowerCase() as 'get' | 'put' | 'post' | 'delete'](path);
    if (body !== undefined) call = call.send(body);
    const answer = await call;
    return [{ status: answer.status, type: answer.headers['content-type'] ?? '', text: answer.text }, reference];
  }

  it('answers "0" or "1" as text/plain, and PUT takes what Orthanc takes', async () => {
    const path = `/patients/${ours}/protected`;
    const [first, reference] = await both('GET', path);
    expect(reference).toMatchObject({ status: 200, text: '0' });
    expect(first.status).toBe(200);
    expect(first.text).toBe('0');
    expect(first.type).toMatch(/^text\/plain/);
    for (const value of ['1', '0', 'true', 'false', ' 1\n', '0\n', '2', '', 'abc', 'TRUE', 'yes', '-1']) {
      const [put, putReference] = await both('PUT', path, value);
      expect([value, put.status]).toEqual([value, putReference.status]);
      if (put.status === 200) {
        expect(put.text).toBe(putReference.text);
      } else {
        const [body, referenceBody] = [JSON.parse(put.text), JSON.parse(putReference.text)];
        expect(body).toMatchObject({ HttpStatus: referenceBody.HttpStatus, Message: referenceBody.Message, Details: referenceBody.Details });
      }
      const [get, getReference] = await both('GET', path);
      expect([value, get.text]).toEqual([value, getReference.text]);
    }
  });

  it('keeps the flag across a restart of the embedded core', async () => {
    await request(pair.gateway.app).put(`/patients/${ours}/protected`).send('1').expect(200);
    const storage = mkdtempSync(join(tmpdir(), 'limits-restart-'));
    try {
      const first = await startTestGateway('embedded', { StorageDirectory: storage });
      const id = (await request(first.app).post('/instances').send(small('R', 'r1'))).body.ParentPatient as string;
      await request(first.app).put(`/patients/${id}/protected`).send('1').expect(200);
      await first.close();
      const second = await startTestGateway('embedded', { StorageDirectory: storage });
      expect((await request(second.app).get(`/patients/${id}/protected`)).text).toBe('1');
      await second.close();
    } finally {
      rmSync(storage, { recursive: true, force: true });
    }
  });

  it('has no other method, no other level, and no unknown patient', async () => {
    for (const method of ['DELETE', 'POST']) {
      const [answer, reference] = await both(method, `/patients/${ours}/protected`, '1');
      expect(reference.status).toBe(405);
      expect(answer.status).toBe(405);
    }
    const allow = await request(pair.gateway.app).delete(`/patients/${ours}/protected`);
    expect(allow.headers.allow).toBe('GET,PUT');
    const study = ((await request(pair.gateway.app).get('/studies')).body as string[])[0];
    for (const method of ['GET', 'PUT']) {
      const [answer, reference] = await both(method, `/studies/${study}/protected`, method === 'PUT' ? '1' : undefined);
      expect(reference.status).toBe(404);
      expect(answer.status).toBe(404);
      const unknown = '00000000-00000000-00000000-00000000-00000000';
      const [ours404, theirs404] = await both(method, `/patients/${unknown}/protected`, method === 'PUT' ? '1' : undefined);
      expect(theirs404.status).toBe(400);
      expect(ours404.status).toBe(404);
    }
  });
});

describe('an index written before recycling_order existed', () => {
  it('lists its patients in the order of their last update, and recycles them in that order', async () => {
    const storage = mkdtempSync(join(tmpdir(), 'limits-migration-'));
    try {
      const first = await startTestGateway('embedded', { StorageDirectory: storage });
      const ids: Record<string, string> = {};
      for (const patient of ['A', 'B', 'C']) ids[patient] = (await request(first.app).post('/instances').send(small(patient, patient))).body.ParentPatient;
      await request(first.app).put(`/patients/${ids.C}/protected`).send('1').expect(200);
      await first.close();
      // the previous layout: no recycling_order; B was last updated long before A
      const db = new Database(join(storage, 'index.sqlite'));
      db.exec('DROP TABLE recycling_order');
      db.prepare("UPDATE resources SET last_update = '20200101T000000' WHERE public_id = ?").run(ids.B);
      db.close();

      const second = await startTestGateway('embedded', { StorageDirectory: storage, MaximumPatientCount: 3 });
      try {
        expect((await request(second.app).get(`/patients/${ids.C}/protected`)).text).toBe('1');
        expect((await request(second.app).post('/instances').send(small('D', 'D'))).status).toBe(200);
        let patients = (await request(second.app).get('/patients')).body as string[];
        expect(patients.sort()).toEqual([ids.A, ids.C, (await request(second.app).post('/tools/lookup').send('D')).body[0].ID].sort());
        expect((await request(second.app).post('/instances').send(small('E', 'E'))).status).toBe(200);
        patients = (await request(second.app).get('/patients')).body as string[];
        expect(patients).not.toContain(ids.A);
        expect(patients).toContain(ids.C);
      } finally {
        await second.close();
      }
    } finally {
      rmSync(storage, { recursive: true, force: true });
    }
  });
});

/** A real full file system: a 1 MB tmpfs (needs root and a mount-permitting container; skipped otherwise). */
function canMountTmpfs(): boolean {
  if (process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(join(tmpdir(), 'limits-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe], { stdio: 'ignore' });
    execFileSync('umount', [probe], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

(canMountTmpfs() ? describe : describe.skip)('a full disk', () => {
  const mounts: string[] = [];
  function fullDisk(): string {
    const dir = mkdtempSync(join(tmpdir(), 'limits-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
    mounts.push(dir);
    return dir;
  }
  afterAll(() => {
    for (const dir of mounts) {
      execFileSync('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  /** Uploads big instances until one is refused; returns how many were stored, checks the refusal. */
  async function fill(gateway: TestGateway): Promise<number> {
    const statuses: number[] = [];
    let refused: request.Response | undefined;
    for (let i = 0; i < 5 && !refused; i++) {
      const answer = await request(gateway.app).post('/instances').send(large(`X${i}`, `x${i}`));
      statuses.push(answer.status);
      if (answer.status !== 200) refused = answer;
    }
    expect(statuses.slice(0, -1).every((s) => s === 200)).toBe(true);
    expect(refused?.status).toBe(507);
    expect(refused?.body).toMatchObject({ HttpStatus: 507, Message: 'The file storage is full', OrthancStatus: 19, Uri: '/instances' });
    return statuses.length - 1;
  }

  /** Every indexed instance has its complete file, and nothing else is there. */
  async function expectConsistent(gateway: TestGateway, storage: string, count: number): Promise<void> {
    const instances = (await request(gateway.app).get('/instances?expand')).body as Array<{ FileUuid: string; FileSize: number }>;
    expect(instances).toHaveLength(count);
    const files = storedFiles(storage);
    expect(files).toHaveLength(count);
    for (const { FileUuid, FileSize } of instances) {
      const file = files.find((f) => f.endsWith(`/${FileUuid}`));
      expect(file && statSync(file).size).toBe(FileSize);
    }
    expect(readdirSync(join(storage, 'tmp'))).toEqual([]);
  }

  it('refuses native uploads and STOW-RS parts that do not fit, leaving no file and no index row', async () => {
    const storage = fullDisk();
    const orthancStorage = fullDisk();
    const index = mkdtempSync(join(tmpdir(), 'limits-index-'));
    const gateway = await startTestGateway('embedded', { StorageDirectory: storage, IndexDirectory: index });
    const orthanc = await startOrthanc({ dicomWeb: true, extraConfig: { StorageDirectory: orthancStorage, IndexDirectory: index } });
    try {
      const stored = await fill(gateway);
      expect(stored).toBe(3);

      // Orthanc: 500 "Cannot write to file", and the partial file stays in its storage area
      let theirs: Response | undefined;
      for (let i = 0; i < 5; i++) {
        theirs = await fetch(`${orthanc.url}/instances`, { method: 'POST', body: new Uint8Array(large(`X${i}`, `x${i}`)) });
        if (theirs.status !== 200) break;
      }
      expect(theirs?.status).toBe(500);
      expect(await theirs?.json()).toMatchObject({ Message: 'Cannot write to file', OrthancStatus: 14 });
      expect(storedFiles(orthancStorage).length).toBeGreaterThan(3);

      const boundary = 'FullBoundary';
      const body = Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), large('Y', 'y1'), Buffer.from(`\r\n--${boundary}--\r\n`)]);
      const stow = await request(gateway.app)
        .post('/dicom-web/studies')
        .set('content-type', `multipart/related; type="application/dicom"; boundary=${boundary}`)
        .set('accept', 'application/dicom+json')
        .send(body);
      expect(stow.status).toBe(409);
      expect(stow.body['00081198'].Value[0]['00081197'].Value).toEqual([0xa700]);
      await expectConsistent(gateway, storage, stored);

      // room made by a deletion is usable again
      const patient = ((await request(gateway.app).get('/patients')).body as string[])[0];
      await request(gateway.app).delete(`/patients/${patient}`).expect(200);
      expect((await request(gateway.app).post('/instances').send(large('Z', 'z1'))).status).toBe(200);
      await expectConsistent(gateway, storage, stored);
    } finally {
      await gateway.close();
      await orthanc.stop();
      rmSync(index, { recursive: true, force: true });
    }
  });

  it('keeps the store consistent when the index shares the full disk (the default layout)', async () => {
    const storage = fullDisk();
    const gateway = await startTestGateway('embedded', { StorageDirectory: storage });
    try {
      const stored = await fill(gateway);
      expect(stored).toBeGreaterThan(0);
      await expectConsistent(gateway, storage, stored);
    } finally {
      await gateway.close();
    }
  });
});
