import { mkdtempSync, statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yauzl from 'yauzl';
import { ensureBuilt, removeDir, startGatewayProcess, type GatewayProcess } from '../helpers/gateway-process';
import { makeStudy } from '../helpers/dicom-factory';
import { storedFiles } from '../helpers/stored-files';

/*
 * kill -9 of a real gateway process (embedded core) in the middle of a long operation, then a restart on the same
 * store: every index row has its complete file and every file its row, and the operation can be run again.
 */

const POLL_MS = 5;
const POLL_LIMIT_MS = 60_000;
/** Generating and uploading hundreds of instances is slow on a loaded 2-core machine. */
const TEST_TIMEOUT_MS = 240_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` (bounded); throws when it never holds. */
async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + POLL_LIMIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(POLL_MS);
  }
}

async function json<T>(url: string, init?: RequestInit): Promise<T> {
  const response = await fetch(url, init);
  if (!response.ok) throw new Error(`${init?.method ?? 'GET'} ${url}: ${response.status} ${await response.text()}`);
  return (await response.json()) as T;
}

/** POST /instances of every file, `concurrency` at a time. */
async function upload(url: string, files: Buffer[], concurrency = 8): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < files.length) {
        const file = files[next++];
        const response = await fetch(`${url}/instances`, { method: 'POST', body: new Uint8Array(file) });
        if (response.status !== 200) throw new Error(`upload: ${response.status} ${await response.text()}`);
        await response.arrayBuffer();
      }
    }),
  );
}

/** Every indexed instance has its complete file in the storage area, and no other file is there. */
async function expectConsistent(gateway: GatewayProcess, storage: string): Promise<number> {
  const instances = await json<Array<{ ID: string; FileUuid: string; FileSize: number }>>(`${gateway.url}/instances?expand`);
  const files = storedFiles(storage);
  const byUuid = new Map(files.map((file) => [file.slice(file.lastIndexOf('/') + 1), file]));
  for (const instance of instances) {
    const file = byUuid.get(instance.FileUuid);
    expect(file && statSync(file).size).toBe(instance.FileSize);
  }
  expect(files).toHaveLength(instances.length);
  expect(storedFiles(storage, { withTmp: true })).toHaveLength(instances.length);
  const statistics = await json<{ CountInstances: number; TotalDiskSize: string }>(`${gateway.url}/statistics`);
  expect(statistics.CountInstances).toBe(instances.length);
  expect(Number(statistics.TotalDiskSize)).toBe(instances.reduce((sum, i) => sum + i.FileSize, 0));
  return instances.length;
}

/** Names of the entries of a ZIP (throws when it is not a complete archive). */
function zipEntries(buffer: Buffer): Promise<string[]> {
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(buffer, { lazyEntries: true }, (error, zip) => {
      if (error) return reject(error);
      const names: string[] = [];
      zip.on('entry', (entry: yauzl.Entry) => {
        names.push(entry.fileName);
        zip.readEntry();
      });
      zip.on('end', () => resolve(names));
      zip.on('error', reject);
      zip.readEntry();
    });
  });
}

describe('crash safety of the embedded core (kill -9, restart)', () => {
  const running: GatewayProcess[] = [];
  const dirs: string[] = [];
  beforeAll(() => ensureBuilt(), 300_000);
  afterEach(async () => {
    for (const gateway of running.splice(0)) await gateway.stop('SIGKILL');
    for (const dir of dirs.splice(0)) removeDir(dir);
  });

  async function start(dir: string, config: Record<string, unknown> = {}): Promise<GatewayProcess> {
    const gateway = await startGatewayProcess(config, dir);
    running.push(gateway);
    return gateway;
  }

  async function kill(gateway: GatewayProcess): Promise<void> {
    await gateway.stop('SIGKILL');
    running.splice(running.indexOf(gateway), 1);
  }

  function newDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'gateway-crash-'));
    dirs.push(dir);
    return dir;
  }

  it('during the DELETE of a large study', async () => {
    const dir = newDir();
    const storage = join(dir, 'storage');
    const first = await start(dir);
    const study = makeStudy({ seed: 'crash-delete', seriesCount: 4, instancesPerSeries: 100, Rows: 8, Columns: 8 });
    await upload(first.url, study.buffers);
    const [studyId] = await json<string[]>(`${first.url}/studies`);
    const total = storedFiles(storage).length;
    expect(total).toBe(study.buffers.length);

    const deletion = fetch(`${first.url}/studies/${studyId}`, { method: 'DELETE' }).then(
      (r) => r.status,
      () => 0,
    );
    // the rows are gone (committed) once files start to disappear: kill while files are still being removed
    await waitFor('the first removed file', () => storedFiles(storage).length < total);
    await kill(first);
    expect(await deletion).toBe(0);
    expect(storedFiles(storage).length).toBeGreaterThan(0);

    const second = await start(dir);
    expect(await expectConsistent(second, storage)).toBe(0);
    expect((await fetch(`${second.url}/studies/${studyId}`)).status).toBe(404);
    // the operation again, to its end
    await upload(second.url, study.buffers.slice(0, 50));
    expect(await expectConsistent(second, storage)).toBe(50);
    expect((await fetch(`${second.url}/studies/${studyId}`, { method: 'DELETE' })).status).toBe(200);
    expect(await expectConsistent(second, storage)).toBe(0);
  }, TEST_TIMEOUT_MS);

  it('during the creation of an archive', async () => {
    const dir = newDir();
    const storage = join(dir, 'storage');
    const first = await start(dir);
    const study = makeStudy({ seed: 'crash-archive', seriesCount: 2, instancesPerSeries: 10, Rows: 256, Columns: 256, BitsAllocated: 16 });
    await upload(first.url, study.buffers);
    const [studyId] = await json<string[]>(`${first.url}/studies`);

    // read the first bytes of the ZIP, then kill the gateway while it is still writing it
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(`${first.url}/studies/${studyId}/archive`, (res) => {
        res.once('data', () => {
          void kill(first).then(resolve, reject);
        });
        res.on('error', () => undefined);
      });
      req.on('error', () => undefined);
      req.end();
    });

    const second = await start(dir);
    expect(await expectConsistent(second, storage)).toBe(study.buffers.length);
    const archive = await fetch(`${second.url}/studies/${studyId}/archive`);
    expect(archive.status).toBe(200);
    const entries = await zipEntries(Buffer.from(await archive.arrayBuffer()));
    expect(entries.filter((name) => name.endsWith('.dcm'))).toHaveLength(study.buffers.length);
  }, TEST_TIMEOUT_MS);

  it('during a retrieve from a second gateway (POST /dicom-web/servers/{name}/retrieve)', async () => {
    const sourceDir = newDir();
    const source = await start(sourceDir);
    const study = makeStudy({ seed: 'crash-retrieve', seriesCount: 4, instancesPerSeries: 30, Rows: 64, Columns: 64, BitsAllocated: 16 });
    await upload(source.url, study.buffers);
    const expected = await json<Array<{ ID: string; FileSize: number }>>(`${source.url}/instances?expand`);

    const dir = newDir();
    const storage = join(dir, 'storage');
    const config = { DicomWeb: { Servers: { source: { Url: `${source.url}/dicom-web/` } } } };
    const first = await start(dir, config);
    const retrieve = (gateway: GatewayProcess): Promise<Response> =>
      fetch(`${gateway.url}/dicom-web/servers/source/retrieve`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ Resources: [{ Study: study.StudyInstanceUID }] }),
      });
    const interrupted = retrieve(first).then(
      (r) => r.status,
      () => 0,
    );
    await waitFor('a few retrieved instances', () => storedFiles(storage).length >= 5);
    await kill(first);
    expect(await interrupted).toBe(0);

    const second = await start(dir, config);
    // a file on disk whose index row was not committed yet is swept at restart: what stays is consistent, not complete
    const kept = await expectConsistent(second, storage);
    expect(kept).toBeLessThan(study.buffers.length);
    const again = await retrieve(second);
    expect(again.status).toBe(200);
    await again.arrayBuffer();
    expect(await expectConsistent(second, storage)).toBe(study.buffers.length);
    const retrieved = await json<Array<{ ID: string; FileSize: number }>>(`${second.url}/instances?expand`);
    const sizes = (list: Array<{ ID: string; FileSize: number }>): string[] => list.map((i) => `${i.ID}:${i.FileSize}`).sort();
    expect(sizes(retrieved)).toEqual(sizes(expected));
  }, TEST_TIMEOUT_MS);
});
