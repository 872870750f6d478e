import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/** Size and MD5 (hex) of a stored file, as the attachments table records them. */
export interface FileDigest {
  size: number;
  md5: string;
}

/** Below this, hashing on the calling thread costs less than a message to the hashing thread and back. */
const INLINE_BYTES = 64 * 1024;
/** Read size of the hashing thread for files. */
const READ_BYTES = 1 << 20;

/** Size and MD5 of bytes small enough to be hashed on the calling thread; undefined for larger ones. */
export function smallDigest(bytes: Buffer): FileDigest | undefined {
  return bytes.length < INLINE_BYTES ? { size: bytes.length, md5: createHash('md5').update(bytes).digest('hex') } : undefined;
}

/** The hashing thread, plain JavaScript run with `eval`: the same under ts-jest and in the built server. */
const THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const chunk = Buffer.allocUnsafe(${READ_BYTES});
parentPort.on('message', ({ id, file }) => {
  try {
    const hash = createHash('md5');
    let size = 0;
    const fd = fs.openSync(file, 'r');
    try {
      for (let n; (n = fs.readSync(fd, chunk, 0, chunk.length, null)) > 0; size += n) hash.update(chunk.subarray(0, n));
    } finally {
      fs.closeSync(fd);
    }
    parentPort.postMessage({ id, size, md5: hash.digest('hex') });
  } catch (error) {
    parentPort.postMessage({ id, error: { message: error.message, code: error.code } });
  }
});
`;

interface ThreadAnswer {
  id: number;
  size?: number;
  md5?: string;
  error?: { message: string; code?: string };
}

interface Waiter {
  resolve: (digest: FileDigest) => void;
  reject: (error: Error) => void;
}

/**
 * MD5 of the files being stored (Orthanc records one per attachment), computed on a thread of its own: at about
 * 2 ms of CPU per MB it is the largest cost of storing an instance, and on the main thread it would hold up the
 * reception and indexing of the other instances while the second core idles. The thread reads the file itself:
 * bytes still in memory are hashed from the file they were just written to, because a read from the page cache
 * costs that thread less than a copy handed over costs the main thread (a copy, then a transfer of about 50 µs
 * for 512 KB). The thread starts at the first file, and does not keep the process alive.
 */
export class Md5Thread {
  private current: { worker: Worker; waiting: Map<number, Waiter> } | undefined;
  private nextId = 0;

  /** Size and MD5 of a complete file, read on the hashing thread: it must stay where it is until the answer. */
  ofFile(file: string): Promise<FileDigest> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const thread = this.thread();
      thread.waiting.set(id, { resolve, reject });
      thread.worker.postMessage({ id, file });
    });
  }

  async close(): Promise<void> {
    const worker = this.current?.worker;
    this.current = undefined;
    await worker?.terminate();
  }

  private thread(): { worker: Worker; waiting: Map<number, Waiter> } {
    if (this.current) return this.current;
    const worker = new Worker(THREAD_SOURCE, { eval: true });
    const waiting = new Map<number, Waiter>();
    worker.unref();
    worker.on('message', (answer: ThreadAnswer) => {
      const waiter = waiting.get(answer.id);
      if (!waiter) return;
      waiting.delete(answer.id);
      if (answer.error) waiter.reject(Object.assign(new Error(answer.error.message), { code: answer.error.code }));
      else waiter.resolve({ size: answer.size as number, md5: answer.md5 as string });
    });
    // a thread that died fails what it had, and the next input starts a new one
    const fail = (error: Error): void => {
      if (this.current?.worker === worker) this.current = undefined;
      for (const waiter of waiting.values()) waiter.reject(error);
      waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the hashing thread stopped (exit code ${code})`)));
    this.current = { worker, waiting };
    return this.current;
  }
}
