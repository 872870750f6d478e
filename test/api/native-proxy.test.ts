import http, { type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { loadConfig } from '../../src/config/load-config';
import { createApp, type Gateway } from '../../src/server/app';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { basicAuthorization, freePort, startOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance, newUid } from '../helpers/dicom-factory';

/** A gateway app from a JSON configuration (what `dicomweb-gateway config.json` would run). */
function gatewayWith(json: Record<string, unknown>): Gateway & { dispose(): Promise<void> } {
  const dir = mkdtempSync(join(tmpdir(), 'proxy-test-'));
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ StorageDirectory: join(dir, 'storage'), ...json }));
  const gateway = createApp(loadConfig([file], { warn: () => undefined }));
  return {
    ...gateway,
    dispose: async () => {
      await gateway.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function orthancGet(orthanc: OrthancProcess, path: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${orthanc.url}${path}`, { headers: orthanc.authorization ? { authorization: orthanc.authorization } : {} });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as unknown) : undefined };
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

describe('native routes proxied to a remote core', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;

  beforeAll(async () => {
    gateway = await startTestGateway('remote');
    orthanc = gateway.orthanc as OrthancProcess;
  });
  afterAll(async () => {
    await gateway?.close();
  });

  it('uploads, browses, searches and deletes through the gateway, answering what Orthanc answers', async () => {
    const file = makeInstance({ PatientID: 'PROXY-1', PatientName: 'Proxy^Patient', StudyDescription: 'Proxied', seed: 'proxy/1' });
    const upload = await request(gateway.app).post('/instances').set('Content-Type', 'application/dicom').send(file);
    expect(upload.status).toBe(200);
    expect(upload.body).toMatchObject({ Status: 'Success', ParentStudy: expect.any(String) });

    for (const path of ['/patients', '/studies', `/studies/${upload.body.ParentStudy}`, `/instances/${upload.body.ID}/simplified-tags`, '/statistics']) {
      const ours = await request(gateway.app).get(path);
      const theirs = await orthancGet(orthanc, path);
      expect(ours.status).toBe(theirs.status);
      expect(ours.body).toEqual(theirs.body);
    }
    const raw = await request(gateway.app).get(`/instances/${upload.body.ID}/file`).buffer(true).parse((res, done) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => done(null, Buffer.concat(chunks)));
    });
    expect(raw.status).toBe(200);
    expect(raw.headers['content-type']).toBe('application/dicom');
    expect(Buffer.compare(raw.body as Buffer, file)).toBe(0);

    const find = await request(gateway.app).post('/tools/find').send({ Level: 'Study', Query: { PatientName: 'Proxy*' } });
    expect(find.status).toBe(200);
    expect(find.body).toEqual([upload.body.ParentStudy]);

    const removed = await request(gateway.app).delete(`/studies/${upload.body.ParentStudy}`);
    expect(removed.status).toBe(200);
    const gone = await request(gateway.app).get(`/studies/${upload.body.ParentStudy}`);
    expect(gone.status).toBe(404);
    expect((await orthancGet(orthanc, `/studies/${upload.body.ParentStudy}`)).status).toBe(404);
  });

  it("passes the core's error statuses and bodies through", async () => {
    const bad = await request(gateway.app).post('/tools/find').send('not json').set('Content-Type', 'application/json');
    expect(bad.status).toBe(400);
    // Orthanc 1.10 sends its error bodies without a Content-Type: passed through as they are
    expect(JSON.parse(bad.text)).toMatchObject({ HttpStatus: 400, Uri: '/tools/find' });
    const notDicom = await request(gateway.app).post('/instances').set('Content-Type', 'application/dicom').send(Buffer.from('hello'));
    expect(notDicom.status).toBe(400);
  });

  it('streams large files both ways', async () => {
    const file = makeInstance({ PatientID: 'PROXY-BIG', Rows: 1024, Columns: 1024, NumberOfFrames: 4, seed: 'proxy/big' });
    expect(file.length).toBeGreaterThan(8_000_000);
    const upload = await request(gateway.app).post('/instances').set('Content-Type', 'application/dicom').send(file);
    expect(upload.status).toBe(200);
    const download = await request(gateway.app)
      .get(`/instances/${upload.body.ID}/file`)
      .buffer(true)
      .parse((res, done) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => done(null, Buffer.concat(chunks)));
      });
    expect(download.status).toBe(200);
    expect(Buffer.compare(download.body as Buffer, file)).toBe(0);
  });

  it('handles Expect: 100-continue uploads', async () => {
    const server = http.createServer(gateway.app);
    const port = await listen(server);
    const file = makeInstance({ PatientID: 'PROXY-EXPECT', seed: 'proxy/expect' });
    try {
      const answer = await new Promise<{ status: number; body: string; continued: boolean }>((resolve, reject) => {
        let continued = false;
        const req = http.request(
          { port, host: '127.0.0.1', method: 'POST', path: '/instances', headers: { 'content-type': 'application/dicom', 'content-length': file.length, expect: '100-continue' } },
          (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body, continued }));
          },
        );
        req.on('continue', () => {
          continued = true;
          req.end(file);
        });
        req.on('error', reject);
      });
      expect(answer.continued).toBe(true);
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body)).toMatchObject({ Status: 'Success' });
    } finally {
      server.close();
    }
  });

  it('keeps the DICOMweb root for the gateway (never proxied)', async () => {
    const answer = await request(gateway.app).get('/dicom-web/no-such-route-here');
    expect(answer.status).toBe(404);
    expect(answer.body).toMatchObject({ HttpStatus: 404, Details: expect.stringContaining('No route') });
  });
});

describe("the gateway's authentication and the core's credentials", () => {
  const corePassword = 'core-only-secret-7f3a';
  const coreToken = basicAuthorization('coreuser', corePassword).slice('Basic '.length);
  let orthanc: OrthancProcess;
  let gateway: Gateway & { dispose(): Promise<void> };
  let wrongCredentials: Gateway & { dispose(): Promise<void> };
  const leaks: string[] = [];

  /** Remembers every answer, to check at the end that the core's password never appeared. */
  function record(res: request.Response): request.Response {
    leaks.push(JSON.stringify(res.headers) + (res.text ?? ''));
    return res;
  }

  beforeAll(async () => {
    orthanc = await startOrthanc({ users: { coreuser: corePassword } });
    gateway = gatewayWith({
      AuthenticationEnabled: true,
      RegisteredUsers: { alice: 'gateway-pass' },
      Core: { Url: orthanc.url, Username: 'coreuser', Password: corePassword },
    });
    wrongCredentials = gatewayWith({ Core: { Url: orthanc.url, Username: 'coreuser', Password: 'not-the-password' } });
  });
  afterAll(async () => {
    await gateway?.dispose();
    await wrongCredentials?.dispose();
    await orthanc?.stop();
  });

  it("asks for the gateway's users, not the core's", async () => {
    const anonymous = record(await request(gateway.app).get('/patients'));
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toMatch(/^Basic realm=/);
    const asCoreUser = record(await request(gateway.app).get('/patients').auth('coreuser', corePassword));
    expect(asCoreUser.status).toBe(401);
    const asAlice = record(await request(gateway.app).get('/patients').auth('alice', 'gateway-pass'));
    expect(asAlice.status).toBe(200);
    expect(asAlice.body).toEqual([]);
    const upload = record(
      await request(gateway.app).post('/instances').auth('alice', 'gateway-pass').send(makeInstance({ PatientID: 'AUTH', seed: 'proxy/auth' })),
    );
    expect(upload.status).toBe(200);
    expect(record(await request(gateway.app).get('/system').auth('alice', 'gateway-pass')).status).toBe(200);
    expect(await gateway.core.findIds({ Level: 'Patient', Query: { PatientID: 'AUTH' } })).toEqual([upload.body.ParentPatient]);
  });

  it("answers 502 without WWW-Authenticate when the core refuses the gateway's credentials", async () => {
    const refused = record(await request(wrongCredentials.app).get('/patients'));
    expect(refused.status).toBe(502);
    expect(refused.headers['www-authenticate']).toBeUndefined();
    expect(refused.body).toMatchObject({ HttpStatus: 502, Message: "The core refused the gateway's credentials" });
    // a client's own Authorization header is not passed on either
    const withClientAuth = record(await request(wrongCredentials.app).get('/patients').auth('coreuser', corePassword));
    expect(withClientAuth.status).toBe(502);
    await expect(wrongCredentials.core.find({ Level: 'Study', Query: {} })).rejects.toMatchObject({ httpStatus: 502 });
  });

  it("never shows the core's password in an answer", () => {
    expect(leaks.length).toBeGreaterThan(5);
    for (const answer of leaks) {
      expect(answer).not.toContain(corePassword);
      expect(answer).not.toContain(coreToken);
    }
  });
});

describe('a core that is down or slow', () => {
  it('starts anyway and answers 503 JSON, then works once the core is back', async () => {
    const port = await freePort();
    const gateway = gatewayWith({ Core: { Url: `http://127.0.0.1:${port}` } });
    try {
      const system = await request(gateway.app).get('/system');
      expect(system.status).toBe(503);
      expect(system.body).toMatchObject({ HttpStatus: 503, Message: 'The core is not reachable', Uri: '/system' });
      const upload = await request(gateway.app).post('/instances').send(makeInstance({ seed: 'proxy/down' }));
      expect(upload.status).toBe(503);
      await expect(gateway.core.find({ Level: 'Study', Query: {} })).rejects.toMatchObject({ httpStatus: 503 });
    } finally {
      await gateway.dispose();
    }
  });

  it('answers 503 when the core stops under a running gateway', async () => {
    const orthanc = await startOrthanc();
    const gateway = gatewayWith({ Core: { Url: orthanc.url } });
    try {
      expect((await request(gateway.app).get('/system')).status).toBe(200);
      await orthanc.stop();
      const after = await request(gateway.app).get('/patients');
      expect(after.status).toBe(503);
      expect(after.body).toMatchObject({ HttpStatus: 503 });
      await expect(gateway.core.findIds({ Level: 'Study', Query: {} })).rejects.toMatchObject({ httpStatus: 503 });
    } finally {
      await gateway.dispose();
      await orthanc.stop();
    }
  });

  it('answers 504 JSON when the core does not answer within HttpTimeout', async () => {
    const silent = createTcpServer(() => undefined);
    const port = await listen(silent as unknown as Server);
    const gateway = gatewayWith({ HttpTimeout: 1, Core: { Url: `http://127.0.0.1:${port}` } });
    try {
      const answer = await request(gateway.app).get('/system');
      expect(answer.status).toBe(504);
      expect(answer.body).toMatchObject({ HttpStatus: 504 });
    } finally {
      await gateway.dispose();
      silent.close();
    }
  });
});

describe('two gateways on one Orthanc', () => {
  it('answer the same (the gateway keeps no state)', async () => {
    const orthanc = await startOrthanc();
    const one = gatewayWith({ Core: { Url: orthanc.url } });
    const two = gatewayWith({ Core: { Url: orthanc.url } });
    try {
      const study = newUid();
      for (const n of [1, 2]) {
        const via = n === 1 ? one : two;
        const file = makeInstance({ PatientID: 'SHARED', StudyInstanceUID: study, InstanceNumber: n });
        expect((await request(via.app).post('/instances').send(file)).status).toBe(200);
      }
      for (const path of ['/patients', '/studies', '/series', '/instances']) {
        const [a, b] = [await request(one.app).get(path), await request(two.app).get(path)];
        expect(b.body).toEqual(a.body);
      }
      const query = { Level: 'Instance', Query: { PatientID: 'SHARED' }, Expand: true };
      const [a, b] = [await request(one.app).post('/tools/find').send(query), await request(two.app).post('/tools/find').send(query)];
      expect(a.body).toHaveLength(2);
      expect(b.body).toEqual(a.body);
      const [x, y] = [await one.core.findIds({ Level: 'Study', Query: {} }), await two.core.findIds({ Level: 'Study', Query: {} })];
      expect(y).toEqual(x);
    } finally {
      await one.dispose();
      await two.dispose();
      await orthanc.stop();
    }
  });
});
