/**
 * WADO-RS rendered resources and thumbnails (PS3.18 §8.3.5, §9.5): studies/series/instances/frames
 * `/rendered` and `/thumbnail` as JPEG (default), PNG or GIF. Study and series levels render the first
 * frame of their first instance. Pixels come from the core's file (`readInstanceFile`), rendering is
 * src/dicom/render.ts; thumbnails are kept in a small in-memory LRU.
 */
import { Router, type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import type { NativeCore } from '../core/native-model';
import { DicomParseError } from '../dicom/dicom-file';
import { negotiateMediaType, type MediaOffer } from '../dicom/media-types';
import { parseQuality, parseViewport, parseWindow, RenderError, renderDicom, type RenderedMediaType, type RenderOptions } from '../dicom/render';
import { HttpError } from '../server/errors';
import type { DicomWebContext } from './dicomweb-router';
import { resolveInstance, resolveSeries, resolveStudies } from './wado-resources';

const OFFERS: readonly MediaOffer[] = [{ mediaType: 'image/jpeg' }, { mediaType: 'image/png' }, { mediaType: 'image/gif' }];
const NATIVE_SYNTAXES = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2']);
const THUMBNAIL_SIZE = 128;
const THUMBNAIL_CACHE_ENTRIES = 256;

async function readAll(stream: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
}

/**
 * The instance's file for rendering. Compressed files are asked decoded (Explicit VR LE) from the core
 * so that greyscale goes through our exact PS3.3 pipeline; if the core cannot, the stored bytes are
 * rendered by dcmjs-imaging's codecs instead.
 */
export async function readRenderableFile(core: NativeCore, id: string): Promise<Buffer> {
  // the whole file is needed: large reads
  const chunkBytes = 1 << 20;
  const stored = await core.readInstanceFile(id, { chunkBytes });
  if (stored.transferSyntax === undefined || NATIVE_SYNTAXES.has(stored.transferSyntax)) return readAll(stored.stream);
  stored.stream.destroy();
  try {
    return await readAll((await core.readInstanceFile(id, { transcode: '1.2.840.10008.1.2.1', chunkBytes })).stream);
  } catch {
    return readAll((await core.readInstanceFile(id, { chunkBytes })).stream);
  }
}

/** Maps rendering failures to statuses; `notImage` is 406 for WADO-RS, 400 for WADO-URI. */
export function renderHttpError(error: unknown, notImage: 400 | 406): unknown {
  if (error instanceof RenderError) {
    if (error.kind === 'not-image' || error.kind === 'unsupported') return new HttpError(notImage, 'The instance cannot be rendered as an image', error.message);
    return new HttpError(400, 'Bad rendering parameter', error.message);
  }
  if (error instanceof DicomParseError) return new HttpError(notImage, 'The instance cannot be rendered as an image', error.message);
  return error;
}

/** A tiny LRU: Map keeps insertion order, so the first key is the least recently used. */
class ThumbnailCache {
  private readonly entries = new Map<string, { body: Buffer; mediaType: RenderedMediaType }>();
  constructor(private readonly capacity: number) {}
  get(key: string): { body: Buffer; mediaType: RenderedMediaType } | undefined {
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
    }
    return hit;
  }
  set(key: string, value: { body: Buffer; mediaType: RenderedMediaType }): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as string);
  }
}

function queryString(req: Request, name: string): string | undefined {
  const value = req.query[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new HttpError(400, `Parameter "${name}" is given more than once or is malformed`);
  return value;
}

function acceptQuery(req: Request): string | undefined {
  const value = req.query.accept;
  return typeof value === 'string' ? value : Array.isArray(value) ? value.join(',') : undefined;
}

function chooseMediaType(req: Request): RenderedMediaType {
  const result = negotiateMediaType(req.get('accept'), OFFERS, { acceptQuery: acceptQuery(req) });
  if (result.kind === 'malformed') throw new HttpError(400, 'Malformed Accept header', result.message);
  if (result.kind === 'not-acceptable') throw new HttpError(406, 'Rendered images are JPEG, PNG or GIF', `Available: ${result.offered.join(', ')}`);
  return result.mediaType as RenderedMediaType;
}

/** Options from the query: window, viewport, quality (annotation is accepted and ignored). */
function renderOptions(req: Request, thumbnail: boolean): RenderOptions {
  const options: RenderOptions = { mediaType: chooseMediaType(req) };
  try {
    const window = queryString(req, 'window');
    const viewport = queryString(req, 'viewport');
    const quality = queryString(req, 'quality');
    if (window !== undefined) options.window = parseWindow(window);
    if (viewport !== undefined) options.viewport = parseViewport(viewport);
    if (quality !== undefined) options.quality = parseQuality(quality);
  } catch (error) {
    throw renderHttpError(error, 406);
  }
  if (thumbnail && !options.viewport) options.maxSize = { width: THUMBNAIL_SIZE, height: THUMBNAIL_SIZE };
  return options;
}

/** 1-based frame number from the path; one frame only (we render still images). */
function parseFrameNumber(text: string): number {
  if (!/^\d+$/.test(text.trim()) || Number(text) < 1) throw new HttpError(400, 'Invalid frame number', `"${text}" is not one frame number >= 1`);
  return Number(text) - 1;
}

/** Instance id + 0-based frame a path names. */
async function target(core: NativeCore, params: Record<string, string>): Promise<{ id: string; frame: number }> {
  const { study, series, instance, frame } = params;
  if (instance !== undefined) {
    const ref = await resolveInstance(core, study, series, instance);
    return { id: ref.id, frame: frame === undefined ? 0 : parseFrameNumber(frame) };
  }
  const seriesIds = series !== undefined ? [(await resolveSeries(core, study, series)).ID] : (await resolveStudies(core, study)).flatMap((s) => s.Series);
  for (const id of seriesIds) {
    const instances = await core.getInstances('Series', id);
    if (instances && instances.length > 0) return { id: instances[0].ID, frame: 0 };
  }
  throw new HttpError(404, 'Nothing to render', 'The resource holds no instance');
}

function handler(core: NativeCore, thumbnail: boolean, cache: ThumbnailCache): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    void (async () => {
      const options = renderOptions(req, thumbnail);
      const { id, frame } = await target(core, req.params as Record<string, string>);
      options.frame = frame;
      const key = thumbnail ? JSON.stringify([id, frame, options.mediaType, options.viewport, options.quality, options.window]) : '';
      let image = thumbnail ? cache.get(key) : undefined;
      if (!image) {
        const file = await readRenderableFile(core, id);
        try {
          image = await renderDicom(file, options);
        } catch (error) {
          throw renderHttpError(error, 406);
        }
        if (thumbnail) cache.set(key, image);
      }
      res.status(200).type(image.mediaType).setHeader('Content-Length', image.body.length);
      res.end(image.body);
    })().catch(next);
  };
}

/** Routes of the rendered and thumbnail resources, relative to DicomWeb.Root. */
export function wadoRsRenderedRouter(context: DicomWebContext): Router {
  const router = Router();
  const cache = new ThumbnailCache(THUMBNAIL_CACHE_ENTRIES);
  const levels = [
    '/studies/:study',
    '/studies/:study/series/:series',
    '/studies/:study/series/:series/instances/:instance',
    '/studies/:study/series/:series/instances/:instance/frames/:frame',
  ];
  for (const level of levels) {
    router.get(`${level}/rendered`, handler(context.core, false, cache));
    router.get(`${level}/thumbnail`, handler(context.core, true, cache));
  }
  return router;
}
