/**
 * The measured operations. Each one measures a single value on one system; an error answer
 * (e.g. a route that does not exist yet) becomes NotAvailable("status 404"), reported as n/a.
 */
import type { Dispatcher } from 'undici';
import type { DataSets } from './datasets';
import { jsonArrayLength, timedRequest, type TimedResponse } from './http-client';
import { keepAliveLoad } from './keep-alive-load';
import type { RunningSystem } from './processes';

export type Unit = 'ms' | 'MB/s' | 'inst/s' | 'req/s' | 'MiB';

export interface Measurement {
  value: number;
  /** JSON array length of the answer (QIDO), to spot systems that answer differently. */
  items?: number;
  bytes?: number;
}

export interface OperationContext {
  system: RunningSystem;
  dispatcher: Dispatcher;
  data: DataSets;
  loadSeconds: number;
  loadClients: number;
}

export interface Operation {
  id: string;
  label: string;
  unit: Unit;
  /** 'once': measured one time per system (cold calls, load tests); 'repeat': every run. */
  mode: 'once' | 'repeat';
  measure(ctx: OperationContext): Promise<Measurement>;
}

export class NotAvailable extends Error {}

const JSON_ACCEPT = 'application/dicom+json';
const DICOM_MULTIPART = 'multipart/related; type="application/dicom"';
const OCTET_MULTIPART = 'multipart/related; type="application/octet-stream"';

function dicomWeb(ctx: OperationContext, path: string): string {
  return `${ctx.system.url}${ctx.system.dicomWebRoot}${path}`;
}

async function get(ctx: OperationContext, url: string, accept: string, keepText = false): Promise<TimedResponse> {
  let response: TimedResponse;
  try {
    response = await timedRequest(ctx.dispatcher, url, { headers: { accept }, keepText, timeoutMs: 300_000 });
  } catch (error) {
    throw new NotAvailable((error as Error).message);
  }
  if (response.status >= 400) throw new NotAvailable(`status ${response.status}`);
  return response;
}

/** Milliseconds of a QIDO query, with the number of matches. */
function qido(path: (ctx: OperationContext) => string): (ctx: OperationContext) => Promise<Measurement> {
  return async (ctx) => {
    const response = await get(ctx, dicomWeb(ctx, path(ctx)), JSON_ACCEPT, true);
    return { value: response.ms, items: jsonArrayLength(response.text) ?? 0, bytes: response.bytes };
  };
}

function timed(url: (ctx: OperationContext) => string, accept: string): (ctx: OperationContext) => Promise<Measurement> {
  return async (ctx) => {
    const response = await get(ctx, url(ctx), accept);
    return { value: response.ms, bytes: response.bytes };
  };
}

function throughput(url: (ctx: OperationContext) => string, accept: string): (ctx: OperationContext) => Promise<Measurement> {
  return async (ctx) => {
    const response = await get(ctx, url(ctx), accept);
    return { value: response.bytes / 1e6 / (response.ms / 1000), bytes: response.bytes };
  };
}

const ctSeriesPath = (ctx: OperationContext): string => `/studies/${ctx.data.ct.studyUid}/series/${ctx.data.ct.seriesUid}`;
const ctStudyPath = (ctx: OperationContext): string => `/studies/${ctx.data.ct.studyUid}`;
const ctMiddleSop = (ctx: OperationContext): string => ctx.data.ct.sopUids[Math.floor(ctx.data.ct.sopUids.length / 2)];
const ctInstancePath = (ctx: OperationContext): string => `${ctSeriesPath(ctx)}/instances/${ctMiddleSop(ctx)}`;
const mfInstancePath = (ctx: OperationContext): string => {
  const mf = ctx.data.multiframe;
  return `/studies/${mf.studyUid}/series/${mf.seriesUid}/instances/${mf.sopUids[0]}`;
};
const frameList = (count: number): string => Array.from({ length: count }, (_, i) => i + 1).join(',');

function wadoUri(ctx: OperationContext, contentType: string): string {
  // The value stays unescaped ("image/jpeg"): plugin 1.7 does not URL-decode contentType, and "/" is legal in a query.
  const query = [
    'requestType=WADO',
    `studyUID=${ctx.data.ct.studyUid}`,
    `seriesUID=${ctx.data.ct.seriesUid}`,
    `objectUID=${ctMiddleSop(ctx)}`,
    `contentType=${contentType}`,
  ];
  return `${ctx.system.url}/wado?${query.join('&')}`;
}

/** Unmeasured load before the measured one: JIT-compiled code and warm index pages, as in steady service. */
const WARM_UP_SECONDS = 2;

/** Undefined when a PatientID search answered at least one study, all of that patient; else what is wrong. */
function patientStudies(body: Buffer, path: string): string | undefined {
  const patientId = new URLSearchParams(path.slice(path.indexOf('?') + 1)).get('PatientID');
  let studies: unknown;
  try {
    studies = JSON.parse(body.toString('utf8'));
  } catch {
    return 'the answer is not JSON';
  }
  if (!Array.isArray(studies) || studies.length === 0) return 'no study found';
  const ids = studies.map((study) => (study as Record<string, { Value?: unknown[] } | undefined>)['00100020']?.Value?.[0]);
  return ids.every((id) => id === patientId) ? undefined : `studies of other patients: ${ids.join(', ')}`;
}

/** `clients` keep-alive connections searching by PatientID for `seconds` (after a warm-up); requests per second. */
async function concurrentSearches(ctx: OperationContext): Promise<Measurement> {
  const patients = ctx.data.small.studies.map((s) => s.patientId);
  let counter = 0;
  const load = (seconds: number): ReturnType<typeof keepAliveLoad> =>
    keepAliveLoad({
      url: ctx.system.url,
      connections: ctx.loadClients,
      seconds,
      nextPath: () => `${ctx.system.dicomWebRoot}/studies?PatientID=${encodeURIComponent(patients[counter++ % patients.length])}`,
      accept: JSON_ACCEPT,
      check: patientStudies,
    });
  const warm = await load(WARM_UP_SECONDS);
  if (warm.firstError !== undefined) throw new NotAvailable(warm.firstError);
  const measured = await load(ctx.loadSeconds);
  if (measured.firstError !== undefined) throw new NotAvailable(measured.firstError);
  return { value: measured.ok / measured.elapsed };
}

export function operations(): Operation[] {
  return [
    { id: 'qido-all', label: 'QIDO all studies', unit: 'ms', mode: 'repeat', measure: qido(() => '/studies') },
    { id: 'qido-name', label: 'QIDO PatientName=SMITH*&limit=100', unit: 'ms', mode: 'repeat', measure: qido(() => '/studies?PatientName=SMITH*&limit=100') },
    { id: 'qido-date', label: 'QIDO StudyDate=20200101-20201231', unit: 'ms', mode: 'repeat', measure: qido(() => '/studies?StudyDate=20200101-20201231') },
    { id: 'qido-fields', label: 'QIDO includefield=all&limit=1000', unit: 'ms', mode: 'repeat', measure: qido(() => '/studies?includefield=all&limit=1000') },
    { id: 'qido-series', label: 'QIDO series of the CT study', unit: 'ms', mode: 'repeat', measure: qido((c) => `${ctStudyPath(c)}/series`) },
    { id: 'qido-instances', label: 'QIDO instances of the CT series', unit: 'ms', mode: 'repeat', measure: qido((c) => `${ctSeriesPath(c)}/instances`) },
    { id: 'meta-series-cold', label: 'Series metadata, cold (1st call)', unit: 'ms', mode: 'once', measure: timed((c) => dicomWeb(c, `${ctSeriesPath(c)}/metadata`), JSON_ACCEPT) },
    { id: 'meta-study-cold', label: 'Study metadata, cold (1st call)', unit: 'ms', mode: 'once', measure: timed((c) => dicomWeb(c, `${ctStudyPath(c)}/metadata`), JSON_ACCEPT) },
    { id: 'meta-series-warm', label: 'Series metadata, warm', unit: 'ms', mode: 'repeat', measure: timed((c) => dicomWeb(c, `${ctSeriesPath(c)}/metadata`), JSON_ACCEPT) },
    { id: 'meta-study-warm', label: 'Study metadata, warm', unit: 'ms', mode: 'repeat', measure: timed((c) => dicomWeb(c, `${ctStudyPath(c)}/metadata`), JSON_ACCEPT) },
    { id: 'retrieve-series', label: 'Retrieve the CT series', unit: 'MB/s', mode: 'repeat', measure: throughput((c) => dicomWeb(c, ctSeriesPath(c)), DICOM_MULTIPART) },
    { id: 'retrieve-instance', label: 'Retrieve one CT instance', unit: 'ms', mode: 'repeat', measure: timed((c) => dicomWeb(c, ctInstancePath(c)), DICOM_MULTIPART) },
    { id: 'frame-1', label: 'Multi-frame: frame 1', unit: 'ms', mode: 'repeat', measure: timed((c) => dicomWeb(c, `${mfInstancePath(c)}/frames/1`), OCTET_MULTIPART) },
    { id: 'frames-all', label: 'Multi-frame: all frames (1..N)', unit: 'ms', mode: 'repeat', measure: timed((c) => dicomWeb(c, `${mfInstancePath(c)}/frames/${frameList(c.data.multiframe.frames ?? 1)}`), OCTET_MULTIPART) },
    { id: 'rendered', label: 'Rendered CT instance (JPEG)', unit: 'ms', mode: 'repeat', measure: timed((c) => dicomWeb(c, `${ctInstancePath(c)}/rendered`), 'image/jpeg') },
    { id: 'wado-uri-dicom', label: 'WADO-URI application/dicom', unit: 'ms', mode: 'repeat', measure: timed((c) => wadoUri(c, 'application/dicom'), '*/*') },
    { id: 'wado-uri-jpeg', label: 'WADO-URI image/jpeg', unit: 'ms', mode: 'repeat', measure: timed((c) => wadoUri(c, 'image/jpeg'), '*/*') },
    { id: 'concurrent-qido', label: '16 keep-alive clients, PatientID QIDO', unit: 'req/s', mode: 'once', measure: concurrentSearches },
  ];
}
