/**
 * The client primitives (issue #8), against a second reference Orthanc + plugin started for this part
 * ("the target", fresh storage):
 *  - /dicom-web/servers/{name}/stow of the CT study to the target, 50 instances per request, on each
 *    system (the plugin column is the reference plugin's own client), and as a baseline the bench
 *    streaming the same files straight to the target with the same chunking (sequential requests, as
 *    both clients send them); the target's copy is deleted after each run so every run stores anew;
 *  - /dicom-web/servers/{name}/retrieve of the CT study from the reference plugin, into each gateway (its
 *    own copy deleted first) and, for the plugin column, into the target through the plugin's client; with
 *    the peak RSS of the receiving process. The CT rather than the 2 GB study: three 2 GB transfers at
 *    client speed (~40 MB/s) would take a sixth of the bench's 15 minutes; memory on 2 GB is measured
 *    by the big-study part.
 */
import { orthancId } from '../src/core/orthanc-ids';
import { processesOf, recordPeaks } from './big-study';
import type { DataSets } from './datasets';
import { call, countInstances, deleteStudy, keepAliveAgent, type TimedResponse } from './http-client';
import { StowError, stowFiles } from './load';
import { say } from './log';
import { startPluginSystem, type Live, type RunningSystem } from './processes';
import { cellOf, rowFor, type Row } from './report';
import { watchPeakRss } from './rss';
import type { BenchSettings, SystemName } from './settings';

const TARGET = 'bench-target';
const SOURCE = 'bench-source';

async function registerServer(live: Live, name: string, server: RunningSystem): Promise<void> {
  const response = await call(live, 'PUT', `${live.system.url}${live.system.dicomWebRoot}/servers/${name}`, { Url: `${server.url}${server.dicomWebRoot}/` });
  if (response.status >= 400) throw new Error(`PUT /servers/${name} on ${live.system.name}: status ${response.status}`);
}

function orderFor(names: SystemName[], run: number): SystemName[] {
  return names.map((_, i) => names[(i + run) % names.length]);
}

async function clientStow(live: Live, study: string, instances: number): Promise<number> {
  const response = await call(live, 'POST', `${live.system.url}${live.system.dicomWebRoot}/servers/${TARGET}/stow`, { Resources: [study] });
  if (response.status >= 400) throw new StowError(`status ${response.status}`);
  const answer = JSON.parse(response.text ?? '{}') as { InstancesCount?: unknown; FailedInstancesCount?: unknown };
  // plugin 1.7's synchronous answer has no FailedInstancesCount; what the target stored is checked anyway
  if (Number(answer.InstancesCount) !== instances || Number(answer.FailedInstancesCount ?? 0) !== 0) {
    throw new StowError(`answered ${answer.InstancesCount} sent, ${answer.FailedInstancesCount} failed`);
  }
  return response.ms;
}

export async function measureClientPrimitives(live: Map<SystemName, Live>, data: DataSets, settings: BenchSettings, rows: Map<string, Row>, notes: string[]): Promise<void> {
  const plugin = live.get('plugin');
  if (!plugin) {
    notes.push('client primitives: not measured, the reference plugin is not running');
    return;
  }
  // the test helper's HttpTimeout (30 s) would cut the plugin's own retrieve of a study short (a 500)
  const target: Live = { system: await startPluginSystem({ HttpTimeout: 3600 }), agent: keepAliveAgent() };
  try {
    say(`client primitives: target plugin on ${target.system.url}`);
    for (const l of live.values()) await registerServer(l, TARGET, target.system);
    for (const l of live.values()) if (l.system.name !== 'plugin') await registerServer(l, SOURCE, plugin.system);
    await registerServer(target, SOURCE, plugin.system);
    await measureStow(live, target, data, settings, rows);
    await measureRetrieve(live, plugin, target, data, rows, notes);
  } finally {
    await target.agent.close().catch(() => undefined);
    await target.system.stop();
  }
}

async function measureStow(live: Map<SystemName, Live>, target: Live, data: DataSets, settings: BenchSettings, rows: Map<string, Row>): Promise<void> {
  const ct = data.ct;
  const ctStudy = orthancId('BENCH-CT', ct.studyUid);
  const mb = ct.bytes / 1e6;
  const row = rowFor(rows, { id: 'client-stow', label: `Client STOW of the ${ct.files.length}-slice CT to a second plugin (/servers/{name}/stow, 50 inst/request)`, unit: 'MB/s', target: '≈ direct STOW below' });
  const direct = rowFor(rows, { id: 'client-stow-direct', label: 'Direct streamed STOW of the same files to that plugin (bench client, 50 inst/request, sequential)', unit: 'MB/s', baseline: true });
  const names = [...live.keys()];
  // at most 3 runs: each one moves the whole CT
  const runs = Math.min(settings.runs, 3);
  for (let run = 0; run < runs; run++) {
    for (const name of orderFor(names, run)) {
      const cell = cellOf(row, name);
      if (cell.na !== undefined) continue;
      try {
        const ms = await clientStow(live.get(name) as Live, ctStudy, ct.files.length);
        const stored = await countInstances(target, target.system.nativeUrl, ctStudy);
        if (stored !== ct.files.length) cell.na = `target holds ${stored} instances`;
        else cell.runs.push(mb / (ms / 1000));
      } catch (error) {
        if (!(error instanceof StowError)) throw error;
        cell.na = error.message.slice(0, 60);
      }
      await deleteStudy(target, target.system.nativeUrl, ctStudy);
    }
    const stats = await stowFiles(target.system, target.agent, ct.files, 50, 1);
    cellOf(direct, 'plugin').runs.push(stats.bytes / 1e6 / stats.seconds);
    await deleteStudy(target, target.system.nativeUrl, ctStudy);
  }
  say(`client STOW: ${names.map((n) => `${n}=${(row.cells[n]?.runs ?? []).map((v) => v.toFixed(1)).join('/') || row.cells[n]?.na}`).join('  ')}  direct=${(direct.cells.plugin?.runs ?? []).map((v) => v.toFixed(1)).join('/')}`);
}

async function measureRetrieve(live: Map<SystemName, Live>, plugin: Live, target: Live, data: DataSets, rows: Map<string, Row>, notes: string[]): Promise<void> {
  const ct = data.ct;
  const ctStudy = orthancId('BENCH-CT', ct.studyUid);
  const size = `${ct.files.length}-slice CT`;
  const row = rowFor(rows, { id: 'client-retrieve', label: `Client retrieve of the ${size} from the plugin (/servers/{name}/retrieve)`, unit: 'MB/s' });
  const rss = rowFor(rows, { id: 'client-retrieve-rss', label: `Client retrieve of the ${size}: peak RSS of the receiver`, unit: 'MiB' });
  for (const [name, l] of live) {
    const receiver = name === 'plugin' ? target : l;
    await deleteStudy(receiver, receiver.system.nativeUrl, ctStudy);
    say(`client retrieve: ${size} into ${name} ...`);
    const watch = watchPeakRss(processesOf(receiver.system));
    const url = `${receiver.system.url}${receiver.system.dicomWebRoot}/servers/${SOURCE}/retrieve`;
    let response: TimedResponse;
    try {
      response = await call(receiver, 'POST', url, { Resources: [{ Study: ct.studyUid }] });
    } catch (error) {
      // a connection the receiver closed is a result of this row, not the end of the whole bench
      watch.stop();
      const why = (error as Error).message.slice(0, 60);
      for (const r of [row, rss]) cellOf(r, name).na = why;
      const exit = receiver.system.exitReport?.();
      notes.push(`${name}: the client retrieve of the ${size} failed: ${why}; the gateway ${exit ?? 'was still running'}`);
      continue;
    }
    const peaks = watch.stop();
    const received = response.status < 400 ? Number((JSON.parse(response.text ?? '{}') as { ReceivedInstancesCount?: unknown }).ReceivedInstancesCount) : NaN;
    const stored = await countInstances(receiver, receiver.system.nativeUrl, ctStudy);
    if (response.status >= 400 || received !== ct.files.length || stored !== ct.files.length) {
      const why = response.status >= 400 ? `status ${response.status}` : `received ${received}, stored ${stored}`;
      cellOf(row, name).na = why;
      cellOf(rss, name).na = why;
    } else {
      cellOf(row, name).runs.push(ct.bytes / 1e6 / (response.ms / 1000));
      recordPeaks(rss, name, receiver.system, peaks, notes, `the client retrieve of the ${size}`);
    }
    // frees the target again; the gateways had their own copy from loading, now replaced
    if (name === 'plugin') await deleteStudy(target, target.system.nativeUrl, ctStudy);
  }
}
