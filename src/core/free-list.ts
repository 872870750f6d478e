/**
 * Things kept for reuse (read blocks, part buffers): at most `keep` of them, all dropped after `idleMs` without a
 * give-back, so that an idle process does not hold on to memory it needed once.
 */
export class FreeList<T> {
  private readonly items: T[] = [];
  private idleTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly keep: number,
    private readonly idleMs: number,
  ) {}

  /** One kept item, or undefined when none is. */
  take(): T | undefined {
    return this.items.pop();
  }

  /** Keeps an item for reuse (unless enough are kept, or it is kept already). */
  give(item: T): void {
    if (this.items.length >= this.keep || this.items.includes(item)) return;
    this.items.push(item);
    this.idleTimer?.refresh();
    this.idleTimer ??= setTimeout(() => {
      this.items.length = 0;
      this.idleTimer = undefined;
    }, this.idleMs).unref();
  }
}
