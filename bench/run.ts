/**
 * `npm run bench`: the same data and the same operations against the reference Orthanc DICOMweb
 * plugin, the gateway on its embedded core, and the gateway over a plain Orthanc; prints a
 * markdown table and writes bench/results/latest.{md,json}. See bench/settings.ts for the sizes.
 */
import { loadavg } from 'node:os';
import { measureBigStudy } from './big-study';
import { measureClientPrimitives } from './client-primitives';
import { prepareDataSets, type DataSets } from './datasets';
import { keepAliveAgent } from './http-client';
import { say } from './log';
import { loadSystem, storedInstances, type LoadResult } from './load';
import { measureOhif } from './ohif-timing';
import { NotAvailable, operations, type Operation } from './operations';
import {
  installExitHooks,
  orthancVersions,
  startEmbeddedSystem,
  startPluginSystem,
  startRemoteSystem,
  type Live,
  type RunningSystem,
} from './processes';
import { peakRssMiB } from './rss';
import { cellOf, environment, rowFor, writeReport, type BenchReport, type Cell, type Row } from './report';
import { readSettings, type BenchSettings, type SystemName } from './settings';

async function startSystem(name: SystemName, settings: BenchSettings): Promise<RunningSystem> {
  if (name === 'plugin') return startPluginSystem();
  if (name === 'embedded') return startEmbeddedSystem(settings.gatewayLogLevel);
  return startRemoteSystem(settings.gatewayLogLevel);
}

function shortReason(error: unknown): string {
  return (error as Error).message.replace(/\s+/g, ' ').slice(0, 160);
}

/** Starts every requested system; one that cannot start is recorded with its reason. */
async function startSystems(settings: BenchSettings, live: Map<SystemName, Live>, down: Map<SystemName, string>): Promise<void> {
  for (const name of settings.systems) {
    try {
      const system = await startSystem(name, settings);
      live.set(name, { system, agent: keepAliveAgent() });
      say(`${name} listening on ${system.url} (pid ${system.pid ?? '?'})`);
    } catch (error) {
      down.set(name, `not started: ${shortReason(error)}`);
      say(`${name} NOT available: ${shortReason(error)}`);
    }
  }
}

async function loadAll(live: Map<SystemName, Live>, data: DataSets, rows: Map<string, Row>, notes: string[]): Promise<void> {
  const ctRow = rowFor(rows, { id: 'stow-ct', label: `STOW CT series (50 inst/request, 4 parallel)`, unit: 'MB/s' });
  const smallRow = rowFor(rows, { id: 'stow-small', label: 'STOW small studies (100 inst/request)', unit: 'inst/s' });
  for (const [name, { system, agent }] of live) {
    say(`loading ${name} ...`);
    const started = Date.now();
    const result: LoadResult = await loadSystem(system, agent, data);
    const stored = await storedInstances(agent, system.nativeUrl);
    say(`${name} loaded by ${result.loadedBy} in ${((Date.now() - started) / 1000).toFixed(1)} s, ${stored ?? '?'} instances stored`);
    recordLoad(cellOf(ctRow, name), result.ctMBps, result.stowError);
    recordLoad(cellOf(smallRow, name), result.smallInstancesPerSecond, result.stowError);
    for (const note of result.notes) notes.push(`${name}: ${note}`);
    notes.push(`${name}: ${stored ?? 'unknown'} instances stored after loading (native GET /statistics)`);
  }
}

function recordLoad(cell: Cell, value: number | undefined, error: string | undefined): void {
  if (value !== undefined) cell.runs.push(value);
  else cell.na = error ?? 'not measured';
}

async function measureOnce(op: Operation, name: SystemName, live: Live, data: DataSets, settings: BenchSettings, cell: Cell): Promise<void> {
  if (cell.na !== undefined) return;
  try {
    const m = await op.measure({ system: live.system, dispatcher: live.agent, data, loadSeconds: settings.loadSeconds, loadClients: settings.loadClients });
    cell.runs.push(m.value);
    if (m.items !== undefined) (cell.items ??= []).push(m.items);
    if (m.bytes !== undefined) cell.bytes = m.bytes;
  } catch (error) {
    if (!(error instanceof NotAvailable)) throw error;
    cell.na = error.message.slice(0, 60);
  }
}

/** Every operation, systems alternated within each run (the starting system rotates). */
async function measureAll(live: Map<SystemName, Live>, data: DataSets, settings: BenchSettings, rows: Map<string, Row>): Promise<void> {
  const names = [...live.keys()];
  for (const op of operations()) {
    const row = rowFor(rows, op);
    const runs = op.mode === 'once' ? 1 : settings.runs;
    const deadline = Date.now() + settings.opSeconds * 1000 * names.length;
    for (let run = 0; run < runs && (run === 0 || Date.now() < deadline); run++) {
      const order = names.map((_, i) => names[(i + run) % names.length]);
      for (const name of order) {
        await measureOnce(op, name, live.get(name) as Live, data, settings, cellOf(row, name));
      }
    }
    const summary = names.map((n) => `${n}=${row.cells[n]?.na ? `n/a(${row.cells[n]?.na})` : (row.cells[n]?.runs ?? []).map((v) => v.toFixed(1)).join('/')}`);
    say(`${op.label}: ${summary.join('  ')}`);
  }
}

function recordRss(live: Map<SystemName, Live>, rows: Map<string, Row>, notes: string[]): void {
  const row = rowFor(rows, { id: 'peak-rss', label: 'Peak RSS of the server process (VmHWM) over loading and the operations above', unit: 'MiB' });
  for (const [name, { system }] of live) {
    const rss = peakRssMiB(system.pid);
    const cell = cellOf(row, name);
    if (rss === undefined) cell.na = 'no /proc status';
    else cell.runs.push(rss);
  }
  const remote = live.get('remote')?.system;
  if (remote) {
    const backend = peakRssMiB(remote.backendPid);
    notes.push(`remote: the RSS shown is the gateway process only; the Orthanc behind it peaked at ${backend === undefined ? '?' : backend.toFixed(0)} MiB.`);
  }
}

/** Peak RSS only covers what a system could run: say so when some of its operations were n/a. */
function rssCaveats(live: Map<SystemName, Live>, rows: Map<string, Row>, notes: string[]): void {
  for (const name of live.keys()) {
    const missing = [...rows.values()].filter((row) => row.cells[name]?.na !== undefined).length;
    if (missing > 0) notes.push(`${name}: ${missing} operations were n/a, so its peak RSS covers only the operations that ran.`);
  }
}

function markDown(settings: BenchSettings, down: Map<SystemName, string>, rows: Map<string, Row>): void {
  for (const name of settings.systems) {
    const reason = down.get(name);
    if (!reason) continue;
    for (const row of rows.values()) row.cells[name] = { runs: [], na: 'system not started' };
  }
}

function describeData(data: DataSets): Record<string, string> {
  const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`;
  return {
    ct: `CT ${data.ct.files.length} slices 512×512 16-bit (${mb(data.ct.bytes)})`,
    small: `${data.small.studies.length} small studies × 2 instances 64×64 (${mb(data.small.bytes)})`,
    multiframe: `1 multi-frame instance ${data.multiframe.frames ?? 1} frames 512×512 16-bit (${mb(data.multiframe.bytes)})`,
    ...(data.big.files.length > 0
      ? { big: `big study ${data.big.seriesUids.length} series × ${data.big.files.length / data.big.seriesUids.length} slices 512×512 16-bit (${mb(data.big.bytes)})` }
      : {}),
  };
}

async function stopAll(live: Map<SystemName, Live>): Promise<void> {
  for (const [name, { system, agent }] of live) {
    await agent.close().catch(() => undefined);
    await system.stop().catch((error: unknown) => say(`stopping ${name}: ${shortReason(error)}`));
  }
  live.clear();
}

async function main(): Promise<void> {
  const started = Date.now();
  const startLoad = Math.round(loadavg()[0] * 100) / 100;
  const settings = readSettings();
  installExitHooks();
  say(
    `scale ${settings.scale}: CT ${settings.ctSlices} slices, ${settings.smallStudies} small studies, ${settings.frames} frames, ` +
      `big study ${settings.bigSeries}x${settings.bigSlices}; ${settings.runs} runs; sections ${settings.sections.join(',')}`,
  );
  const dataStarted = Date.now();
  const data = prepareDataSets(settings);
  const dataSeconds = (Date.now() - dataStarted) / 1000;
  const live = new Map<SystemName, Live>();
  const down = new Map<SystemName, string>();
  const rows = new Map<string, Row>();
  const notes: string[] = [`data sets ready in ${dataSeconds.toFixed(0)} s (generated when not cached; included in the total bench time)`];
  try {
    await startSystems(settings, live, down);
    const plugin = live.get('plugin')?.system;
    const versions = plugin ? await orthancVersions(plugin.url) : { orthanc: '?', plugin: '?' };
    await loadAll(live, data, rows, notes);
    if (settings.sections.includes('ops')) await measureAll(live, data, settings, rows);
    recordRss(live, rows, notes);
    rssCaveats(live, rows, notes);
    // after the lifetime peak above, so that it covers the loading and the operations only
    if (settings.sections.includes('ohif')) await measureOhif(live, data, settings, rows, notes);
    if (settings.sections.includes('big')) await measureBigStudy(live, data.big, rows, notes);
    if (settings.sections.includes('client')) await measureClientPrimitives(live, data, settings, rows, notes);
    markDown(settings, down, rows);
    for (const [name, reason] of down) notes.unshift(`${name}: ${reason}`);
    const report: BenchReport = {
      environment: environment(versions, startLoad),
      settings,
      dataSets: describeData(data),
      systems: Object.fromEntries(settings.systems.map((n) => [n, down.get(n) ?? live.get(n)?.system.url ?? '?'])),
      rows: [...rows.values()],
      notes,
      totalSeconds: (Date.now() - started) / 1000,
    };
    process.stdout.write(`\n${writeReport(report)}`);
    say('written bench/results/latest.md and latest.json');
  } finally {
    await stopAll(live);
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`[bench] failed: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
