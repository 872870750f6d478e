import { FreeList } from '../../src/core/free-list';

describe('FreeList', () => {
  afterEach(() => jest.useRealTimers());

  it('gives back what was kept, at most `keep` items, each once', () => {
    const list = new FreeList<object>(2, 10_000);
    const [a, b, c] = [{}, {}, {}];
    list.give(a);
    list.give(a);
    list.give(b);
    list.give(c);
    expect(list.take()).toBe(b);
    expect(list.take()).toBe(a);
    expect(list.take()).toBeUndefined();
  });

  it('drops what it keeps after being idle, and counts idleness from the last give-back', () => {
    jest.useFakeTimers();
    const list = new FreeList<number>(4, 1_000);
    list.give(1);
    jest.advanceTimersByTime(800);
    list.give(2);
    jest.advanceTimersByTime(800);
    expect(list.take()).toBe(2);
    list.give(2);
    jest.advanceTimersByTime(1_001);
    expect(list.take()).toBeUndefined();
  });
});
