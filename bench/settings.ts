/**
 * Benchmark sizes and limits, from environment variables.
 *
 *   BENCH_SCALE=full (default) | medium | small   preset sizes; full = the sizes (about 5 minutes
 *                                                 with three systems on an idle 2-core machine, data cached)
 *   BENCH_CT_SLICES, BENCH_STUDIES, BENCH_FRAMES  override one size of the preset
 *   BENCH_RUNS (5)                                runs of every repeatable operation
 *   BENCH_LOAD_SECONDS (10)                       length of the concurrent-clients test
 *   BENCH_OP_SECONDS (40)                         per system: no new run of an operation starts after
 *                                                 this many seconds x systems (always >= 1 run)
 *   BENCH_SYSTEMS=plugin,embedded,remote          which systems to start
 *   BENCH_LOG_LEVEL (warn)                        LOG_LEVEL of the gateway processes
 */
export interface BenchSettings {
  scale: string;
  ctSlices: number;
  smallStudies: number;
  frames: number;
  runs: number;
  loadSeconds: number;
  opSeconds: number;
  loadClients: number;
  systems: SystemName[];
  gatewayLogLevel: string;
}

export type SystemName = 'plugin' | 'embedded' | 'remote';
export const SYSTEM_NAMES: readonly SystemName[] = ['plugin', 'embedded', 'remote'];

interface Preset {
  ctSlices: number;
  smallStudies: number;
  frames: number;
}

const PRESETS: Readonly<Record<string, Preset>> = {
  full: { ctSlices: 500, smallStudies: 5000, frames: 100 },
  medium: { ctSlices: 200, smallStudies: 1000, frames: 100 },
  small: { ctSlices: 50, smallStudies: 200, frames: 20 },
};

function intFromEnv(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min) throw new Error(`${name} must be an integer >= ${min}, got "${raw}"`);
  return value;
}

function systemsFromEnv(): SystemName[] {
  const raw = process.env.BENCH_SYSTEMS;
  if (!raw) return [...SYSTEM_NAMES];
  const names = raw.split(',').map((s) => s.trim());
  for (const name of names) {
    if (!(SYSTEM_NAMES as readonly string[]).includes(name)) throw new Error(`BENCH_SYSTEMS: unknown system "${name}"`);
  }
  return names as SystemName[];
}

export function readSettings(): BenchSettings {
  const scale = process.env.BENCH_SCALE ?? 'full';
  const preset = PRESETS[scale];
  if (!preset) throw new Error(`BENCH_SCALE must be one of ${Object.keys(PRESETS).join(', ')}, got "${scale}"`);
  return {
    scale,
    ctSlices: intFromEnv('BENCH_CT_SLICES', preset.ctSlices, 1),
    smallStudies: intFromEnv('BENCH_STUDIES', preset.smallStudies, 1),
    frames: intFromEnv('BENCH_FRAMES', preset.frames, 1),
    runs: intFromEnv('BENCH_RUNS', 5, 1),
    loadSeconds: intFromEnv('BENCH_LOAD_SECONDS', 10, 1),
    opSeconds: intFromEnv('BENCH_OP_SECONDS', 40, 1),
    loadClients: 16,
    systems: systemsFromEnv(),
    gatewayLogLevel: process.env.BENCH_LOG_LEVEL ?? 'warn',
  };
}
