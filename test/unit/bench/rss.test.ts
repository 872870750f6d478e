/**
 * bench/rss.ts on this test's own process: a phase that touches 64 MiB more than before reports a
 * peak at least that much above the RSS at its start; unreadable pids give undefined.
 */
import { readFileSync } from 'node:fs';
import { peakRssMiB, watchPeakRss } from '../../../bench/rss';

function rssMiB(): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return Number(match?.[1]) / 1024;
}

describe('watchPeakRss', () => {
  it('sees memory touched during the phase', async () => {
    const start = rssMiB();
    const watch = watchPeakRss([process.pid]);
    const block = Buffer.alloc(64 * 1024 * 1024, 1); // alloc fills: every page is resident
    await new Promise((resolve) => setTimeout(resolve, 100));
    const peak = watch.stop().get(process.pid);
    expect(block[block.length - 1]).toBe(1);
    expect(peak).toBeGreaterThanOrEqual(start + 60);
    expect(peakRssMiB(process.pid)).toBeGreaterThanOrEqual(peak as number);
  });

  it('gives undefined for a pid that does not exist', () => {
    const missing = 2 ** 22 + 17; // above the default pid_max
    expect(peakRssMiB(missing)).toBeUndefined();
    expect(watchPeakRss([missing]).stop().get(missing)).toBeUndefined();
  });
});
