import { gzipSync } from 'node:zlib';
import { Router } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import { HttpError } from '../../../server/errors';
import { TS } from '../../../dicom/transfer-syntax';

/** What Orthanc 1.10 names under /instances/{id}/frames/{n}. */
const FRAME_CHILDREN = ['image-int16', 'image-uint16', 'image-uint8', 'matlab', 'numpy', 'preview', 'raw', 'raw.gz', 'rendered'];

/**
 * The frame index of a URI as Orthanc reads it (an unsigned integer, "+1" and "01" too): undefined
 * when the segment is not a number (Orthanc then answers 404), -1 for a negative one (out of range).
 */
export function parseFrameSegment(segment: string): number | undefined {
  if (!/^[+-]?\d+$/.test(segment)) return undefined;
  const value = Number(segment);
  return value < 0 ? -1 : value;
}

/** NumberOfFrames of an instance from the index (1 when absent, as Orthanc counts); 404 when unknown. */
export async function numberOfFrames(core: EmbeddedCore, id: string): Promise<number> {
  const resource = await core.getResource('Instance', id);
  if (!resource) throw new HttpError(404, `Unknown instance: ${id}`);
  const text = resource.MainDicomTags.NumberOfFrames;
  if (text === undefined) return 1;
  const count = Number.parseInt(text, 10);
  return Number.isFinite(count) && count > 0 ? count : 0;
}

/** Orthanc's Content-Type of a raw frame: JPEG baseline and JPEG 2000 are named, the rest is binary. */
function rawFrameType(transferSyntax: string | undefined): string {
  if (transferSyntax === TS.JPEGBaseline8Bit) return 'image/jpeg';
  if (transferSyntax === TS.JPEG2000Lossless || transferSyntax === TS.JPEG2000) return 'image/jp2';
  return 'application/octet-stream';
}

/** GET /instances/{id}/frames, /frames/{n}, /frames/{n}/raw and /frames/{n}/raw.gz (frames are 0-based). */
export function instanceFrameRoutes(core: EmbeddedCore): Router {
  const router = Router();

  router.get('/instances/:id/frames', async (req, res) => {
    const count = await numberOfFrames(core, req.params.id);
    res.json(Array.from({ length: count }, (_, i) => i));
  });

  router.get('/instances/:id/frames/:frame', async (req, res) => {
    await numberOfFrames(core, req.params.id);
    res.json(FRAME_CHILDREN);
  });

  /** The stored bytes of one frame: compressed as stored, native in little endian. */
  async function rawFrame(id: string, segment: string): Promise<Buffer> {
    const frame = parseFrameSegment(segment);
    if (frame === undefined) throw new HttpError(404, `Not a frame number: ${segment}`);
    const count = await numberOfFrames(core, id);
    // Orthanc: "Parameter out of range" (400), where the image routes answer 404
    if (frame < 0 || frame >= count) throw new HttpError(400, `The instance has ${count} frame(s): no frame ${segment}`);
    return core.readFrameRaw(id, frame);
  }

  router.get('/instances/:id/frames/:frame/raw', async (req, res) => {
    const bytes = await rawFrame(req.params.id, req.params.frame);
    res.type(rawFrameType(core.instanceMetadata(req.params.id)?.TransferSyntax)).send(bytes);
  });

  router.get('/instances/:id/frames/:frame/raw.gz', async (req, res) => {
    const bytes = await rawFrame(req.params.id, req.params.frame);
    res.type('application/gzip').send(gzipSync(bytes));
  });

  return router;
}
