/**
 * WADO-RS Retrieve Frames and Retrieve Bulkdata (PS3.18 §10.4.1.1.3-4).
 *
 * Frames come from the core one by one (`readFrameRaw`: compressed frames as stored, native frames in
 * little endian, as Orthanc answers them); compressed frames are decoded here with dcmjs-codecs when
 * the client wants uncompressed octets.
 * Compressed frames pass through in their own media type (image/jpeg, image/jls, ...). Bulk data of
 * Pixel Data is the frames joined; any other bulk value is read from the instance header.
 */
import type { Request, RequestHandler, Response } from 'express';
import type { DicomDataset, DicomElement } from '../dicom/dicom-file';
import type { NativeCore } from '../core/native-model';
import type { DicomLayout } from '../dicom/element-scanner';
import { formatMediaType, type MediaOffer, type MediaSelection } from '../dicom/media-types';
import { createBoundary, multipartContentType, writeChunks, writeMultipart, type MultipartBodyPart } from '../dicom/multipart-writer';
import { releaseView } from '../dicom/block-pool';
import { nativeFrameBits } from '../dicom/pixel-data';
import { canDecode, decodeFrame } from '../dicom/transcode';
import { DEFAULT_TRANSFER_SYNTAX, frameMediaType, isEncapsulated } from '../dicom/transfer-syntax';
import { HttpError } from '../server/errors';
import { imageWorkLimiter } from '../server/work-limiter';
import type { DicomWebContext } from './dicomweb-router';
import { instanceLayout, readInstanceDataset } from './instance-header';
import { bulkSuffix, instancePath } from './metadata';
import { publicBaseUrl } from './public-url';
import { negotiate, notAcceptable, parseFrameList, primed, requestedRange, sendMultipart, type ByteRange } from './wado-http';
import { resolveInstance, type InstanceRef } from './wado-resources';

const OCTET_STREAM = 'application/octet-stream';
const MULTIPART = 'multipart/related';
const PIXEL_DATA = '7FE00010';

/**
 * What a route can answer for pixel data stored in `stored`: uncompressed octets (Explicit VR Little
 * Endian, or `*` for as stored), and compressed frames in their own media type when stored so.
 */
function pixelOffers(stored: string, singlePart: boolean, compressedSinglePart: boolean): MediaOffer[] {
  const octets = (mediaType: string, partType?: string): MediaOffer => ({
    mediaType,
    partType,
    transferSyntaxes: [DEFAULT_TRANSFER_SYNTAX],
    anyTransferSyntax: true,
  });
  const compressedType = isEncapsulated(stored) ? frameMediaType(stored) : undefined;
  const compressed = (mediaType: string, partType?: string): MediaOffer => ({
    mediaType,
    partType,
    transferSyntaxes: [stored],
    defaultTransferSyntax: stored,
    anyTransferSyntax: true,
  });
  const offers = [octets(MULTIPART, OCTET_STREAM)];
  if (compressedType) offers.push(compressed(MULTIPART, compressedType));
  if (singlePart) offers.push(octets(OCTET_STREAM));
  if (compressedType && compressedSinglePart) offers.push(compressed(compressedType));
  return offers;
}

/** How stored frames become what was selected. */
interface FramePlan {
  /** Media type of each part (or of the single-part answer). */
  partType: string;
  /** transfer-syntax parameter of each part. */
  transferSyntax: string;
  multipart: boolean;
  convert(raw: Buffer): Promise<Buffer>;
  /** Bytes per frame when every converted frame has the same known size (uncompressed output). */
  frameSize?: number;
}

function planFrames(layout: DicomLayout, selection: MediaSelection, what: string): FramePlan {
  const stored = layout.transferSyntax;
  const multipart = selection.mediaType === MULTIPART;
  const partType = (multipart ? selection.partType : selection.mediaType) ?? OCTET_STREAM;
  const wanted = selection.transferSyntax ?? DEFAULT_TRANSFER_SYNTAX;
  const nativeBytes = Math.ceil(nativeFrameBits(layout.image) / 8);
  // Native frames come from the core in little endian, whatever the file's syntax: Explicit VR Little Endian octets.
  if (!isEncapsulated(stored)) {
    return { partType, transferSyntax: DEFAULT_TRANSFER_SYNTAX, multipart, convert: async (raw) => raw, frameSize: nativeBytes };
  }
  if (wanted === '*' || wanted === stored) {
    return { partType, transferSyntax: stored, multipart, convert: async (raw) => raw };
  }
  if (!canDecode(stored)) {
    const offered = [formatMediaType(MULTIPART, { type: OCTET_STREAM, 'transfer-syntax': '*' })];
    const compressedType = frameMediaType(stored);
    if (compressedType) offered.push(formatMediaType(MULTIPART, { type: compressedType, 'transfer-syntax': stored }));
    throw notAcceptable(`${what} (stored in ${stored}, which this server cannot decode)`, offered);
  }
  const decodedBytes = (layout.image.rows ?? 0) * (layout.image.columns ?? 0) * (layout.image.samplesPerPixel ?? 1) * Math.ceil((layout.image.bitsAllocated ?? 8) / 8);
  return {
    partType,
    transferSyntax: DEFAULT_TRANSFER_SYNTAX,
    multipart,
    convert: (raw) => decodeFrame(raw, stored, layout.image),
    frameSize: decodedBytes,
  };
}

/** Decoding compressed frames is CPU-heavy work: it takes its turn in the image work limiter (whole answer). */
function withDecodeTurn(context: DicomWebContext, layout: DicomLayout, plan: FramePlan, send: () => Promise<void>): Promise<void> {
  const decodes = isEncapsulated(layout.transferSyntax) && plan.transferSyntax !== layout.transferSyntax;
  return decodes ? imageWorkLimiter(context.config).run(send) : send();
}

function frameCount(layout: DicomLayout): number {
  return Math.max(1, layout.image.numberOfFrames ?? 1);
}

async function pixelLayout(core: NativeCore, ref: InstanceRef): Promise<DicomLayout> {
  const layout = await instanceLayout(core, ref);
  if (!layout.pixelData) throw new HttpError(404, 'The instance has no pixel data', `SOP Instance ${ref.sopUid}`);
  if (!layout.image.rows || !layout.image.columns || !layout.image.bitsAllocated) {
    throw new HttpError(404, 'The instance has no frames', 'Rows, Columns or BitsAllocated is missing');
  }
  return layout;
}

function resolveFromPath(core: NativeCore, req: Request): Promise<InstanceRef> {
  return resolveInstance(core, String(req.params.study), String(req.params.series), String(req.params.instance));
}

/** Frames asked of a core that reads them one by one (a remote core: one HTTP request each) before the first is sent. */
const FRAME_READ_AHEAD = 4;

/**
 * Stored frames (0-based) in order: one open file and sequential block reads when the core can, else
 * frame by frame with a few requests in flight, so that the core's latency is not paid per frame.
 */
async function* storedFrames(core: NativeCore, id: string, frames: readonly number[]): AsyncGenerator<Buffer> {
  if (core.readFramesRaw) {
    yield* core.readFramesRaw(id, frames);
    return;
  }
  const ahead: Array<Promise<Buffer>> = [];
  let next = 0;
  try {
    while (next < frames.length || ahead.length > 0) {
      while (ahead.length < FRAME_READ_AHEAD && next < frames.length) {
        const reading = core.readFrameRaw(id, frames[next++]);
        reading.catch(() => undefined); // seen when its turn comes
        ahead.push(reading);
      }
      yield await (ahead.shift() as Promise<Buffer>);
    }
  } finally {
    // the answer ended early: frames read ahead are dropped once they arrive
    await Promise.allSettled(ahead);
  }
}

/**
 * Stored frames (0-based) converted as planned. A frame that is not given to the block pool once
 * written (see releaseView) is simply collected.
 */
async function* convertedFrames(core: NativeCore, id: string, frames: readonly number[], plan: FramePlan): AsyncGenerator<Buffer> {
  for await (const raw of storedFrames(core, id, frames)) {
    const bytes = await plan.convert(raw);
    if (bytes !== raw) releaseView(raw);
    yield bytes;
  }
}

/** Sends the parts (frames) one per stored frame, each converted as planned. */
async function sendFrameParts(res: Response, core: NativeCore, ref: InstanceRef, frames: readonly number[], plan: FramePlan, locationOf: (frame: number) => string): Promise<void> {
  const boundary = createBoundary();
  const partType = formatMediaType(plan.partType, { 'transfer-syntax': plan.transferSyntax });
  async function* parts(): AsyncGenerator<MultipartBodyPart> {
    let i = 0;
    for await (const bytes of convertedFrames(core, ref.id, frames.map((frame) => frame - 1), plan)) {
      yield { headers: { contentType: partType, contentLocation: locationOf(frames[i++]), contentLength: bytes.length }, body: bytes, written: releaseView };
    }
  }
  const contentType = multipartContentType(boundary, plan.partType, { 'transfer-syntax': plan.transferSyntax });
  await sendMultipart(res, contentType, boundary, parts());
}

function retrieveFrames(context: DicomWebContext): RequestHandler {
  return async (req, res) => {
    const frames = parseFrameList(String(req.params.frames));
    const ref = await resolveFromPath(context.core, req);
    const layout = await pixelLayout(context.core, ref);
    const count = frameCount(layout);
    const missing = frames.find((frame) => frame > count);
    if (missing !== undefined) throw new HttpError(404, `Frame ${missing} does not exist`, `The instance has ${count} frame(s)`);
    const selection = negotiate(req, pixelOffers(layout.transferSyntax, frames.length === 1, frames.length === 1), 'The frames');
    const plan = planFrames(layout, selection, 'The frames');
    const base = `${publicBaseUrl(req, context.config)}${instancePath(ref)}`;
    res.setHeader('Vary', 'Accept');
    await withDecodeTurn(context, layout, plan, async () => {
      if (!plan.multipart) {
        const bytes = await plan.convert(await context.core.readFrameRaw(ref.id, frames[0] - 1));
        res.status(200);
        res.setHeader('Content-Type', formatMediaType(plan.partType, { 'transfer-syntax': plan.transferSyntax }));
        res.setHeader('Content-Location', `${base}/frames/${frames[0]}`);
        res.end(bytes);
        return;
      }
      await sendFrameParts(res, context.core, ref, frames, plan, (frame) => `${base}/frames/${frame}`);
    });
  };
}

// ------------------------------------------------------------------------------------------------
// Bulk data

/** The bulk path "00081250/1/7fe00010" as canonical tags and 1-based items (400 when malformed). */
function parseBulkPath(segments: readonly string[]): Array<string | number> {
  const malformed = (): HttpError => new HttpError(400, 'Invalid bulk data path', `Expected tag[/item/tag...], got "${segments.join('/')}"`);
  if (segments.length % 2 === 0) throw malformed();
  return segments.map((segment, index) => {
    if (index % 2 === 0) {
      if (!/^[0-9A-Fa-f]{8}$/.test(segment)) throw malformed();
      return segment.toUpperCase();
    }
    if (!/^\d+$/.test(segment) || Number(segment) < 1) throw malformed();
    return Number(segment);
  });
}

function bulkSegments(req: Request): string[] {
  const value = (req.params as Record<string, unknown>).path;
  return (Array.isArray(value) ? value.map(String) : String(value ?? '').split('/')).filter((s) => s !== '');
}

/** Sends bytes as bulk data: single part (with Range) or one octet-stream part. */
function sendOctets(req: Request, res: Response, bytes: Buffer, selection: MediaSelection, transferSyntax: string, location: string): void {
  if (selection.mediaType === MULTIPART) {
    const boundary = createBoundary();
    const contentType = multipartContentType(boundary, OCTET_STREAM, { 'transfer-syntax': transferSyntax });
    const header = `--${boundary}\r\nContent-Type: ${formatMediaType(OCTET_STREAM, { 'transfer-syntax': transferSyntax })}\r\nContent-Location: ${location}\r\nContent-Length: ${bytes.length}\r\n\r\n`;
    res.status(200);
    res.setHeader('Content-Type', contentType);
    res.end(Buffer.concat([Buffer.from(header, 'utf8'), bytes, Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1')]));
    return;
  }
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Content-Location', location);
  res.setHeader('Content-Type', formatMediaType(OCTET_STREAM, { 'transfer-syntax': transferSyntax }));
  const range = requestedRange(req, bytes.length);
  if (range === 'unsatisfiable') {
    throw new HttpError(416, 'The requested range is outside the bulk data', `The value has ${bytes.length} bytes`, { 'Content-Range': `bytes */${bytes.length}` });
  }
  if (range) {
    res.status(206);
    res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${bytes.length}`);
    res.end(bytes.subarray(range.start, range.end + 1));
    return;
  }
  res.status(200);
  res.end(bytes);
}

/** Top-level Pixel Data: its frames, converted as negotiated. */
async function sendPixelBulk(req: Request, res: Response, context: DicomWebContext, ref: InstanceRef, layout: DicomLayout, location: string): Promise<void> {
  const count = frameCount(layout);
  const selection = negotiate(req, pixelOffers(layout.transferSyntax, true, count === 1), 'The bulk data');
  const plan = planFrames(layout, selection, 'The bulk data');
  return withDecodeTurn(context, layout, plan, () => sendPlannedPixelBulk(req, res, context, ref, layout, selection, plan, location));
}

async function sendPlannedPixelBulk(
  req: Request,
  res: Response,
  context: DicomWebContext,
  ref: InstanceRef,
  layout: DicomLayout,
  selection: MediaSelection,
  plan: FramePlan,
  location: string,
): Promise<void> {
  const count = frameCount(layout);
  const frames = Array.from({ length: count }, (_, i) => i + 1);
  res.setHeader('Vary', 'Accept');
  if (plan.partType !== OCTET_STREAM) {
    // Compressed: one part per frame, or the single frame alone.
    if (!plan.multipart) {
      const bytes = await context.core.readFrameRaw(ref.id, 0);
      res.status(200);
      res.setHeader('Content-Type', formatMediaType(plan.partType, { 'transfer-syntax': plan.transferSyntax }));
      res.setHeader('Content-Location', location);
      res.end(bytes);
      return;
    }
    await sendFrameParts(res, context.core, ref, frames, plan, () => location);
    return;
  }
  const indices = Array.from({ length: count }, (_, i) => i);
  if (plan.frameSize === undefined) {
    // Compressed frames joined as octets (transfer-syntax=*): their size is only known once read.
    const chunks: Buffer[] = [];
    for await (const bytes of convertedFrames(context.core, ref.id, indices, plan)) chunks.push(bytes);
    sendOctets(req, res, Buffer.concat(chunks), selection, plan.transferSyntax, location);
    return;
  }
  // Frames of a known size: streamed as they are read, never joined in memory (the lengths sent
  // before them are checked, so that a frame of another size cuts the answer instead of corrupting it).
  const frameSize = plan.frameSize;
  const total = frameSize * count;
  async function* sized(frames: readonly number[]): AsyncGenerator<Buffer> {
    for await (const bytes of convertedFrames(context.core, ref.id, frames, plan)) {
      if (bytes.length !== frameSize) throw new HttpError(500, 'A frame does not have the size its attributes give', `${bytes.length} bytes instead of ${frameSize}`);
      yield bytes;
    }
  }
  const octetType = formatMediaType(OCTET_STREAM, { 'transfer-syntax': plan.transferSyntax });
  if (plan.multipart) {
    const boundary = createBoundary();
    const body = await primed(sized(indices));
    res.status(200);
    res.setHeader('Content-Type', multipartContentType(boundary, OCTET_STREAM, { 'transfer-syntax': plan.transferSyntax }));
    await writeMultipart(res, boundary, [{ headers: { contentType: octetType, contentLocation: location, contentLength: total }, body, written: releaseView }]);
    return;
  }
  const asked = requestedRange(req, total);
  if (asked === 'unsatisfiable') {
    throw new HttpError(416, 'The requested range is outside the bulk data', `The value has ${total} bytes`, { 'Content-Range': `bytes */${total}` });
  }
  const range: ByteRange | undefined = asked;
  // Only the frames a range touches are read, and cut to the range.
  const first = range ? Math.floor(range.start / frameSize) : 0;
  const last = range ? Math.floor(range.end / frameSize) : count - 1;
  async function* slices(): AsyncGenerator<Buffer> {
    let frame = first;
    for await (const bytes of sized(indices.slice(first, last + 1))) {
      const start = range && frame === first ? range.start - first * frameSize : 0;
      const end = range && frame === last ? range.end - last * frameSize + 1 : bytes.length;
      frame++;
      // a whole frame as is, so that it can be given back to the block pool once written
      yield start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end);
    }
  }
  const body = await primed(slices());
  res.status(range ? 206 : 200);
  res.setHeader('Accept-Ranges', 'bytes');
  res.setHeader('Content-Location', location);
  res.setHeader('Content-Type', octetType);
  res.setHeader('Content-Length', String(range ? range.end - range.start + 1 : total));
  if (range) res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${total}`);
  await writeChunks(res, body, { end: true, written: releaseView });
}

/** The element at a bulk path, or undefined. */
function elementAt(dataset: DicomDataset, path: ReadonlyArray<string | number>): DicomElement | undefined {
  let current: DicomDataset | undefined = dataset;
  for (let i = 0; i < path.length; i += 2) {
    const element: DicomElement | undefined = current?.[path[i] as string];
    if (i === path.length - 1) return element;
    if (!element || element.vr !== 'SQ') return undefined;
    current = element.Value?.[(path[i + 1] as number) - 1] as DicomDataset | undefined;
  }
  return undefined;
}

const BINARY_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);
function elementBytes(element: DicomElement): Buffer {
  const parts = (element.Value ?? []).flatMap((value) =>
    value instanceof ArrayBuffer ? [Buffer.from(value)] : ArrayBuffer.isView(value) ? [Buffer.from(value.buffer, value.byteOffset, value.byteLength)] : [],
  );
  return Buffer.concat(parts);
}

function retrieveBulk(context: DicomWebContext): RequestHandler {
  return async (req, res) => {
    const path = parseBulkPath(bulkSegments(req));
    const ref = await resolveFromPath(context.core, req);
    const location = `${publicBaseUrl(req, context.config)}${instancePath(ref)}/${bulkSuffix(path)}`;
    if (path.length === 1 && path[0] === PIXEL_DATA) {
      const layout = await instanceLayout(context.core, ref);
      if (!layout.pixelData) throw new HttpError(404, 'Unknown bulk data', 'The instance has no Pixel Data');
      // 1-bit data are one bit string, not a row of byte-aligned frames: served from the file below.
      if (layout.image.bitsAllocated !== 1 && layout.image.rows && layout.image.columns) {
        return sendPixelBulk(req, res, context, ref, await pixelLayout(context.core, ref), location);
      }
    }
    // Values after Pixel Data (and Pixel Data itself here) need the whole file; the others only the header.
    const { dataset } = await readInstanceDataset(context.core, ref.id, { whole: (path[0] as string) >= PIXEL_DATA, fileSize: ref.resource.FileSize });
    const element = elementAt(dataset, path);
    if (!element || !BINARY_VRS.has(element.vr)) {
      throw new HttpError(404, 'Unknown bulk data', `The instance has no binary value at ${bulkSuffix(path)}`);
    }
    const selection = negotiate(
      req,
      [
        { mediaType: MULTIPART, partType: OCTET_STREAM, transferSyntaxes: [DEFAULT_TRANSFER_SYNTAX], anyTransferSyntax: true },
        { mediaType: OCTET_STREAM, transferSyntaxes: [DEFAULT_TRANSFER_SYNTAX], anyTransferSyntax: true },
      ],
      'The bulk data',
    );
    // The reader gives little endian values: what we answer, even for "*".
    const bytes = elementBytes(element);
    res.setHeader('Vary', 'Accept');
    sendOctets(req, res, bytes, selection, DEFAULT_TRANSFER_SYNTAX, location);
  };
}

/** The frames and bulk routes under an instance route. */
export function wadoPixelRoutes(context: DicomWebContext, instanceRoute: string): Array<[string, RequestHandler]> {
  return [
    [`${instanceRoute}/frames/:frames`, retrieveFrames(context)],
    [`${instanceRoute}/bulk/*path`, retrieveBulk(context)],
  ];
}
