/**
 * Resident memory of the processes under test, from /proc/<pid>/status: the lifetime peak (VmHWM), and
 * the peak over one phase of the bench (a watch polling VmRSS, corrected by VmHWM when that grew).
 */
import { readFileSync } from 'node:fs';

/** A "<field>: <n> kB" line of /proc/<pid>/status in MiB, or undefined when it cannot be read. */
function statusMiB(pid: number, field: 'VmHWM' | 'VmRSS'): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status);
    return match ? Number(match[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Peak resident set size (VmHWM) of a process in MiB, or undefined when it cannot be read. */
export function peakRssMiB(pid: number | undefined): number | undefined {
  return pid === undefined ? undefined : statusMiB(pid, 'VmHWM');
}

export interface RssWatch {
  /** Ends the watch: the peak RSS in MiB of each pid during it (undefined when unreadable). */
  stop(): Map<number, number | undefined>;
}

const POLL_MS = 20;

/**
 * Watches the peak RSS of some processes during one phase. VmHWM is a lifetime peak that cannot be reset
 * without writing to the process's clear_refs, so: when VmHWM grew during the phase, the new VmHWM is
 * exactly the phase's peak; otherwise the phase stayed under an earlier peak and the highest VmRSS
 * polled every 20 ms is used (it may miss a spike shorter than that).
 */
export function watchPeakRss(pids: readonly number[]): RssWatch {
  const before = new Map(pids.map((pid) => [pid, statusMiB(pid, 'VmHWM')]));
  const polled = new Map<number, number>();
  const poll = (): void => {
    for (const pid of pids) {
      const rss = statusMiB(pid, 'VmRSS');
      if (rss !== undefined) polled.set(pid, Math.max(rss, polled.get(pid) ?? 0));
    }
  };
  poll();
  const timer = setInterval(poll, POLL_MS);
  return {
    stop() {
      clearInterval(timer);
      poll();
      const peaks = new Map<number, number | undefined>();
      for (const pid of pids) {
        const start = before.get(pid);
        const end = statusMiB(pid, 'VmHWM');
        peaks.set(pid, start !== undefined && end !== undefined && end > start ? end : polled.get(pid));
      }
      return peaks;
    },
  };
}
