/**
 * The few identifiers a store needs before it stores a file (transfer syntax, SOP class and instance,
 * study and series UIDs), read from the first bytes of a DICOM Part 10 file.
 *
 * Why not dcmjs: STOW-RS reads these for every instance on a hot path, and dcmjs spends ~0.5 ms per
 * header whatever its size; this scanner stops at group 0020 and costs microseconds. It only reads
 * little endian data sets; for anything else (big endian, deflated, an odd header) it answers
 * 'unknown' and the caller asks dcmjs, which stays the authority.
 */
import { DicomParseError, elementToString, parseDicom } from './dicom-file';

export interface InstanceIdentifiers {
  transferSyntax: string;
  sopClassUid?: string;
  sopInstanceUid?: string;
  studyUid?: string;
  seriesUid?: string;
}

const IMPLICIT_LITTLE = '1.2.840.10008.1.2';
const EXPLICIT_BIG = '1.2.840.10008.1.2.2';
const DEFLATED = '1.2.840.10008.1.2.1.99';

/** tag (as a number) -> field; the scan stops after the last one (data sets are in ascending tag order). */
const WANTED: ReadonlyMap<number, keyof Omit<InstanceIdentifiers, 'transferSyntax'>> = new Map([
  [0x00080016, 'sopClassUid'],
  [0x00080018, 'sopInstanceUid'],
  [0x0020000d, 'studyUid'],
  [0x0020000e, 'seriesUid'],
]);
const LAST_WANTED = 0x0020000e;
const TRANSFER_SYNTAX_TAG = 0x00020010;
const ITEM = 0xfffee000;
const ITEM_END = 0xfffee00d;
const SEQUENCE_END = 0xfffee0dd;
const UNDEFINED = 0xffffffff;
/** Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2). */
const LONG_VRS: ReadonlySet<string> = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UN', 'UR', 'UT', 'SV', 'UV']);

/** The scan ran out of bytes (or met something it does not handle): let dcmjs decide. */
class ScanAbort extends Error {}

interface Cursor {
  buf: Buffer;
  pos: number;
}

interface Element {
  tag: number;
  vr: string | undefined;
  length: number;
  valueAt: number;
}

function need(c: Cursor, bytes: number): void {
  if (c.pos + bytes > c.buf.length) throw new ScanAbort();
}

function readElementHeader(c: Cursor, explicit: boolean): Element {
  need(c, 8);
  const tag = ((c.buf.readUInt16LE(c.pos) << 16) | c.buf.readUInt16LE(c.pos + 2)) >>> 0;
  // items and delimiters never carry a VR
  if (tag === ITEM || tag === ITEM_END || tag === SEQUENCE_END) {
    const length = c.buf.readUInt32LE(c.pos + 4);
    c.pos += 8;
    return { tag, vr: undefined, length, valueAt: c.pos };
  }
  if (!explicit) {
    const length = c.buf.readUInt32LE(c.pos + 4);
    c.pos += 8;
    return { tag, vr: undefined, length, valueAt: c.pos };
  }
  const vr = c.buf.toString('latin1', c.pos + 4, c.pos + 6);
  if (!/^[A-Z]{2}$/.test(vr)) throw new ScanAbort();
  if (LONG_VRS.has(vr)) {
    need(c, 12);
    const length = c.buf.readUInt32LE(c.pos + 8);
    c.pos += 12;
    return { tag, vr, length, valueAt: c.pos };
  }
  const length = c.buf.readUInt16LE(c.pos + 6);
  c.pos += 8;
  return { tag, vr, length, valueAt: c.pos };
}

/** Skips the items of an undefined-length sequence, up to and including its delimiter. */
function skipSequence(c: Cursor, explicit: boolean): void {
  for (;;) {
    const item = readElementHeader(c, explicit);
    if (item.tag === SEQUENCE_END) return;
    if (item.tag !== ITEM) throw new ScanAbort();
    if (item.length !== UNDEFINED) {
      c.pos += item.length;
      continue;
    }
    for (;;) {
      const element = readElementHeader(c, explicit);
      if (element.tag === ITEM_END) break;
      skipValue(c, element, explicit);
    }
  }
}

function skipValue(c: Cursor, element: Element, explicit: boolean): void {
  if (element.length !== UNDEFINED) {
    c.pos += element.length;
    return;
  }
  // an undefined-length UN holds implicit VR little endian content (PS3.5 6.2.2)
  skipSequence(c, element.vr === 'UN' ? false : explicit);
}

function uidValue(c: Cursor, element: Element): string {
  need(c, element.length);
  return c.buf.toString('latin1', element.valueAt, element.valueAt + element.length).replace(/[\0 ]+$/, '').trim();
}

/**
 * Reads the identifiers from the head of a Part 10 file. `complete` says the buffer is the whole file
 * (so running out of bytes means "absent", not "read more"). Answers 'not-dicom' without the DICM prefix,
 * 'unknown' when dcmjs must decide (see parseIdentifiers).
 */
export function scanIdentifiers(head: Buffer, complete = false): InstanceIdentifiers | 'not-dicom' | 'unknown' {
  if (head.length < 132 || head.toString('latin1', 128, 132) !== 'DICM') return 'not-dicom';
  const c: Cursor = { buf: head, pos: 132 };
  try {
    let transferSyntax: string | undefined;
    // the file meta group is always explicit VR little endian
    while (c.pos + 2 <= head.length && head.readUInt16LE(c.pos) === 0x0002) {
      const element = readElementHeader(c, true);
      if (element.length === UNDEFINED) throw new ScanAbort();
      if (element.tag === TRANSFER_SYNTAX_TAG) transferSyntax = uidValue(c, element);
      c.pos += element.length;
    }
    if (!transferSyntax || transferSyntax === EXPLICIT_BIG || transferSyntax === DEFLATED) return 'unknown';
    const explicit = transferSyntax !== IMPLICIT_LITTLE;
    const found: InstanceIdentifiers = { transferSyntax };
    while (c.pos < head.length) {
      const element = readElementHeader(c, explicit);
      if (element.tag > LAST_WANTED) return found;
      const field = WANTED.get(element.tag);
      const value = field && element.length !== UNDEFINED ? uidValue(c, element) : '';
      if (field && value !== '') found[field] = value;
      skipValue(c, element, explicit);
    }
    // ran to the end of the bytes: final only when they are the whole file
    return complete || found.seriesUid !== undefined ? found : 'unknown';
  } catch (error) {
    if (error instanceof ScanAbort) return 'unknown';
    throw error;
  }
}

/** The identifiers as dcmjs reads them; throws DicomParseError when it cannot. */
export function parseIdentifiers(buffer: Buffer): InstanceIdentifiers {
  const parsed = parseDicom(buffer, { untilPixelData: true });
  const text = (tag: string): string | undefined => elementToString(parsed.dataset[tag]) || undefined;
  return {
    transferSyntax: parsed.transferSyntax,
    sopClassUid: text('00080016'),
    sopInstanceUid: text('00080018'),
    studyUid: text('0020000D'),
    seriesUid: text('0020000E'),
  };
}

/**
 * Fast path, then dcmjs: identifiers of a file whose first bytes are `head`. `readMore(bytes)` returns
 * up to that many bytes from the start of the file (or undefined when the file is larger: too big to read).
 */
export async function identifyInstance(
  head: Buffer,
  fileSize: number,
  readMore: (bytes: number) => Promise<Buffer | undefined>,
): Promise<InstanceIdentifiers> {
  const complete = head.length >= fileSize;
  const scanned = scanIdentifiers(head, complete);
  if (scanned === 'not-dicom') throw new DicomParseError('Not a DICOM Part 10 file (no DICM prefix)');
  const hasAll = (ids: InstanceIdentifiers): boolean =>
    Boolean(ids.sopClassUid && ids.sopInstanceUid && ids.studyUid && ids.seriesUid);
  if (scanned !== 'unknown' && (hasAll(scanned) || complete)) return scanned;
  try {
    // dcmjs may read a cut buffer without complaint: trust an answer from the head only when it is whole
    const parsed = parseIdentifiers(head);
    if (complete || hasAll(parsed)) return parsed;
  } catch (error) {
    if (complete || !(error instanceof DicomParseError)) throw error;
  }
  // a header longer than the head, or a deflated data set: dcmjs needs more of the file
  const more = await readMore(fileSize);
  if (!more) throw new DicomParseError('The DICOM header is too large to be read');
  return parseIdentifiers(more);
}
