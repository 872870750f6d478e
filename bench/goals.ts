/**
 * The issues' performance goals, by bench row, and whether a run met them: the report shows both, so that
 * a reader sees at a glance where the gateway falls short (issue #10: "report honestly").
 *
 * Ratios are gateway ÷ plugin of the row's unit: for times (↓) the ratio must be at most the goal, for
 * throughputs (↑) at least. Every speed row of the gateway over Orthanc has the same goal: never slower
 * than 1.3x the plugin (a throughput ratio of at least 1 / 1.3).
 */
import type { Unit } from './operations';
import type { Row } from './report';
import { median } from './statistics';
import type { SystemName } from './settings';

export const HIGHER_IS_BETTER: ReadonlySet<Unit> = new Set(['MB/s', 'inst/s', 'req/s']);

interface Goal {
  /** Ratio goal of the gateway on the embedded core: e.g. 0.1 (10x faster) for a time, 3 for a throughput. */
  embedded?: number;
  /** Ratio goal of the gateway over Orthanc, when other than the 1.3x rule. */
  remote?: number;
  /** A bound on the value itself: at least (↑ units) or below (↓ units, MiB); for both gateways unless `only`. */
  absolute?: number;
  only?: SystemName;
}

/** The gateway over a plain Orthanc: never slower than 1.3x the plugin (issue #7). */
const REMOTE_SLOWDOWN = 1.3;
const RSS_LIMIT_MIB = 300;

/** From issues #3 (QIDO), #4 (WADO-RS), #5 (rendered), #6 (STOW), #7 (over Orthanc) and #10 (the list). */
const GOALS: Readonly<Record<string, Goal>> = {
  'stow-ct': { embedded: 3 },
  'stow-small': { embedded: 3 },
  'qido-all': { embedded: 0.1 },
  'qido-name': { embedded: 0.1 },
  'qido-date': { embedded: 0.1 },
  'qido-fields': { embedded: 0.1 },
  'qido-series': { embedded: 0.1 },
  'qido-instances': { embedded: 0.1 },
  'meta-series-cold': { embedded: 0.5 },
  'meta-study-cold': { embedded: 0.5 },
  // #7: cached metadata over Orthanc faster than the plugin
  'meta-series-warm': { embedded: 0.2, remote: 1 },
  'meta-study-warm': { embedded: 0.2, remote: 1 },
  'retrieve-series': { embedded: 3 },
  'frame-1': { embedded: 0.1 },
  'frames-all': { embedded: 1 / 3 },
  rendered: { embedded: 1 },
  'concurrent-qido': { absolute: 1500, only: 'embedded' },
  'big-stow-rss': { absolute: RSS_LIMIT_MIB },
  'big-stow-one-rss': { absolute: RSS_LIMIT_MIB },
  'big-retrieve-rss': { absolute: RSS_LIMIT_MIB },
  'client-retrieve-rss': { absolute: RSS_LIMIT_MIB },
};

const GATEWAYS: ReadonlyArray<{ system: SystemName; name: string }> = [
  { system: 'embedded', name: 'embedded' },
  { system: 'remote', name: 'over Orthanc' },
];

function isSpeed(unit: Unit): boolean {
  return unit !== 'MiB';
}

/** The ratio goal of one gateway on a row, if any. */
function ratioGoal(row: Row, system: SystemName): number | undefined {
  const goal = GOALS[row.id];
  if (system === 'embedded') return goal?.embedded;
  if (!isSpeed(row.unit) || row.baseline || row.gatewaysOnly) return undefined;
  return goal?.remote ?? (HIGHER_IS_BETTER.has(row.unit) ? 1 / REMOTE_SLOWDOWN : REMOTE_SLOWDOWN);
}

/** The bound on the value of one gateway on a row, if any. */
function absoluteGoal(row: Row, system: SystemName): number | undefined {
  const goal = GOALS[row.id];
  return goal?.only === undefined || goal.only === system ? goal?.absolute : undefined;
}

/** The goals of one gateway on a row in words, e.g. "≤0.10×" or "< 300 MiB" (empty without one). */
function systemGoalText(row: Row, system: SystemName): string {
  const higher = HIGHER_IS_BETTER.has(row.unit);
  const absolute = absoluteGoal(row, system);
  const parts: string[] = [];
  if (absolute !== undefined) parts.push(`${higher ? '≥' : '<'} ${absolute} ${row.unit}`);
  const ratio = ratioGoal(row, system);
  if (ratio !== undefined) parts.push(`${higher ? '≥' : '≤'}${ratio.toFixed(2)}× the plugin`);
  return parts.join(' and ');
}

/** The goals of a row in words, e.g. "embedded ≤0.10× the plugin; over Orthanc ≤1.30× the plugin". */
export function goalText(row: Row): string {
  const parts = GATEWAYS.map(({ system, name }) => {
    const text = systemGoalText(row, system);
    return text && `${name} ${text}`;
  }).filter(Boolean);
  if (row.target) parts.push(row.target);
  return parts.join('; ');
}

/** Whether a gateway met its goals on a row: true, false, or undefined (no goal, or nothing measured). */
export function goalMet(row: Row, system: SystemName): boolean | undefined {
  const higher = HIGHER_IS_BETTER.has(row.unit);
  const cell = row.cells[system];
  const value = cell?.na === undefined ? median(cell?.runs ?? []) : undefined;
  const base = row.cells.plugin?.na === undefined ? median(row.cells.plugin?.runs ?? []) : undefined;
  const checks: boolean[] = [];
  const absolute = absoluteGoal(row, system);
  if (absolute !== undefined && value !== undefined) checks.push(higher ? value >= absolute : value < absolute);
  const ratio = ratioGoal(row, system);
  if (ratio !== undefined && value !== undefined && base !== undefined && base > 0) {
    checks.push(higher ? value / base >= ratio : value / base <= ratio);
  }
  return checks.length === 0 ? undefined : checks.every(Boolean);
}

/** "embedded ✓, over Orthanc ✗" for the rows with goals. */
export function verdictText(row: Row): string {
  return GATEWAYS.map(({ system, name }) => {
    const met = goalMet(row, system);
    return met === undefined ? '' : `${name} ${met ? '✓' : '✗'}`;
  })
    .filter(Boolean)
    .join(', ');
}

/** Rows whose goals a gateway missed, for the summary under the table. */
export function missedGoals(rows: readonly Row[]): string[] {
  return rows.flatMap((row) =>
    GATEWAYS.filter(({ system }) => goalMet(row, system) === false).map(({ system, name }) => `${row.label}: ${name} (goal ${systemGoalText(row, system)})`),
  );
}
