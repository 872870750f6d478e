/**
 * Bounds the CPU-heavy work of image requests (rendering, thumbnails, transcoding): at most `concurrency`
 * run at once, at most `queueSize` wait for a turn (first come, first served), and one more is refused at
 * once with 503 and Retry-After rather than piling up latency and memory for everyone.
 * One limiter per gateway app (per configuration), shared by WADO-RS rendered/frames and WADO-URI.
 */
import type { GatewayConfig } from '../config/gateway-config';
import { HttpError } from './errors';

/** Seconds a refused client is told to wait: image work takes tens of milliseconds. */
const RETRY_AFTER_SECONDS = 1;

export class WorkLimiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  private refusedCount = 0;

  constructor(
    readonly concurrency: number,
    readonly queueSize: number,
  ) {}

  /** Runs `work` when a slot is free; throws HttpError 503 when the queue is full. */
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.active >= this.concurrency) {
      if (this.waiting.length >= this.queueSize) {
        this.refusedCount++;
        throw new HttpError(
          503,
          'The server is busy with image work',
          `${this.active} renderings or transcodings are running and ${this.waiting.length} are waiting; retry later`,
          { 'Retry-After': String(RETRY_AFTER_SECONDS) },
        );
      }
      // the slot is handed over by the finishing task, so `active` never drops in between
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.active++;
    }
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }

  /** For the metrics. */
  stats(): { active: number; waiting: number; refused: number } {
    return { active: this.active, waiting: this.waiting.length, refused: this.refusedCount };
  }
}

const limiters = new WeakMap<GatewayConfig, WorkLimiter>();

/** The image work limiter of a gateway (HttpLimits.ImageWorkConcurrency / ImageWorkQueueSize), created on first use. */
export function imageWorkLimiter(config: GatewayConfig): WorkLimiter {
  let limiter = limiters.get(config);
  if (!limiter) {
    limiter = new WorkLimiter(config.httpLimits.imageWorkConcurrency, config.httpLimits.imageWorkQueueSize);
    limiters.set(config, limiter);
  }
  return limiter;
}
