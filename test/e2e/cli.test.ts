import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBuilt, startGatewayProcess, runGatewayExpectingFailure, removeDir, type GatewayProcess } from '../helpers/gateway-process';
import { makeInstance } from '../helpers/dicom-factory';
import { storedFiles } from '../helpers/stored-files';

describe('the dicomweb-gateway command', () => {
  const running: GatewayProcess[] = [];
  // compiling is slow on a loaded 2-core machine: done once here, not inside a test's time budget
  beforeAll(() => ensureBuilt(), 300_000);
  afterEach(async () => {
    for (const g of running.splice(0)) {
      await g.stop('SIGKILL');
      removeDir(g.dir);
    }
  });

  it('starts from an Orthanc-style configuration, on loopback only, and stores through the native API', async () => {
    const gateway = await startGatewayProcess({ Name: 'E2E' });
    running.push(gateway);
    const system = await (await fetch(`${gateway.url}/system`)).json();
    expect(system.Name).toBe('E2E');
    const upload = await fetch(`${gateway.url}/instances`, { method: 'POST', body: makeInstance() });
    expect(upload.status).toBe(200);
    expect((await upload.json()).Status).toBe('Success');
    // RemoteAccessAllowed is false: the socket is bound to 127.0.0.1, not to every interface
    const ss = execFileSync('ss', ['-ltn']).toString();
    const line = ss.split('\n').find((l) => l.includes(`:${gateway.port} `));
    expect(line).toBeDefined();
    expect(line).toContain(`127.0.0.1:${gateway.port}`);
  });

  it('runs as node itself (the launcher execs it), with glibc told to give large freed blocks back', async () => {
    const gateway = await startGatewayProcess({});
    running.push(gateway);
    const pid = gateway.child.pid ?? 0;
    // the process started is the one serving: signals and memory readings reach the gateway, not a wrapper
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[1]).toMatch(/dist\/src\/server\/cli\.js$/);
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')).toContain('MALLOC_MMAP_THRESHOLD_=131072');
    expect((await fetch(`${gateway.url}/system`)).status).toBe(200);
  });

  it('refuses to start on a bad value, naming the key and the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gateway-bad-'));
    try {
      const result = runGatewayExpectingFailure('{ "HttpPort": "not a port" }', dir);
      expect(result.status).toBe(1);
      expect(result.output).toContain('HttpPort');
      expect(result.output).toContain(join(dir, 'bad.json'));
    } finally {
      removeDir(dir);
    }
  });

  it('asks for HTTP Basic credentials from RegisteredUsers and never echoes them', async () => {
    const gateway = await startGatewayProcess({ AuthenticationEnabled: true, RegisteredUsers: { alice: 's3cret-pw' } });
    running.push(gateway);
    const anonymous = await fetch(`${gateway.url}/patients`);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
    expect((await anonymous.json()).HttpStatus).toBe(401);
    const wrong = await fetch(`${gateway.url}/patients`, { headers: { authorization: `Basic ${Buffer.from('alice:nope').toString('base64')}` } });
    expect(wrong.status).toBe(401);
    const right = await fetch(`${gateway.url}/patients`, { headers: { authorization: `Basic ${Buffer.from('alice:s3cret-pw').toString('base64')}` } });
    expect(right.status).toBe(200);
    expect(await right.json()).toEqual([]);
    expect(gateway.output()).not.toContain('s3cret-pw');
  });

  it('finds a consistent store after kill -9 in the middle of uploads', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gateway-crash-'));
    const storage = join(dir, 'storage');
    const first = await startGatewayProcess({}, dir);
    running.push(first);
    // one upload stalls half-way through its body, many small ones complete or not around the kill
    const big = makeInstance({ Rows: 512, Columns: 512, BitsAllocated: 16 });
    const stalled = httpRequest(`${first.url}/instances`, { method: 'POST', headers: { 'content-length': String(big.length) } });
    stalled.on('error', () => undefined);
    stalled.write(big.subarray(0, big.length / 2));
    const uploads = Array.from({ length: 40 }, () =>
      fetch(`${first.url}/instances`, { method: 'POST', body: makeInstance() }).then(
        (r) => r.status,
        () => 0,
      ),
    );
    await new Promise((r) => setTimeout(r, 150));
    await first.stop('SIGKILL');
    await Promise.all(uploads);
    running.splice(0);

    const second = await startGatewayProcess({}, dir);
    running.push(second);
    const instances = (await (await fetch(`${second.url}/instances?expand`)).json()) as Array<{ ID: string; FileSize: number }>;
    // every indexed instance has its complete file, and every file belongs to an indexed instance
    for (const instance of instances) {
      const file = await fetch(`${second.url}/instances/${instance.ID}/file`);
      expect(file.status).toBe(200);
      expect((await file.arrayBuffer()).byteLength).toBe(instance.FileSize);
    }
    expect(storedFiles(storage)).toHaveLength(instances.length);
    expect(readdirSync(join(storage, 'tmp'))).toEqual([]);
    const stats = await (await fetch(`${second.url}/statistics`)).json();
    expect(stats.CountInstances).toBe(instances.length);
  });
});
