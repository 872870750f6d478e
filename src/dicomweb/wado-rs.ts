/**
 * WADO-RS (PS3.18 §10.4): Retrieve Instances and Retrieve Metadata at study, series and instance
 * level; frames and bulk data are in wado-pixels.ts.
 *
 * Instances stream one after the other into the answer (never a whole study in memory). The default
 * transfer syntax is Explicit VR Little Endian (§8.7.3.2): other native syntaxes are re-encoded and
 * compressed ones decoded; `transfer-syntax=*` sends files as stored. Series metadata is cached on
 * disk (metadata-cache.ts) with an ETag.
 */
import { createReadStream } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import type { GatewayConfig } from '../config/gateway-config';
import { CoreError, type FileStream, type NativeCore } from '../core/native-model';
import type { DicomJsonDataset } from '../dicom/dicom-json';
import { dicomJsonToXml } from '../dicom/dicom-xml';
import { formatMediaType, type MediaOffer } from '../dicom/media-types';
import { createBoundary, multipartContentType, type MultipartBodyPart } from '../dicom/multipart-writer';
import { releaseView } from '../dicom/block-pool';
import { canTranscode, TranscodeError, transcodeFile } from '../dicom/transcode';
import { DEFAULT_TRANSFER_SYNTAX } from '../dicom/transfer-syntax';
import { mapLimit } from '../core/map-limit';
import { HttpError } from '../server/errors';
import type { DicomWebContext } from './dicomweb-router';
import { buildInstanceJson, buildSeriesJson, instancePath, joinJsonArrays, seriesMetadataKey, withBase, type MetadataMode, type OtherBinaryMode } from './metadata';
import { baseHash, MetadataCache } from './metadata-cache';
import { publicBaseUrl } from './public-url';
import { storedTransferSyntax } from './instance-header';
import { acceptsGzip, negotiate, notAcceptable, notModified, sendMultipart } from './wado-http';
import { wadoPixelRoutes } from './wado-pixels';
import {
  resolveInstance,
  resolveSeries,
  resolveStudies,
  seriesRefOf,
  seriesTarget,
  studySeriesTargets,
  type InstanceRef,
  type SeriesTarget,
} from './wado-resources';

const gzipAsync = promisify(gzip);
/** Whole files are sent: large reads (a CT slice in one), few writes. */
const RETRIEVE_CHUNK_BYTES = 1 << 20;
/** Instances read ahead of the one being sent, so that disk reads overlap socket writes... */
const READ_AHEAD = 2;
/** ...more for a remote core, where each file is a round trip: several in flight hide its latency... */
const REMOTE_READ_AHEAD = 16;
/** ...each read whole when no larger than this (a larger one streams when its turn comes). */
const READ_AHEAD_MAX_BYTES = 4 << 20;

interface LoadedInstance {
  file: FileStream;
  body: Uint8Array | AsyncIterable<Uint8Array | string>;
}

async function readWhole(stream: AsyncIterable<Uint8Array | string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
}

function instanceOffer(mediaType: string, partType: string | undefined, transferSyntaxes: readonly string[]): MediaOffer {
  return { mediaType, partType, transferSyntaxes, defaultTransferSyntax: DEFAULT_TRANSFER_SYNTAX, anyTransferSyntax: true };
}

const METADATA_OFFERS: readonly MediaOffer[] = [
  { mediaType: 'application/dicom+json' },
  { mediaType: 'application/json' },
  { mediaType: 'multipart/related', partType: 'application/dicom+xml' },
];

// ------------------------------------------------------------------------------------------------
// Retrieve instances

type Level = 'study' | 'series' | 'instance';

/** The series a study or series path names. */
async function seriesOfPath(core: NativeCore, req: Request, level: Exclude<Level, 'instance'>): Promise<SeriesTarget[]> {
  const study = String(req.params.study);
  if (level === 'study') return studySeriesTargets(core, study, await resolveStudies(core, study));
  return [seriesTarget(study, await resolveSeries(core, study, String(req.params.series)))];
}

async function instancesOfPath(core: NativeCore, req: Request, level: Level): Promise<InstanceRef[]> {
  if (level === 'instance') return [await resolveInstance(core, String(req.params.study), String(req.params.series), String(req.params.instance))];
  const series = await mapLimit(await seriesOfPath(core, req, level), 8, (target) => seriesRefOf(core, target));
  return series.flatMap((s) => s.instances);
}

async function storedSyntaxes(core: NativeCore, instances: readonly InstanceRef[]): Promise<string[]> {
  return mapLimit(instances, 16, async (ref) => (await storedTransferSyntax(core, ref)) ?? DEFAULT_TRANSFER_SYNTAX);
}

/**
 * Checks that every instance can be sent in `target` before anything is sent; the 406 lists what
 * these instances can be sent in.
 */
function checkTranscodable(stored: readonly string[], target: string, mediaType: string, partType: string | undefined): void {
  if (stored.every((syntax) => canTranscode(syntax, target))) return;
  const offered = new Set<string>();
  if (stored.every((syntax) => canTranscode(syntax, DEFAULT_TRANSFER_SYNTAX))) offered.add(DEFAULT_TRANSFER_SYNTAX);
  if (new Set(stored).size === 1) offered.add(stored[0]);
  offered.add('*');
  const params: Record<string, string> = partType ? { type: partType } : {};
  throw notAcceptable(
    'The instances',
    [...offered].map((ts) => formatMediaType(mediaType, { ...params, 'transfer-syntax': ts })),
  );
}

/** One instance's bytes in the target syntax: the core transcodes, or we do when it cannot. */
async function openInstance(core: NativeCore, ref: InstanceRef, target: string, stored: string | undefined): Promise<FileStream> {
  if (target === '*' || target === stored) return core.readInstanceFile(ref.id, { chunkBytes: RETRIEVE_CHUNK_BYTES });
  try {
    return await core.readInstanceFile(ref.id, { transcode: target, chunkBytes: RETRIEVE_CHUNK_BYTES });
  } catch (error) {
    if (!(error instanceof CoreError) || error.httpStatus !== 415) throw error;
  }
  // e.g. a remote Orthanc without a JPEG 2000 codec: decode here.
  const raw = await core.readInstanceFile(ref.id);
  const chunks: Buffer[] = [];
  for await (const chunk of raw.stream) chunks.push(Buffer.from(chunk as Uint8Array));
  const source = raw.transferSyntax ?? stored ?? DEFAULT_TRANSFER_SYNTAX;
  try {
    const transcoded = await transcodeFile(Buffer.concat(chunks), source, target);
    return { stream: Readable.from([transcoded]), size: transcoded.length, transferSyntax: target };
  } catch (error) {
    if (error instanceof TranscodeError) throw new HttpError(406, `Instance ${ref.sopUid} cannot be sent in ${target}`, error.message);
    throw error;
  }
}

function dicomPartType(transferSyntax: string | undefined): string {
  return transferSyntax ? formatMediaType('application/dicom', { 'transfer-syntax': transferSyntax }) : 'application/dicom';
}

/**
 * What these instances can be sent in: Explicit VR Little Endian (the default), their own syntax when
 * they all share one, and `*` (as stored).
 */
function instanceOffers(level: Level, stored: readonly string[]): MediaOffer[] {
  const shared = new Set(stored).size === 1 && stored[0] !== DEFAULT_TRANSFER_SYNTAX ? [stored[0]] : [];
  const syntaxes = [DEFAULT_TRANSFER_SYNTAX, ...shared];
  const offers = [instanceOffer('multipart/related', 'application/dicom', syntaxes)];
  if (level === 'instance') offers.push(instanceOffer('application/dicom', undefined, syntaxes));
  return offers;
}

function retrieveInstances(context: DicomWebContext, level: Level): RequestHandler {
  return async (req, res) => {
    const instances = await instancesOfPath(context.core, req, level);
    const stored = await storedSyntaxes(context.core, instances);
    const selection = negotiate(req, instanceOffers(level, stored), 'The instances');
    const target = selection.transferSyntax ?? DEFAULT_TRANSFER_SYNTAX;
    if (target !== '*') checkTranscodable(stored, target, selection.mediaType, selection.partType);
    const base = publicBaseUrl(req, context.config);
    res.setHeader('Vary', 'Accept');

    if (selection.mediaType === 'application/dicom') {
      const file = await openInstance(context.core, instances[0], target, stored[0]);
      res.status(200);
      res.setHeader('Content-Type', dicomPartType(file.transferSyntax ?? (target === '*' ? undefined : target)));
      res.setHeader('Content-Location', base + instancePath(instances[0]));
      if (file.size !== undefined) res.setHeader('Content-Length', String(file.size));
      await pipeline(file.stream, res);
      return;
    }

    const headersOf = (index: number, syntax: string | undefined, size: number | undefined): MultipartBodyPart['headers'] => ({
      contentType: dicomPartType(syntax ?? (target === '*' ? stored[index] : target)),
      contentLocation: base + instancePath(instances[index]),
      contentLength: size,
    });
    const boundary = createBoundary();
    const params: Record<string, string> = target === '*' ? {} : { 'transfer-syntax': target };
    const contentType = multipartContentType(boundary, 'application/dicom', params);
    const core = context.core;
    if (core.readInstanceFiles && (target === '*' || stored.every((syntax) => syntax === target))) {
      // Files as stored, from a core with local files: read into pooled blocks, given back once written.
      const files = core.readInstanceFiles(instances.map((ref) => ref.id));
      async function* pooledParts(): AsyncGenerator<MultipartBodyPart> {
        let index = 0;
        for await (const file of files) {
          yield { headers: headersOf(index, file.transferSyntax, file.size), body: file.body, written: releaseView };
          index++;
        }
      }
      await sendMultipart(res, contentType, boundary, pooledParts());
      return;
    }

    // The next instances are read while one is being sent (a few, each whole only when small).
    const load = async (index: number): Promise<LoadedInstance> => {
      const file = await openInstance(context.core, instances[index], target, stored[index]);
      if (file.size === undefined || file.size > READ_AHEAD_MAX_BYTES) return { file, body: file.stream };
      return { file, body: await readWhole(file.stream) };
    };
    const readAhead = context.core.kind === 'remote' ? REMOTE_READ_AHEAD : READ_AHEAD;
    async function* parts(): AsyncGenerator<MultipartBodyPart> {
      const ahead: Array<Promise<LoadedInstance>> = [];
      let next = 0;
      const fill = (): void => {
        while (ahead.length < readAhead && next < instances.length) {
          const loading = load(next++);
          loading.catch(() => undefined); // seen when its turn comes
          ahead.push(loading);
        }
      };
      try {
        for (let index = 0; index < instances.length; index++) {
          fill();
          const { file, body } = await (ahead.shift() as Promise<LoadedInstance>);
          fill();
          yield { headers: headersOf(index, file.transferSyntax, file.size), body };
        }
      } finally {
        // the answer ended early: release what was read ahead
        for (const loading of ahead) void loading.then(({ file }) => file.stream.destroy(), () => undefined);
      }
    }
    await sendMultipart(res, contentType, boundary, parts());
  };
}

// ------------------------------------------------------------------------------------------------
// Retrieve metadata

export function metadataCacheDirectory(config: GatewayConfig): string | undefined {
  if (!config.dicomWeb.enableMetadataCache) return undefined;
  if (!config.core) return path.join(config.storageDirectory, 'metadata-cache');
  // A remote core has no storage here: a folder per core, so that gateways of one core share it.
  const core = createHash('sha1').update(config.core.url).digest('hex').slice(0, 16);
  return path.join(os.tmpdir(), 'dicomweb-gateway-metadata-cache', core);
}

interface MetadataService {
  core: NativeCore;
  cache: MetadataCache;
  mode: OtherBinaryMode;
  /** StudiesMetadata and SeriesMetadata. */
  studies: MetadataMode;
  series: MetadataMode;
}

function sendJsonText(res: Response, mediaType: string, json: string): void {
  res.status(200);
  res.setHeader('Content-Type', `${mediaType}; charset=utf-8`);
  res.end(json);
}

async function sendXml(res: Response, json: string): Promise<void> {
  const datasets = JSON.parse(json) as DicomJsonDataset[];
  const boundary = createBoundary();
  async function* parts(): AsyncGenerator<MultipartBodyPart> {
    for (const dataset of datasets) {
      yield { headers: { contentType: 'application/dicom+xml; charset=utf-8' }, body: Buffer.from(dicomJsonToXml(dataset), 'utf8') };
    }
  }
  await sendMultipart(res, multipartContentType(boundary, 'application/dicom+xml'), boundary, parts());
}

async function sendGzipFile(res: Response, mediaType: string, file: string): Promise<void> {
  res.status(200);
  res.setHeader('Content-Type', `${mediaType}; charset=utf-8`);
  res.setHeader('Content-Encoding', 'gzip');
  await pipeline(createReadStream(file), res);
}

function etagOf(parts: readonly string[], baseUrl: string, mediaType: string): string {
  const hash = createHash('sha1').update(parts.join('|')).digest('hex').slice(0, 32);
  return `W/"${hash}-${baseHash(baseUrl).slice(0, 8)}-${mediaType === 'multipart/related' ? 'xml' : 'json'}"`;
}

function retrieveMetadata(context: DicomWebContext, service: MetadataService, level: Level): RequestHandler {
  return async (req, res) => {
    const selection = negotiate(req, METADATA_OFFERS, 'The metadata');
    const base = publicBaseUrl(req, context.config);
    res.setHeader('Vary', 'Accept, Accept-Encoding');

    if (level === 'instance') {
      const ref = await resolveInstance(service.core, String(req.params.study), String(req.params.series), String(req.params.instance));
      const json = withBase(`[${await buildInstanceJson(service.core, ref, service.mode)}]`, base);
      if (selection.mediaType === 'multipart/related') return sendXml(res, json);
      return sendJsonText(res, selection.mediaType, json);
    }

    const seriesList = await seriesOfPath(service.core, req, level);
    const how = level === 'study' ? service.studies : service.series;
    const keys = seriesList.map((series) => seriesMetadataKey(series, service.mode, how));
    const etag = etagOf(keys, base, selection.mediaType);
    res.setHeader('ETag', etag);
    res.setHeader('Cache-Control', 'no-cache');
    if (notModified(req, etag)) {
      res.status(304).end();
      return;
    }
    const build = (series: SeriesTarget) => () => buildSeriesJson(service.core, series, service.mode, how);
    const gzipWanted = acceptsGzip(req) && selection.mediaType !== 'multipart/related';
    const cachedGzip = level === 'series' && gzipWanted;
    if (cachedGzip) {
      const file = await service.cache.existingGzipFile(seriesList[0].series.ID, keys[0], base);
      if (file) return sendGzipFile(res, selection.mediaType, file);
    }
    const arrays = await mapLimit(seriesList, 2, (series, index) => service.cache.json(series.series.ID, keys[index], base, build(series)));
    const json = arrays.length === 1 ? arrays[0] : joinJsonArrays(arrays);
    if (cachedGzip) service.cache.prepareGzipFile(seriesList[0].series.ID, keys[0], base, json);
    if (selection.mediaType === 'multipart/related') return sendXml(res, json);
    if (gzipWanted) {
      res.status(200);
      res.setHeader('Content-Type', `${selection.mediaType}; charset=utf-8`);
      res.setHeader('Content-Encoding', 'gzip');
      // level 1: this answer is made once, the cached file (level 6) serves the next ones
      res.end(await gzipAsync(json, { level: 1 }));
      return;
    }
    sendJsonText(res, selection.mediaType, json);
  };
}

// ------------------------------------------------------------------------------------------------
// Router

function methodNotAllowed(req: Request, _res: Response, next: (error?: unknown) => void): void {
  // POST on a study is STOW-RS, mounted next to us.
  if (req.method === 'POST' && /^\/studies\/[^/]+\/?$/.test(req.path)) return next();
  // studies, series and instances can be deleted too (delete-rs.ts, mounted before us)
  const allow = /^\/studies\/[^/]+(?:\/series\/[^/]+(?:\/instances\/[^/]+)?)?\/?$/.test(req.path) ? 'GET, DELETE' : 'GET';
  next(new HttpError(405, `${req.method} is not allowed here`, `Allowed: ${allow}`, { Allow: allow }));
}

export function wadoRsRouter(context: DicomWebContext): Router {
  const router = Router();
  const service: MetadataService = {
    core: context.core,
    cache: new MetadataCache(metadataCacheDirectory(context.config)),
    mode: context.config.dicomWeb.otherBinaryMode,
    studies: { kind: context.config.dicomWeb.studiesMetadata, extrapolatedTags: context.config.dicomWeb.studiesMetadataExtrapolatedTags },
    series: { kind: context.config.dicomWeb.seriesMetadata, extrapolatedTags: context.config.dicomWeb.seriesMetadataExtrapolatedTags },
  };
  const study = '/studies/:study';
  const series = `${study}/series/:series`;
  const instance = `${series}/instances/:instance`;
  const routes: Array<[string, RequestHandler]> = [
    [study, retrieveInstances(context, 'study')],
    [series, retrieveInstances(context, 'series')],
    [instance, retrieveInstances(context, 'instance')],
    [`${study}/metadata`, retrieveMetadata(context, service, 'study')],
    [`${series}/metadata`, retrieveMetadata(context, service, 'series')],
    [`${instance}/metadata`, retrieveMetadata(context, service, 'instance')],
    ...wadoPixelRoutes(context, instance),
  ];
  for (const [route, handler] of routes) {
    router.get(route, handler);
    router.all(route, methodNotAllowed);
  }
  return router;
}
