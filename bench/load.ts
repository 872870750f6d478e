/**
 * Loads the data sets into one system through STOW-RS (POST {root}/studies, multipart/related) and
 * times it. When STOW answers an error (not implemented yet), the data go in through the native REST
 * API (POST /instances) instead, so that the read operations can still be measured; that is noted.
 */
import { readFileSync } from 'node:fs';
import type { Dispatcher } from 'undici';
import type { DataSets } from './datasets';
import { sequenceLength, streamedStowBody, timedRequest, type TimedResponse } from './http-client';
import type { RunningSystem } from './processes';

export interface LoadResult {
  /** MB/s of the CT STOW, or undefined when STOW failed. */
  ctMBps?: number;
  /** instances/s of the small-studies STOW. */
  smallInstancesPerSecond?: number;
  /** Status of the first failed STOW request, if any. */
  stowError?: string;
  /** FailedSOPSequence items over every STOW answer. */
  failedInstances: number;
  /** How the data went in: "stow", "native" (fallback) or "none". */
  loadedBy: 'stow' | 'native' | 'none';
  notes: string[];
}

export function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Runs fn over items with at most `parallel` at a time; stops early when fn throws. */
export async function inParallel<T>(items: T[], parallel: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++];
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, worker));
}

export class StowError extends Error {}

export interface StowStats {
  seconds: number;
  bytes: number;
  instances: number;
  failed: number;
}

/** STOW-RS of files, `perRequest` per request, `parallel` requests at a time, each body streamed from disk. */
export async function stowFiles(
  system: Pick<RunningSystem, 'url' | 'dicomWebRoot'>,
  dispatcher: Dispatcher,
  files: string[],
  perRequest: number,
  parallel: number,
): Promise<StowStats> {
  const stats: StowStats = { seconds: 0, bytes: 0, instances: 0, failed: 0 };
  const url = `${system.url}${system.dicomWebRoot}/studies`;
  const started = process.hrtime.bigint();
  await inParallel(chunk(files, perRequest), parallel, async (batch) => {
    const { body, contentType, length } = streamedStowBody(batch);
    let response: TimedResponse;
    try {
      response = await timedRequest(dispatcher, url, {
        method: 'POST',
        headers: { 'content-type': contentType, 'content-length': String(length), accept: 'application/dicom+json' },
        body,
        keepText: true,
        timeoutMs: 600_000,
      });
    } catch (error) {
      throw new StowError((error as Error).message.slice(0, 60));
    }
    if (response.status >= 400) throw new StowError(`status ${response.status}`);
    stats.bytes += length;
    stats.instances += batch.length;
    stats.failed += sequenceLength(response.text, '00081198');
  });
  stats.seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return stats;
}

async function postNative(dispatcher: Dispatcher, nativeUrl: string, files: string[]): Promise<void> {
  await inParallel(files, 4, async (file) => {
    const response = await timedRequest(dispatcher, `${nativeUrl}/instances`, {
      method: 'POST',
      headers: { 'content-type': 'application/dicom' },
      body: readFileSync(file),
      timeoutMs: 120_000,
    });
    if (response.status >= 400) throw new Error(`POST /instances answered ${response.status}`);
  });
}

function allFiles(data: DataSets): string[] {
  return [...data.ct.files, ...data.small.files, ...data.multiframe.files];
}

export async function loadSystem(system: RunningSystem, dispatcher: Dispatcher, data: DataSets): Promise<LoadResult> {
  const result: LoadResult = { failedInstances: 0, loadedBy: 'stow', notes: [] };
  try {
    const ct = await stowFiles(system, dispatcher, data.ct.files, 50, 4);
    result.ctMBps = ct.bytes / 1e6 / ct.seconds;
    const small = await stowFiles(system, dispatcher, data.small.files, 100, 1);
    result.smallInstancesPerSecond = small.instances / small.seconds;
    const mf = await stowFiles(system, dispatcher, data.multiframe.files, 1, 1);
    result.failedInstances = ct.failed + small.failed + mf.failed;
    if (result.failedInstances > 0) result.notes.push(`${result.failedInstances} instances in FailedSOPSequence`);
    return result;
  } catch (error) {
    if (!(error instanceof StowError)) throw error;
    result.stowError = error.message;
  }
  try {
    await postNative(dispatcher, system.nativeUrl, allFiles(data));
    result.loadedBy = 'native';
    result.notes.push(`STOW-RS failed (${result.stowError}): data loaded through native POST /instances`);
  } catch (error) {
    result.loadedBy = 'none';
    result.notes.push(`no data loaded: STOW ${result.stowError}, native ${(error as Error).message}`);
  }
  return result;
}

/** CountInstances from the native GET /statistics, when the system has it. */
export async function storedInstances(dispatcher: Dispatcher, nativeUrl: string): Promise<number | undefined> {
  try {
    const response = await timedRequest(dispatcher, `${nativeUrl}/statistics`, { keepText: true, timeoutMs: 30_000 });
    if (response.status >= 400 || !response.text) return undefined;
    return (JSON.parse(response.text) as { CountInstances?: number }).CountInstances;
  } catch {
    return undefined;
  }
}
