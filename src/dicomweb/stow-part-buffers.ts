/**
 * Reusable buffers for the STOW-RS parts that stay in memory until they are stored.
 *
 * Why: a part waits in memory for its turn to be stored (several per request), long enough to outlive a young
 * generation collection; fresh buffers would then count as new external memory in V8's old generation, and every
 * 64 MB of them starts a full collection of the whole heap (measured: 16 instead of 1 over 500 CT instances, and
 * twice the garbage collector's CPU). A buffer given back after its store is received into again.
 *
 * A buffer must be given back only once nothing reads it any more (its store settled); one that is never given
 * back is simply collected.
 */
import { FreeList } from '../core/free-list';

/** Size of each buffer: the largest part kept in memory. */
export const PART_BUFFER_BYTES = 1 << 20;
/** Buffers kept for reuse at most: the parts in flight of a few parallel requests. */
const KEEP_BUFFERS = 32;
/** Idle buffers are dropped after this long without a give-back. */
const IDLE_MS = 10_000;

const free = new FreeList<Buffer>(KEEP_BUFFERS, IDLE_MS);

/** A buffer of PART_BUFFER_BYTES (contents undefined). */
export function takePartBuffer(): Buffer {
  return free.take() ?? Buffer.allocUnsafeSlow(PART_BUFFER_BYTES);
}

/** Gives back a buffer of takePartBuffer that nothing reads any more. */
export function givePartBuffer(buffer: Buffer): void {
  if (buffer.length === PART_BUFFER_BYTES) free.give(buffer);
}
