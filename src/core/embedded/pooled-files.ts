/**
 * Whole stored files read into pooled blocks (src/dicom/block-pool.ts), for answers that send many
 * files one after the other (WADO-RS retrieve of a series or a study).
 *
 * Why: a fresh buffer per file (a CT slice is 512 KiB) is new external memory for V8 on every file,
 * which triggers full garbage collections and lets the RSS grow with the size of the answer. Here
 * consecutive files that fit together are read into one 4 MiB block (each file a view of it, read in
 * parallel), the next block is read while the files of the current one are sent, and a block comes
 * back to the pool once every one of its views was released (releaseView) after being written. A file
 * larger than a block is read block by block when its turn comes.
 */
import fs from 'node:fs';
import { promisify } from 'node:util';
import { BLOCK_BYTES, lendViews, takeBlock } from '../../dicom/block-pool';

// The callback API, not FileHandle: three thread-pool calls per file either way, but half the CPU
// time around them (measured on a 500-file series: 17 ms instead of 30 ms of JavaScript).
const open = promisify(fs.open);
const read = promisify(fs.read);
const close = promisify(fs.close);

/** A file to read whole: `size` bytes from its start (as the index knows it). */
export interface FileToRead {
  path: string;
  size: number;
}

export interface PooledFile<T extends FileToRead> {
  file: T;
  /** The whole file as a view of a pooled block, or, for a file larger than a block, its blocks in order. */
  body: Buffer | AsyncIterable<Buffer>;
}

/** Reads `target.length` bytes at `position`; a file that ends first is an error (the index says it is longer). */
async function readFully(fd: number, target: Buffer, position: number, path: string): Promise<void> {
  for (let done = 0; done < target.length; ) {
    const { bytesRead } = await read(fd, target, done, target.length - done, position + done);
    if (bytesRead === 0) throw new Error(`${path} ends after ${position + done} bytes`);
    done += bytesRead;
  }
}

async function readFile(path: string, target: Buffer): Promise<void> {
  const fd = await open(path, 'r');
  try {
    await readFully(fd, target, 0, path);
  } finally {
    await close(fd);
  }
}

/** Files that fit together into one block, read in parallel; each is a view lent from the block. */
async function readIntoBlock(files: readonly FileToRead[]): Promise<Buffer[]> {
  const block = takeBlock(files.reduce((sum, file) => sum + file.size, 0));
  let at = 0;
  const views = files.map((file) => block.subarray(at, (at += file.size)));
  await Promise.all(files.map((file, i) => readFile(file.path, views[i])));
  // empty views are never written, hence never released: the block would simply not come back
  lendViews(views.filter((view) => view.length > 0));
  return views;
}

/** A file larger than a block, block after block, the next one read while the current one is consumed. */
async function* blocksOf(file: FileToRead): AsyncGenerator<Buffer> {
  const fd = await open(file.path, 'r');
  let ahead: Promise<Buffer> | undefined;
  const readAt = async (position: number): Promise<Buffer> => {
    const block = takeBlock(Math.min(BLOCK_BYTES, file.size - position));
    await readFully(fd, block, position, file.path);
    lendViews([block]);
    return block;
  };
  try {
    for (let position = 0; position < file.size; position += BLOCK_BYTES) {
      const current = await (ahead ?? readAt(position));
      ahead = position + BLOCK_BYTES < file.size ? readAt(position + BLOCK_BYTES) : undefined;
      ahead?.catch(() => undefined); // seen at its turn, or not at all when the consumer stops first
      yield current;
    }
  } finally {
    // the file is closed once a read the consumer no longer wants has ended
    await ahead?.catch(() => undefined);
    await close(fd);
  }
}

type Pulled<T> = IteratorResult<T> | { error: unknown };

/**
 * The files of `files` in order, each whole (see the top of this file), with the next block read ahead.
 * `files` may throw (an unknown instance): the files before it are still given, then the error.
 * The consumer gives each Buffer back with releaseView once it is done with it; one it keeps is simply
 * collected with its block.
 */
export async function* readPooledFiles<T extends FileToRead>(files: Iterator<T>): AsyncGenerator<PooledFile<T>> {
  let pending: Pulled<T> | undefined;
  const pull = (): Pulled<T> => {
    const pulled = pending;
    pending = undefined;
    if (pulled) return pulled;
    try {
      return files.next();
    } catch (error) {
      return { error };
    }
  };
  /** The next read: a run of files that fit one block, a file larger than a block, or a failure. */
  const nextRead = (): Promise<Array<PooledFile<T>>> | undefined => {
    const first = pull();
    if ('error' in first) return Promise.reject(first.error);
    if (first.done) return undefined;
    if (first.value.size > BLOCK_BYTES) return Promise.resolve([{ file: first.value, body: blocksOf(first.value) }]);
    const run = [first.value];
    let bytes = first.value.size;
    for (;;) {
      const next = pull();
      if ('error' in next || next.done || bytes + next.value.size > BLOCK_BYTES) {
        pending = next;
        break;
      }
      run.push(next.value);
      bytes += next.value.size;
    }
    return readIntoBlock(run).then((views) => run.map((file, i) => ({ file, body: views[i] })));
  };
  let reading = nextRead();
  while (reading) {
    const current = await reading;
    reading = nextRead();
    reading?.catch(() => undefined); // seen at its turn, or not at all when the consumer stops first
    yield* current;
  }
}
