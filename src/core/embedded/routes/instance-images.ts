import { Router, type Request, type Response } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import { readStoredHeader } from '../stored-header';
import { parseFrameSegment } from './instance-frames';
import { HttpError } from '../../../server/errors';
import type { DicomDataset } from '../../../dicom/dicom-file';
import {
  applyExtractionMode,
  encodeJpeg,
  encodePam,
  encodePng,
  imageAttributesOf,
  pixelFormatOf,
  pixelInfoOf,
  renderForDisplay,
  toDecodedImage,
  toMatlab,
  type DecodedImage,
  type ExtractionMode,
  type RenderedOptions,
} from '../../../dicom/image-extraction';
import { negotiateMediaType, type MediaOffer } from '../../../dicom/media-types';
import { firstText, parseQuality, RenderError } from '../../../dicom/render';
import { canDecode, decodeFrame, TranscodeError } from '../../../dicom/transcode';
import { encodingOf, isEncapsulated } from '../../../dicom/transfer-syntax';

const PNG = 'image/png';
const JPEG = 'image/jpeg';
const PAM = 'image/x-portable-arbitrarymap';
/** In Orthanc's order: PNG is the default (no Accept, or a wildcard). */
const IMAGE_OFFERS: readonly MediaOffer[] = [{ mediaType: PNG }, { mediaType: JPEG }, { mediaType: PAM }];

const MODES: Readonly<Record<string, ExtractionMode>> = {
  preview: 'preview',
  'image-uint8': 'uint8',
  'image-uint16': 'uint16',
  'image-int16': 'int16',
};

/** RenderError / TranscodeError → the status a client sees. */
function asHttpError(error: unknown): unknown {
  if (error instanceof TranscodeError) return new HttpError(415, error.message);
  if (!(error instanceof RenderError)) return error;
  const status = { 'not-image': 415, unsupported: 415, 'bad-frame': 404, 'bad-parameter': 400 }[error.kind];
  return new HttpError(status, error.message);
}

/** One frame decoded to Orthanc's pixel formats, with the header for photometric, rescale and window. */
async function decodedFrameOf(core: EmbeddedCore, id: string, frameSegment: string | undefined): Promise<{ image: DecodedImage; dataset: DicomDataset }> {
  const frame = frameSegment === undefined ? 0 : parseFrameSegment(frameSegment);
  if (frame === undefined) throw new HttpError(404, `Not a frame number: ${frameSegment}`);
  const { dataset, transferSyntax, hasPixelData } = await readStoredHeader(core.instanceFilePath(id));
  // the header of a Deflated file is read whole and does not say where Pixel Data is: look for Rows
  const deflatedImage = encodingOf(transferSyntax).deflated && dataset['00280010'] !== undefined;
  if (!hasPixelData && !deflatedImage) throw new HttpError(415, 'The instance holds no image (no Pixel Data)');
  const info = pixelInfoOf(dataset);
  if (frame < 0 || frame >= info.numberOfFrames) throw new HttpError(404, `The instance has ${info.numberOfFrames} frame(s): no frame ${frameSegment}`);
  const compressed = isEncapsulated(transferSyntax);
  if (compressed && !canDecode(transferSyntax)) throw new HttpError(415, `Cannot decode the transfer syntax ${transferSyntax}`);
  const format = pixelFormatOf(info, compressed);
  if (!format) {
    const layout = `${info.samplesPerPixel} sample(s), ${info.bitsAllocated}/${info.bitsStored} bits, ${info.signed ? 'signed' : 'unsigned'}, ${info.photometric || 'no photometric interpretation'}`;
    throw new HttpError(415, `Unsupported image: ${layout}`);
  }
  const stored = await core.readFrameRaw(id, frame);
  try {
    const bytes = compressed ? await decodeFrame(stored, transferSyntax, imageAttributesOf(info)) : stored;
    return { image: toDecodedImage(bytes, info, format, !compressed), dataset };
  } catch (error) {
    throw asHttpError(error);
  }
}

function queryText(req: Request, name: string): string | undefined {
  const value = req.query[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new HttpError(400, `The "${name}" argument is given more than once`);
  return value;
}

/** The image format the Accept header asks for, and the JPEG quality (checked whatever the format, as Orthanc). */
function chooseEncoding(req: Request): { mediaType: string; quality: number } {
  const qualityText = queryText(req, 'quality');
  let quality = 90;
  if (qualityText !== undefined) {
    try {
      quality = parseQuality(qualityText);
    } catch (error) {
      throw asHttpError(error);
    }
  }
  const result = negotiateMediaType(req.get('accept'), IMAGE_OFFERS);
  if (result.kind === 'malformed') throw new HttpError(400, 'Malformed Accept header', result.message);
  if (result.kind === 'not-acceptable') throw new HttpError(406, 'The image cannot be returned in the requested media type', `Available: ${result.offered.join(', ')}`);
  return { mediaType: result.mediaType, quality };
}

async function sendImage(res: Response, image: DecodedImage, encoding: { mediaType: string; quality: number }): Promise<void> {
  let body: Buffer;
  if (encoding.mediaType === JPEG) {
    if (image.format !== 'Grayscale8' && image.format !== 'RGB24') throw new HttpError(406, 'JPEG holds 8-bit images only: ask for image/png or image/x-portable-arbitrarymap');
    body = await encodeJpeg(image, encoding.quality);
  } else {
    body = encoding.mediaType === PAM ? encodePam(image) : await encodePng(image);
  }
  res.setHeader('Content-Type', encoding.mediaType);
  res.send(body);
}

function parseDouble(req: Request, name: string): number | undefined {
  const text = queryText(req, name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) throw new HttpError(400, `Bad value for argument: ${name}`);
  return value;
}

/** A size in pixels; 0 (or absent) means "not given". Bounded: a rendered image is held in memory. */
function parseSize(req: Request, name: string): number {
  const text = queryText(req, name);
  if (text === undefined) return 0;
  if (!/^\+?\d+$/.test(text.trim()) || Number(text) > 16384) throw new HttpError(400, `Bad value for argument: ${name} (an integer from 0 to 16384)`);
  return Number(text);
}

function parseBoolean(req: Request, name: string): boolean {
  const text = queryText(req, name);
  if (text === undefined) return false;
  const value = text.trim().toLowerCase();
  if (value === '' || value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new HttpError(400, `Bad value for argument: ${name} (true or false)`);
}

function renderedOptions(req: Request): RenderedOptions {
  return {
    windowCenter: parseDouble(req, 'window-center'),
    windowWidth: parseDouble(req, 'window-width'),
    width: parseSize(req, 'width'),
    height: parseSize(req, 'height'),
    smooth: parseBoolean(req, 'smooth'),
  };
}

/**
 * Decoded images of the embedded core, as Orthanc 1.10: /instances/{id}/{preview, image-uint8,
 * image-uint16, image-int16, rendered, matlab}, and the same under /frames/{n} (0-based).
 */
export function instanceImageRoutes(core: EmbeddedCore): Router {
  const router = Router();
  // the paths are built in loops, so Express cannot type their parameters
  const decoded = (req: Request): ReturnType<typeof decodedFrameOf> => {
    const params = req.params as Record<string, string | undefined>;
    return decodedFrameOf(core, params.id as string, params.frame);
  };

  for (const prefix of ['/instances/:id', '/instances/:id/frames/:frame']) {
    for (const [segment, mode] of Object.entries(MODES)) {
      router.get(`${prefix}/${segment}`, async (req, res) => {
        const { image, dataset } = await decoded(req);
        const encoding = chooseEncoding(req);
        // only the preview inverts MONOCHROME1 (the image-* routes give values)
        const invert = mode === 'preview' && firstText(dataset, '00280004') === 'MONOCHROME1';
        let extracted: DecodedImage;
        try {
          extracted = applyExtractionMode(image, mode, invert);
        } catch (error) {
          throw asHttpError(error);
        }
        await sendImage(res, extracted, encoding);
      });
    }

    router.get(`${prefix}/rendered`, async (req, res) => {
      const { image, dataset } = await decoded(req);
      const options = renderedOptions(req);
      const encoding = chooseEncoding(req);
      await sendImage(res, renderForDisplay(image, dataset, options), encoding);
    });

    router.get(`${prefix}/matlab`, async (req, res) => {
      const { image } = await decoded(req);
      res.setHeader('Content-Type', 'text/plain');
      res.send(Buffer.from(toMatlab(image), 'latin1'));
    });
  }

  return router;
}
