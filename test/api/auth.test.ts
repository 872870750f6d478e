/**
 * Authentication (server/auth.ts): HTTP Basic against RegisteredUsers as in Orthanc, plus our bearer tokens
 * ("BearerTokens") for machine clients; and no secret ever reaches the logs or an error body.
 *
 * Deliberate differences with Orthanc 1.10 (checked below against a real one):
 *  - "Authorization: Bearer <token>" is accepted for a token of "BearerTokens" (Orthanc has no such key and
 *    answers 401), and the 401 then offers a Bearer challenge next to Basic;
 *  - the 401 answer carries an Orthanc-style JSON body where Orthanc's is empty.
 */
import pino from 'pino';
import request from 'supertest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CORE_KINDS, startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { basicAuthorization, startOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance } from '../helpers/dicom-factory';
import { logger } from '../../src/server/logger';
import { loadConfig } from '../../src/config/load-config';

const PASSWORD = 'pw-Alice-7c1e4f0b';
const TOKEN = 'tok-2f9d8a7c6b5e4d3c2b1a0f9e';
const OTHER_TOKEN = 'tok-aaaabbbbccccddddeeeeffff';
const AUTH_CONFIG = { AuthenticationEnabled: true, RegisteredUsers: { alice: PASSWORD }, BearerTokens: [OTHER_TOKEN, TOKEN] };
const bearer = (token: string): string => `Bearer ${token}`;

describe.each(CORE_KINDS)('authentication, %s core', (kind) => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway(kind, AUTH_CONFIG);
  });
  afterAll(async () => {
    await gateway?.close();
  });

  it.each([
    ['no credentials', undefined],
    ['a wrong password', basicAuthorization('alice', 'nope')],
    ['an unknown user', basicAuthorization('mallory', PASSWORD)],
    ['an unknown token', bearer('tok-0000000000000000000000')],
    ['a token cut short', bearer(TOKEN.slice(0, -1))],
    ['a token with one more character', bearer(`${TOKEN}x`)],
    ['the password as a token', bearer(PASSWORD)],
    ['the token as a Basic password', basicAuthorization('alice', TOKEN)],
    ['a token with no scheme', TOKEN],
  ])('refuses %s with 401, both challenges and a JSON body', async (_name, authorization) => {
    const res = await request(gateway.app).get('/dicom-web/studies').set(authorization ? { authorization } : {});
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe(`Basic realm="${gateway.config.name}", Bearer realm="${gateway.config.name}"`);
    expect(res.body).toMatchObject({ HttpStatus: 401, Message: 'Authentication is required' });
  });

  it.each([
    ['Basic', basicAuthorization('alice', PASSWORD)],
    ['Bearer (second token of the list)', bearer(TOKEN)],
    ['Bearer (first token)', bearer(OTHER_TOKEN)],
    ['bearer in lower case', `bearer ${TOKEN}`],
  ])('accepts %s on DICOMweb and native routes', async (_name, authorization) => {
    const qido = await request(gateway.app).get('/dicom-web/studies').set({ authorization });
    expect(qido.status).toBe(200);
    const system = await request(gateway.app).get('/system').set({ authorization });
    expect(system.status).toBe(200);
  });

  it('stores through STOW-RS with a token', async () => {
    const file = makeInstance({ PatientID: `AUTH-${kind}`, seed: `auth-${kind}` });
    const res = await request(gateway.app).post('/dicom-web/studies').set({ authorization: bearer(TOKEN) }).type('application/dicom').send(file);
    expect(res.status).toBe(200);
  });
});

describe('without BearerTokens the 401 offers Basic only, as Orthanc; a token is refused', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;
  beforeAll(async () => {
    [gateway, orthanc] = await Promise.all([
      startTestGateway('embedded', { AuthenticationEnabled: true, RegisteredUsers: { alice: PASSWORD } }),
      startOrthanc({ users: { alice: PASSWORD } }),
    ]);
  });
  afterAll(async () => {
    await gateway?.close();
    await orthanc?.stop();
  });

  it.each([
    ['no credentials', undefined, 401],
    ['a wrong password', basicAuthorization('alice', 'nope'), 401],
    ['a token', bearer(TOKEN), 401],
    ['the right password', basicAuthorization('alice', PASSWORD), 200],
  ])('%s: the same status as Orthanc', async (_name, authorization, status) => {
    const headers: Record<string, string> = authorization ? { authorization } : {};
    const theirs = await fetch(`${orthanc.url}/system`, { headers });
    const ours = await request(gateway.app).get('/system').set(headers);
    expect(theirs.status).toBe(status);
    expect(ours.status).toBe(status);
    if (status === 401) {
      expect(theirs.headers.get('www-authenticate')).toMatch(/^Basic realm="[^"]+"$/);
      expect(ours.headers['www-authenticate']).toMatch(/^Basic realm="[^"]+"$/);
    }
  });
});

describe('secrets never reach the logs or an error body', () => {
  const lines: string[] = [];
  // pino's documented symbols: the destination the logger writes its serialized (redacted) lines to
  const internals = logger as unknown as Record<symbol, unknown>;
  let savedStream: unknown;
  let savedLevel: string;
  let gateway: TestGateway;

  beforeAll(async () => {
    // the process logger at its most verbose, written here instead of stdout; the app is created after (the request log is installed by level)
    savedStream = internals[pino.symbols.streamSym];
    savedLevel = logger.level;
    internals[pino.symbols.streamSym] = { write: (line: string) => lines.push(line) };
    logger.level = 'trace';
    gateway = await startTestGateway('embedded', AUTH_CONFIG);
  });
  afterAll(async () => {
    await gateway?.close();
    internals[pino.symbols.streamSym] = savedStream;
    logger.level = savedLevel;
  });

  it('a session of good and bad credentials, errors included, logs requests but no password or token', async () => {
    const credentials = [
      basicAuthorization('alice', PASSWORD),
      basicAuthorization('alice', `${PASSWORD}-wrong`),
      bearer(TOKEN),
      bearer(`${TOKEN}-wrong`),
    ];
    const bodies: string[] = [];
    for (const authorization of credentials) {
      for (const send of [
        () => request(gateway.app).get('/system'),
        () => request(gateway.app).get('/no/such/route'),
        () => request(gateway.app).post('/tools/find').type('application/json').send('{not json'),
        () => request(gateway.app).get('/dicom-web/studies?limit=x'),
        () => request(gateway.app).post('/dicom-web/studies').type('multipart/related; type="application/dicom"; boundary=b').send('--b\r\n\r\ngarbage\r\n--b--'),
      ]) {
        const res = await send().set({ authorization });
        bodies.push(res.text);
      }
    }
    const log = lines.join('');
    // the capture works: the request log and the STOW-RS refusal are there
    expect(log).toContain('"msg":"request"');
    expect(log).toContain('/no/such/route');
    expect(log).toContain('STOW-RS part refused');
    const secrets = [PASSWORD, TOKEN, Buffer.from(`alice:${PASSWORD}`).toString('base64'), Buffer.from(`alice:${PASSWORD}-wrong`).toString('base64')];
    for (const secret of secrets) {
      expect(log).not.toContain(secret);
      for (const body of bodies) expect(body).not.toContain(secret);
    }
    // the error bodies are Orthanc-style JSON (so the check above looked at real answers)
    expect(bodies.filter((body) => body.includes('"HttpStatus":401')).length).toBe(10);
    expect(bodies.filter((body) => body.includes('"HttpStatus":404')).length).toBe(2);
  });

  it('a configuration error about a token does not echo it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'auth-config-'));
    try {
      const file = join(dir, 'bad.json');
      writeFileSync(file, JSON.stringify({ BearerTokens: ['short-secret'] }));
      expect(() => loadConfig([file], { warn: () => undefined })).toThrow(/"BearerTokens\[0\]" .*must be at least 16 characters/);
      try {
        loadConfig([file], { warn: () => undefined });
      } catch (error) {
        expect((error as Error).message).not.toContain('short-secret');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
