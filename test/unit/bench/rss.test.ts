/**
 * bench/rss.ts on a small child process: a phase in which it touches 64 MiB more than before reports a peak at
 * least that much above its RSS at the start; unreadable pids give undefined. A child, not this test's own
 * process: the jest worker frees memory of earlier suites at any time, which would hide the 64 MiB.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { peakRssMiB, watchPeakRss } from '../../../bench/rss';

function rssMiB(pid: number): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1]) / 1024;
}

/** Waits for "go" on stdin, then fills 64 MiB (every page resident), says "done" and keeps it for a while. */
const TOUCHER = `
process.stdin.once('data', () => {
  const block = Buffer.alloc(64 * 1024 * 1024, 1);
  process.stdout.write('done');
  setTimeout(() => process.exit(block[block.length - 1] === 1 ? 0 : 1), 2000);
});`;

describe('watchPeakRss', () => {
  it('sees memory touched during the phase', async () => {
    const child = spawn(process.execPath, ['-e', TOUCHER], { stdio: ['pipe', 'pipe', 'ignore'] });
    const pid = child.pid as number;
    // settled once the child has started up and waits
    await new Promise((resolve) => setTimeout(resolve, 500));
    const start = rssMiB(pid);
    const watch = watchPeakRss([pid]);
    const done = new Promise((resolve) => child.stdout.once('data', resolve));
    child.stdin.write('go');
    await done;
    await new Promise((resolve) => setTimeout(resolve, 100));
    const peak = watch.stop().get(pid);
    expect(peak).toBeGreaterThanOrEqual(start + 60);
    expect(peakRssMiB(pid)).toBeGreaterThanOrEqual(peak as number);
    const exit = new Promise((resolve) => child.once('exit', resolve));
    expect(await exit).toBe(0);
  });

  it('gives undefined for a pid that does not exist', () => {
    const missing = 2 ** 22 + 17; // above the default pid_max
    expect(peakRssMiB(missing)).toBeUndefined();
    expect(watchPeakRss([missing]).stop().get(missing)).toBeUndefined();
  });
});
