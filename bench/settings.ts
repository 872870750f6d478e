/**
 * Benchmark sizes and limits, from environment variables.
 *
 *   BENCH_SCALE=full (default) | medium | small   preset sizes; full = the sizes (see bench/README.md
 *                                                 for how long a run takes)
 *   BENCH_CT_SLICES, BENCH_STUDIES, BENCH_FRAMES  override one size of the preset
 *   BENCH_RUNS (3)                                runs of every repeatable operation
 *   BENCH_LOAD_SECONDS (10)                       length of the concurrent-clients test
 *   BENCH_OP_SECONDS (40)                         per system: no new run of an operation starts after
 *                                                 this many seconds x systems (always >= 1 run)
 *   BENCH_SYSTEMS=plugin,embedded,remote          which systems to start
 *   BENCH_LOG_LEVEL (warn)                        LOG_LEVEL of the gateway processes
 *   BENCH_BIG_SERIES, BENCH_BIG_SLICES            the big study: series x slices 512x512 16-bit
 *                                                 (full: 4 x 1000, about 2.1 GB)
 *   BENCH_OHIF_RUNS (3)                           runs of each OHIF timing
 *   BENCH_SECTIONS=ops,big,client,ohif            which parts run (data sets are loaded in any case)
 *   BENCH_DATA_DIR (bench/data)                   where generated data sets are cached
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
  bigSeries: number;
  bigSlices: number;
  ohifRuns: number;
  sections: SectionName[];
}

/** ops: the table of DICOMweb operations; big: the 2 GB study; client: client primitives; ohif: the viewer. */
export type SectionName = 'ops' | 'big' | 'client' | 'ohif';
export const SECTION_NAMES: readonly SectionName[] = ['ops', 'big', 'client', 'ohif'];

export type SystemName = 'plugin' | 'embedded' | 'remote';
export const SYSTEM_NAMES: readonly SystemName[] = ['plugin', 'embedded', 'remote'];

interface Preset {
  ctSlices: number;
  smallStudies: number;
  frames: number;
  bigSeries: number;
  bigSlices: number;
}

const PRESETS: Readonly<Record<string, Preset>> = {
  full: { ctSlices: 500, smallStudies: 5000, frames: 100, bigSeries: 4, bigSlices: 1000 },
  medium: { ctSlices: 200, smallStudies: 1000, frames: 100, bigSeries: 4, bigSlices: 250 },
  small: { ctSlices: 50, smallStudies: 200, frames: 20, bigSeries: 4, bigSlices: 50 },
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

function sectionsFromEnv(): SectionName[] {
  const raw = process.env.BENCH_SECTIONS;
  if (!raw) return [...SECTION_NAMES];
  const names = raw.split(',').map((s) => s.trim());
  for (const name of names) {
    if (!(SECTION_NAMES as readonly string[]).includes(name)) throw new Error(`BENCH_SECTIONS: unknown section "${name}"`);
  }
  return names as SectionName[];
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
    runs: intFromEnv('BENCH_RUNS', 3, 1),
    loadSeconds: intFromEnv('BENCH_LOAD_SECONDS', 10, 1),
    opSeconds: intFromEnv('BENCH_OP_SECONDS', 40, 1),
    loadClients: 16,
    systems: systemsFromEnv(),
    gatewayLogLevel: process.env.BENCH_LOG_LEVEL ?? 'warn',
    bigSeries: intFromEnv('BENCH_BIG_SERIES', preset.bigSeries, 1),
    bigSlices: intFromEnv('BENCH_BIG_SLICES', preset.bigSlices, 1),
    ohifRuns: intFromEnv('BENCH_OHIF_RUNS', 3, 1),
    sections: sectionsFromEnv(),
  };
}
