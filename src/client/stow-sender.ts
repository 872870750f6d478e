/**
 * STOW-RS client: sends instances of the core to a remote server's {Url}studies, split into several
 * requests so that none exceeds DicomWeb.StowMaxInstances instances or StowMaxSize MB (0 = no limit).
 * Each body streams from core.readInstanceFile, one file at a time.
 */
import { Readable } from 'node:stream';
import type { DicomWebServerConfig, GatewayConfig } from '../config/gateway-config';
import type { InstanceResource, NativeCore, ResourceLevel } from '../core/native-model';
import {
  closingDelimiter,
  createBoundary,
  encodeMultipart,
  multipartContentType,
  PART_END,
  partHeader,
  type MultipartBodyPart,
} from '../dicom/multipart-writer';
import { HttpError } from '../server/errors';
import { readJson, remoteError, resolveServerUrl, sendOutbound } from './outbound-http';

export interface StowItem {
  id: string;
  size: number;
}

export interface StowSummary {
  instancesCount: number;
  failedInstancesCount: number;
  networkSize: number;
  requests: number;
}

/** What an asynchronous stow (a job) needs: cancellation, and progress as the body streams out. */
export interface StowControl {
  signal?: AbortSignal;
  /** Called with the bytes of instance files read into a request body so far (all batches together). */
  onBytes?: (bytes: number) => void;
  /** Called after each batch with the summary so far. */
  onBatch?: (summary: StowSummary) => void;
}

const LEVELS: ResourceLevel[] = ['Instance', 'Series', 'Study', 'Patient'];
const MB = 1024 * 1024;

/** The instances behind Orthanc ids of any level (the plugin tries instance, series, study, patient). */
export async function resolveStowResources(core: NativeCore, resources: unknown): Promise<StowItem[]> {
  if (!Array.isArray(resources)) {
    throw new HttpError(400, 'The body must be a JSON object with a "Resources" array of Orthanc identifiers');
  }
  const items: StowItem[] = [];
  const seen = new Set<string>();
  for (const id of resources) {
    if (typeof id !== 'string' || id === '') throw new HttpError(400, 'Each item of "Resources" must be an Orthanc identifier');
    let instances: InstanceResource[] | undefined;
    for (const level of LEVELS) {
      instances = await core.getInstances(level, id);
      // a real Orthanc answers an empty list, not 404, for a patient id asked at series or study level
      if (instances && instances.length > 0) break;
    }
    if (instances?.length === 0) instances = undefined;
    if (!instances) throw new HttpError(404, `Unknown resource: ${id}`);
    for (const instance of instances) {
      if (seen.has(instance.ID)) continue;
      seen.add(instance.ID);
      items.push({ id: instance.ID, size: instance.FileSize });
    }
  }
  return items;
}

/** Consecutive batches: a new one starts when one more instance would pass either limit (0 = none). */
export function planStowBatches(items: readonly StowItem[], maxInstances: number, maxSizeMB: number): StowItem[][] {
  const maxBytes = maxSizeMB * MB;
  const batches: StowItem[][] = [];
  let current: StowItem[] = [];
  let bytes = 0;
  for (const item of items) {
    const tooMany = maxInstances > 0 && current.length + 1 > maxInstances;
    const tooLarge = maxBytes > 0 && bytes + item.size > maxBytes;
    // A single instance larger than the limit still goes, alone.
    if (current.length > 0 && (tooMany || tooLarge)) {
      batches.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += item.size;
  }
  if (current.length > 0) batches.push(current);
  return batches;
}

const PART_TYPE = 'application/dicom';

/** Exact body size, known beforehand, for servers that do not accept chunked transfers. */
export function stowBodyLength(boundary: string, batch: readonly StowItem[]): number {
  let length = closingDelimiter(boundary).length;
  for (const item of batch) {
    length += partHeader(boundary, { contentType: PART_TYPE, contentLength: item.size }).length + item.size + PART_END.length;
  }
  return length;
}

async function* batchParts(core: NativeCore, batch: readonly StowItem[], onChunk?: (bytes: number) => void): AsyncGenerator<MultipartBodyPart> {
  for (const item of batch) {
    const file = await core.readInstanceFile(item.id);
    yield { headers: { contentType: PART_TYPE, contentLength: item.size }, body: checkedSize(file.stream, item.size, item.id, onChunk) };
  }
}

/** The bytes of a file, failing if their count differs from the size announced in the part header. */
async function* checkedSize(stream: AsyncIterable<Uint8Array>, size: number, id: string, onChunk?: (bytes: number) => void): AsyncGenerator<Uint8Array> {
  let seen = 0;
  for await (const chunk of stream) {
    seen += chunk.length;
    // the body is pulled as undici sends it, so bytes read approximate bytes sent
    onChunk?.(chunk.length);
    yield chunk;
  }
  if (seen !== size) throw new Error(`instance ${id}: read ${seen} bytes, expected ${size}`);
}

function sequenceLength(answer: Record<string, unknown>, tag: string): number | undefined {
  const attribute = (answer[tag] ?? answer[tag.toLowerCase()]) as { Value?: unknown } | undefined;
  if (attribute === undefined) return undefined;
  return Array.isArray(attribute.Value) ? attribute.Value.length : 0;
}

/** Instances the remote did not store, from its STOW-RS answer (PS3.18 10.5.3). */
export function countStowFailures(answer: unknown, sent: number): number {
  if (typeof answer !== 'object' || answer === null || Array.isArray(answer)) return sent;
  const record = answer as Record<string, unknown>;
  const referenced = sequenceLength(record, '00081199') ?? 0;
  const failed = sequenceLength(record, '00081198') ?? 0;
  return Math.min(sent, Math.max(failed, sent - referenced));
}

async function sendBatch(
  config: GatewayConfig,
  core: NativeCore,
  server: DicomWebServerConfig,
  batch: readonly StowItem[],
  extraHeaders: Record<string, string>,
  control: StowControl,
  onChunk: (bytes: number) => void,
): Promise<number> {
  const boundary = createBoundary();
  const headers: Record<string, string> = {
    accept: 'application/dicom+json',
    ...extraHeaders,
    'content-type': multipartContentType(boundary, PART_TYPE),
  };
  // Without chunked transfers, undici sends Content-Length instead of Transfer-Encoding: chunked.
  if (!server.chunkedTransfers) headers['content-length'] = String(stowBodyLength(boundary, batch));
  const body = Readable.from(encodeMultipart(boundary, batchParts(core, batch, onChunk)));
  const url = resolveServerUrl(server, 'studies');
  const response = await sendOutbound(config, server, { method: 'POST', url, headers, body, signal: control.signal });
  // 202 is a partial success (some failures listed in the answer); 409 = all failed but still a STOW answer.
  if (response.status !== 200 && response.status !== 202 && response.status !== 409) {
    throw await remoteError('STOW-RS failed', response);
  }
  return countStowFailures(await readJson(response.body), batch.length);
}

export async function sendStow(
  config: GatewayConfig,
  core: NativeCore,
  server: DicomWebServerConfig,
  items: readonly StowItem[],
  extraHeaders: Record<string, string>,
  control: StowControl = {},
): Promise<StowSummary> {
  const batches = planStowBatches(items, config.dicomWeb.stowMaxInstances, config.dicomWeb.stowMaxSize);
  const summary: StowSummary = { instancesCount: items.length, failedInstancesCount: 0, networkSize: 0, requests: 0 };
  let bytes = 0;
  const onChunk = (n: number): void => {
    bytes += n;
    control.onBytes?.(bytes);
  };
  for (const batch of batches) {
    control.signal?.throwIfAborted();
    summary.failedInstancesCount += await sendBatch(config, core, server, batch, extraHeaders, control, onChunk);
    summary.networkSize += batch.reduce((sum, item) => sum + item.size, 0);
    summary.requests++;
    control.onBatch?.(summary);
  }
  return summary;
}
