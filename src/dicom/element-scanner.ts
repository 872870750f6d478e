/**
 * A small DICOM element scanner: walks a Part 10 file's elements by their headers only, without
 * decoding values, to find where the top-level Pixel Data starts and the few image attributes needed
 * to cut frames. It reads through a `ByteSource`, so it works on a file (random access: large values
 * are skipped, never read) as well as on the first bytes of a stream.
 *
 * Why not dcmjs: dcmjs reads whole values (a 500 MB multi-frame would be loaded to serve one frame)
 * and does not report byte offsets.
 */
import fsp from 'node:fs/promises';
import { encodingOf, type TransferSyntaxEncoding } from './transfer-syntax';

/**
 * Random access to bytes. `read` returns up to `length` bytes from `offset`; fewer than `minimum` only
 * at the end of the data (a prefix of a longer stream throws NeedMoreData instead).
 */
export interface ByteSource {
  read(offset: number, length: number, minimum: number): Promise<Buffer>;
}

/** The source is a prefix of the data and the scan needs bytes past its end (see `scanStreamHead`). */
export class NeedMoreData extends Error {
  constructor(readonly offset: number) {
    super(`more data needed at offset ${offset}`);
    this.name = 'NeedMoreData';
  }
}

/** Not a DICOM file, or its element structure is broken where we had to walk it. */
export class DicomScanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DicomScanError';
  }
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

const ITEM = 0xfffee000;
const ITEM_DELIMITATION = 0xfffee00d;
const SEQUENCE_DELIMITATION = 0xfffee0dd;
const PIXEL_DATA = 0x7fe00010;
const UNDEFINED_LENGTH = 0xffffffff;
/** Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 Table 7.1-1). */
const LONG_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV']);
const WINDOW = 64 * 1024;
/** Deeper nesting than this is a malformed (or hostile) file, not a real data set. */
const MAX_DEPTH = 64;

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
    const start = this.offset - this.windowStart;
    if (start < 0 || start + length > this.window.length) {
      this.window = await this.source.read(this.offset, Math.max(length, WINDOW), length);
      this.windowStart = this.offset;
      if (this.window.length < length) throw new DicomScanError(`the data ends inside an element (offset ${this.offset})`);
    }
    const at = this.offset - this.windowStart;
    this.offset += length;
    return this.window.subarray(at, at + length);
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

interface ElementHeader {
  tag: number;
  vr: string;
  length: number;
  tagOffset: number;
}

async function readTag(cursor: Cursor, littleEndian: boolean): Promise<number> {
  const bytes = await cursor.take(4);
  const group = littleEndian ? bytes.readUInt16LE(0) : bytes.readUInt16BE(0);
  const element = littleEndian ? bytes.readUInt16LE(2) : bytes.readUInt16BE(2);
  return ((group << 16) | element) >>> 0;
}

async function readUint32(cursor: Cursor, littleEndian: boolean): Promise<number> {
  const bytes = await cursor.take(4);
  return littleEndian ? bytes.readUInt32LE(0) : bytes.readUInt32BE(0);
}

async function readElementHeader(cursor: Cursor, encoding: Pick<TransferSyntaxEncoding, 'littleEndian' | 'explicitVr'>): Promise<ElementHeader> {
  const tagOffset = cursor.offset;
  const tag = await readTag(cursor, encoding.littleEndian);
  // Items and delimiters have no VR in any transfer syntax.
  if (tag >>> 16 === 0xfffe || !encoding.explicitVr) {
    return { tag, vr: '', length: await readUint32(cursor, encoding.littleEndian), tagOffset };
  }
  const vrBytes = await cursor.take(2);
  const vr = vrBytes.toString('latin1');
  if (!/^[A-Z]{2}$/.test(vr)) throw new DicomScanError(`invalid VR at offset ${tagOffset + 4}`);
  if (LONG_VRS.has(vr)) {
    await cursor.take(2);
    return { tag, vr, length: await readUint32(cursor, encoding.littleEndian), tagOffset };
  }
  const lengthBytes = await cursor.take(2);
  return { tag, vr, length: encoding.littleEndian ? lengthBytes.readUInt16LE(0) : lengthBytes.readUInt16BE(0), tagOffset };
}

/** Skips the items of an undefined-length sequence, up to and including its delimiter. */
async function skipUndefinedSequence(cursor: Cursor, encoding: TransferSyntaxEncoding, depth: number): Promise<void> {
  if (depth > MAX_DEPTH) throw new DicomScanError('sequences nested too deeply');
  for (;;) {
    const header = await readElementHeader(cursor, encoding);
    if (header.tag === SEQUENCE_DELIMITATION) return;
    if (header.tag !== ITEM) throw new DicomScanError(`expected an item at offset ${header.tagOffset}`);
    if (header.length === UNDEFINED_LENGTH) await skipUndefinedItem(cursor, encoding, depth + 1);
    else cursor.offset += header.length;
  }
}

/** Skips the elements of an undefined-length item, up to and including its delimiter. */
async function skipUndefinedItem(cursor: Cursor, encoding: TransferSyntaxEncoding, depth: number): Promise<void> {
  for (;;) {
    const header = await readElementHeader(cursor, encoding);
    if (header.tag === ITEM_DELIMITATION) return;
    await skipValue(cursor, header, encoding, depth);
  }
}

async function skipValue(cursor: Cursor, header: ElementHeader, encoding: TransferSyntaxEncoding, depth: number): Promise<void> {
  if (header.length !== UNDEFINED_LENGTH) {
    cursor.offset += header.length;
    return;
  }
  // An undefined-length UN holds a sequence encoded in Implicit VR Little Endian (PS3.5 6.2.2).
  const nested = header.vr === 'UN' ? { ...encoding, littleEndian: true, explicitVr: false } : encoding;
  await skipUndefinedSequence(cursor, nested, depth + 1);
}

function readUs(value: Buffer, littleEndian: boolean): number | undefined {
  if (value.length < 2) return undefined;
  return littleEndian ? value.readUInt16LE(0) : value.readUInt16BE(0);
}

function readText(value: Buffer): string {
  return value.toString('latin1').replace(/[\0\s]+$/, '').trim();
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
    image.photometricInterpretation = readText(value);
  } else if (key === 'numberOfFrames') {
    const frames = parseInt(readText(value), 10);
    if (Number.isFinite(frames)) image.numberOfFrames = frames;
  } else {
    const number = readUs(value, littleEndian);
    if (number !== undefined) image[key] = number;
  }
}

/** Reads the file meta group: the transfer syntax and where the data set begins. */
async function scanMeta(cursor: Cursor): Promise<{ transferSyntax: string; datasetOffset: number }> {
  const preamble = await cursor.take(132);
  if (preamble.toString('latin1', 128, 132) !== 'DICM') throw new DicomScanError('not a DICOM Part 10 file (no DICM prefix)');
  let transferSyntax: string | undefined;
  for (;;) {
    const start = cursor.offset;
    if (await cursor.atEnd()) break;
    const peek = await cursor.take(2);
    cursor.offset = start;
    if (peek.readUInt16LE(0) !== 0x0002) break;
    const header = await readElementHeader(cursor, { littleEndian: true, explicitVr: true });
    if (header.length === UNDEFINED_LENGTH) throw new DicomScanError('undefined length in the file meta group');
    if (header.tag === 0x00020010) transferSyntax = readText(await cursor.take(header.length));
    else cursor.offset += header.length;
  }
  if (!transferSyntax) throw new DicomScanError('the file meta group has no TransferSyntaxUID');
  return { transferSyntax, datasetOffset: cursor.offset };
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
  const cursor = new Cursor(source);
  const { transferSyntax, datasetOffset } = await scanMeta(cursor);
  const layout: DicomLayout = { transferSyntax, datasetOffset, image: {} };
  const declared = encodingOf(transferSyntax);
  if (declared.deflated && !options.inflated) return layout;
  const encoding: TransferSyntaxEncoding = declared.deflated ? { ...declared, deflated: false } : declared;
  while (!(await cursor.atEnd())) {
    const header = await readElementHeader(cursor, encoding);
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
  const first = await readElementHeader(cursor, encoding);
  if (first.tag !== ITEM || first.length === UNDEFINED_LENGTH) throw new DicomScanError('encapsulated Pixel Data has no Basic Offset Table item');
  const table = await cursor.take(first.length);
  const basicOffsetTable: number[] = [];
  for (let at = 0; at + 4 <= table.length; at += 4) basicOffsetTable.push(littleEndian ? table.readUInt32LE(at) : table.readUInt32BE(at));
  const firstFragment = cursor.offset;
  const fragments: Fragment[] = [];
  for (;;) {
    if (await cursor.atEnd()) break; // a missing sequence delimiter at the end of the file is tolerated
    const header = await readElementHeader(cursor, encoding);
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
