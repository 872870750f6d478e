/**
 * Orthanc's metrics routes: GET /tools/metrics-prometheus (Prometheus text format 0.0.4) and GET|PUT
 * /tools/metrics (on or off at run time; "MetricsEnabled" at start, default true). As in Orthanc 1.10, a
 * gateway whose metrics are off still answers the route, with an empty exposition.
 *
 * What is measured: requests, their latency and the bytes on their connection by route family (qido, wado,
 * rendered, stow, wado-uri, dicomweb-client, jobs, ohif, metrics, native) and status; our jobs by state; the
 * image work limiter; searches of the embedded index by the thread that ran them; and the store's counts and sizes
 * from the core's /statistics under Orthanc's own metric names (orthanc_count_instances, orthanc_disk_size_mb, ...),
 * so that a dashboard made for Orthanc works here.
 */
import { Router, type RequestHandler } from 'express';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { GatewayConfig } from '../config/gateway-config';
import type { NativeCore } from '../core/native-model';
import { EmbeddedCore } from '../core/embedded/embedded-core';
import { RemoteCore } from '../core/remote/remote-core';
import { anyBodyAsText } from '../core/embedded/routes/tools';
import { Lru } from '../core/lru';
import { HttpError } from './errors';
import type { JobEngine, JobState } from './jobs';
import { logger } from './logger';
import { normalisePath } from './read-only';
import type { WorkLimiter } from './work-limiter';

const PREFIX = 'dicomweb_gateway_';
const JOB_STATES: readonly JobState[] = ['Pending', 'Running', 'Success', 'Failure', 'Paused', 'Retry'];
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const MB = 1024 * 1024;
/** Orthanc's names for what /statistics reports; sizes in fractional MB, from the byte counts, as Orthanc does. */
const STORE_GAUGES: ReadonlyArray<[string, string, string, number]> = [
  ['orthanc_count_patients', 'CountPatients', 'Patients in the store', 1],
  ['orthanc_count_studies', 'CountStudies', 'Studies in the store', 1],
  ['orthanc_count_series', 'CountSeries', 'Series in the store', 1],
  ['orthanc_count_instances', 'CountInstances', 'Instances in the store', 1],
  ['orthanc_disk_size_mb', 'TotalDiskSize', 'Size of the stored files, in MB', MB],
  ['orthanc_uncompressed_size_mb', 'TotalUncompressedSize', 'Size of the stored files once uncompressed, in MB', MB],
];

export type RouteFamily = 'qido' | 'wado' | 'rendered' | 'stow' | 'wado-uri' | 'dicomweb-client' | 'jobs' | 'ohif' | 'metrics' | 'native';

/** The family of a request, from its method and its path (below the app, before any router trims it). */
export function routeFamily(config: GatewayConfig, method: string, rawPath: string): RouteFamily {
  const path = normalisePath(rawPath).toLowerCase();
  const under = (root: string): string | undefined => {
    const base = root.replace(/\/$/, '').toLowerCase();
    return path === base || path.startsWith(`${base}/`) ? path.slice(base.length + 1) : undefined;
  };
  const dicomWeb = config.dicomWeb.enable ? under(config.dicomWeb.root) : undefined;
  if (dicomWeb !== undefined) {
    const segments = dicomWeb.split('/');
    if (segments[0] === 'servers') return 'dicomweb-client';
    if (method === 'POST') return 'stow';
    const last = segments[segments.length - 1];
    if (last === 'rendered' || last === 'thumbnail') return 'rendered';
    // searches end with a collection (studies, .../series, .../instances); retrievals with an identifier or a resource
    return segments.length % 2 === 1 && ['studies', 'series', 'instances'].includes(last) ? 'qido' : 'wado';
  }
  if (config.dicomWeb.enableWado && under(config.dicomWeb.wadoRoot) !== undefined) return 'wado-uri';
  if (config.ohifRoot && under(config.ohifRoot) !== undefined) return 'ohif';
  if (path === '/jobs' || path.startsWith('/jobs/')) return 'jobs';
  if (path === '/tools/metrics' || path === '/tools/metrics-prometheus') return 'metrics';
  return 'native';
}

export interface GatewayMetrics {
  /** Measures every request; install it first. */
  track: RequestHandler;
  /** The /tools/metrics routes. */
  routes: Router;
}

export function gatewayMetrics(config: GatewayConfig, core: NativeCore, jobs: JobEngine, imageWork: WorkLimiter): GatewayMetrics {
  let enabled = config.metricsEnabled;
  const registry = new Registry();
  // process metrics (CPU, memory, event loop) only once someone scrapes: they install observers
  let processMetrics = false;

  const requests = new Counter({ name: `${PREFIX}http_requests_total`, help: 'HTTP requests answered', labelNames: ['family', 'status'], registers: [registry] });
  const latency = new Histogram({
    name: `${PREFIX}http_request_duration_seconds`,
    help: 'Time from the request to the end of its answer',
    labelNames: ['family', 'status'],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const received = new Counter({ name: `${PREFIX}http_received_bytes_total`, help: 'Bytes of the requests (headers and bodies)', labelNames: ['family'], registers: [registry] });
  const sent = new Counter({ name: `${PREFIX}http_sent_bytes_total`, help: 'Bytes written to the connection for the answers (headers and bodies)', labelNames: ['family'], registers: [registry] });
  const active = new Gauge({ name: 'orthanc_rest_api_active_requests', help: 'Requests being served', registers: [registry] });

  const jobGauge = new Gauge({ name: `${PREFIX}jobs`, help: 'Jobs of this gateway by state', labelNames: ['state'], registers: [registry] });
  const orthancJobs: Record<string, Gauge> = Object.fromEntries(
    ['pending', 'running', 'success', 'failed', 'completed'].map((name) => [name, new Gauge({ name: `orthanc_jobs_${name}`, help: `Jobs: ${name}`, registers: [registry] })]),
  );
  const imageActive = new Gauge({ name: `${PREFIX}image_work_active`, help: 'Renderings and transcodings running', registers: [registry] });
  const imageWaiting = new Gauge({ name: `${PREFIX}image_work_waiting`, help: 'Renderings and transcodings waiting for a turn', registers: [registry] });
  const imageRefused = new Counter({ name: `${PREFIX}image_work_refused_total`, help: 'Image requests refused with 503 (queue full)', registers: [registry] });
  const searches = new Counter({
    name: `${PREFIX}searches_total`,
    help: 'Searches of the embedded index, by the thread that ran them (main, or a search thread while the main thread was busy)',
    labelNames: ['thread'],
    registers: [registry],
  });
  const store = STORE_GAUGES.map(([name, key, help, unit]) => ({ key, unit, gauge: new Gauge({ name, help, registers: [registry] }) }));

  const refresh = async (): Promise<void> => {
    const counts = new Map<JobState, number>(JOB_STATES.map((state) => [state, 0]));
    for (const id of jobs.ids()) {
      const state = jobs.describe(id)?.State as JobState | undefined;
      if (state) counts.set(state, (counts.get(state) ?? 0) + 1);
    }
    for (const [state, count] of counts) jobGauge.set({ state }, count);
    const [success, failure] = [counts.get('Success') ?? 0, counts.get('Failure') ?? 0];
    orthancJobs.pending.set(counts.get('Pending') ?? 0);
    orthancJobs.running.set(counts.get('Running') ?? 0);
    orthancJobs.success.set(success);
    orthancJobs.failed.set(failure);
    orthancJobs.completed.set(success + failure);
    const work = imageWork.stats();
    imageActive.set(work.active);
    imageWaiting.set(work.waiting);
    // the limiter counts; the counter shows its count
    imageRefused.reset();
    imageRefused.inc(work.refused);
    if (core instanceof EmbeddedCore) {
      const { mainThread, searchThreads } = core.searchThreads.counts;
      searches.reset();
      searches.inc({ thread: 'main' }, mainThread);
      searches.inc({ thread: 'search' }, searchThreads);
    }
    const statistics = await storeStatistics(core);
    for (const { key, unit, gauge } of store) {
      const value = Number(statistics?.[key]) / unit;
      // a remote core that does not answer: the store gauges are left out rather than shown as 0
      if (statistics && Number.isFinite(value)) gauge.set(value);
      else gauge.reset();
    }
  };

  // a small body arrives with its headers, before the request event: so bytes are counted per connection, answer by answer
  const socketTotals = new WeakMap<object, { read: number; written: number }>();
  // the family of a method and path, remembered: clients repeat the same few (searches, the same study's routes)
  const families = new Lru<string, RouteFamily>(1000);
  const familyOf = (method: string, path: string): RouteFamily => {
    const key = `${method} ${path}`;
    let family = families.get(key);
    if (family === undefined) {
      family = routeFamily(config, method, path);
      // bounded: at most 1000 keys of at most 512 characters, whatever paths clients make up
      if (key.length <= 512) families.set(key, family);
    }
    return family;
  };
  const track: RequestHandler = (req, res, next) => {
    if (!enabled) {
      next();
      return;
    }
    const family = familyOf(req.method, req.path);
    const started = process.hrtime.bigint();
    const socket = req.socket;
    active.inc();
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      active.dec();
      const labels = { family, status: String(res.statusCode) };
      requests.inc(labels);
      latency.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
      // what the connection carried since the previous answer on it: this request and its answer, headers included
      const last = socketTotals.get(socket) ?? { read: 0, written: 0 };
      received.inc({ family }, Math.max(0, socket.bytesRead - last.read));
      sent.inc({ family }, Math.max(0, socket.bytesWritten - last.written));
      socketTotals.set(socket, { read: socket.bytesRead, written: socket.bytesWritten });
    };
    res.once('finish', finish);
    res.once('close', finish);
    next();
  };

  const routes = Router();
  routes.get('/tools/metrics-prometheus', async (_req, res) => {
    res.setHeader('Content-Type', registry.contentType);
    if (!enabled) {
      res.status(200).end();
      return;
    }
    if (!processMetrics) {
      collectDefaultMetrics({ register: registry, prefix: PREFIX });
      processMetrics = true;
    }
    await refresh();
    res.status(200).end(await registry.metrics());
  });
  routes.get('/tools/metrics', (_req, res) => {
    res.type('text/plain').send(enabled ? '1' : '0');
  });
  routes.put('/tools/metrics', anyBodyAsText, (req, res) => {
    const text = typeof req.body === 'string' ? req.body.trim().toLowerCase() : '';
    if (!['0', '1', 'true', 'false'].includes(text)) throw new HttpError(400, 'The body must be "0" or "1"', `Got "${text.slice(0, 20)}"`);
    enabled = text === '1' || text === 'true';
    res.type('text/plain').send('');
  });
  return { track, routes };
}

async function storeStatistics(core: NativeCore): Promise<Record<string, unknown> | undefined> {
  if (core instanceof EmbeddedCore) return core.statistics();
  if (core instanceof RemoteCore) {
    try {
      return await core.http.json<Record<string, unknown>>('GET', '/statistics');
    } catch (error) {
      logger.warn({ err: error }, 'metrics: the core did not give its statistics');
    }
  }
  return undefined;
}
