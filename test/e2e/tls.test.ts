/**
 * "SslEnabled" + "SslCertificate" (Orthanc's keys: one PEM file holding the certificate and its private key)
 * serve HTTPS on HttpPort, through the real command; "SslVerifyPeers" + "SslTrustedClientCertificates" require a
 * client certificate. Certificates are made here with the openssl command, for 127.0.0.1, valid one day.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { ensureBuilt, removeDir, runGatewayExpectingFailure } from '../helpers/gateway-process';
import { freePort } from '../helpers/orthanc-process';
import { makeInstance } from '../helpers/dicom-factory';

const CLI = join(__dirname, '..', '..', 'dist', 'src', 'server', 'cli.js');

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** A CA, a server certificate for 127.0.0.1 signed by it (with its key, in one PEM file as Orthanc wants), a client certificate. */
function makeCertificates(dir: string): { serverPem: string; caPem: string; clientCert: string; clientKey: string; serverCert: string } {
  const days = ['-days', '1'];
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', ...days, '-subj', '/CN=Test CA']);
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(dir, ['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', ...days, '-extfile', 'san.ext']);
  openssl(dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=client']);
  openssl(dir, ['x509', '-req', '-in', 'client.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.crt', ...days]);
  const serverPem = join(dir, 'server.pem');
  writeFileSync(serverPem, readFileSync(join(dir, 'server.crt'), 'latin1') + readFileSync(join(dir, 'server.key'), 'latin1'));
  return { serverPem, caPem: join(dir, 'ca.pem'), clientCert: join(dir, 'client.crt'), clientKey: join(dir, 'client.key'), serverCert: join(dir, 'server.crt') };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  peerFingerprint?: string;
}

function httpsRequest(url: string, options: https.RequestOptions & { body?: Buffer } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { ...options, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      const peer = (res.socket as tls.TLSSocket).getPeerCertificate();
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), peerFingerprint: peer.fingerprint256 }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

interface TlsGateway {
  url: string;
  port: number;
  child: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/** The command with an HTTPS configuration; ready when /system answers over TLS (trusting `ca`). */
async function startTlsGateway(dir: string, config: Record<string, unknown>, client: https.RequestOptions): Promise<TlsGateway> {
  const port = await freePort();
  const file = join(dir, `config-${port}.json`);
  writeFileSync(file, JSON.stringify({ StorageDirectory: join(dir, `storage-${port}`), HttpPort: port, DicomServerEnabled: false, ...config }));
  const child = spawn(process.execPath, [CLI, file], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, LOG_LEVEL: 'info' } });
  let log = '';
  child.stdout?.on('data', (c: Buffer) => (log += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (log += c.toString()));
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  const url = `https://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}:\n${log}`);
    const ok = await httpsRequest(`${url}/system`, client).then(
      (a) => a.status === 200,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the gateway did not answer over TLS within 20 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, port, child, output: () => log, stop };
}

describe('HTTPS (SslEnabled, SslCertificate)', () => {
  let dir: string;
  let certs: ReturnType<typeof makeCertificates>;
  let gateway: TlsGateway;
  let ca: Buffer;

  beforeAll(async () => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'gateway-tls-'));
    certs = makeCertificates(dir);
    ca = readFileSync(certs.caPem);
    gateway = await startTlsGateway(dir, { SslEnabled: true, SslCertificate: 'server.pem' }, { ca });
  }, 300_000);
  afterAll(async () => {
    await gateway?.stop();
    removeDir(dir);
  });

  it('serves the API over TLS on HttpPort with the configured certificate', async () => {
    const answer = await httpsRequest(`${gateway.url}/system`, { ca });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body.toString())).toHaveProperty('Name');
    const expected = new X509Certificate(readFileSync(certs.serverCert)).fingerprint256;
    expect(answer.peerFingerprint).toBe(expected);
    expect(gateway.output()).toContain(`listening on https://127.0.0.1:${gateway.port}/`);
  });

  it('a client that does not trust the certificate cannot connect', async () => {
    await expect(httpsRequest(`${gateway.url}/system`)).rejects.toThrow(/certificate/i);
  });

  it('plain HTTP on the same port gets no HTTP answer', async () => {
    const result = await fetch(`http://127.0.0.1:${gateway.port}/system`).then(
      (r) => `status ${r.status}`,
      (e: Error) => `error ${e.message}`,
    );
    expect(result).toMatch(/^error/);
  });

  it('STOW-RS and QIDO-RS over TLS, with https:// URLs in the answers', async () => {
    const file = makeInstance({ PatientID: 'TLS-1', seed: 'tls' });
    const boundary = 'tls-boundary';
    const body = Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), file, Buffer.from(`\r\n--${boundary}--\r\n`)]);
    const stow = await httpsRequest(`${gateway.url}/dicom-web/studies`, {
      ca,
      method: 'POST',
      headers: { 'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`, accept: 'application/dicom+json' },
      body,
    });
    expect(stow.status).toBe(200);
    const answer = JSON.parse(stow.body.toString()) as Record<string, { Value: unknown[] }>;
    expect(String(answer['00081190'].Value[0])).toMatch(new RegExp(`^https://127\\.0\\.0\\.1:${gateway.port}/dicom-web/studies/`));
    const qido = await httpsRequest(`${gateway.url}/dicom-web/studies?PatientID=TLS-1`, { ca });
    expect(qido.status).toBe(200);
    expect(JSON.parse(qido.body.toString())).toHaveLength(1);
    const dicom = await httpsRequest(`${gateway.url}/instances`, { ca });
    expect(JSON.parse(dicom.body.toString())).toHaveLength(1);
  });
});

describe('client certificates (SslVerifyPeers, SslTrustedClientCertificates)', () => {
  let dir: string;
  let certs: ReturnType<typeof makeCertificates>;
  let gateway: TlsGateway;
  let client: https.RequestOptions;

  beforeAll(async () => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'gateway-mtls-'));
    certs = makeCertificates(dir);
    client = { ca: readFileSync(certs.caPem), cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) };
    gateway = await startTlsGateway(dir, { SslEnabled: true, SslCertificate: 'server.pem', SslVerifyPeers: true, SslTrustedClientCertificates: 'ca.pem' }, client);
  }, 300_000);
  afterAll(async () => {
    await gateway?.stop();
    removeDir(dir);
  });

  it('answers a client with a certificate signed by a trusted CA', async () => {
    expect((await httpsRequest(`${gateway.url}/system`, client)).status).toBe(200);
  });

  it('refuses a client without a certificate, or with one the CAs did not sign', async () => {
    await expect(httpsRequest(`${gateway.url}/system`, { ca: client.ca })).rejects.toThrow();
    // a self-signed client certificate: well formed, but no trusted CA signed it
    openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'rogue.key', '-out', 'rogue.crt', '-days', '1', '-subj', '/CN=rogue']);
    const rogue = { ca: client.ca, cert: readFileSync(join(dir, 'rogue.crt')), key: readFileSync(join(dir, 'rogue.key')) };
    await expect(httpsRequest(`${gateway.url}/system`, rogue)).rejects.toThrow();
  });
});

describe('bad TLS configurations stop the start, naming the key', () => {
  let dir: string;
  beforeAll(() => {
    ensureBuilt();
    dir = mkdtempSync(join(tmpdir(), 'gateway-tls-bad-'));
    writeFileSync(join(dir, 'cert-only.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    // PEM markers around bytes that are no certificate: past the configuration check, refused by TLS itself
    writeFileSync(join(dir, 'broken.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n');
    openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'good.key', '-out', 'good.crt', '-days', '1', '-subj', '/CN=127.0.0.1']);
    writeFileSync(join(dir, 'good.pem'), readFileSync(join(dir, 'good.crt'), 'latin1') + readFileSync(join(dir, 'good.key'), 'latin1'));
  }, 300_000);
  afterAll(() => removeDir(dir));

  it.each([
    ['{ "SslEnabled": true }', /"SslCertificate" is missing/],
    ['{ "SslEnabled": true, "SslCertificate": "nowhere.pem" }', /"SslCertificate" in .*bad\.json must name a readable file/],
    ['{ "SslEnabled": true, "SslCertificate": "cert-only.pem" }', /"SslCertificate" in .*bad\.json must be a PEM file holding the certificate and its private key/],
    ['{ "SslEnabled": true, "SslCertificate": "good.pem", "SslVerifyPeers": true }', /"SslTrustedClientCertificates" is missing/],
    ['{ "SslEnabled": true, "SslCertificate": "broken.pem" }', /"SslCertificate" \(.*broken\.pem\) cannot be used/],
  ])('%s', (config, message) => {
    const result = runGatewayExpectingFailure(config, dir);
    expect(result.status).toBe(1);
    expect(result.output).toMatch(message);
  });
});
