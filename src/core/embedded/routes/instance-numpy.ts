/**
 * GET /instances/{id}/numpy, /instances/{id}/frames/{n}/numpy and /series/{id}/numpy of the embedded core,
 * as Orthanc 1.10 (`?compress` → a .npz ZIP holding "arr_0", `?rescale=0` → stored values). The bytes are
 * Orthanc's (numpy.ts); unlike Orthanc, which builds the whole array in memory, the array is streamed
 * frame by frame: every instance is checked first (pixel format, size), so that what can fail fails
 * before the first byte is sent. An instance without Pixel Data is a 400 (Orthanc: 400, or 500 "not
 * implemented" when it has no image attributes at all, e.g. a PDF), a pixel format numpy cannot hold or a
 * transfer syntax we cannot decode a 415 (Orthanc: 500 "not implemented").
 */
import { once } from 'node:events';
import { PassThrough, type Writable } from 'node:stream';
import { Router, type Request, type Response } from 'express';
import archiver from 'archiver';
import type { EmbeddedCore } from '../embedded-core';
import { readStoredHeader } from '../stored-header';
import { parseFrameSegment } from './instance-frames';
import { CoreError } from '../../native-model';
import { HttpError } from '../../../server/errors';
import type { DicomDataset } from '../../../dicom/dicom-file';
import {
  imageAttributesOf, pixelFormatOf, pixelInfoOf, toDecodedImage, type PixelFormat, type PixelInfo,
} from '../../../dicom/image-extraction';
import { arrayFormat, frameToNumpy, framesCountOf, npyHeader, orderSlices, rescaleOf, type ArrayFormat } from '../../../dicom/numpy';
import { canDecode, decodeFrame } from '../../../dicom/transcode';
import { isEncapsulated } from '../../../dicom/transfer-syntax';

/** One instance ready to decode, with the frames the array takes from it. */
interface Source {
  id: string;
  dataset: DicomDataset;
  info: PixelInfo;
  format: PixelFormat;
  transferSyntax: string;
  compressed: boolean;
  frames: number[];
}

/** Orthanc's GetBooleanArgument: absent → default, empty → true, "0"/"false"/"1"/"true", else 400. */
function booleanArgument(req: Request, name: string, defaultValue: boolean): boolean {
  const value = req.query[name];
  if (value === undefined) return defaultValue;
  if (value === '' || value === '1' || value === 'true') return true;
  if (value === '0' || value === 'false') return false;
  throw new HttpError(400, 'Parameter out of range', `Expected a Boolean for GET argument "${name}", found: ${String(value)}`);
}

/** Reads an instance's header and checks Orthanc can decode it to one of its pixel formats. */
async function prepare(core: EmbeddedCore, id: string): Promise<Omit<Source, 'frames'>> {
  let header: Awaited<ReturnType<typeof readStoredHeader>>;
  try {
    header = await readStoredHeader(core.instanceFilePath(id));
  } catch (error) {
    if (error instanceof CoreError && error.httpStatus === 404) throw new HttpError(404, 'Unknown resource', error.message);
    throw error;
  }
  const { dataset, transferSyntax, hasPixelData } = header;
  if (!hasPixelData) throw new HttpError(400, 'Bad file format', `The instance ${id} holds no image (no Pixel Data)`);
  const info = pixelInfoOf(dataset);
  const compressed = isEncapsulated(transferSyntax);
  if (compressed && !canDecode(transferSyntax)) throw new HttpError(415, 'Cannot decode DICOM instance', `Transfer syntax ${transferSyntax}`);
  const format = pixelFormatOf(info, compressed);
  if (!format) {
    const layout = `${info.samplesPerPixel} sample(s), ${info.bitsAllocated}/${info.bitsStored} bits, ${info.signed ? 'signed' : 'unsigned'}, ${info.photometric || 'no photometric interpretation'}`;
    throw new HttpError(415, 'Cannot decode DICOM instance', `Unsupported pixel format: ${layout}`);
  }
  return { id, dataset, info, format, transferSyntax, compressed };
}

/** Every frame must have the size and format of the first one (Orthanc refuses the array otherwise). */
function checkUniform(sources: Source[]): void {
  const [first] = sources;
  for (const source of sources) {
    if (source.info.width !== first.info.width || source.info.height !== first.info.height) {
      throw new HttpError(400, 'Incompatible size of the images', 'The size of the frames varies across the instance(s)');
    }
    if (source.format !== first.format) {
      throw new HttpError(400, 'Incompatible format of the images', 'The pixel format of the frames varies across the instance(s)');
    }
  }
}

/** Writes with backpressure; a client gone (`res` closed) ends the wait too. */
async function write(sink: Writable, chunk: Buffer, res: Response): Promise<void> {
  if (!sink.write(chunk)) await Promise.race([once(sink, 'drain'), once(res, 'close')]);
}

/** Streams the array: the header, then each frame decoded, rescaled and written as it comes. */
async function sendArray(core: EmbeddedCore, req: Request, res: Response, sources: Source[], depth: number | undefined): Promise<void> {
  const compress = booleanArgument(req, 'compress', false);
  const rescale = booleanArgument(req, 'rescale', true);
  checkUniform(sources);
  const { info, format } = sources[0];
  const array: ArrayFormat = arrayFormat(format, rescale);
  const header = npyHeader(array, depth, info.height, info.width);
  const frameCount = sources.reduce((sum, s) => sum + s.frames.length, 0);
  const bytesPerValue = array.dtype === '<u1' ? 1 : array.dtype === '<f4' ? 4 : 2;
  res.setHeader('Content-Type', 'application/octet-stream');
  let sink: Writable = res;
  let archive: archiver.Archiver | undefined;
  if (compress) {
    // numpy.savez names a positional array "arr_0"; the comment is Orthanc's
    archive = archiver('zip', { comment: 'Created by Orthanc', zlib: { level: 6 } });
    archive.on('error', () => res.destroy());
    archive.pipe(res);
    sink = new PassThrough();
    archive.append(sink as PassThrough, { name: 'arr_0' });
  } else {
    res.setHeader('Content-Length', String(header.length + frameCount * info.width * info.height * array.channels * bytesPerValue));
  }
  const closed = (): boolean => res.destroyed || res.writableEnded;
  try {
    await write(sink, header, res);
    for (const source of sources) {
      let index = 0;
      for await (const stored of core.readFramesRaw(source.id, source.frames)) {
        if (closed()) return;
        const frame = source.frames[index++];
        const bytes = source.compressed ? await decodeFrame(stored, source.transferSyntax, imageAttributesOf(source.info)) : stored;
        const image = toDecodedImage(bytes, source.info, source.format, !source.compressed);
        await write(sink, frameToNumpy(image, rescale ? rescaleOf(source.dataset, frame) : undefined), res);
      }
    }
    sink.end();
    if (archive) await archive.finalize();
  } catch (error) {
    // the answer has begun: all a client can be told now is that it is cut short
    res.destroy(error instanceof Error ? error : undefined);
  }
}

function frameIndexes(count: number): number[] {
  return Array.from({ length: count }, (_, i) => i);
}

export function instanceNumpyRoutes(core: EmbeddedCore): Router {
  const router = Router();

  router.get('/instances/:id/numpy', async (req, res) => {
    const source = await prepare(core, req.params.id);
    if (source.info.numberOfFrames === 0) throw new HttpError(400, 'Bad file format', 'Empty DICOM instance');
    const frames = frameIndexes(source.info.numberOfFrames);
    await sendArray(core, req, res, [{ ...source, frames }], frames.length);
  });

  router.get('/instances/:id/frames/:frame/numpy', async (req, res) => {
    const frame = parseFrameSegment(req.params.frame);
    if (frame === undefined) throw new HttpError(400, 'Parameter out of range', 'Expected an unsigned integer for the "frame" argument');
    const source = await prepare(core, req.params.id);
    if (frame < 0 || frame >= source.info.numberOfFrames) {
      throw new HttpError(400, 'Parameter out of range', `The instance has ${source.info.numberOfFrames} frame(s): no frame ${req.params.frame}`);
    }
    await sendArray(core, req, res, [{ ...source, frames: [frame] }], undefined);
  });

  router.get('/series/:id/numpy', async (req, res) => {
    const series = await core.getResource('Series', req.params.id);
    const instances = series && (await core.getInstances('Series', req.params.id));
    if (!series || !instances) throw new HttpError(404, 'Unknown resource');
    const slices = instances.map((instance) => ({ id: instance.ID, tags: instance.MainDicomTags, indexInSeries: instance.IndexInSeries }));
    const ordered = orderSlices(series.MainDicomTags.ImageOrientationPatient, slices);
    if (!ordered) throw new HttpError(400, 'Unable to order the slices of the series', `Unable to order the slices of series ${req.params.id}`);
    const sources: Source[] = [];
    for (const slice of ordered) {
      // the depth is that of the index (NumberOfFrames), as Orthanc counts it
      const frames = frameIndexes(framesCountOf(slice.tags));
      if (frames.length > 0) sources.push({ ...(await prepare(core, slice.id)), frames });
    }
    if (sources.length === 0) throw new HttpError(400, 'Bad file format', 'The series holds no frame');
    await sendArray(core, req, res, sources, sources.reduce((sum, s) => sum + s.frames.length, 0));
  });

  return router;
}
