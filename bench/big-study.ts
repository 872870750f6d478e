/**
 * The 2 GB study (issue #10): its STOW (streamed from disk, 50 instances per request, 4 in parallel) and a
 * WADO-RS retrieve of the whole study (consumed as a stream, bytes counted) on every system, with the
 * peak RSS of the server process during each. Then, on the embedded gateway, the study deleted and stored
 * again in one STOW request of 2 GB (issue #6: memory while one 2 GB request streams in). The gateway should
 * stay under 300 MiB (bench/goals.ts).
 */
import type { BigStudySet } from './datasets';
import { deleteStudy, timedRequest } from './http-client';
import { orthancId } from '../src/core/orthanc-ids';
import { StowError, stowFiles } from './load';
import { say } from './log';
import type { Live, RunningSystem } from './processes';
import { cellOf, rowFor, type Row } from './report';
import { watchPeakRss } from './rss';
import type { SystemName } from './settings';

const DICOM_MULTIPART = 'multipart/related; type="application/dicom"';

/** The server process, and the Orthanc behind a gateway over Orthanc. */
export function processesOf(system: RunningSystem): number[] {
  return [system.pid, system.backendPid].filter((pid): pid is number => pid !== undefined);
}

/** Records the peak RSS of a phase: the server process in the row, the Orthanc behind a remote gateway in a note. */
export function recordPeaks(row: Row, name: SystemName, system: RunningSystem, peaks: Map<number, number | undefined>, notes: string[], phase: string): void {
  const own = system.pid === undefined ? undefined : peaks.get(system.pid);
  const cell = cellOf(row, name);
  if (own === undefined) cell.na = 'no /proc status';
  else cell.runs.push(own);
  if (system.backendPid !== undefined) {
    const backend = peaks.get(system.backendPid);
    notes.push(`${name}: during ${phase} the Orthanc behind the gateway peaked at ${backend === undefined ? '?' : backend.toFixed(0)} MiB.`);
  }
}

function gigabytes(set: BigStudySet): string {
  return `${(set.bytes / 1e9).toFixed(1)} GB`;
}

export async function measureBigStudy(live: Map<SystemName, Live>, big: BigStudySet, rows: Map<string, Row>, notes: string[]): Promise<void> {
  const size = gigabytes(big);
  const stowRow = rowFor(rows, { id: 'big-stow', label: `${size} study: STOW (50 inst/request, 4 parallel, streamed from disk)`, unit: 'MB/s' });
  const stowRss = rowFor(rows, { id: 'big-stow-rss', label: `${size} study: peak RSS during its STOW`, unit: 'MiB' });
  const getRow = rowFor(rows, { id: 'big-retrieve', label: `${size} study: WADO-RS retrieve of the study (streamed)`, unit: 'MB/s' });
  const getRss = rowFor(rows, { id: 'big-retrieve-rss', label: `${size} study: peak RSS during its retrieve`, unit: 'MiB' });
  const oneRow = rowFor(rows, { id: 'big-stow-one', label: `${size} study: STOW in one request (streamed from disk)`, unit: 'MB/s', gatewaysOnly: true });
  const oneRss = rowFor(rows, { id: 'big-stow-one-rss', label: `${size} study: peak RSS while its one request streams in`, unit: 'MiB', gatewaysOnly: true });
  for (const [name, { system, agent }] of live) {
    say(`${size} study: STOW into ${name} ...`);
    let watch = watchPeakRss(processesOf(system));
    try {
      const stats = await stowFiles(system, agent, big.files, 50, 4);
      recordPeaks(stowRss, name, system, watch.stop(), notes, `the ${size} STOW`);
      cellOf(stowRow, name).runs.push(stats.bytes / 1e6 / stats.seconds);
      if (stats.failed > 0) notes.push(`${name}: ${stats.failed} instances of the ${size} study in FailedSOPSequence`);
    } catch (error) {
      watch.stop();
      if (!(error instanceof StowError)) throw error;
      cellOf(stowRow, name).na = error.message;
      cellOf(stowRss, name).na = 'STOW failed';
    }

    await retrieveStudy(name, system, agent, big, getRow, getRss, notes);
    // a memory check of the embedded core, which keeps what it receives (over Orthanc each part goes on as it comes)
    if (name !== 'embedded') continue;
    say(`${size} study: STOW in one request into ${name} ...`);
    await deleteStudy({ agent }, system.nativeUrl, orthancId(big.patientId, big.studyUid));
    watch = watchPeakRss(processesOf(system));
    try {
      const stats = await stowFiles(system, agent, big.files, big.files.length, 1);
      recordPeaks(oneRss, name, system, watch.stop(), notes, `the ${size} STOW in one request`);
      cellOf(oneRow, name).runs.push(stats.bytes / 1e6 / stats.seconds);
      if (stats.failed > 0) notes.push(`${name}: ${stats.failed} instances of the one-request ${size} STOW in FailedSOPSequence`);
    } catch (error) {
      watch.stop();
      if (!(error instanceof StowError)) throw error;
      cellOf(oneRow, name).na = error.message;
      cellOf(oneRss, name).na = 'STOW failed';
    }
  }
}

/** WADO-RS retrieve of the whole study, consumed as a stream, with the peak RSS of the server. */
async function retrieveStudy(name: SystemName, system: RunningSystem, agent: Live['agent'], big: BigStudySet, getRow: Row, getRss: Row, notes: string[]): Promise<void> {
  const size = gigabytes(big);
  say(`${size} study: retrieve from ${name} ...`);
  const watch = watchPeakRss(processesOf(system));
  try {
    const url = `${system.url}${system.dicomWebRoot}/studies/${big.studyUid}`;
    const response = await timedRequest(agent, url, { headers: { accept: DICOM_MULTIPART }, timeoutMs: 900_000 });
    const peaks = watch.stop();
    if (response.status >= 400 || response.bytes < big.bytes) {
      const why = response.status >= 400 ? `status ${response.status}` : `only ${response.bytes} bytes`;
      cellOf(getRow, name).na = why;
      cellOf(getRss, name).na = why;
      return;
    }
    recordPeaks(getRss, name, system, peaks, notes, `the ${size} retrieve`);
    cellOf(getRow, name).runs.push(response.bytes / 1e6 / (response.ms / 1000));
  } catch (error) {
    watch.stop();
    cellOf(getRow, name).na = (error as Error).message.slice(0, 60);
    cellOf(getRss, name).na = 'retrieve failed';
  }
}
