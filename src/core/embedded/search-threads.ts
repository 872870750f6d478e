/**
 * Searches of the embedded index on threads of their own, while the main thread is busy.
 *
 * A search is synchronous SQL plus the building of its answer: on the main thread it holds up every other request
 * while the other cores idle. When many clients search at once (16 viewers, a PACS worklist), the main thread is
 * the bottleneck; a search thread then runs the search on a connection of its own to the same index (WAL: readers
 * see every committed write and never wait for the writer). A lone search runs on the main thread, because handing
 * it over and back costs more than it saves (~0.3 ms of latency measured).
 *
 * "Busy" is read from the event loop (the main thread did not wait for I/O at all since the previous search), and
 * stays so while searches wait on the threads.
 * Threads start on the first busy search and end after a while without work, so an idle gateway keeps its memory.
 * The thread script is the built search-thread.js: run from the TypeScript sources (ts-jest) there is none, and
 * every search runs on the main thread.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { getDefaultEncoding } from '../../dicom/charset';
import { CoreError, type FindRequest, type Resource } from '../native-model';

/** What a search thread is started with. */
export interface SearchThreadData {
  indexDirectory: string;
  storageDirectory: string;
}

/** A search handed to a thread, and its answer. */
export interface SearchAsked {
  id: number;
  request: FindRequest;
  /** The process-wide DefaultEncoding (it can change at run time): for values read from files without a charset. */
  defaultEncoding: string;
}

export type SearchAnswered =
  | { id: number; resources: Resource[]; error?: undefined }
  | { id: number; resources?: undefined; error: { status: number; message: string; details?: string } };

/** Less idle time than this since the previous search (ms), and the main thread counts as busy. */
const BUSY_BELOW_IDLE_MS = 0.05;
/** A thread without a search for this long ends; the next busy search starts it again (in ~50 ms). */
const THREAD_IDLE_MS = 10_000;
/**
 * A search makes a few kB of short-lived objects: a small young generation is enough, where V8's default (up to
 * 3 x 16 MB) would add its full size to the process's memory under load.
 */
const THREAD_YOUNG_GENERATION_MB = 8;
const THREAD_SCRIPT = path.join(__dirname, 'search-thread.js');

interface Waiter {
  resolve: (resources: Resource[]) => void;
  reject: (error: Error) => void;
}

class SearchThread {
  readonly waiting = new Map<number, Waiter>();
  private readonly worker: Worker;
  private idleTimer?: NodeJS.Timeout;

  constructor(
    data: SearchThreadData,
    private readonly onEnd: (thread: SearchThread) => void,
  ) {
    this.worker = new Worker(THREAD_SCRIPT, { workerData: data, resourceLimits: { maxYoungGenerationSizeMb: THREAD_YOUNG_GENERATION_MB } });
    this.worker.unref();
    this.worker.on('message', (answer: SearchAnswered) => this.answered(answer));
    const fail = (error: Error): void => {
      this.onEnd(this);
      for (const waiter of this.waiting.values()) waiter.reject(error);
      this.waiting.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new CoreError(500, `The search thread ended (exit code ${code})`)));
  }

  search(id: number, request: FindRequest): Promise<Resource[]> {
    clearTimeout(this.idleTimer);
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.worker.postMessage({ id, request, defaultEncoding: getDefaultEncoding() } satisfies SearchAsked);
    });
  }

  private answered(answer: SearchAnswered): void {
    const waiter = this.waiting.get(answer.id);
    this.waiting.delete(answer.id);
    if (this.waiting.size === 0) this.idleTimer = setTimeout(() => void this.terminate(), THREAD_IDLE_MS).unref();
    if (!waiter) return;
    if (answer.error) waiter.reject(new CoreError(answer.error.status, answer.error.message, answer.error.details));
    else waiter.resolve(answer.resources);
  }

  /** Out of its slot first: no search is handed to a thread that is ending. */
  terminate(): Promise<number> {
    clearTimeout(this.idleTimer);
    this.onEnd(this);
    return this.worker.terminate();
  }
}

export class SearchThreads {
  /** Searches run so far, by where they ran (the metrics show them). */
  readonly counts = { mainThread: 0, searchThreads: 0 };
  private readonly threads: Array<SearchThread | undefined>;
  private nextId = 0;
  private lastIdleMs = performance.eventLoopUtilization().idle;

  /** `threads`: at most that many search threads; by default one per core beyond the main thread's, up to 4. */
  constructor(
    private readonly data: SearchThreadData,
    threads = Math.min(4, availableParallelism() - 1),
  ) {
    this.threads = new Array<SearchThread | undefined>(existsSync(THREAD_SCRIPT) ? Math.max(0, threads) : 0).fill(undefined);
  }

  /**
   * The search on the least busy thread when searches come in faster than one at a time; else undefined (run it
   * here). A busy thread still takes the search: run here, it would hold up the answers the threads have ready
   * (measured: a main thread that also searches once the threads have 4 or 8 waiting serves 25% fewer clients).
   */
  offload(request: FindRequest): Promise<Resource[]> | undefined {
    if (this.threads.length === 0 || !(this.mainThreadBusy() || this.threadsBusy())) {
      this.counts.mainThread++;
      return undefined;
    }
    let slot = 0;
    for (let i = 1; i < this.threads.length; i++) {
      if ((this.threads[i]?.waiting.size ?? 0) < (this.threads[slot]?.waiting.size ?? 0)) slot = i;
    }
    let thread = this.threads[slot];
    if (!thread) {
      thread = new SearchThread(this.data, (ended) => {
        if (this.threads[slot] === ended) this.threads[slot] = undefined;
      });
      this.threads[slot] = thread;
    }
    this.counts.searchThreads++;
    return thread.search(++this.nextId, request);
  }

  async close(): Promise<void> {
    const running = this.threads.filter((thread): thread is SearchThread => thread !== undefined);
    this.threads.fill(undefined);
    await Promise.all(running.map((thread) => thread.terminate()));
  }

  /** Searches are waiting on threads: the clients are searching at the same time. */
  private threadsBusy(): boolean {
    return this.threads.some((thread) => thread !== undefined && thread.waiting.size > 0);
  }

  private mainThreadBusy(): boolean {
    const idle = performance.eventLoopUtilization().idle;
    const busy = idle - this.lastIdleMs < BUSY_BELOW_IDLE_MS;
    this.lastIdleMs = idle;
    return busy;
  }
}
