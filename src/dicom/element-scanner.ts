/**
 * The layout scan: walks a Part 10 file's top-level elements by their headers only (element-walker.ts),
 * without decoding values, to find where the top-level Pixel Data starts and the few image attributes
 * needed to cut frames. It reads through a `ByteSource`, so it works on a file (random access: large
 * values are skipped, never read) as well as on the first bytes of a stream.
 *
 * Why not dcmjs: dcmjs reads whole values (a 500 MB multi-frame would be loaded to serve one frame)
 * and does not report byte offsets.
 */
import fsp from 'node:fs/promises';
import { encodingOf, type TransferSyntaxEncoding } from './transfer-syntax';
import {
  decodeHeader, DicomScanError, ElementWalker, ITEM, ITEM_DELIMITATION, MAX_DEPTH,
  nestedEncoding, NeedMoreData, PIXEL_DATA, readFileMeta, SEQUENCE_DELIMITATION, trimmedText, UNDEFINED_LENGTH,
} from './element-walker';
import type { ElementEncoding, ElementHeader } from './element-walker';

export { DicomScanError, NeedMoreData };

/**
 * Random access to bytes. `read` returns up to `length` bytes from `offset`; fewer than `minimum` only
 * at the end of the data (a prefix of a longer stream throws NeedMoreData instead).
 */
export interface ByteSource {
  read(offset: number, length: number, minimum: number): Promise<Buffer>;
}

export interface ImageAttributes {
  rows?: number;
  columns?: number;
  bitsAllocated?: number;
  bitsStored?: number;
  samplesPerPixel?: number;
  pixelRepresentation?: number;
  planarConfiguration?: number;
  photometricInterpretation?: string;
  numberOfFrames?: number;
}

export interface PixelDataElement {
  /** Offset of the element's tag. */
  tagOffset: number;
  /** Offset of the first byte of its value (for encapsulated data: of the Basic Offset Table item). */
  valueOffset: number;
  /** Value length; undefined for the undefined length of encapsulated data. */
  length: number | undefined;
  vr: string;
}

export interface DicomLayout {
  transferSyntax: string;
  /** Offset of the first data set byte, right after the file meta group. */
  datasetOffset: number;
  image: ImageAttributes;
  /** (7FE0,0001) and (7FE0,0002), when present: per-frame offsets and lengths (PS3.3 C.7.6.3.1.8). */
  extendedOffsetTable?: number[];
  extendedOffsetTableLengths?: number[];
  /** The top-level Pixel Data; undefined when the data set has none. */
  pixelData?: PixelDataElement;
}

const WINDOW = 64 * 1024;

const IMAGE_TAGS: Readonly<Record<number, keyof ImageAttributes>> = {
  0x00280002: 'samplesPerPixel',
  0x00280004: 'photometricInterpretation',
  0x00280006: 'planarConfiguration',
  0x00280008: 'numberOfFrames',
  0x00280010: 'rows',
  0x00280011: 'columns',
  0x00280100: 'bitsAllocated',
  0x00280101: 'bitsStored',
  0x00280103: 'pixelRepresentation',
};

/** Buffered reads over a ByteSource: most element headers are served from one window. */
class Cursor {
  private window: Buffer = Buffer.alloc(0);
  private windowStart = 0;

  constructor(
    private readonly source: ByteSource,
    public offset = 0,
  ) {}

  /** The next `length` bytes (a view into the window), or NeedMoreData/DicomScanError past the end. */
  async take(length: number): Promise<Buffer> {
    await this.fill(length);
    const at = this.offset - this.windowStart;
    this.offset += length;
    return this.window.subarray(at, at + length);
  }

  /** Makes the window hold `length` bytes from the offset (DicomScanError when the data ends first). */
  private async fill(length: number): Promise<void> {
    const start = this.offset - this.windowStart;
    if (start >= 0 && start + length <= this.window.length) return;
    this.window = await this.source.read(this.offset, Math.max(length, WINDOW), length);
    this.windowStart = this.offset;
    if (this.window.length < length) throw new DicomScanError(`the data ends inside an element (offset ${this.offset})`);
  }

  /** The next element header (decoded by the one walker), moving to its value. */
  async header(encoding: ElementEncoding): Promise<ElementHeader> {
    await this.fill(8);
    let header = decodeHeader(this.window, this.offset - this.windowStart, encoding);
    if (!header) {
      await this.fill(12);
      header = decodeHeader(this.window, this.offset - this.windowStart, encoding) as ElementHeader;
    }
    const shift = this.windowStart;
    this.offset = header.valueOffset + shift;
    return { ...header, tagOffset: header.tagOffset + shift, valueOffset: header.valueOffset + shift };
  }

  /** True when no byte follows the current offset. */
  async atEnd(): Promise<boolean> {
    const at = this.offset - this.windowStart;
    if (at >= 0 && at < this.window.length) return false;
    this.window = await this.source.read(this.offset, WINDOW, 1);
    this.windowStart = this.offset;
    return this.window.length === 0;
  }
}

/**
 * Skips a value; an undefined length is walked item by item. The async twin of ElementWalker.skipValue:
 * here the bytes come from a file by windows, so large values inside items are never read.
 */
async function skipValue(cursor: Cursor, header: ElementHeader, encoding: ElementEncoding, depth: number): Promise<void> {
  if (header.length !== UNDEFINED_LENGTH) {
    cursor.offset += header.length;
    return;
  }
  if (depth + 1 > MAX_DEPTH) throw new DicomScanError('sequences nested too deeply');
  const nested = nestedEncoding(header, encoding);
  for (;;) {
    const item = await cursor.header(nested);
    if (item.tag === SEQUENCE_DELIMITATION) return;
    if (item.tag !== ITEM) throw new DicomScanError(`expected an item at offset ${item.tagOffset}`);
    if (item.length !== UNDEFINED_LENGTH) {
      cursor.offset += item.length;
      continue;
    }
    for (;;) {
      const element = await cursor.header(nested);
      if (element.tag === ITEM_DELIMITATION) break;
      await skipValue(cursor, element, nested, depth + 2);
    }
  }
}

function readUs(value: Buffer, littleEndian: boolean): number | undefined {
  if (value.length < 2) return undefined;
  return littleEndian ? value.readUInt16LE(0) : value.readUInt16BE(0);
}

function readUint64List(value: Buffer, littleEndian: boolean): number[] {
  const out: number[] = [];
  for (let at = 0; at + 8 <= value.length; at += 8) {
    out.push(Number(littleEndian ? value.readBigUInt64LE(at) : value.readBigUInt64BE(at)));
  }
  return out;
}

function storeImageAttribute(image: ImageAttributes, key: keyof ImageAttributes, value: Buffer, littleEndian: boolean): void {
  if (key === 'photometricInterpretation') {
    image.photometricInterpretation = trimmedText(value, 0, value.length);
  } else if (key === 'numberOfFrames') {
    const frames = parseInt(trimmedText(value, 0, value.length), 10);
    if (Number.isFinite(frames)) image.numberOfFrames = frames;
  } else {
    const number = readUs(value, littleEndian);
    if (number !== undefined) image[key] = number;
  }
}

/** The file meta group, read by the walker from a first window (grown in the rare case it is larger). */
async function scanMeta(source: ByteSource): Promise<{ transferSyntax: string; datasetOffset: number }> {
  for (let size = WINDOW; ; size *= 2) {
    const head = await source.read(0, size, Math.min(size, 132));
    const ended = head.length < size;
    try {
      return readFileMeta(new ElementWalker(head, ended));
    } catch (error) {
      // A prefix source throws NeedMoreData when asked past its end: the meta group goes on past it.
      if (ended && error instanceof DicomScanError && head.length >= 132) await source.read(head.length, 1, 1);
      if (!(error instanceof NeedMoreData) || ended) throw error;
    }
  }
}

export interface ScanOptions {
  /**
   * For a Deflated file whose data set was inflated in place (see `inflateDataset`): walk it as
   * Explicit VR Little Endian.
   */
  inflated?: boolean;
}

/**
 * Walks the file's top-level elements up to Pixel Data (never into its value). For a Deflated file
 * the walk stops after the meta group unless `inflated` (the layout then has no pixelData).
 */
export async function scanDicom(source: ByteSource, options: ScanOptions = {}): Promise<DicomLayout> {
  const { transferSyntax, datasetOffset } = await scanMeta(source);
  const cursor = new Cursor(source, datasetOffset);
  const layout: DicomLayout = { transferSyntax, datasetOffset, image: {} };
  const declared = encodingOf(transferSyntax);
  if (declared.deflated && !options.inflated) return layout;
  const encoding: TransferSyntaxEncoding = declared.deflated ? { ...declared, deflated: false } : declared;
  while (!(await cursor.atEnd())) {
    const header = await cursor.header(encoding);
    if (header.tag === PIXEL_DATA) {
      layout.pixelData = {
        tagOffset: header.tagOffset,
        valueOffset: cursor.offset,
        length: header.length === UNDEFINED_LENGTH ? undefined : header.length,
        vr: header.vr || (encoding.encapsulated ? 'OB' : 'OW'),
      };
      return layout;
    }
    if (header.tag > PIXEL_DATA) {
      // Elements after where Pixel Data would be: there is none.
      return layout;
    }
    const imageKey = IMAGE_TAGS[header.tag];
    const wanted = imageKey !== undefined || header.tag === 0x7fe00001 || header.tag === 0x7fe00002;
    if (wanted && header.length !== UNDEFINED_LENGTH) {
      const value = await cursor.take(header.length);
      if (imageKey) storeImageAttribute(layout.image, imageKey, value, encoding.littleEndian);
      else if (header.tag === 0x7fe00001) layout.extendedOffsetTable = readUint64List(value, encoding.littleEndian);
      else layout.extendedOffsetTableLengths = readUint64List(value, encoding.littleEndian);
      continue;
    }
    await skipValue(cursor, header, encoding, 0);
  }
  return layout;
}

/** One fragment of encapsulated Pixel Data: where its bytes are (item header excluded). */
export interface Fragment {
  /** Offset of the item tag, as the Basic Offset Table counts (relative to the first fragment). */
  itemOffset: number;
  offset: number;
  length: number;
}

/** Reads the Basic Offset Table and the position of every fragment (item headers only). */
export async function scanFragments(
  source: ByteSource,
  pixelData: PixelDataElement,
  littleEndian: boolean,
): Promise<{ basicOffsetTable: number[]; fragments: Fragment[] }> {
  const cursor = new Cursor(source, pixelData.valueOffset);
  const encoding = { littleEndian, explicitVr: false };
  const first = await cursor.header(encoding);
  if (first.tag !== ITEM || first.length === UNDEFINED_LENGTH) throw new DicomScanError('encapsulated Pixel Data has no Basic Offset Table item');
  const table = await cursor.take(first.length);
  const basicOffsetTable: number[] = [];
  for (let at = 0; at + 4 <= table.length; at += 4) basicOffsetTable.push(littleEndian ? table.readUInt32LE(at) : table.readUInt32BE(at));
  const firstFragment = cursor.offset;
  const fragments: Fragment[] = [];
  for (;;) {
    if (await cursor.atEnd()) break; // a missing sequence delimiter at the end of the file is tolerated
    const header = await cursor.header(encoding);
    if (header.tag === SEQUENCE_DELIMITATION) break;
    if (header.tag !== ITEM || header.length === UNDEFINED_LENGTH) throw new DicomScanError(`invalid fragment item at offset ${header.tagOffset}`);
    fragments.push({ itemOffset: header.tagOffset - firstFragment, offset: cursor.offset, length: header.length });
    cursor.offset += header.length;
  }
  return { basicOffsetTable, fragments };
}

// ------------------------------------------------------------------------------------------------
// Sources

/** A source over bytes in memory; with `complete: false` it is a prefix and short reads raise NeedMoreData. */
export function bufferSource(buffer: Buffer, complete = true): ByteSource {
  return {
    read: async (offset, length, minimum) => {
      if (!complete && offset + minimum > buffer.length) throw new NeedMoreData(offset);
      return buffer.subarray(Math.min(offset, buffer.length), Math.min(offset + length, buffer.length));
    },
  };
}

/** Runs `use` with a source reading a file by ranges; the file is closed afterwards. */
export async function withFileSource<T>(filePath: string, use: (source: ByteSource) => Promise<T>): Promise<T> {
  const handle = await fsp.open(filePath, 'r');
  try {
    const source: ByteSource = {
      read: async (offset, length) => {
        const buffer = Buffer.allocUnsafe(length);
        const { bytesRead } = await handle.read(buffer, 0, length, offset);
        return buffer.subarray(0, bytesRead);
      },
    };
    return await use(source);
  } finally {
    await handle.close();
  }
}

export interface StreamHead {
  /** The bytes read: at least everything before Pixel Data (the whole file when `complete`). */
  head: Buffer;
  layout: DicomLayout;
  /** The stream was read to its end. */
  complete: boolean;
}

function toBuffer(chunk: Buffer | Uint8Array | string): Buffer {
  return typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/**
 * Reads a Part 10 stream only as far as needed to locate Pixel Data, then stops and releases the
 * stream. Deflated files are read whole (their elements cannot be walked without inflating).
 */
export async function scanStreamHead(stream: AsyncIterable<Buffer | Uint8Array | string>): Promise<StreamHead> {
  const chunks: Buffer[] = [];
  let total = 0;
  let nextAttempt = 0;
  const iterator = stream[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = await iterator.next();
      if (next.done) break;
      const chunk = toBuffer(next.value);
      chunks.push(chunk);
      total += chunk.length;
      if (total < nextAttempt) continue;
      const head = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
      chunks.length = 0;
      chunks.push(head);
      try {
        const layout = await scanDicom(bufferSource(head, false));
        // Without NeedMoreData the walk ended at Pixel Data or at an element after it: enough was read.
        if (!encodingOf(layout.transferSyntax).deflated) return { head, layout, complete: false };
      } catch (error) {
        if (!(error instanceof NeedMoreData)) throw error;
      }
      // Rescan only after the prefix has doubled: linear work overall.
      nextAttempt = total * 2;
    }
  } finally {
    // Stops a stream read only in part (a file descriptor, an HTTP response).
    await iterator.return?.();
  }
  const head = Buffer.concat(chunks);
  return { head, layout: await scanDicom(bufferSource(head)), complete: true };
}
