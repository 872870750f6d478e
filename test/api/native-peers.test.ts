import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import request from 'supertest';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { freePort, startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance, makeStudy } from '../helpers/dicom-factory';
import { hasOpenssl, makeCertificates } from '../helpers/tls-certificates';

/*
 * /peers of the embedded core against a real Orthanc 1.10.1 configured with the same OrthancPeers. The instances go to
 * a third process, a real Orthanc with Basic auth, directly or through an HTTPS front that requires a client certificate.
 * Documented differences:
 *  - a peer that cannot be reached or answers an HTTP error gives 502 (504 on a timeout) with the reason in Details,
 *    and a failed job says it in ErrorDetails; Orthanc answers 500 "Error in the network protocol" (no details for an
 *    HTTP error; for /system of a peer answering 401, "This HTTP status is not allowed in a REST API");
 *  - the "Peer" of a store job lists the HTTP headers with null values; Orthanc shows their values (often tokens);
 *  - "Size" of a job counts the bytes handed to the connection: "0" when the peer refuses the connection (Orthanc counts
 *    the file it had read); compressed or transcoded bodies differ in size from Orthanc's (other encoders);
 *  - GET /exports of a study lists SeriesInstanceUID and SOPInstanceUID as "" (Orthanc leaves them out);
 *  - a successful job has no "ErrorDetails" (Orthanc: ""); 404 answers carry an Orthanc-style JSON body (Orthanc: empty
 *    for GET /peers/{unknown}); PUT /peers/{name} with a body that is not JSON is 400 (Orthanc: 404).
 */

type Json = Record<string, unknown>;
const IMPLICIT_LE = '1.2.840.10008.1.2';
const md5 = (bytes: Uint8Array): string => createHash('md5').update(bytes).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** supertest parser keeping a binary answer as a Buffer. */
const binary = (res: request.Response, done: (error: Error | null, body: Buffer) => void): void => {
  const chunks: Buffer[] = [];
  res.on('data', (chunk: Buffer) => chunks.push(chunk));
  res.on('end', () => done(null, Buffer.concat(chunks)));
};

(hasOpenssl() ? describe : describe.skip)('Orthanc peers of the embedded core: same answers as Orthanc 1.10', () => {
  let dir = '';
  let target: OrthancProcess; // receives the instances
  let reference: OrthancProcess; // the Orthanc whose answers we compare with
  let gateway: TestGateway;
  let front: https.Server;
  let peers: Json;
  const frontSeen: Array<{ cn: string; token: string | undefined; authorized: boolean }> = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gateway-peers-'));
    makeCertificates(dir);
    target = await startOrthanc({ users: { peer: 'pw' } });
    const file = (name: string): Buffer => readFileSync(join(dir, name));
    // an HTTPS front of the target Orthanc that only lets in clients with a certificate of our CA
    front = https.createServer({ key: file('server.key'), cert: file('server.crt'), ca: file('ca.crt'), requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const cn = String((req.socket as TLSSocket).getPeerCertificate().subject?.CN ?? '');
      frontSeen.push({ cn, token: req.headers['x-token'] as string | undefined, authorized: req.headers.authorization !== undefined });
      const upstream = http.request({ host: '127.0.0.1', port: target.httpPort, path: req.url, method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      upstream.on('error', () => res.writeHead(502).end());
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    const targetUrl = `${target.url}/`;
    peers = {
      short: [target.url],
      creds: [target.url, 'peer', 'pw'],
      long: { Url: targetUrl, Username: 'peer', Password: 'pw', HttpHeaders: { 'X-Token': 'secret-token', Accept: 'application/json' }, Timeout: 7, Site: 'north', Flag: true },
      mtls: {
        Url: `https://127.0.0.1:${(front.address() as AddressInfo).port}/`,
        Username: 'peer',
        Password: 'pw',
        CertificateFile: join(dir, 'client.crt'),
        CertificateKeyFile: join(dir, 'client.key'),
        HttpHeaders: { 'X-Token': 'secret-token' },
      },
      down: [`http://127.0.0.1:${await freePort()}/`],
    };
    [reference, gateway] = await Promise.all([
      startOrthanc({ extraConfig: { OrthancPeers: peers, LogExportedResources: true } }),
      startTestGateway('embedded', { OrthancPeers: peers, LogExportedResources: true, HttpsCACertificates: join(dir, 'ca.crt') }),
    ]);
  }, 120_000);

  afterAll(async () => {
    await gateway?.close();
    await reference?.stop();
    await target?.stop();
    if (front) await new Promise<void>((resolve) => front.close(() => resolve()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function theirs(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; text: string }> {
    const response = await fetch(reference.url + path, { method, ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }) });
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, json, text };
  }

  function ours(method: 'get' | 'put' | 'post' | 'delete', path: string, body?: unknown): request.Test {
    const call = request(gateway.app)[method](path);
    if (body === undefined) return call;
    return typeof body === 'string' ? call.set('content-type', 'text/plain').send(body) : call.send(body as object);
  }

  async function targetGet(path: string): Promise<Response> {
    return fetch(target.url + path, { headers: { authorization: target.authorization as string } });
  }

  async function targetMd5(id: string): Promise<string | undefined> {
    const response = await targetGet(`/instances/${id}/file`);
    return response.ok ? md5(new Uint8Array(await response.arrayBuffer())) : undefined;
  }

  /** Uploads to the gateway and to the reference Orthanc; the Orthanc answers (same identifiers on both sides). */
  async function uploadBoth(buffers: Buffer[]): Promise<Array<{ ID: string; ParentSeries: string; ParentStudy: string }>> {
    const answers = [];
    for (const buffer of buffers) {
      const mine = await request(gateway.app).post('/instances').send(buffer).expect(200);
      const reference_ = await uploadToOrthanc(reference.url, buffer);
      expect(mine.body.ID).toBe(reference_.ID);
      answers.push(reference_);
    }
    return answers;
  }

  async function waitForJob(get: (path: string) => Promise<Json>, path: string): Promise<Json> {
    for (let i = 0; i < 200; i++) {
      const job = await get(path);
      if (job.State === 'Success' || job.State === 'Failure') return job;
      await sleep(100);
    }
    throw new Error(`job ${path} did not finish within 20 s`);
  }
  const ourJob = (path: string): Promise<Json> => ours('get', path).then((r) => r.body as Json);
  const theirJob = (path: string): Promise<Json> => theirs('GET', path).then((r) => r.json as Json);

  /** Orthanc's job Peer with the header values hidden, as we show it. */
  function hideHeaderValues(content: Json): Json {
    const peer = content.Peer as Json;
    if (Array.isArray(peer) || !peer.HttpHeaders) return content;
    const headers = Object.fromEntries(Object.keys(peer.HttpHeaders as Json).map((name) => [name, null]));
    return { ...content, Peer: { ...peer, HttpHeaders: headers } };
  }
  const withoutSize = ({ Size: _size, SizeMB: _sizeMb, ...rest }: Json): Json => rest;

  it('lists and describes the peers as Orthanc does, without their secrets', async () => {
    const names = Object.keys(peers);
    const paths = ['/peers', '/peers?expand', ...names.map((n) => `/peers/${n}`), ...names.map((n) => `/peers/${n}/configuration`)];
    for (const path of paths) {
      const reference_ = await theirs('GET', path);
      const mine = await ours('get', path).expect(200);
      expect(reference_.status).toBe(200);
      expect(mine.body).toEqual(reference_.json);
    }
    const expanded = await ours('get', '/peers?expand').expect(200);
    expect(expanded.body.long).toMatchObject({ Site: 'north', Flag: '1', Timeout: 7, HttpHeaders: ['Accept', 'X-Token'] });
    expect(JSON.stringify(expanded.body)).not.toMatch(/"pw"|secret-token/);
    expect((await theirs('GET', '/peers/nope')).status).toBe(404);
    await ours('get', '/peers/nope').expect(404);
  });

  it('defines, replaces and deletes peers at run time as Orthanc does', async () => {
    const definition = { Url: `${target.url}/`, Username: 'peer', Password: 'pw', HttpHeaders: { 'X-Site': 's' }, Timeout: 3, Site: 'south', Flag: false };
    for (const body of [definition, [target.url, 'peer', 'pw']]) {
      expect((await theirs('PUT', '/peers/added', body)).status).toBe(200);
      const put = await ours('put', '/peers/added', body).expect(200);
      expect(put.text).toBe('');
      const reference_ = await theirs('GET', '/peers/added/configuration');
      expect((await ours('get', '/peers/added/configuration').expect(200)).body).toEqual(reference_.json);
      expect((await ours('get', '/peers').expect(200)).body).toEqual((await theirs('GET', '/peers')).json);
    }
    expect((await theirs('DELETE', '/peers/added')).status).toBe(200);
    expect((await ours('delete', '/peers/added').expect(200)).text).toBe('');
    expect((await theirs('DELETE', '/peers/added')).status).toBe(404);
    await ours('delete', '/peers/added').expect(404);
    expect((await ours('get', '/peers').expect(200)).body).toEqual((await theirs('GET', '/peers')).json);

    for (const [path, body] of [
      ['/peers/bad%20name', [target.url]],
      ['/peers/nopass', [target.url, 'peer']],
      ['/peers/nourl', { Username: 'peer' }],
      ['/peers/badprop', { Url: target.url, Nested: { a: 1 } }],
    ] as const) {
      expect((await theirs('PUT', path, body)).status).toBe(400);
      const refused = await ours('put', path, body).expect(400);
      expect(refused.body.Message).toBe('Bad file format');
    }
    expect((await ours('get', '/peers').expect(200)).body).toEqual((await theirs('GET', '/peers')).json);
  });

  it("answers the peer's /system, through a client certificate too", async () => {
    const remote = await (await targetGet('/system')).json();
    for (const name of ['creds', 'long', 'mtls']) {
      const seenBefore = frontSeen.length;
      const mine = await ours('get', `/peers/${name}/system`).expect(200);
      expect(mine.headers['content-type']).toMatch(/^application\/json/);
      expect(mine.body).toEqual(remote);
      const viaFront = name === 'mtls' ? [{ cn: 'gateway-client', token: 'secret-token', authorized: true }] : [];
      expect(frontSeen.slice(seenBefore)).toEqual(viaFront);
      expect((await theirs('GET', `/peers/${name}/system`)).json).toEqual(remote);
    }
    const unauthorized = await ours('get', '/peers/short/system').expect(502);
    expect(unauthorized.body.Message).toBe('The Orthanc peer "short" answered HTTP 401');
    const down = await ours('get', '/peers/down/system').expect(502);
    expect(down.body).toMatchObject({ Message: 'Cannot contact the Orthanc peer "down"', OrthancError: 'Error in the network protocol' });
    expect(down.body.Details).toMatch(/ECONNREFUSED/);
    for (const name of ['short', 'down']) expect((await theirs('GET', `/peers/${name}/system`)).status).toBe(500);
    const unknown = await theirs('GET', '/peers/nope/system');
    expect((await ours('get', '/peers/nope/system').expect(404)).body).toEqual(unknown.json);
  });

  it('stores synchronously: the peer receives identical bytes and the answer is the one of Orthanc', async () => {
    const study = makeStudy({ seed: 'peers-sync', PatientID: 'PEERS-SYNC', seriesCount: 2, instancesPerSeries: 2, Rows: 8, Columns: 8 });
    const uploaded = await uploadBoth(study.buffers);
    const studyId = uploaded[0].ParentStudy;
    for (const { ID } of uploaded) expect(await targetMd5(ID)).toBeUndefined();

    const mine = await ours('post', '/peers/creds/store', [studyId]).expect(200);
    for (const [n, { ID }] of uploaded.entries()) expect(await targetMd5(ID)).toBe(md5(study.buffers[n]));
    expect(mine.body).toEqual((await theirs('POST', '/peers/creds/store', [studyId])).json);
    expect(mine.body).toMatchObject({ InstancesCount: 4, FailedInstancesCount: 0, Size: String(study.buffers.reduce((n, b) => n + b.length, 0)) });

    // one identifier as plain text, to a peer with headers, a timeout and user properties
    const single = await ours('post', '/peers/long/store', uploaded[0].ID).expect(200);
    const reference_ = await theirs('POST', '/peers/long/store', uploaded[0].ID);
    expect(single.body).toEqual(hideHeaderValues(reference_.json as Json));
    expect(single.body.Peer).toEqual({
      Url: `${target.url}/`,
      Username: 'peer',
      Pkcs11: false,
      Timeout: 7,
      HttpHeaders: { Accept: null, 'X-Token': null },
      Site: 'north',
      Flag: '1',
    });
  });

  it('transcodes and compresses on request', async () => {
    const buffer = makeInstance({ seed: 'peers-transcode', PatientID: 'PEERS-TS', Rows: 8, Columns: 8 });
    const [{ ID }] = await uploadBoth([buffer]);
    const body = { Resources: [ID], Transcode: IMPLICIT_LE, Compress: true };
    const mine = await ours('post', '/peers/creds/store', body).expect(200);
    expect(await (await targetGet(`/instances/${ID}/metadata/TransferSyntax`)).text()).toBe(IMPLICIT_LE);
    // the target decoded our gzip body into the same data set
    const stored = await targetGet(`/instances/${ID}/simplified-tags`);
    expect(await stored.json()).toEqual((await ours('get', `/instances/${ID}/simplified-tags`).expect(200)).body);
    expect(Number(mine.body.Size)).toBeGreaterThan(0);
    expect(Number(mine.body.Size)).toBeLessThan(buffer.length);
    const reference_ = await theirs('POST', '/peers/creds/store', body);
    expect(withoutSize(mine.body)).toEqual(withoutSize(reference_.json as Json));
  });

  it('runs as a job, through an HTTPS peer requiring a client certificate, with the peer headers', async () => {
    const study = makeStudy({ seed: 'peers-job', PatientID: 'PEERS-JOB', seriesCount: 2, instancesPerSeries: 2, Rows: 8, Columns: 8 });
    const uploaded = await uploadBoth(study.buffers);
    const seriesId = uploaded[0].ParentSeries;
    const seenBefore = frontSeen.length;
    const body = { Resources: [seriesId], Synchronous: false, Priority: 5 };
    const submitted = await ours('post', '/peers/mtls/store', body).expect(200);
    expect(submitted.body).toEqual({ ID: expect.any(String), Path: `/jobs/${submitted.body.ID}` });
    const job = await waitForJob(ourJob, submitted.body.Path);
    expect(job).toMatchObject({ Type: 'OrthancPeerStore', State: 'Success', Priority: 5, Progress: 100, ErrorCode: 0, ErrorDescription: 'Success' });
    expect(job.Content).toEqual({
      Compress: false,
      Description: 'REST API',
      FailedInstancesCount: 0,
      InstancesCount: 2,
      ParentResources: [seriesId],
      Peer: {
        Url: (peers.mtls as Json).Url,
        Username: 'peer',
        CertificateFile: join(dir, 'client.crt'),
        CertificateKeyFile: join(dir, 'client.key'),
        Pkcs11: false,
        Timeout: 0,
        HttpHeaders: { 'X-Token': null },
      },
      Size: String(study.buffers[0].length + study.buffers[1].length),
      SizeMB: 0,
    });
    for (const n of [0, 1]) expect(await targetMd5(uploaded[n].ID)).toBe(md5(study.buffers[n]));
    expect(await targetMd5(uploaded[2].ID)).toBeUndefined();
    expect(frontSeen.slice(seenBefore)).toEqual([
      { cn: 'gateway-client', token: 'secret-token', authorized: true },
      { cn: 'gateway-client', token: 'secret-token', authorized: true },
    ]);

    const submittedThere = await theirs('POST', '/peers/mtls/store', body);
    const referenceJob = await waitForJob(theirJob, (submittedThere.json as Json).Path as string);
    expect(referenceJob).toMatchObject({ Type: 'OrthancPeerStore', State: 'Success', Priority: 5, Progress: 100, ErrorCode: 0 });
    expect(job.Content).toEqual(hideHeaderValues(referenceJob.Content as Json));
  });

  it('fails the job with the HTTP error when the peer is down or refuses us, and leaves the local store untouched', async () => {
    const study = makeStudy({ seed: 'peers-down', PatientID: 'PEERS-DOWN', seriesCount: 1, instancesPerSeries: 2, Rows: 8, Columns: 8 });
    const uploaded = await uploadBoth(study.buffers);
    const studyId = uploaded[0].ParentStudy;
    const before = (await ours('get', '/instances').expect(200)).body as string[];

    const cases: Array<[string, RegExp]> = [
      ['down', /^Cannot contact the Orthanc peer "down": http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED$/],
      ['short', /^The Orthanc peer "short" answered HTTP 401/],
    ];
    for (const [name, details] of cases) {
      const body = { Resources: [studyId], Asynchronous: true };
      const job = await waitForJob(ourJob, (await ours('post', `/peers/${name}/store`, body).expect(200)).body.Path);
      expect(job).toMatchObject({ Type: 'OrthancPeerStore', State: 'Failure', ErrorCode: 9, ErrorDescription: 'Error in the network protocol' });
      expect(job.ErrorDetails).toMatch(details);
      const referenceJob = await waitForJob(theirJob, ((await theirs('POST', `/peers/${name}/store`, body)).json as Json).Path as string);
      expect(referenceJob).toMatchObject({ Type: 'OrthancPeerStore', State: 'Failure', ErrorCode: 9, ErrorDescription: 'Error in the network protocol' });
      expect(withoutSize(job.Content as Json)).toEqual(withoutSize(referenceJob.Content as Json));
      if (name === 'down') expect((job.Content as Json).Size).toBe('0');
    }
    const sync = await ours('post', '/peers/down/store', [studyId]).expect(502);
    expect(sync.body.Message).toBe('Cannot contact the Orthanc peer "down"');
    expect((await theirs('POST', '/peers/down/store', [studyId])).status).toBe(500);

    expect((await ours('get', '/instances').expect(200)).body).toEqual(before);
    for (const [n, { ID }] of uploaded.entries()) {
      const file = await ours('get', `/instances/${ID}/file`).buffer(true).parse(binary).expect(200);
      expect(md5(file.body as Buffer)).toBe(md5(study.buffers[n]));
      expect(await targetMd5(ID)).toBeUndefined();
    }
  });

  it("stops waiting after the peer's Timeout (a peer defined at run time)", async () => {
    // accepts connections and never answers
    const sockets: Socket[] = [];
    const silent = createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      await ours('put', '/peers/silent', { Url: `http://127.0.0.1:${(silent.address() as AddressInfo).port}/`, Timeout: 1 }).expect(200);
      const started = Date.now();
      const answer = await ours('get', '/peers/silent/system').expect(504);
      expect(answer.body).toMatchObject({ Message: 'Timeout while contacting the Orthanc peer "silent"', OrthancError: 'Timeout' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await ours('delete', '/peers/silent').expect(200);
      sockets.forEach((socket) => socket.destroy());
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('refuses what Orthanc refuses, with the same answers', async () => {
    const [{ ID }] = await uploadBoth([makeInstance({ seed: 'peers-bad', PatientID: 'PEERS-BAD', Rows: 8, Columns: 8 })]);
    const unknownPeer = await theirs('POST', '/peers/nope/store', [ID]);
    expect((await ours('post', '/peers/nope/store', [ID]).expect(404)).body).toEqual(unknownPeer.json);
    const cases: unknown[] = [['abc'], { Resources: [ID], Transcode: '1.2.3' }, { Resources: ID }, ''];
    for (const body of cases) {
      const reference_ = await theirs('POST', '/peers/creds/store', body);
      expect(reference_.status).toBe(400);
      const mine = await ours('post', '/peers/creds/store', body).expect(400);
      expect(mine.body).toMatchObject({ Message: 'Bad file format', Details: (reference_.json as Json).Details });
    }
    expect((await theirs('POST', '/peers/creds/store', ['0000000a-0000000b-0000000c-0000000d-0000000e'])).status).toBe(404);
    await ours('post', '/peers/creds/store', ['0000000a-0000000b-0000000c-0000000d-0000000e']).expect(404);
    await ours('post', '/peers/creds/store', { Resources: [ID], Synchronous: false, Priority: 'high' }).expect(400);
    expect(await targetMd5(ID)).toBeUndefined();
  });

  it('sends one DICOM file straight from the request body (store-straight)', async () => {
    const buffer = makeInstance({ seed: 'peers-straight', PatientID: 'PEERS-STRAIGHT', Rows: 8, Columns: 8 });
    const mine = await ours('post', '/peers/creds/store-straight').set('content-type', 'application/dicom').send(buffer).expect(200);
    expect(mine.body).toMatchObject({ Status: 'Success', Path: `/instances/${mine.body.ID}` });
    expect(await targetMd5(mine.body.ID)).toBe(md5(buffer));
    const reference_ = await fetch(`${reference.url}/peers/creds/store-straight`, { method: 'POST', body: new Uint8Array(buffer) });
    expect({ ...mine.body, Status: 'AlreadyStored' }).toEqual(await reference_.json());
    expect((await ours('get', '/instances').expect(200)).body).not.toContain(mine.body.ID);
    const refused = await ours('post', '/peers/short/store-straight').send(buffer).expect(502);
    expect(refused.body.Message).toBe('The Orthanc peer "short" answered HTTP 401');
  });

  it('logs the exports as Orthanc does when LogExportedResources is true', async () => {
    const study = makeStudy({ seed: 'peers-exports', PatientID: 'PEERS-EXPORTS', seriesCount: 1, instancesPerSeries: 2, Rows: 8, Columns: 8 });
    const uploaded = await uploadBoth(study.buffers);
    await ours('delete', '/exports').expect(200);
    expect((await theirs('DELETE', '/exports')).status).toBe(200);
    for (const [name, body] of [['creds', [uploaded[0].ID]], ['long', { Resources: [uploaded[0].ParentStudy] }], ['down', [uploaded[1].ID]]] as const) {
      await ours('post', `/peers/${name}/store`, body);
      await theirs('POST', `/peers/${name}/store`, body);
    }
    const strip = (rows: Json[]): Json[] => rows.map(({ Date: _date, Seq: _seq, ...rest }) => rest);
    const mine = (await ours('get', '/exports').expect(200)).body as { Exports: Json[]; Done: boolean };
    const reference_ = (await theirs('GET', '/exports')).json as { Exports: Json[]; Done: boolean };
    expect(mine.Done).toBe(true);
    expect(mine.Exports).toHaveLength(3);
    expect(mine.Exports.map((row) => row.RemoteModality)).toEqual(['creds', 'long', 'down']);
    expect(mine.Exports[0].Date).toMatch(/^\d{8}T\d{6}$/);
    // our study row also lists SeriesInstanceUID and SOPInstanceUID as "" (see the top of this file)
    expect(strip(mine.Exports)).toMatchObject(strip(reference_.Exports));
    expect(strip(reference_.Exports)[1]).not.toHaveProperty('SOPInstanceUID');
  });
});
