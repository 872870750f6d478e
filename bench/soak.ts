/**
 * Soak test (`npm run bench:soak`): SOAK_CLIENTS (32) clients of mixed QIDO-RS, WADO-RS and STOW-RS against the
 * gateway on its embedded core for SOAK_MINUTES (10). It reports
 *  - errors: any answer that is not a success, a WADO-RS instance whose bytes differ from those sent (must be 0);
 *  - the gateway's peak RSS in every 10 s window; flat when the last minute's peak is within 20% of the second
 *    minute's (the first minute is warm-up: caches, JIT);
 *  - afterwards, every instance it stored retrieved with WADO-RS: MD5 of the bytes sent = MD5 of the bytes received.
 * Writes bench/results/soak-latest.md; exits 1 when one of the three checks fails.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { request, type Dispatcher } from 'undici';
import { makeInstance } from '../test/helpers/dicom-factory';
import { getMultipartBoundary, parseMultipart } from '../src/dicom/multipart-parser';
import { createBoundary, multipartContentType, PART_END, partHeader, closingDelimiter } from '../src/dicom/multipart-writer';
import { keepAliveAgent } from './http-client';
import { inParallel } from './load';
import { say } from './log';
import { installExitHooks, startEmbeddedSystem } from './processes';
import { watchPeakRss, type RssWatch } from './rss';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 10);
const CLIENTS = Number(process.env.SOAK_CLIENTS ?? 32);
const WINDOW_MS = 10_000;
const REQUEST_TIMEOUT_MS = 120_000;
/** Instances stored before the clock starts, so that the first QIDO/WADO requests have something to find. */
const SEED_INSTANCES = 200;
const INSTANCES_PER_SERIES = 50;
const SERIES_PER_STUDY = 10;
const RESULTS = join(__dirname, '..', '..', 'bench', 'results', 'soak-latest.md');

// ------------------------------------------------------------------------------------------- instances

/**
 * Files are made from a few generated templates by replacing placeholder UIDs with others of the same length (in
 * the file meta information and the data set alike): dcmjs needs tens of milliseconds per file, far too slow to
 * feed 32 clients.
 */
const UID_ROOT = '1.2.826.0.1.3680043.10.999';
const uid = (kind: 1 | 2 | 3, n: number): string => `${UID_ROOT}.${kind}.${String(1e12 + n)}`;
const PLACEHOLDERS = [uid(1, 0), uid(2, 0), uid(3, 0)].map((text) => Buffer.from(text, 'latin1'));

/** Small CT slices mostly, some 128 kB images. */
const TEMPLATES: Buffer[] = [
  ...Array.from({ length: 3 }, () => ({ Rows: 16, Columns: 16 })),
  { Rows: 64, Columns: 64, BitsAllocated: 16 as const },
  { Rows: 256, Columns: 256, BitsAllocated: 16 as const },
].map((size) =>
  makeInstance({ ...size, PatientID: 'SOAK', PatientName: 'Soak^Test', StudyInstanceUID: uid(1, 0), SeriesInstanceUID: uid(2, 0), SOPInstanceUID: uid(3, 0) }),
);

interface Stored {
  study: string;
  series: string;
  sop: string;
  md5: string;
}

function replaceAll(buffer: Buffer, from: Buffer, to: string): number {
  let count = 0;
  for (let at = buffer.indexOf(from); at >= 0; at = buffer.indexOf(from, at + from.length)) {
    buffer.write(to, at, 'latin1');
    count++;
  }
  return count;
}

let instanceCount = 0;

/** A new instance: series of 50 instances, studies of 10 series. */
function nextInstance(): { file: Buffer; stored: Stored } {
  const n = ++instanceCount;
  const series = Math.floor(n / INSTANCES_PER_SERIES);
  const ids = { study: uid(1, Math.floor(series / SERIES_PER_STUDY) + 1), series: uid(2, series + 1), sop: uid(3, n) };
  const file = Buffer.from(TEMPLATES[n % TEMPLATES.length]);
  const replaced = [ids.study, ids.series, ids.sop].map((value, i) => replaceAll(file, PLACEHOLDERS[i], value));
  // the SOP Instance UID is in the meta information and in the data set
  if (replaced[0] < 1 || replaced[1] < 1 || replaced[2] < 2) throw new Error(`placeholder UIDs not found in a template: ${replaced.join(',')}`);
  return { file, stored: { ...ids, md5: md5(file) } };
}

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

// ------------------------------------------------------------------------------------------- operations

type OperationName = 'QIDO studies' | 'QIDO series' | 'QIDO instances' | 'WADO instance' | 'WADO metadata' | 'STOW';

/** Share of each operation in a client's loop (sums to 1). */
const MIX: Array<[OperationName, number]> = [
  ['QIDO studies', 0.1],
  ['QIDO series', 0.1],
  ['QIDO instances', 0.1],
  ['WADO instance', 0.35],
  ['WADO metadata', 0.1],
  ['STOW', 0.25],
];

class SoakError extends Error {}

interface Context {
  url: string;
  agent: Dispatcher;
  stored: Stored[];
}

async function call(context: Context, path: string, options: { method?: 'GET' | 'POST'; headers?: Record<string, string>; body?: Buffer } = {}): Promise<Dispatcher.ResponseData> {
  const response = await request(`${context.url}/dicom-web/${path}`, {
    dispatcher: context.agent,
    method: options.method ?? 'GET',
    headers: options.headers,
    body: options.body,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  if (response.statusCode !== 200) {
    const text = (await response.body.text()).slice(0, 200);
    throw new SoakError(`${options.method ?? 'GET'} ${path}: ${response.statusCode} ${text}`);
  }
  return response;
}

async function json(context: Context, path: string): Promise<unknown[]> {
  const body = (await (await call(context, path, { headers: { accept: 'application/dicom+json' } })).body.json()) as unknown;
  if (!Array.isArray(body)) throw new SoakError(`GET ${path}: not a JSON array`);
  return body;
}

async function stow(context: Context, count: number): Promise<void> {
  const boundary = createBoundary();
  const made = Array.from({ length: count }, nextInstance);
  const chunks: Buffer[] = [];
  for (const { file } of made) chunks.push(partHeader(boundary, { contentType: 'application/dicom' }), file, PART_END);
  chunks.push(closingDelimiter(boundary));
  const response = await call(context, 'studies', {
    method: 'POST',
    headers: { 'content-type': multipartContentType(boundary, 'application/dicom'), accept: 'application/dicom+json' },
    body: Buffer.concat(chunks),
  });
  await response.body.dump();
  context.stored.push(...made.map((m) => m.stored));
}

/** WADO-RS retrieve of one instance, as stored; its MD5 must be the one of the bytes sent. */
async function retrieveAndCheck(context: Context, instance: Stored): Promise<void> {
  const path = `studies/${instance.study}/series/${instance.series}/instances/${instance.sop}`;
  const response = await call(context, path, { headers: { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
  const hashes: string[] = [];
  for await (const part of parseMultipart(response.body, getMultipartBoundary(String(response.headers['content-type'])))) {
    const hash = createHash('md5');
    for await (const chunk of part.body) hash.update(chunk as Buffer);
    hashes.push(hash.digest('hex'));
  }
  if (hashes.length !== 1 || hashes[0] !== instance.md5) throw new SoakError(`GET ${path}: ${hashes.length} part(s), MD5 ${hashes[0]} instead of ${instance.md5}`);
}

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)];
}

async function run(context: Context, operation: OperationName): Promise<void> {
  const instance = pick(context.stored);
  switch (operation) {
    case 'QIDO studies':
      await json(context, 'studies?limit=50&includefield=StudyDescription');
      return;
    case 'QIDO series':
      await json(context, `studies/${instance.study}/series`);
      return;
    case 'QIDO instances':
      await json(context, `studies/${instance.study}/series/${instance.series}/instances?limit=100`);
      return;
    case 'WADO instance':
      await retrieveAndCheck(context, instance);
      return;
    case 'WADO metadata':
      await json(context, `studies/${instance.study}/series/${instance.series}/metadata`);
      return;
    case 'STOW':
      await stow(context, 1 + Math.floor(Math.random() * 3));
      return;
  }
}

function chooseOperation(): OperationName {
  let r = Math.random();
  for (const [name, share] of MIX) {
    if (r < share) return name;
    r -= share;
  }
  return MIX[MIX.length - 1][0];
}

// ------------------------------------------------------------------------------------------- statistics

interface OperationStats {
  count: number;
  errors: number;
  latencies: number[];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const round = (value: number, digits = 1): string => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');

interface RssWindow {
  endSeconds: number;
  peakMiB: number | undefined;
}

/** Peak RSS of a process per 10 s window, through bench/rss.ts. */
function watchWindows(pid: number, started: number): { windows: RssWindow[]; stop(): void } {
  const windows: RssWindow[] = [];
  let watch: RssWatch = watchPeakRss([pid]);
  const close = (): void => {
    windows.push({ endSeconds: Math.round((Date.now() - started) / 1000), peakMiB: watch.stop().get(pid) });
  };
  const timer = setInterval(() => {
    close();
    watch = watchPeakRss([pid]);
  }, WINDOW_MS);
  return {
    windows,
    stop() {
      clearInterval(timer);
      close();
    },
  };
}

/** Peak of the windows ending in (from, to] seconds. */
function peakBetween(windows: RssWindow[], from: number, to: number): number | undefined {
  const peaks = windows.filter((w) => w.endSeconds > from && w.endSeconds <= to && w.peakMiB !== undefined).map((w) => w.peakMiB as number);
  return peaks.length > 0 ? Math.max(...peaks) : undefined;
}

// ------------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  installExitHooks();
  const startLoad = loadavg()[0];
  const system = await startEmbeddedSystem(process.env.BENCH_LOG_LEVEL ?? 'warn');
  const agent = keepAliveAgent(CLIENTS);
  const context: Context = { url: system.url, agent, stored: [] };
  const stats = new Map<OperationName, OperationStats>(MIX.map(([name]) => [name, { count: 0, errors: 0, latencies: [] }]));
  const errorSamples: string[] = [];
  try {
    say(`soak: embedded gateway at ${system.url} (pid ${system.pid}), ${CLIENTS} clients, ${MINUTES} min`);
    for (let i = 0; i < SEED_INSTANCES; i += 4) await stow(context, 4);

    const started = Date.now();
    const deadline = started + MINUTES * 60_000;
    const rss = watchWindows(system.pid as number, started);
    const progress = setInterval(() => {
      const last = rss.windows[rss.windows.length - 1];
      const total = [...stats.values()].reduce((sum, s) => sum + s.count, 0);
      say(`${Math.round((Date.now() - started) / 1000)} s: ${total} requests, ${context.stored.length} instances, RSS ${round(last?.peakMiB ?? NaN)} MiB`);
    }, 60_000);
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (Date.now() < deadline) {
          const operation = chooseOperation();
          const entry = stats.get(operation) as OperationStats;
          const t0 = performance.now();
          try {
            await run(context, operation);
            entry.latencies.push(performance.now() - t0);
          } catch (error) {
            entry.errors++;
            if (errorSamples.length < 10) errorSamples.push(`${operation}: ${(error as Error).message}`);
          }
          entry.count++;
        }
      }),
    );
    clearInterval(progress);
    rss.stop();
    const seconds = (Date.now() - started) / 1000;

    say(`verifying the ${context.stored.length} stored instances (WADO-RS, MD5)`);
    let verified = 0;
    const mismatches: string[] = [];
    await inParallel(context.stored, 8, async (instance) => {
      try {
        await retrieveAndCheck(context, instance);
        verified++;
      } catch (error) {
        if (mismatches.length < 10) mismatches.push((error as Error).message);
        else mismatches.push('');
      }
    });

    const errors = [...stats.values()].reduce((sum, s) => sum + s.errors, 0);
    const second = peakBetween(rss.windows, 60, 120);
    const last = peakBetween(rss.windows, seconds - 60, Infinity);
    const flat = second !== undefined && last !== undefined && last <= second * 1.2;
    const lines = [
      '# Soak test (`npm run bench:soak`)',
      '',
      `${new Date().toISOString()} · ${cpus().length} × ${cpus()[0]?.model ?? '?'} · Node ${process.version} · ` +
        `load average ${round(startLoad, 2)} → ${round(loadavg()[0], 2)}`,
      '',
      `Gateway on its embedded core, ${CLIENTS} clients for ${round(seconds / 60, 2)} min (SOAK_MINUTES=${MINUTES}), ` +
        `${SEED_INSTANCES} instances stored first; ${context.stored.length} instances at the end.`,
      '',
      '| operation | share | requests | errors | req/s | p50 ms | p95 ms | max ms |',
      '|---|---:|---:|---:|---:|---:|---:|---:|',
      ...MIX.map(([name, share]) => {
        const s = stats.get(name) as OperationStats;
        const sorted = [...s.latencies].sort((a, b) => a - b);
        return `| ${name} | ${share * 100}% | ${s.count} | ${s.errors} | ${round(s.count / seconds)} | ${round(percentile(sorted, 50))} | ${round(percentile(sorted, 95))} | ${round(sorted[sorted.length - 1] ?? NaN)} |`;
      }),
      '',
      `**Errors: ${errors}** (must be 0)${errorSamples.length > 0 ? `; first ones:\n\n${errorSamples.map((e) => `- ${e}`).join('\n')}` : ''}`,
      '',
      `**Stored instances retrieved byte-identical (WADO-RS, MD5): ${verified} / ${context.stored.length}**` +
        (mismatches.length > 0 ? `\n\n${mismatches.filter(Boolean).map((m) => `- ${m}`).join('\n')}` : ''),
      '',
      `**RSS: second minute's peak ${round(second ?? NaN)} MiB, last minute's peak ${round(last ?? NaN)} MiB: ` +
        `${flat ? 'flat' : 'NOT flat'}** (last ≤ 1.2 × second${seconds < 180 ? '; in a run this short they overlap' : ''})`,
      '',
      '| window end (s) | peak RSS (MiB) |',
      '|---:|---:|',
      ...rss.windows.map((w) => `| ${w.endSeconds} | ${round(w.peakMiB ?? NaN)} |`),
      '',
    ];
    mkdirSync(join(RESULTS, '..'), { recursive: true });
    writeFileSync(RESULTS, lines.join('\n'));
    process.stdout.write(`${lines.join('\n')}\n`);
    say(`written ${RESULTS}`);
    if (errors > 0 || verified !== context.stored.length || !flat) process.exitCode = 1;
  } finally {
    await agent.close();
    await system.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`soak failed: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
