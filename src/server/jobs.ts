/**
 * Orthanc-style jobs, in memory: what the asynchronous variants ("Synchronous": false / "Asynchronous": true)
 * of the client and network operations answer with ({ID, Path}), and what /jobs reports.
 *
 * - At most CONCURRENT_JOBS run at once (Orthanc's ConcurrentJobs default); the others wait, highest Priority first.
 * - A job is an async function receiving an AbortSignal: cancel aborts it and the job ends in Failure with
 *   Orthanc's "Canceled job" error (code 37), keeping the Content it had published so far.
 * - Pause only applies to jobs that have not started (Pending): pausing a running transfer would mean
 *   restarting it from scratch on resume, so it answers 400 (cancel then resubmit does that explicitly).
 * - Finished jobs are kept in a bounded history (the oldest finished ones are forgotten first).
 * - Nothing survives a restart (Orthanc can persist its jobs in the database; we do not).
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { CoreError } from '../core/native-model';
import { HttpError, orthancErrorOf } from './errors';

export type JobState = 'Pending' | 'Running' | 'Success' | 'Failure' | 'Paused' | 'Retry';
export type JobContent = Record<string, unknown>;

export interface JobContext {
  signal: AbortSignal;
  /** Percent done, 0-100 (clamped; 100 is only reported once the job succeeded). */
  progress(percent: number): void;
  /** Publishes the Content so far: a canceled or failed job still shows it. */
  setContent(content: JobContent): void;
  /** Publishes a file the job produced, downloaded at GET /jobs/{id}/{name} (absent when the work runs outside a job). */
  setOutput?(name: string, output: JobOutput): void;
}

/** A job's product (Orthanc: the "archive" of archive and media jobs). */
export interface JobOutput {
  contentType: string;
  filename: string;
  /** Its bytes; undefined once discarded. */
  open(): Readable | undefined;
  /** Frees what it holds (a temporary file); called when its job is forgotten or the engine closes. */
  discard(): void;
}

/** Runs the job; resolves to its final Content. */
export type JobWork = (context: JobContext) => Promise<JobContent>;

export interface JobSpec {
  type: string;
  priority?: number;
  /** Content shown before the work publishes any. */
  content?: JobContent;
  work: JobWork;
}

export interface JobEngineOptions {
  concurrency?: number;
  historySize?: number;
}

export const CONCURRENT_JOBS = 2;
export const JOBS_HISTORY_SIZE = 100;
/** Orthanc's ErrorCode_CanceledJob. */
export const CANCELED_JOB: [string, number] = ['Canceled job', 37];

interface Job {
  id: string;
  spec: JobSpec;
  priority: number;
  state: JobState;
  progress: number;
  content: JobContent;
  created: Date;
  completed?: Date;
  /** Milliseconds spent running, over all runs (resubmit adds to it). */
  runtimeMs: number;
  startedAt?: number;
  errorCode: number;
  errorDescription: string;
  errorDetails?: string;
  controller?: AbortController;
  running?: Promise<void>;
  /** Order of submission: ties of priority run first come, first served. */
  sequence: number;
  outputs: Map<string, JobOutput>;
}

/** Orthanc's timestamps: ISO 8601 basic format, UTC, microseconds ("20180718T151802.412000"). */
export function orthancTimestamp(date: Date): string {
  const iso = date.toISOString(); // 2018-07-18T15:18:02.412Z
  return `${iso.slice(0, 19).replace(/[-:]/g, '')}.${iso.slice(20, 23)}000`;
}

/** ErrorCode / ErrorDescription / ErrorDetails of a failed job's error. */
function describeError(error: unknown): { code: number; description: string; details?: string } {
  const status = error instanceof HttpError ? error.status : error instanceof CoreError ? error.httpStatus : 500;
  const [description, code] = orthancErrorOf(status);
  const message = error instanceof Error ? error.message : String(error);
  const extra = error instanceof HttpError || error instanceof CoreError ? error.details : undefined;
  return { code, description, details: extra ? `${message}: ${extra}` : message };
}

export class JobEngine {
  private readonly jobs = new Map<string, Job>();
  private readonly concurrency: number;
  private readonly historySize: number;
  private sequence = 0;
  private closed = false;

  constructor(options: JobEngineOptions = {}) {
    this.concurrency = Math.max(1, options.concurrency ?? CONCURRENT_JOBS);
    this.historySize = Math.max(0, options.historySize ?? JOBS_HISTORY_SIZE);
  }

  submit(spec: JobSpec): string {
    if (this.closed) throw new HttpError(503, 'The jobs engine is stopped');
    const job: Job = {
      id: randomUUID(),
      spec,
      priority: spec.priority ?? 0,
      state: 'Pending',
      progress: 0,
      content: spec.content ?? {},
      created: new Date(),
      runtimeMs: 0,
      errorCode: 0,
      errorDescription: 'Success',
      sequence: this.sequence++,
      outputs: new Map(),
    };
    this.jobs.set(job.id, job);
    this.pump();
    return job.id;
  }

  has(id: string): boolean {
    return this.jobs.has(id);
  }

  /** An output a job published, or undefined. */
  output(id: string, name: string): JobOutput | undefined {
    return this.jobs.get(id)?.outputs.get(name);
  }

  /** Ids, oldest first (as Orthanc lists them, in no promised order). */
  ids(): string[] {
    return [...this.jobs.keys()];
  }

  /** The Orthanc JSON of a job, or undefined. */
  describe(id: string): JobContent | undefined {
    const job = this.jobs.get(id);
    if (!job) return undefined;
    const runtime = job.runtimeMs + (job.startedAt === undefined ? 0 : Date.now() - job.startedAt);
    return {
      ID: job.id,
      Type: job.spec.type,
      State: job.state,
      Progress: job.progress,
      Priority: job.priority,
      CreationTime: orthancTimestamp(job.created),
      ...(job.completed ? { CompletionTime: orthancTimestamp(job.completed) } : {}),
      EffectiveRuntime: Math.round(runtime) / 1000,
      ErrorCode: job.errorCode,
      ErrorDescription: job.errorDescription,
      ...(job.errorDetails ? { ErrorDetails: job.errorDetails } : {}),
      Content: job.content,
      Timestamp: orthancTimestamp(new Date()),
    };
  }

  /** Aborts a running job (it ends in Failure once its work stops), fails a waiting one at once; finished: no-op. */
  cancel(id: string): void {
    const job = this.require(id);
    if (job.state === 'Running') job.controller?.abort();
    else if (job.state === 'Pending' || job.state === 'Paused' || job.state === 'Retry') this.finishCanceled(job);
  }

  pause(id: string): void {
    const job = this.require(id);
    if (job.state === 'Running') {
      throw new HttpError(400, 'A running job cannot be paused by the gateway: cancel it, then resubmit it to start again');
    }
    if (job.state === 'Pending' || job.state === 'Retry') job.state = 'Paused';
  }

  resume(id: string): void {
    const job = this.require(id);
    if (job.state !== 'Paused') throw new HttpError(400, `Only a paused job can be resumed (this one is ${job.state})`);
    job.state = 'Pending';
    this.pump();
  }

  /** A failed (or canceled) job runs again from the start. */
  resubmit(id: string): void {
    const job = this.require(id);
    if (job.state !== 'Failure') throw new HttpError(400, `Only a failed job can be resubmitted (this one is ${job.state})`);
    Object.assign(job, { state: 'Pending', progress: 0, completed: undefined, errorCode: 0, errorDescription: 'Success', errorDetails: undefined });
    job.sequence = this.sequence++;
    this.pump();
  }

  /** Cancels every job and waits (bounded) for the running ones to stop, so that none writes to a closed core. */
  async close(waitMs = 5000): Promise<void> {
    this.closed = true;
    const running: Promise<void>[] = [];
    for (const job of this.jobs.values()) {
      if (job.running) running.push(job.running);
      job.controller?.abort();
      for (const output of job.outputs.values()) output.discard();
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, waitMs)));
    await Promise.race([Promise.allSettled(running), timeout]);
    clearTimeout(timer);
  }

  private require(id: string): Job {
    const job = this.jobs.get(id);
    if (!job) throw new HttpError(404, `Unknown job: ${id}`);
    return job;
  }

  private runningCount(): number {
    let count = 0;
    for (const job of this.jobs.values()) if (job.state === 'Running') count++;
    return count;
  }

  private nextPending(): Job | undefined {
    let best: Job | undefined;
    for (const job of this.jobs.values()) {
      if (job.state !== 'Pending') continue;
      if (!best || job.priority > best.priority || (job.priority === best.priority && job.sequence < best.sequence)) best = job;
    }
    return best;
  }

  private pump(): void {
    while (!this.closed && this.runningCount() < this.concurrency) {
      const job = this.nextPending();
      if (!job) return;
      this.start(job);
    }
  }

  private start(job: Job): void {
    const controller = new AbortController();
    job.controller = controller;
    job.state = 'Running';
    job.startedAt = Date.now();
    const context: JobContext = {
      signal: controller.signal,
      progress: (percent) => {
        // a late report of a job already stopped must not change it
        if (job.controller === controller && job.state === 'Running') job.progress = Math.max(0, Math.min(99, Math.floor(percent)));
      },
      setContent: (content) => {
        if (job.controller === controller) job.content = content;
      },
      setOutput: (name, output) => {
        if (job.controller === controller) job.outputs.set(name, output);
        else output.discard();
      },
    };
    job.running = job.spec
      .work(context)
      .then(
        (content) => {
          if (controller.signal.aborted) return this.finishCanceled(job);
          job.content = content;
          job.progress = 100;
          this.finish(job, 'Success');
        },
        (error: unknown) => {
          if (controller.signal.aborted) return this.finishCanceled(job);
          const { code, description, details } = describeError(error);
          Object.assign(job, { errorCode: code, errorDescription: description, errorDetails: details });
          this.finish(job, 'Failure');
        },
      )
      .finally(() => {
        job.running = undefined;
        this.pump();
      });
  }

  private finishCanceled(job: Job): void {
    const [description, code] = CANCELED_JOB;
    Object.assign(job, { errorCode: code, errorDescription: description, errorDetails: undefined });
    this.finish(job, 'Failure');
  }

  private finish(job: Job, state: 'Success' | 'Failure'): void {
    if (job.startedAt !== undefined) job.runtimeMs += Date.now() - job.startedAt;
    job.startedAt = undefined;
    job.state = state;
    job.completed = new Date();
    job.controller = undefined;
    this.trimHistory();
  }

  /** Forgets the oldest finished jobs beyond the history size (Map order = insertion order). */
  private trimHistory(): void {
    let finished = 0;
    for (const job of this.jobs.values()) if (job.state === 'Success' || job.state === 'Failure') finished++;
    for (const job of this.jobs.values()) {
      if (finished <= this.historySize) return;
      if (job.state === 'Success' || job.state === 'Failure') {
        for (const output of job.outputs.values()) output.discard();
        this.jobs.delete(job.id);
        finished--;
      }
    }
  }
}

const engines = new WeakMap<object, JobEngine>();

/** The jobs engine of a core (one per gateway app), created on first use. */
export function jobsOf(core: object): JobEngine {
  let engine = engines.get(core);
  if (!engine) {
    engine = new JobEngine();
    engines.set(core, engine);
  }
  return engine;
}

/** Whether a request body asks for a job: Orthanc accepts "Synchronous": false and "Asynchronous": true. */
export function isAsynchronous(body: Record<string, unknown>): boolean {
  return body.Synchronous === false || body.Asynchronous === true;
}

/** "Priority" of an asynchronous request (Orthanc: an integer, higher first). */
export function priorityOf(body: Record<string, unknown>): number {
  const value = body.Priority;
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new HttpError(400, 'Field "Priority" must be an integer');
  return value;
}

/** Submits a job and answers what Orthanc answers for an asynchronous call. */
export function submitJob(engine: JobEngine, spec: JobSpec): { ID: string; Path: string } {
  const id = engine.submit(spec);
  return { ID: id, Path: `/jobs/${id}` };
}
