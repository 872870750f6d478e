/**
 * Reusable read blocks for the frames of big multi-frame instances.
 *
 * Why: reading a 50 MB instance into fresh buffers on every request makes V8 count 50 MB of new
 * external memory, which triggers full garbage collections of the whole heap (they cost more than
 * sending the bytes). A block whose bytes were written out is given back here and read into again.
 *
 * A block is lent as views (one per frame) and comes back only once every one of those views was
 * released, so a consumer that keeps a frame, or never releases anything, simply lets the block be
 * collected as any buffer. Releasing a buffer that was not lent does nothing.
 */
import { FreeList } from '../core/free-list';

/** Size of a pooled block; larger reads get a buffer of their own. */
export const BLOCK_BYTES = 4 << 20;
/** Blocks kept for reuse at most (memory held while idle). */
const KEEP_BLOCKS = 4;
/** Idle blocks are dropped after this long without a release. */
const IDLE_MS = 10_000;

const free = new FreeList<ArrayBuffer>(KEEP_BLOCKS, IDLE_MS);
const pooled = new WeakSet<ArrayBuffer>();
// Weak: a block whose views are never released is collected with them.
const lent = new WeakMap<ArrayBuffer, Set<Uint8Array>>();

/** A buffer of `size` bytes (content undefined): a pooled block when it fits one. */
export function takeBlock(size: number): Buffer {
  if (size > BLOCK_BYTES) return Buffer.allocUnsafe(size);
  let block = free.take();
  if (!block) {
    block = new ArrayBuffer(BLOCK_BYTES);
    pooled.add(block);
  }
  return Buffer.from(block, 0, size);
}

/** Lends the block under `views` (views of a buffer from takeBlock): it comes back once each view was released. */
export function lendViews(views: readonly Uint8Array[]): void {
  const block = views[0]?.buffer;
  if (!(block instanceof ArrayBuffer) || !pooled.has(block) || lent.has(block)) return;
  if (views.some((view) => view.buffer !== block)) return;
  lent.set(block, new Set(views));
}

/** The consumer is done with this view (its bytes were written out): its block may be read into again. */
export function releaseView(view: Uint8Array): void {
  const block = view.buffer;
  if (!(block instanceof ArrayBuffer)) return;
  const views = lent.get(block);
  if (!views?.delete(view) || views.size > 0) return;
  lent.delete(block);
  free.give(block);
}

/** Gives back a buffer from takeBlock that nothing holds any more (a scratch copy): its block may be read into again. */
export function giveBack(buffer: Buffer): void {
  lendViews([buffer]);
  releaseView(buffer);
}
