/**
 * WADO-RS rendered resources and thumbnails (PS3.18 §8.3.5, §9.5): studies/series/instances/frames
 * `/rendered` and `/thumbnail` as JPEG (default), PNG or GIF; a list of frames (`frames/1,2,3/rendered`) as
 * an animated GIF. Study and series levels render the first frame of their first instance. Pixels come from
 * the core's file (`readInstanceFile`), rendering is src/dicom/render.ts; thumbnails are kept in a small
 * in-memory LRU keyed by the stored file, so that an instance deleted and stored again never shows its old
 * thumbnail.
 */
import { Router, type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { Lru } from '../core/lru';
import type { NativeCore } from '../core/native-model';
import { DicomParseError } from '../dicom/dicom-file';
import { negotiateMediaType, type MediaOffer } from '../dicom/media-types';
import { parseQuality, parseViewport, parseWindow, RenderError, renderDicom, type RenderedMediaType, type RenderOptions } from '../dicom/render';
import { HttpError } from '../server/errors';
import { imageWorkLimiter, type WorkLimiter } from '../server/work-limiter';
import type { DicomWebContext } from './dicomweb-router';
import { parseFrameList } from './wado-http';
import { resolveInstance, resolveSeries, resolveStudies } from './wado-resources';

const OFFERS: readonly MediaOffer[] = [{ mediaType: 'image/jpeg' }, { mediaType: 'image/png' }, { mediaType: 'image/gif' }];
const ANIMATED_OFFERS: readonly MediaOffer[] = [{ mediaType: 'image/gif' }];
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

type RenderedImage = { body: Buffer; mediaType: RenderedMediaType };

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

/** Several frames make one animated image: GIF is the only multi-frame type we write. */
function chooseMediaType(req: Request, animated: boolean): RenderedMediaType {
  const result = negotiateMediaType(req.get('accept'), animated ? ANIMATED_OFFERS : OFFERS, { acceptQuery: acceptQuery(req) });
  if (result.kind === 'malformed') throw new HttpError(400, 'Malformed Accept header', result.message);
  if (result.kind === 'not-acceptable') {
    const what = animated ? 'Several rendered frames are an animated GIF' : 'Rendered images are JPEG, PNG or GIF';
    throw new HttpError(406, what, `Available: ${result.offered.join(', ')}`);
  }
  return result.mediaType as RenderedMediaType;
}

/** Options from the query: window, viewport, quality (annotation is accepted and ignored). */
function renderOptions(req: Request, thumbnail: boolean, animated: boolean): RenderOptions {
  const options: RenderOptions = { mediaType: chooseMediaType(req, animated) };
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

/** Most frames one rendered answer animates: each is decoded and kept in memory until the GIF is written. */
const MAX_RENDERED_FRAMES = 100;

/** 0-based frames of a path's 1-based list such as "1,3,5" (PS3.18 §8.3.5: several frames are one multi-frame image). */
function framesOfPath(text: string): number[] {
  const frames = parseFrameList(text);
  if (frames.length > MAX_RENDERED_FRAMES) throw new HttpError(400, 'Too many frames', `At most ${MAX_RENDERED_FRAMES} frames can be rendered at once`);
  return frames.map((frame) => frame - 1);
}

/** Instance id + 0-based frames a path names, with the stored file's uuid (a new file is a new thumbnail). */
async function target(core: NativeCore, params: Record<string, string>): Promise<{ id: string; frames: number[]; fileUuid: string }> {
  const { study, series, instance, frame } = params;
  if (instance !== undefined) {
    const ref = await resolveInstance(core, study, series, instance);
    return { id: ref.id, frames: frame === undefined ? [0] : framesOfPath(frame), fileUuid: ref.resource.FileUuid };
  }
  const seriesIds = series !== undefined ? [(await resolveSeries(core, study, series)).ID] : (await resolveStudies(core, study)).flatMap((s) => s.Series);
  for (const id of seriesIds) {
    const instances = await core.getInstances('Series', id);
    if (instances && instances.length > 0) return { id: instances[0].ID, frames: [0], fileUuid: instances[0].FileUuid };
  }
  throw new HttpError(404, 'Nothing to render', 'The resource holds no instance');
}

function handler(core: NativeCore, thumbnail: boolean, cache: Lru<string, RenderedImage>, limiter: WorkLimiter): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    void (async () => {
      const { id, frames, fileUuid } = await target(core, req.params as Record<string, string>);
      const options = renderOptions(req, thumbnail, frames.length > 1);
      options.frames = frames;
      const key = thumbnail ? JSON.stringify([fileUuid, frames, options.mediaType, options.viewport, options.quality, options.window]) : '';
      let image = thumbnail ? cache.get(key) : undefined;
      if (!image) {
        image = await limiter.run(async () => {
          const file = await readRenderableFile(core, id);
          try {
            return await renderDicom(file, options);
          } catch (error) {
            throw renderHttpError(error, 406);
          }
        });
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
  const cache = new Lru<string, RenderedImage>(THUMBNAIL_CACHE_ENTRIES);
  const limiter = imageWorkLimiter(context.config);
  const levels = [
    '/studies/:study',
    '/studies/:study/series/:series',
    '/studies/:study/series/:series/instances/:instance',
    '/studies/:study/series/:series/instances/:instance/frames/:frame',
  ];
  for (const level of levels) {
    router.get(`${level}/rendered`, handler(context.core, false, cache, limiter));
    router.get(`${level}/thumbnail`, handler(context.core, true, cache, limiter));
  }
  return router;
}
