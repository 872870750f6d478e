import { WorkLimiter } from '../../src/server/work-limiter';
import { HttpError } from '../../src/server/errors';

/** A task that runs until released; `started` says whether the limiter let it begin. */
function gate(): { work: () => Promise<string>; release: (value: string) => void; started: () => boolean } {
  let started = false;
  let release: (value: string) => void = () => undefined;
  const done = new Promise<string>((resolve) => (release = resolve));
  return {
    work: () => {
      started = true;
      return done;
    },
    release: (value) => release(value),
    started: () => started,
  };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('WorkLimiter', () => {
  it('runs `concurrency` tasks, queues `queueSize` more in order, refuses the next with 503 and Retry-After', async () => {
    const limiter = new WorkLimiter(2, 1);
    const [a, b, c] = [gate(), gate(), gate()];
    const runs = [limiter.run(a.work), limiter.run(b.work), limiter.run(c.work)];
    await tick();
    expect([a.started(), b.started(), c.started()]).toEqual([true, true, false]);
    expect(limiter.stats()).toEqual({ active: 2, waiting: 1, refused: 0 });

    const refused = await limiter.run(async () => 'never').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(HttpError);
    expect(refused).toMatchObject({ status: 503, headers: { 'Retry-After': '1' } });
    expect(limiter.stats().refused).toBe(1);

    // a finished task hands its slot to the first waiting one
    b.release('b');
    await tick();
    expect(c.started()).toBe(true);
    expect(limiter.stats()).toEqual({ active: 2, waiting: 0, refused: 1 });
    a.release('a');
    c.release('c');
    expect(await Promise.all(runs)).toEqual(['a', 'b', 'c']);
    expect(limiter.stats()).toEqual({ active: 0, waiting: 0, refused: 1 });
  });

  it('a failing task frees its slot too', async () => {
    const limiter = new WorkLimiter(1, 0);
    await expect(limiter.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await limiter.run(async () => 'next')).toBe('next');
    expect(limiter.stats()).toEqual({ active: 0, waiting: 0, refused: 0 });
  });

  it('with a queue of 0, only `concurrency` tasks are accepted at once', async () => {
    const limiter = new WorkLimiter(1, 0);
    const a = gate();
    const run = limiter.run(a.work);
    await expect(limiter.run(async () => 'x')).rejects.toMatchObject({ status: 503 });
    a.release('a');
    expect(await run).toBe('a');
  });
});
