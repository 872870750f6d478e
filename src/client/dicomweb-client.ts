/**
 * /dicom-web/servers/...: the client primitives of the Orthanc DICOMweb plugin (DicomWebClient.cpp).
 * Only servers of the registry are reachable, and only under their base URL.
 * stow and retrieve also run as jobs ("Synchronous": false or "Asynchronous": true): the answer is {ID, Path}
 * and the job's Content is what the synchronous call would have answered.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import express, { Router, type Request, type Response } from 'express';
import type { DicomWebServerConfig, GatewayConfig } from '../config/gateway-config';
import type { NativeCore } from '../core/native-model';
import { getMultipartBoundary, MultipartError, parseMultipart } from '../dicom/multipart-parser';
import { tagToKeyword } from '../dicom/dictionary';
import { HttpError } from '../server/errors';
import { isAsynchronous, jobsOf, priorityOf, submitJob } from '../server/jobs';
import { readJson, remoteError, resolveServerUrl, sendOutbound, type OutboundResponse } from './outbound-http';
import { createServerRegistry, parseServerDefinition, publicDefinition, requireServer, serverOperations, type ServerRegistry } from './server-registry';
import { resolveStowResources, sendStow, type StowItem, type StowSummary } from './stow-sender';

export interface DicomWebClientContext {
  config: GatewayConfig;
  core: NativeCore;
}

const MB = 1024 * 1024;

function bodyObject(req: Request): Record<string, unknown> {
  const body: unknown = req.body;
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 'The request body must be a JSON object');
  }
  return body as Record<string, unknown>;
}

/** An optional { name: string } member (HttpHeaders, Arguments, GetArguments). */
function stringMap(body: Record<string, unknown>, key: string): Record<string, string> {
  const value = body[key];
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new HttpError(400, `"${key}" must be a JSON object`);
  const map: Record<string, string> = {};
  for (const [name, item] of Object.entries(value)) {
    if (typeof item !== 'string') throw new HttpError(400, `"${key}.${name}" must be a string`);
    map[name] = item;
  }
  return map;
}

function requiredUri(body: Record<string, unknown>): string {
  if (typeof body.Uri !== 'string') throw new HttpError(400, 'The body must have a "Uri" string, relative to the server URL');
  return body.Uri;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade', 'proxy-authenticate', 'trailer', 'te', 'set-cookie', 'www-authenticate']);

/** Streams a remote answer to our client: status, Content-Type and end-to-end headers. */
async function passThrough(res: Response, response: OutboundResponse): Promise<void> {
  res.status(response.status);
  res.setHeader('content-type', String(response.headers['content-type'] ?? 'application/octet-stream'));
  for (const [name, value] of Object.entries(response.headers)) {
    if (value === undefined || name === 'content-type' || HOP_BY_HOP.has(name)) continue;
    res.setHeader(name, value);
  }
  await pipeline(response.body, res);
}

function simplifyValue(attribute: { vr?: string; Value?: unknown[] }): unknown {
  const values = attribute.Value ?? [];
  if (attribute.vr === 'SQ') return values.map((item) => simplifyDataset(item));
  return values
    .map((v) => (typeof v === 'object' && v !== null ? String((v as { Alphabetic?: unknown }).Alphabetic ?? '') : v === null ? '' : String(v)))
    .join('\\');
}

/** DICOM JSON → Orthanc's simplified JSON: keyword (or "gggg,eeee" for unknown tags) → value. */
export function simplifyDataset(dataset: unknown): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  if (typeof dataset !== 'object' || dataset === null) return result;
  for (const [tag, attribute] of Object.entries(dataset as Record<string, { vr?: string; Value?: unknown[] }>)) {
    const name = tagToKeyword(tag.toUpperCase()) ?? `${tag.slice(0, 4)},${tag.slice(4, 8)}`.toLowerCase();
    if (attribute && typeof attribute === 'object' && !('BulkDataURI' in attribute) && !('InlineBinary' in attribute)) {
      result[name] = simplifyValue(attribute);
    }
  }
  return result;
}

/** The WADO-RS path of one {Study, Series?, Instance?} resource of a retrieve request. */
function retrievePath(resource: unknown): string {
  if (typeof resource !== 'object' || resource === null) throw new HttpError(400, 'Each item of "Resources" must be an object');
  const { Study, Series, Instance } = resource as Record<string, unknown>;
  const uid = (value: unknown): string | undefined => {
    if (value === undefined || value === null || value === '') return undefined;
    if (typeof value !== 'string' || !/^[0-9.]{1,64}$/.test(value)) throw new HttpError(400, `Invalid UID in "Resources": ${String(value)}`);
    return value;
  };
  const study = uid(Study);
  const series = uid(Series);
  const instance = uid(Instance);
  if (study === undefined) throw new HttpError(400, 'Missing "Study" field in the body');
  if (instance !== undefined && series === undefined) throw new HttpError(400, 'Missing "Series" field in the body, as "Instance" is present');
  return `studies/${study}${series ? `/series/${series}` : ''}${instance ? `/instances/${instance}` : ''}`;
}

/** Accept of a WADO-RS retrieve, unless the caller set one: any transfer syntax, as stored. */
function wadoHeaders(extra: Record<string, string>): Record<string, string> {
  const hasAccept = Object.keys(extra).some((h) => h.toLowerCase() === 'accept');
  return hasAccept ? extra : { accept: 'multipart/related; type="application/dicom"; transfer-syntax=*', ...extra };
}

/** The WADO-RS path that a "delete" body {Level, StudyInstanceUID, SeriesInstanceUID?, SOPInstanceUID?} names. */
function deletePath(body: Record<string, unknown>): string {
  const level = typeof body.Level === 'string' ? body.Level.toLowerCase() : undefined;
  const depth = { study: 1, series: 2, instance: 3 }[level ?? ''];
  if (depth === undefined) throw new HttpError(400, 'The request body must contain a "Level" field: Study, Series or Instance');
  const keys = ['StudyInstanceUID', 'SeriesInstanceUID', 'SOPInstanceUID'].slice(0, depth);
  const uids = keys.map((key) => {
    const value = body[key];
    if (typeof value !== 'string' || !/^[0-9.]{1,64}$/.test(value)) throw new HttpError(400, `The request body must contain a valid "${key}" field`);
    return value;
  });
  return ['studies', 'series', 'instances'].flatMap((segment, i) => (i < uids.length ? [segment, uids[i]] : [])).join('/');
}

interface RetrieveOutcome {
  instances: string[];
  networkSize: number;
  /** Called after each stored instance (job Content and progress). */
  onStored?: () => void;
}

/** Stores each application/dicom part of a WADO-RS answer through a temp file (the core takes it over). */
async function storeParts(core: NativeCore, response: OutboundResponse, outcome: RetrieveOutcome): Promise<void> {
  const contentType = String(response.headers['content-type'] ?? '');
  let boundary: string;
  try {
    boundary = getMultipartBoundary(contentType);
  } catch {
    response.body.destroy();
    throw new HttpError(502, 'The WADO-RS answer of the DICOMweb server is not multipart/related', contentType.slice(0, 200));
  }
  const dir = await mkdtemp(join(tmpdir(), 'dicomweb-retrieve-'));
  // the next part is received while the previous ones are stored; a remote Orthanc stores several at once
  const maxStoring = core.kind === 'remote' ? 4 : 1;
  const storing: Array<Promise<void>> = [];
  const settleOldest = async (): Promise<void> => {
    await storing.shift();
  };
  try {
    for await (const part of parseMultipart(response.body, boundary)) {
      const type = (part.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
      if (type !== 'application/dicom') {
        throw new HttpError(502, `Parts of a WADO-RS retrieve should be application/dicom, received: ${type}`);
      }
      const file = join(dir, `part-${part.index}.dcm`);
      let size = 0;
      part.body.on('data', (chunk: Buffer) => (size += chunk.length));
      await pipeline(part.body, createWriteStream(file));
      outcome.networkSize += size;
      if (storing.length >= maxStoring) await settleOldest();
      // counted as soon as stored (a job's progress), in the order the stores end
      const store = core.storeInstance({ file }).then((stored) => {
        outcome.instances.push(stored.ID);
        outcome.onStored?.();
      });
      store.catch(() => undefined); // seen when its turn comes
      storing.push(store);
    }
    while (storing.length > 0) await settleOldest();
  } catch (error) {
    response.body.destroy();
    if (error instanceof MultipartError) throw new HttpError(502, 'Malformed WADO-RS answer from the DICOMweb server', error.message);
    throw error;
  } finally {
    // the stores still running read their files from `dir`
    await Promise.allSettled(storing);
    await rm(dir, { recursive: true, force: true });
  }
}

export function dicomWebClientRouter(context: DicomWebClientContext, registry: ServerRegistry = createServerRegistry(context.config.dicomWeb.servers)): Router {
  const { config, core } = context;
  const router = Router();
  const json = express.json({ limit: '4mb', strict: false });
  const server = (req: Request): DicomWebServerConfig => requireServer(registry, String(req.params.name));

  router.get('/servers', (req, res) => {
    if (req.query.expand === undefined) {
      res.json(registry.names());
      return;
    }
    res.json(Object.fromEntries(registry.names().map((name) => [name, publicDefinition(registry.get(name) as DicomWebServerConfig)])));
  });

  router.get('/servers/:name', (req, res) => {
    res.json(serverOperations(server(req)));
  });

  router.put('/servers/:name', json, (req, res) => {
    const name = String(req.params.name);
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new HttpError(400, 'Invalid server name');
    registry.set(name, parseServerDefinition(req.body));
    res.json({});
  });

  router.delete('/servers/:name', (req, res) => {
    if (!registry.remove(String(req.params.name))) throw new HttpError(404, `Unknown DICOMweb server: ${req.params.name}`);
    res.json({});
  });

  router.post('/servers/:name/get', json, async (req, res) => {
    const target = server(req);
    const body = bodyObject(req);
    const url = resolveServerUrl(target, requiredUri(body), stringMap(body, 'Arguments'));
    await passThrough(res, await sendOutbound(config, target, { method: 'GET', url, headers: stringMap(body, 'HttpHeaders') }));
  });

  router.post('/servers/:name/post', json, async (req, res) => {
    const target = server(req);
    const body = bodyObject(req);
    const url = resolveServerUrl(target, requiredUri(body), stringMap(body, 'Arguments'));
    const headers = stringMap(body, 'HttpHeaders');
    let payload: string;
    if (typeof body.Body === 'string') {
      payload = body.Body;
    } else {
      payload = JSON.stringify(body.Body ?? null);
      if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
    }
    await passThrough(res, await sendOutbound(config, target, { method: 'POST', url, headers, body: payload }));
  });

  router.post('/servers/:name/qido', json, async (req, res) => {
    const target = server(req);
    const body = bodyObject(req);
    const url = resolveServerUrl(target, requiredUri(body), stringMap(body, 'Arguments'));
    const headers = { accept: 'application/dicom+json', ...stringMap(body, 'HttpHeaders') };
    const response = await sendOutbound(config, target, { method: 'GET', url, headers });
    if (response.status === 204) {
      response.body.destroy();
      res.json([]);
      return;
    }
    if (response.status !== 200) throw await remoteError('QIDO-RS failed', response);
    const answer = await readJson(response.body);
    if (!Array.isArray(answer)) throw new HttpError(502, 'The QIDO-RS answer of the DICOMweb server is not a JSON array');
    res.json(answer.map((dataset) => simplifyDataset(dataset)));
  });

  router.post('/servers/:name/stow', json, async (req, res) => {
    const name = String(req.params.name);
    const target = server(req);
    const body = bodyObject(req);
    const items = await resolveStowResources(core, body.Resources);
    const headers = stringMap(body, 'HttpHeaders');
    const content = (summary: StowSummary): Record<string, unknown> => stowContent(name, body.Resources, summary);
    if (!isAsynchronous(body)) {
      res.json(content(await sendStow(config, core, target, items, headers)));
      return;
    }
    const total = Math.max(1, totalSize(items));
    const empty: StowSummary = { instancesCount: items.length, failedInstancesCount: 0, networkSize: 0, requests: 0 };
    res.json(
      submitJob(jobsOf(core), {
        type: 'DicomWebStowClient',
        priority: priorityOf(body),
        content: content(empty),
        work: async ({ signal, progress, setContent }) =>
          content(
            await sendStow(config, core, target, items, headers, {
              signal,
              onBytes: (bytes) => progress((100 * bytes) / total),
              onBatch: (summary) => setContent(content(summary)),
            }),
          ),
      }),
    );
  });

  /** Fetches each WADO-RS URL in turn and stores what it answers, synchronously or as a job. */
  async function retrieveUrls(req: Request, res: Response, urls: string[], headers: Record<string, string>, answer: (outcome: RetrieveOutcome) => unknown): Promise<void> {
    const target = server(req);
    const body = bodyObject(req);
    const fetchUrl = async (url: string, outcome: RetrieveOutcome, signal?: AbortSignal): Promise<void> => {
      const response = await sendOutbound(config, target, { method: 'GET', url, headers, signal });
      if (response.status !== 200) throw await remoteError(`WADO-RS ${new URL(url).pathname} failed`, response);
      await storeParts(core, response, outcome);
    };
    if (!isAsynchronous(body)) {
      const outcome: RetrieveOutcome = { instances: [], networkSize: 0 };
      for (const url of urls) await fetchUrl(url, outcome);
      res.json(answer(outcome));
      return;
    }
    res.json(
      submitJob(jobsOf(core), {
        type: 'DicomWebWadoRetrieveClient',
        priority: priorityOf(body),
        content: retrieveContent({ instances: [], networkSize: 0 }),
        work: async ({ signal, progress, setContent }) => {
          // published after each instance: a canceled retrieve keeps (and shows) what it already stored, as Orthanc does
          const outcome: RetrieveOutcome = { instances: [], networkSize: 0, onStored: () => setContent(retrieveContent(outcome)) };
          for (const [index, url] of urls.entries()) {
            signal.throwIfAborted();
            await fetchUrl(url, outcome, signal);
            progress((100 * (index + 1)) / urls.length);
          }
          return retrieveContent(outcome);
        },
      }),
    );
  }

  router.post('/servers/:name/retrieve', json, async (req, res) => {
    const target = server(req);
    const body = bodyObject(req);
    if (!Array.isArray(body.Resources)) throw new HttpError(400, 'The body must be a JSON object containing an array "Resources"');
    const args = stringMap(body, 'GetArguments');
    const urls = body.Resources.map((resource) => resolveServerUrl(target, retrievePath(resource), args));
    await retrieveUrls(req, res, urls, wadoHeaders(stringMap(body, 'HttpHeaders')), retrieveContent);
  });

  // The plugin's "wado": one WADO-RS Uri (as for "get"), every instance of the answer stored locally.
  router.post('/servers/:name/wado', json, async (req, res) => {
    const body = bodyObject(req);
    const url = resolveServerUrl(server(req), requiredUri(body), stringMap(body, 'Arguments'));
    await retrieveUrls(req, res, [url], wadoHeaders(stringMap(body, 'HttpHeaders')), (outcome) => ({
      InstancesCount: outcome.instances.length,
      Instances: [...outcome.instances],
    }));
  });

  router.post('/servers/:name/delete', json, async (req, res) => {
    const name = String(req.params.name);
    const target = server(req);
    if (!target.hasDelete) throw new HttpError(400, `Cannot delete on DICOMweb server, check out property "HasDelete": ${name}`);
    const response = await sendOutbound(config, target, { method: 'DELETE', url: resolveServerUrl(target, deletePath(bodyObject(req))) });
    if (response.status < 200 || response.status > 299) throw await remoteError('DICOMweb DELETE failed', response);
    response.body.resume(); // drain the (small) answer: destroying an unread undici body raises an abort error
    res.json({});
  });

  return router;
}

function totalSize(items: readonly StowItem[]): number {
  return items.reduce((sum, item) => sum + item.size, 0);
}

/** The plugin's stow job content has string values; we keep its keys and spelling. */
function stowContent(server: string, resources: unknown, summary: StowSummary): Record<string, unknown> {
  return {
    Resources: resources,
    Server: server,
    InstancesCount: String(summary.instancesCount),
    FailedInstancesCount: String(summary.failedInstancesCount),
    NetworkSizeMB: String(Math.floor(summary.networkSize / MB)),
  };
}

function retrieveContent(outcome: RetrieveOutcome): Record<string, unknown> {
  return {
    ReceivedInstancesCount: String(outcome.instances.length),
    NetworkUsageMB: String(Math.floor(outcome.networkSize / MB)),
    Instances: [...outcome.instances],
  };
}
