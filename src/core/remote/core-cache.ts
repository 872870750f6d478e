/**
 * Caches of the remote core that stay exact: an entry is used only while the core's change log has not moved
 * (GET /changes?last costs well under a millisecond; Orthanc 1.10's /tools/lookup costs ~20 ms on 10k instances,
 * and a file read per study makes a study search slow). Any new or deleted resource in the core bumps its last
 * change, so a cached answer is never older than the core's state at the start of the request.
 */
import type { OrthancHttp } from './orthanc-http';
import { Lru } from '../lru';

/**
 * A token that changes whenever the core's content does; concurrent callers share one request. Undefined when unknown.
 * The last change number alone is not enough: Orthanc 1.10 records no change for a deletion and drops the deleted
 * resources' change entries, so a delete of an old resource leaves it as it was. The instance count catches those,
 * and an addition always raises the change number (sequence numbers are never reused).
 */
export class ChangeGeneration {
  private pending?: Promise<string | undefined>;

  constructor(private readonly http: OrthancHttp) {}

  current(): Promise<string | undefined> {
    if (!this.pending) {
      const pending = Promise.all([
        this.http.json<{ Last?: unknown }>('GET', '/changes?last'),
        this.http.json<{ CountInstances?: unknown }>('GET', '/statistics'),
      ]).then(
        ([changes, statistics]) =>
          typeof changes.Last === 'number' && typeof statistics.CountInstances === 'number' ? `${changes.Last}/${statistics.CountInstances}` : undefined,
        () => undefined,
      );
      this.pending = pending;
      void pending.finally(() => {
        if (this.pending === pending) this.pending = undefined;
      });
    }
    return this.pending;
  }
}

/** Values remembered with the change generation they were read at. */
export class GenerationCache<V> {
  private readonly entries: Lru<string, { seq: string; value: V }>;

  constructor(capacity: number) {
    this.entries = new Lru(capacity);
  }

  /** The value cached at `seq`, or undefined. */
  get(key: string, seq: string | undefined): V | undefined {
    if (seq === undefined) return undefined;
    const entry = this.entries.get(key);
    return entry && entry.seq === seq ? entry.value : undefined;
  }

  has(key: string, seq: string | undefined): boolean {
    if (seq === undefined) return false;
    const entry = this.entries.get(key);
    return entry !== undefined && entry.seq === seq;
  }

  set(key: string, seq: string | undefined, value: V): void {
    if (seq !== undefined) this.entries.set(key, { seq, value });
  }

  clear(): void {
    this.entries.clear();
  }
}
