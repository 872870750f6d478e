/**
 * Results: medians per operation and system, ratios to the plugin, as a markdown table and JSON.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { goalText, HIGHER_IS_BETTER, missedGoals, verdictText } from './goals';
import { median } from './statistics';
import type { Unit } from './operations';
import type { BenchSettings, SystemName } from './settings';

export interface Cell {
  /** Every measured value (one per run). */
  runs: number[];
  /** Why there is no value. */
  na?: string;
  /** QIDO match counts per run. */
  items?: number[];
  bytes?: number;
}

export interface Row {
  id: string;
  label: string;
  unit: Unit;
  cells: Partial<Record<SystemName, Cell>>;
  /** A goal in words besides the issues' (bench/goals.ts), shown in the goal column, e.g. "≈ direct STOW below". */
  target?: string;
  /** A reference measured once, not per system: shown in the plugin column, the others are "–". */
  baseline?: boolean;
  /** Measured on the gateways only: the plugin column is "–", and no ratio to it is asked. */
  gatewaysOnly?: boolean;
  /** Planned runs when not BENCH_RUNS (e.g. the OHIF timings). */
  runs?: number;
}

/** The row of an operation, created on first use (rows keep their insertion order in the report). */
export function rowFor(rows: Map<string, Row>, op: Omit<Row, 'cells'>): Row {
  let row = rows.get(op.id);
  if (!row) {
    row = { ...op, cells: {} };
    rows.set(op.id, row);
  }
  return row;
}

export function cellOf(row: Row, name: SystemName): Cell {
  const cell = row.cells[name] ?? { runs: [] };
  row.cells[name] = cell;
  return cell;
}

export interface Environment {
  date: string;
  cpu: string;
  cores: number;
  memoryGiB: number;
  node: string;
  orthanc: string;
  dicomWebPlugin: string;
  /** 1-minute load average at the start and at the end (other work on the machine skews results). */
  loadAverage: { start: number; end: number };
}

export interface BenchReport {
  environment: Environment;
  settings: BenchSettings;
  dataSets: Record<string, string>;
  systems: Partial<Record<SystemName, string>>;
  rows: Row[];
  notes: string[];
  totalSeconds: number;
}

export const RESULTS_DIR = join(__dirname, '..', '..', 'bench', 'results');

export function environment(versions: { orthanc: string; plugin: string }, startLoad: number): Environment {
  const cpuList = cpus();
  return {
    date: new Date().toISOString(),
    cpu: cpuList[0]?.model ?? 'unknown',
    cores: cpuList.length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    orthanc: versions.orthanc,
    dicomWebPlugin: versions.plugin,
    loadAverage: { start: startLoad, end: Math.round(loadavg()[0] * 100) / 100 },
  };
}

function format(value: number): string {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

function cellText(row: Row, system: SystemName, runs: number): string {
  const cell = row.cells[system];
  if (row.baseline && system !== 'plugin') return '–';
  if (row.gatewaysOnly && system === 'plugin') return '–';
  if (!cell) return 'not run';
  if (cell.na !== undefined) return `n/a (${cell.na})`;
  const value = median(cell.runs);
  if (value === undefined) return 'n/a';
  if (cell.runs.length === 1) return `${format(value)}¹`;
  return cell.runs.length < runs ? `${format(value)} (n=${cell.runs.length})` : format(value);
}

function ratioText(row: Row, system: SystemName): string {
  const base = median(row.cells.plugin?.runs ?? []);
  const cell = row.cells[system];
  const value = median(cell?.runs ?? []);
  if (base === undefined || value === undefined || base === 0 || cell?.na !== undefined || row.cells.plugin?.na !== undefined) return '–';
  return `${(value / base).toFixed(2)}×`;
}

function unitText(unit: Unit): string {
  return `${unit} ${HIGHER_IS_BETTER.has(unit) ? '↑' : '↓'}`;
}

/** Rows whose QIDO match counts differ between systems (a sign that one of them answers wrongly). */
function itemMismatches(rows: Row[]): string[] {
  const notes: string[] = [];
  for (const row of rows) {
    const counts = Object.entries(row.cells)
      .filter(([, cell]) => cell?.items && cell.items.length > 0 && cell.na === undefined)
      .map(([system, cell]) => `${system}=${cell?.items?.[0]}`);
    const distinct = new Set(counts.map((c) => c.split('=')[1]));
    if (distinct.size > 1) notes.push(`${row.label}: the systems returned different match counts (${counts.join(', ')})`);
  }
  return notes;
}

export function toMarkdown(report: BenchReport): string {
  const env = report.environment;
  const runs = report.settings.runs;
  const lines: string[] = [
    '# dicomweb-gateway benchmark',
    '',
    `* Date: ${env.date}`,
    `* Machine: ${env.cores} cores (${env.cpu}), ${env.memoryGiB} GiB memory; Node ${env.node}; load average ${env.loadAverage.start} at start, ${env.loadAverage.end} at end`,
    `* Reference: Orthanc ${env.orthanc} + DICOMweb plugin ${env.dicomWebPlugin} (default options)`,
    `* Scale: \`${report.settings.scale}\` — ${Object.values(report.dataSets).join('; ')}`,
    ...(report.settings.scale === 'full'
      ? []
      : ['* Scaled down from the issue\'s sizes (CT 500 slices, 5000 studies, 100 frames); `BENCH_SCALE=full npm run bench` (the default) runs them.']),
    `* ${report.settings.runs} runs per operation, systems alternated, median shown; ¹ = measured once (cold call, load test, STOW, RSS); (n=k) = fewer runs because an operation stops repeating after ${report.settings.opSeconds} s × systems.`,
    `* Gateways run as \`bin/dicomweb-gateway\` child processes (the built \`cli.js\`, glibc's mmap threshold fixed at 128 KiB), LOG_LEVEL=${report.settings.gatewayLogLevel}; every system on 127.0.0.1 with fresh storage.`,
    `* Ratios are gateway ÷ plugin; ↓ lower is better, ↑ higher is better. Total bench time ${format(report.totalSeconds)} s.`,
    '',
    '| operation | unit | plugin | gateway-embedded | gateway-over-orthanc | embedded ÷ plugin | over-orthanc ÷ plugin | goal | met |',
    '|---|---|---:|---:|---:|---:|---:|---|---|',
  ];
  for (const row of report.rows) {
    const rowRuns = row.runs ?? runs;
    lines.push(
      `| ${row.label} | ${unitText(row.unit)} | ${cellText(row, 'plugin', rowRuns)} | ${cellText(row, 'embedded', rowRuns)} | ${cellText(row, 'remote', rowRuns)} | ${ratioText(row, 'embedded')} | ${ratioText(row, 'remote')} | ${goalText(row)} | ${verdictText(row)} |`,
    );
  }
  const missed = missedGoals(report.rows);
  lines.push('', '## Goals missed in this run', '', ...(missed.length > 0 ? missed.map((m) => `* ${m}`) : ['* none']));
  const notes = [...report.notes, ...itemMismatches(report.rows)];
  if (notes.length > 0) {
    lines.push('', '## Notes', '', ...notes.map((n) => `* ${n}`));
  }
  return `${lines.join('\n')}\n`;
}

export function writeReport(report: BenchReport): string {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const markdown = toMarkdown(report);
  writeFileSync(join(RESULTS_DIR, 'latest.md'), markdown);
  writeFileSync(join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(report, null, 2)}\n`);
  return markdown;
}
