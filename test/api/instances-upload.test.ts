import { join } from 'node:path';
import { Readable } from 'node:stream';
import archiver from 'archiver';
import request from 'supertest';
import { makeInstance } from '../helpers/dicom-factory';
import { filesUnder, storedFiles } from '../helpers/stored-files';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';

/** A ZIP of the given entries, built in memory (the entries compress well). */
async function zipOf(entries: Array<{ name: string; content: Buffer | Readable }>): Promise<Buffer> {
  const archive = archiver('zip', { zlib: { level: 9 } });
  const chunks: Buffer[] = [];
  archive.on('data', (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise<void>((resolve, reject) => {
    archive.on('end', resolve);
    archive.on('error', reject);
  });
  for (const entry of entries) archive.append(entry.content, { name: entry.name });
  await archive.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** `size` zero bytes, streamed in 1 MiB chunks. */
function zeros(size: number): Readable {
  const chunk = Buffer.alloc(1 << 20);
  let left = size;
  return new Readable({
    read() {
      if (left <= 0) return void this.push(null);
      const n = Math.min(left, chunk.length);
      left -= n;
      this.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    },
  });
}

describe('POST /instances with ZIP archives (embedded core)', () => {
  let gateway: TestGateway;
  beforeAll(async () => {
    gateway = await startTestGateway('embedded');
  });
  afterAll(async () => gateway?.close());

  it('stores the DICOM files of an archive and skips the rest', async () => {
    const zip = await zipOf([
      { name: 'a/1.dcm', content: makeInstance({ seed: 'zip-1', Rows: 4, Columns: 4 }) },
      { name: 'a/2.dcm', content: makeInstance({ seed: 'zip-2', Rows: 4, Columns: 4 }) },
      { name: 'README.txt', content: Buffer.from('not DICOM') },
    ]);
    const res = await request(gateway.app).post('/instances').set('content-type', 'application/zip').send(zip).expect(200);
    expect(res.body).toHaveLength(2);
    expect(res.body.map((r: { Status: string }) => r.Status)).toEqual(['Success', 'Success']);
  });

  it('refuses a ZIP bomb before inflating it, leaving nothing behind', async () => {
    const before = (await request(gateway.app).get('/instances').expect(200)).body as string[];
    const filesBefore = storedFiles(gateway.config.storageDirectory);
    const bomb = await zipOf([
      { name: 'ok.dcm', content: makeInstance({ seed: 'zip-bomb-ok', Rows: 4, Columns: 4 }) },
      { name: 'bomb.dcm', content: zeros(300 << 20) },
    ]);
    // 300 MiB of zeros deflate to a few hundred KiB
    expect(bomb.length).toBeLessThan(1 << 20);
    const res = await request(gateway.app).post('/instances').set('content-type', 'application/zip').send(bomb).expect(400);
    expect(res.body).toMatchObject({ HttpStatus: 400, Message: 'The ZIP archive looks like a ZIP bomb' });
    expect(res.body.Details).toMatch(/bomb\.dcm inflates from \d+ to 314572800 bytes/);
    // nothing of the archive was stored, and no temporary file stays
    expect((await request(gateway.app).get('/instances').expect(200)).body).toEqual(before);
    expect(storedFiles(gateway.config.storageDirectory)).toEqual(filesBefore);
    expect(filesUnder(join(gateway.config.storageDirectory, 'tmp'))).toEqual([]);
  });
});
