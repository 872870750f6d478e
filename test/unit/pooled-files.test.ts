import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { readPooledFiles, type FileToRead } from '../../src/core/embedded/pooled-files';
import { BLOCK_BYTES, releaseView, takeBlock } from '../../src/dicom/block-pool';

interface TestFile extends FileToRead {
  bytes: Buffer;
}

let directory: string;

beforeAll(() => {
  directory = fs.mkdtempSync(path.join(os.tmpdir(), 'pooled-files-'));
});
afterAll(() => {
  fs.rmSync(directory, { recursive: true, force: true });
});

function file(name: string, size: number): TestFile {
  const bytes = randomBytes(size);
  const filePath = path.join(directory, name);
  fs.writeFileSync(filePath, bytes);
  return { path: filePath, size, bytes };
}

async function bodyBytes(body: Buffer | AsyncIterable<Buffer>, release: boolean): Promise<Buffer> {
  if (Buffer.isBuffer(body)) {
    const copy = Buffer.from(body);
    if (release) releaseView(body);
    return copy;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of body) {
    chunks.push(Buffer.from(chunk));
    if (release) releaseView(chunk);
  }
  return Buffer.concat(chunks);
}

describe('readPooledFiles', () => {
  it('gives each file whole, in order: small ones as views of shared blocks, larger ones block by block', async () => {
    const small = 700 * 1024;
    const files = [
      ...Array.from({ length: 7 }, (_, i) => file(`s${i}`, small)),
      file('big', 2 * BLOCK_BYTES + 5),
      file('exact', BLOCK_BYTES),
      file('tiny', 1),
      file('last', small),
    ];
    const bodies: Array<Buffer | AsyncIterable<Buffer>> = [];
    const read: Buffer[] = [];
    for await (const { file: given, body } of readPooledFiles(files[Symbol.iterator]())) {
      expect(given).toBe(files[read.length]);
      bodies.push(body);
      read.push(await bodyBytes(body, false));
    }
    expect(read.map((bytes, i) => bytes.equals(files[i].bytes))).toEqual(files.map(() => true));
    // five 700 KiB files fill a 4 MiB block, the sixth starts the next one
    const blockOf = (i: number): ArrayBufferLike => (bodies[i] as Buffer).buffer;
    expect(new Set([0, 1, 2, 3, 4].map(blockOf)).size).toBe(1);
    expect(blockOf(5)).toBe(blockOf(6));
    expect(blockOf(5)).not.toBe(blockOf(0));
    expect(Buffer.isBuffer(bodies[7])).toBe(false);
    expect(Buffer.isBuffer(bodies[8])).toBe(true);
    expect(blockOf(9)).toBe(blockOf(10));
  });

  it('gives a block back to the pool once every file read into it was released', async () => {
    const files = [file('a', 1000), file('b', 2000)];
    const bodies: Buffer[] = [];
    for await (const { body } of readPooledFiles(files[Symbol.iterator]())) bodies.push(body as Buffer);
    expect(bodies[0].buffer).toBe(bodies[1].buffer);
    releaseView(bodies[0]);
    expect(takeBlock(10).buffer).not.toBe(bodies[0].buffer);
    releaseView(bodies[1]);
    expect(takeBlock(10).buffer).toBe(bodies[0].buffer);
  });

  it('gives the files before one that cannot be looked up, then its error', async () => {
    const files = [file('ok1', 100), file('ok2', 100)];
    function* lookups(): Generator<TestFile> {
      yield* files;
      throw new Error('unknown instance');
    }
    const read: Buffer[] = [];
    await expect(
      (async () => {
        for await (const { body } of readPooledFiles(lookups())) read.push(await bodyBytes(body, true));
      })(),
    ).rejects.toThrow('unknown instance');
    expect(read).toEqual(files.map((f) => f.bytes));
  });

  it('fails on a file shorter than its indexed size or missing, instead of sending fewer bytes', async () => {
    const short = { ...file('short', 10), size: 20 };
    await expect(readPooledFiles([short][Symbol.iterator]()).next()).rejects.toThrow('ends after 10 bytes');
    const missing = { path: path.join(directory, 'missing'), size: 10 };
    await expect(readPooledFiles([missing][Symbol.iterator]()).next()).rejects.toThrow(/ENOENT/);
    const bigShort = { ...file('big-short', BLOCK_BYTES + 10), size: BLOCK_BYTES + 20 };
    const item = await readPooledFiles([bigShort][Symbol.iterator]()).next();
    await expect(bodyBytes(item.value.body, true)).rejects.toThrow(`ends after ${BLOCK_BYTES + 10} bytes`);
  });

  it('stops reading when the consumer stops, and the next reader gets its own bytes', async () => {
    const files = Array.from({ length: 20 }, (_, i) => file(`stop${i}`, 600 * 1024));
    const reader = readPooledFiles(files[Symbol.iterator]());
    const first = await reader.next();
    const kept = Buffer.from(first.value.body as Buffer);
    await reader.return(undefined);
    expect(kept.equals(files[0].bytes)).toBe(true);
    // nothing was released: the blocks of the stopped reader are not reused under the views it gave
    const again: Buffer[] = [];
    for await (const { body } of readPooledFiles(files[Symbol.iterator]())) again.push(await bodyBytes(body, true));
    expect(again.every((bytes, i) => bytes.equals(files[i].bytes))).toBe(true);
    expect((first.value.body as Buffer).equals(files[0].bytes)).toBe(true);
  });
});
