/**
 * The one low-level DICOM element walker: element headers at byte offsets over bytes in memory, in
 * explicit or implicit VR, little or big endian, with undefined lengths, nested items and a depth
 * limit. Everything that walks elements is built on it: the layout scan (element-scanner.ts), the data
 * set reader (dataset-reader.ts), STOW's identifier scan (dicom-identifiers.ts) and the raw element
 * listing of the native /content routes (raw-elements.ts).
 *
 * Why not dcmjs: it reads whole values, does not report byte offsets, and costs milliseconds per header.
 */
import { vrOfTag } from './dictionary';

/** The bytes are a prefix of the data and the walk needs bytes past their end: read more and try again. */
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

export const ITEM = 0xfffee000;
export const ITEM_DELIMITATION = 0xfffee00d;
export const SEQUENCE_DELIMITATION = 0xfffee0dd;
export const PIXEL_DATA = 0x7fe00010;
export const TRANSFER_SYNTAX_UID = 0x00020010;
export const UNDEFINED_LENGTH = 0xffffffff;
/** Deeper nesting than this is a malformed (or hostile) file, not a real data set. */
export const MAX_DEPTH = 64;
/** Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 Table 7.1-1). */
const LONG_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV']);

export interface ElementEncoding {
  littleEndian: boolean;
  explicitVr: boolean;
}

/** The file meta group's encoding, and that of an undefined-length UN's content (PS3.5 6.2.2). */
export const EXPLICIT_LITTLE: ElementEncoding = { littleEndian: true, explicitVr: true };
export const IMPLICIT_LITTLE: ElementEncoding = { littleEndian: true, explicitVr: false };

export interface ElementHeader {
  tag: number;
  /** '' for items, delimiters and implicit VR (see `implicitVr`). */
  vr: string;
  /** UNDEFINED_LENGTH for an undefined length. */
  length: number;
  tagOffset: number;
  valueOffset: number;
}

function isUpperLetter(code: number): boolean {
  return code >= 0x41 && code <= 0x5a;
}

/**
 * The element header at `at`, or undefined when `bytes` ends inside it (8 bytes suffice but for the
 * 12 of an explicit long VR). Throws DicomScanError on an invalid explicit VR.
 */
export function decodeHeader(bytes: Buffer, at: number, encoding: ElementEncoding): ElementHeader | undefined {
  if (at + 8 > bytes.length) return undefined;
  const le = encoding.littleEndian;
  const tag = (((le ? bytes.readUInt16LE(at) : bytes.readUInt16BE(at)) << 16) | (le ? bytes.readUInt16LE(at + 2) : bytes.readUInt16BE(at + 2))) >>> 0;
  // Items and delimiters have no VR in any transfer syntax.
  if (tag >>> 16 === 0xfffe || !encoding.explicitVr) {
    return { tag, vr: '', length: le ? bytes.readUInt32LE(at + 4) : bytes.readUInt32BE(at + 4), tagOffset: at, valueOffset: at + 8 };
  }
  const first = bytes[at + 4];
  const second = bytes[at + 5];
  if (!isUpperLetter(first) || !isUpperLetter(second)) throw new DicomScanError(`invalid VR at offset ${at + 4}`);
  const vr = String.fromCharCode(first, second);
  if (!LONG_VRS.has(vr)) {
    return { tag, vr, length: le ? bytes.readUInt16LE(at + 6) : bytes.readUInt16BE(at + 6), tagOffset: at, valueOffset: at + 8 };
  }
  if (at + 12 > bytes.length) return undefined;
  return { tag, vr, length: le ? bytes.readUInt32LE(at + 8) : bytes.readUInt32BE(at + 8), tagOffset: at, valueOffset: at + 12 };
}

/** The encoding of an undefined-length value's items: an undefined-length UN holds Implicit VR Little Endian. */
export function nestedEncoding(header: ElementHeader, encoding: ElementEncoding): ElementEncoding {
  return header.vr === 'UN' ? IMPLICIT_LITTLE : encoding;
}

const hexTags = new Map<number, string>();

/** "00100010" for 0x00100010 (the dcmjs data set key). */
export function hexTag(tag: number): string {
  let hex = hexTags.get(tag);
  if (hex === undefined) {
    hex = tag.toString(16).toUpperCase().padStart(8, '0');
    // Private and unusual tags are unbounded: remember only a working set.
    if (hexTags.size < 65536) hexTags.set(tag, hex);
  }
  return hex;
}

const implicitVrs = new Map<number, string>();

/** Implicit VR: the dictionary's (group lengths UL, private data elements UN, their creators LO). */
export function implicitVr(tag: number): string {
  let vr = implicitVrs.get(tag);
  if (vr === undefined) {
    vr = (tag & 0xffff) === 0 ? 'UL' : vrOfTag(hexTag(tag));
    implicitVrs.set(tag, vr);
  }
  return vr;
}

/** A text value without its padding. */
export function trimmedText(bytes: Buffer, start: number, length: number): string {
  return bytes.toString('latin1', start, start + length).replace(/[\0\s]+$/, '').trim();
}

/** A position in bytes held in memory; `complete: false` means a prefix (running out: NeedMoreData). */
export class ElementWalker {
  constructor(
    readonly buffer: Buffer,
    readonly complete: boolean,
    public offset = 0,
  ) {}

  need(length: number): void {
    if (this.offset + length > this.buffer.length) {
      if (!this.complete) throw new NeedMoreData(this.offset);
      throw new DicomScanError(`the data ends inside an element (offset ${this.offset})`);
    }
  }

  /** True when no byte follows (on a prefix that means NeedMoreData). */
  atEnd(): boolean {
    if (this.offset < this.buffer.length) return false;
    if (!this.complete) throw new NeedMoreData(this.offset);
    return true;
  }

  /** Reads the next element header and moves to its value. */
  header(encoding: ElementEncoding): ElementHeader {
    const header = decodeHeader(this.buffer, this.offset, encoding);
    if (!header) {
      this.need(12);
      throw new DicomScanError(`truncated element header at offset ${this.offset}`);
    }
    this.offset = header.valueOffset;
    return header;
  }

  /** Moves past the value of `header`; an undefined length is walked item by item (headers only). */
  skipValue(header: ElementHeader, encoding: ElementEncoding, depth: number): void {
    if (header.length !== UNDEFINED_LENGTH) {
      this.offset += header.length;
      return;
    }
    if (depth + 1 > MAX_DEPTH) throw new DicomScanError('sequences nested too deeply');
    const nested = nestedEncoding(header, encoding);
    for (;;) {
      const item = this.header(nested);
      if (item.tag === SEQUENCE_DELIMITATION) return;
      if (item.tag !== ITEM) throw new DicomScanError(`expected an item at offset ${item.tagOffset}`);
      if (item.length !== UNDEFINED_LENGTH) {
        this.offset += item.length;
        continue;
      }
      for (;;) {
        const element = this.header(nested);
        if (element.tag === ITEM_DELIMITATION) break;
        this.skipValue(element, nested, depth + 2);
      }
    }
  }
}

/**
 * Reads the file meta group (always Explicit VR Little Endian): the transfer syntax and where the data
 * set begins. Throws DicomScanError without the DICM prefix or the TransferSyntaxUID.
 */
export function readFileMeta(walker: ElementWalker): { transferSyntax: string; datasetOffset: number } {
  walker.need(132);
  if (walker.buffer.toString('latin1', 128, 132) !== 'DICM') throw new DicomScanError('not a DICOM Part 10 file (no DICM prefix)');
  walker.offset = 132;
  let transferSyntax: string | undefined;
  while (!walker.atEnd()) {
    walker.need(2);
    if (walker.buffer.readUInt16LE(walker.offset) !== 0x0002) break;
    const header = walker.header(EXPLICIT_LITTLE);
    if (header.length === UNDEFINED_LENGTH) throw new DicomScanError('undefined length in the file meta group');
    if (header.tag === TRANSFER_SYNTAX_UID) {
      walker.need(header.length);
      transferSyntax = trimmedText(walker.buffer, walker.offset, header.length);
    }
    walker.offset += header.length;
  }
  if (!transferSyntax) throw new DicomScanError('the file meta group has no TransferSyntaxUID');
  return { transferSyntax, datasetOffset: walker.offset };
}
