/**
 * Frame location in Pixel Data (PS3.5 8.2, A.4), for WADO-RS frames and the raw frames of the
 * embedded core. Only the header and the needed byte ranges are read, never the whole file:
 *  - native data: offset arithmetic (bit arithmetic for BitsAllocated 1);
 *  - encapsulated data: the Extended Offset Table, else the Basic Offset Table, else one frame per
 *    fragment when the counts match, else fragments grouped by the codestream start markers.
 * Frame indices are 0-based here (the HTTP layer speaks 1-based).
 */
import fsp from 'node:fs/promises';
import { inflateRawSync } from 'node:zlib';
import {
  bufferSource,
  DicomScanError,
  scanDicom,
  scanFragments,
  withFileSource,
  type ByteSource,
  type DicomLayout,
  type Fragment,
  type ImageAttributes,
} from './element-scanner';
import { encodingOf, TS } from './transfer-syntax';
import { Lru } from '../core/lru';
import { BLOCK_BYTES, lendViews, takeBlock } from './block-pool';

/** Why a frame cannot be served; `status` is the HTTP status a client should see. */
export class PixelDataError extends Error {
  constructor(
    readonly status: 400 | 404 | 500,
    message: string,
  ) {
    super(message);
    this.name = 'PixelDataError';
  }
}

/** Byte ranges of one frame in the file (several fragments for some encapsulated frames). */
export interface FrameLocation {
  ranges: Array<{ offset: number; length: number }>;
  /** BitsAllocated 1: the frame starts this many bits into its first byte and holds `bitLength` bits. */
  bitShift?: number;
  bitLength?: number;
}

export interface FrameIndex {
  transferSyntax: string;
  image: ImageAttributes;
  numberOfFrames: number;
  frames: FrameLocation[];
}

/** Size of one native frame in bits. */
export function nativeFrameBits(image: ImageAttributes): number {
  const { rows, columns, bitsAllocated } = image;
  if (!rows || !columns || !bitsAllocated) throw new PixelDataError(500, 'Rows, Columns or BitsAllocated is missing: cannot cut frames');
  return rows * columns * (image.samplesPerPixel ?? 1) * bitsAllocated;
}

function nativeFrames(layout: DicomLayout, numberOfFrames: number): FrameLocation[] {
  const pixelData = layout.pixelData as NonNullable<DicomLayout['pixelData']>;
  const frameBits = nativeFrameBits(layout.image);
  const available = (pixelData.length ?? 0) * 8;
  const frames: FrameLocation[] = [];
  for (let frame = 0; frame < numberOfFrames; frame++) {
    const startBit = frame * frameBits;
    // A truncated value holds fewer frames than announced: those are simply not there.
    if (startBit + frameBits > available) break;
    const offset = pixelData.valueOffset + Math.floor(startBit / 8);
    if (frameBits % 8 === 0 && startBit % 8 === 0) {
      frames.push({ ranges: [{ offset, length: frameBits / 8 }] });
    } else {
      const length = Math.ceil(((startBit % 8) + frameBits) / 8);
      frames.push({ ranges: [{ offset, length }], bitShift: startBit % 8, bitLength: frameBits });
    }
  }
  return frames;
}

/** JPEG (SOI), JPEG-LS (SOI), JPEG 2000 codestream (SOC) or JP2 signature box: where a frame starts. */
function startsCodestream(bytes: Buffer): boolean {
  if (bytes.length >= 2 && bytes[0] === 0xff && (bytes[1] === 0xd8 || bytes[1] === 0x4f)) return true;
  return bytes.length >= 8 && bytes.readUInt32BE(0) === 0x0000000c && bytes.toString('latin1', 4, 8) === 'jP  ';
}

function rangesOf(fragments: Fragment[]): FrameLocation {
  return { ranges: fragments.map((f) => ({ offset: f.offset, length: f.length })) };
}

async function encapsulatedFrames(source: ByteSource, layout: DicomLayout, numberOfFrames: number): Promise<FrameLocation[]> {
  const pixelData = layout.pixelData as NonNullable<DicomLayout['pixelData']>;
  const littleEndian = encodingOf(layout.transferSyntax).littleEndian;
  const { basicOffsetTable, fragments } = await scanFragments(source, pixelData, littleEndian);
  if (fragments.length === 0) return [];

  const eot = layout.extendedOffsetTable;
  if (eot && eot.length === numberOfFrames) {
    // The Extended Offset Table requires one fragment per frame (PS3.3 C.7.6.3.1.8); if a frame
    // does not fit its fragment, the table is wrong and the other methods decide.
    const byItemOffset = new Map(fragments.map((f) => [f.itemOffset, f]));
    const located = eot.map((offset, frame) => {
      const fragment = byItemOffset.get(offset);
      const length = layout.extendedOffsetTableLengths?.[frame] ?? fragment?.length ?? 0;
      return fragment && length <= fragment.length ? { ranges: [{ offset: fragment.offset, length }] } : undefined;
    });
    if (located.every((f) => f !== undefined)) return located as FrameLocation[];
  }
  if (basicOffsetTable.length === numberOfFrames && basicOffsetTable.length > 0) {
    const frames = basicOffsetTable.map((start, frame) => {
      const end = basicOffsetTable[frame + 1] ?? Number.POSITIVE_INFINITY;
      return rangesOf(fragments.filter((f) => f.itemOffset >= start && f.itemOffset < end));
    });
    if (frames.every((f) => f.ranges.length > 0)) return frames;
  }
  if (fragments.length === numberOfFrames) return fragments.map((f) => rangesOf([f]));
  if (numberOfFrames === 1) return [rangesOf(fragments)];
  if (layout.transferSyntax === TS.RLELossless) {
    throw new PixelDataError(500, `RLE Pixel Data has ${fragments.length} fragments for ${numberOfFrames} frames`);
  }
  // No table and several fragments per frame: a frame begins with each codestream start marker.
  const frames: Fragment[][] = [];
  for (const fragment of fragments) {
    const head = await source.read(fragment.offset, Math.min(8, fragment.length), Math.min(8, fragment.length));
    if (startsCodestream(head) || frames.length === 0) frames.push([fragment]);
    else frames[frames.length - 1].push(fragment);
  }
  if (frames.length !== numberOfFrames) {
    throw new PixelDataError(500, `cannot find the frame boundaries: ${fragments.length} fragments, ${frames.length} codestreams, ${numberOfFrames} frames`);
  }
  return frames.map(rangesOf);
}

/** Where every frame of a file is. `layout` must come from scanning the same source. */
export async function indexFrames(source: ByteSource, layout: DicomLayout): Promise<FrameIndex> {
  if (!layout.pixelData) throw new PixelDataError(404, 'The instance has no Pixel Data');
  const numberOfFrames = Math.max(1, layout.image.numberOfFrames ?? 1);
  const encapsulated = layout.pixelData.length === undefined;
  const frames = encapsulated ? await encapsulatedFrames(source, layout, numberOfFrames) : nativeFrames(layout, numberOfFrames);
  return { transferSyntax: layout.transferSyntax, image: layout.image, numberOfFrames, frames };
}

/** The bytes of frame `frame` (0-based) as stored: fragments joined, 1-bit frames realigned to bit 0. */
export async function readFrame(source: ByteSource, index: FrameIndex, frame: number): Promise<Buffer> {
  if (!Number.isInteger(frame) || frame < 0 || frame >= index.numberOfFrames) {
    throw new PixelDataError(404, `Frame ${frame + 1} does not exist: the instance has ${index.numberOfFrames} frame(s)`);
  }
  const location = index.frames[frame];
  if (!location) throw new PixelDataError(404, `Frame ${frame + 1} is not in the stored Pixel Data (truncated file)`);
  const parts: Buffer[] = [];
  for (const range of location.ranges) {
    const bytes = await source.read(range.offset, range.length, range.length);
    if (bytes.length < range.length) throw new PixelDataError(500, `the file ends inside frame ${frame + 1}`);
    parts.push(bytes);
  }
  const joined = parts.length === 1 ? parts[0] : Buffer.concat(parts);
  return location.bitShift ? shiftBits(joined, location.bitShift, location.bitLength ?? joined.length * 8) : Buffer.from(joined);
}

/** Moves a bit string that starts `shift` bits into `bytes` to bit 0 (DICOM packs 1-bit data LSB first). */
export function shiftBits(bytes: Buffer, shift: number, bitLength: number): Buffer {
  const out = Buffer.alloc(Math.ceil(bitLength / 8));
  for (let i = 0; i < out.length; i++) {
    const low = bytes[i] >> shift;
    const high = i + 1 < bytes.length ? (bytes[i + 1] << (8 - shift)) & 0xff : 0;
    out[i] = (low | high) & 0xff;
  }
  const spare = out.length * 8 - bitLength;
  if (spare > 0) out[out.length - 1] &= 0xff >> spare;
  return out;
}

// ------------------------------------------------------------------------------------------------
// Files on disk, with a small per-file cache of frame indexes.

/** Part 10 bytes of a Deflated file with its data set inflated (to be scanned with `inflated: true`). */
export function inflateDataset(file: Buffer, datasetOffset: number): Buffer {
  return Buffer.concat([file.subarray(0, datasetOffset), inflateRawSync(file.subarray(datasetOffset))]);
}

const frameIndexes = new Lru<string, FrameIndex>(256);

/**
 * One stored frame of a file (0-based), as stored: native bytes in the file's byte order, or the
 * compressed codestream. `cacheKey` identifies the file's content (e.g. the attachment UUID).
 */
export async function readStoredFrame(filePath: string, cacheKey: string, frame: number): Promise<{ bytes: Buffer; index: FrameIndex }> {
  try {
    return await withFileSource(filePath, async (fileSource) => {
      const { source, index } = await indexedSource(fileSource, cacheKey);
      return { bytes: await readFrame(source, index, frame), index };
    });
  } catch (error) {
    if (error instanceof DicomScanError) throw new PixelDataError(500, `Cannot read the stored file: ${error.message}`);
    throw error;
  }
}

/** The frame index of a file (cached by `cacheKey`) and the source to cut its frames from. */
async function indexedSource(fileSource: ByteSource, cacheKey: string): Promise<{ source: ByteSource; index: FrameIndex }> {
  const cached = frameIndexes.get(cacheKey);
  const layout = cached ? undefined : await scanDicom(fileSource);
  const transferSyntax = cached?.transferSyntax ?? (layout as DicomLayout).transferSyntax;
  const deflated = encodingOf(transferSyntax).deflated;
  // A deflated data set has no random access: inflate it whole (rare; the index stays cached).
  const source = deflated ? await inflatedSource(fileSource) : fileSource;
  let index = cached;
  if (!index) {
    index = await indexFrames(source, deflated ? await scanDicom(source, { inflated: true }) : (layout as DicomLayout));
    frameIndexes.set(cacheKey, index);
  }
  return { source, index };
}

/** A frame stored as one byte-aligned range, or undefined (fragments, bit-packed, missing, out of range). */
function simpleRange(index: FrameIndex, frame: number): { offset: number; length: number } | undefined {
  if (!Number.isInteger(frame) || frame < 0 || frame >= index.numberOfFrames) return undefined;
  const location = index.frames[frame];
  return location && location.ranges.length === 1 && !location.bitShift ? location.ranges[0] : undefined;
}

/**
 * The reads that give `frames` (0-based, in the order asked): runs of frames that follow each other
 * in the file (a whole native multi-frame instance) as blocks of a few MiB cut into views, the others
 * (fragments, bit-packed) one by one.
 */
function frameReads(
  source: ByteSource,
  index: FrameIndex,
  frames: readonly number[],
  readBlock: (offset: number, length: number) => Promise<Buffer>,
): Array<() => Promise<Buffer[]>> {
  const reads: Array<() => Promise<Buffer[]>> = [];
  for (let i = 0; i < frames.length; ) {
    const first = simpleRange(index, frames[i]);
    if (!first) {
      const frame = frames[i];
      reads.push(async () => [await readFrame(source, index, frame)]);
      i++;
      continue;
    }
    // the run of asked frames that follow each other in the file, within one block
    const asked = [frames[i]];
    const lengths = [first.length];
    let end = first.offset + first.length;
    while (i + asked.length < frames.length) {
      const next = simpleRange(index, frames[i + asked.length]);
      if (!next || next.offset !== end || end + next.length - first.offset > BLOCK_BYTES) break;
      asked.push(frames[i + asked.length]);
      lengths.push(next.length);
      end += next.length;
    }
    reads.push(async () => {
      const block = await readBlock(first.offset, end - first.offset);
      let at = 0;
      const views = lengths.map((length, k) => {
        if (at + length > block.length) throw new PixelDataError(500, `the file ends inside frame ${asked[k] + 1}`);
        at += length;
        return block.subarray(at - length, at);
      });
      lendViews(views);
      return views;
    });
    i += asked.length;
  }
  return reads;
}

/**
 * Several stored frames of one file (0-based, in the order asked), as readStoredFrame gives each, with
 * the file opened once and read in blocks (see frameReads); the next block is read while the frames
 * of the current one are consumed, so a consumer that sends them never waits for the disk after the
 * first block, and memory stays at a few blocks whatever the size of the instance. Blocks come from
 * the block pool: a consumer done with a frame may give it back with releaseView.
 */
export async function* readStoredFrames(filePath: string, cacheKey: string, frames: readonly number[]): AsyncGenerator<{ bytes: Buffer; index: FrameIndex }> {
  const handle = await fsp.open(filePath, 'r');
  let ahead: Promise<Buffer[]> | undefined;
  try {
    const fileSource: ByteSource = {
      read: async (offset, length) => {
        const buffer = Buffer.allocUnsafe(length);
        const { bytesRead } = await handle.read(buffer, 0, length, offset);
        return buffer.subarray(0, bytesRead);
      },
    };
    let indexed: { source: ByteSource; index: FrameIndex };
    try {
      indexed = await indexedSource(fileSource, cacheKey);
    } catch (error) {
      if (error instanceof DicomScanError) throw new PixelDataError(500, `Cannot read the stored file: ${error.message}`);
      throw error;
    }
    const { source, index } = indexed;
    const readBlock = async (offset: number, length: number): Promise<Buffer> => {
      // a deflated data set was inflated in memory: its blocks are views of it
      if (source !== fileSource) return source.read(offset, length, length);
      const block = takeBlock(length);
      const { bytesRead } = await handle.read(block, 0, length, offset);
      return block.subarray(0, bytesRead);
    };
    const reads = frameReads(source, index, frames, readBlock);
    for (let r = 0; r < reads.length; r++) {
      const current = await (ahead ?? reads[r]());
      ahead = r + 1 < reads.length ? reads[r + 1]() : undefined;
      // a failed read ahead is seen at its turn (or not at all when the consumer stops first)
      ahead?.catch(() => undefined);
      for (const bytes of current) yield { bytes, index };
    }
  } finally {
    // the handle is closed once a read ahead the consumer no longer wants has ended
    await ahead?.catch(() => undefined);
    await handle.close();
  }
}

async function inflatedSource(fileSource: ByteSource): Promise<ByteSource> {
  const whole = await readAll(fileSource);
  const { datasetOffset } = await scanDicom(bufferSource(whole));
  return bufferSource(inflateDataset(whole, datasetOffset));
}

async function readAll(source: ByteSource): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const chunk = await source.read(offset, 1 << 20, 1);
    if (chunk.length === 0) break;
    chunks.push(Buffer.from(chunk));
    offset += chunk.length;
  }
  return Buffer.concat(chunks);
}
