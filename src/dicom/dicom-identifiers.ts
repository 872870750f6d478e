/**
 * The few identifiers a store needs before it stores a file (transfer syntax, SOP class and instance,
 * study and series UIDs), read from the first bytes of a DICOM Part 10 file.
 *
 * Why a scan of its own: STOW-RS reads these for every instance on a hot path; this scan (on the one
 * element walker) stops at group 0020 and decodes nothing else. It only reads little endian data sets;
 * for anything else (big endian, deflated, an odd header) it answers 'unknown' and the caller reads
 * the whole header with the data set reader.
 */
import { readDataset } from './dataset-reader';
import { DicomParseError, elementToString } from './dicom-file';
import { DicomScanError, ElementWalker, NeedMoreData, readFileMeta, trimmedText, UNDEFINED_LENGTH } from './element-walker';
import { encodingOf } from './transfer-syntax';

export interface InstanceIdentifiers {
  transferSyntax: string;
  sopClassUid?: string;
  sopInstanceUid?: string;
  studyUid?: string;
  seriesUid?: string;
}

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

/**
 * Reads the identifiers from the head of a Part 10 file. `complete` says the buffer is the whole file
 * (so running out of bytes means "absent", not "read more"). Answers 'not-dicom' without the DICM prefix,
 * 'unknown' when the data set reader must decide (see parseIdentifiers).
 */
export function scanIdentifiers(head: Buffer, complete = false): InstanceIdentifiers | 'not-dicom' | 'unknown' {
  if (head.length < 132 || head.toString('latin1', 128, 132) !== 'DICM') return 'not-dicom';
  // a prefix: running out of bytes is NeedMoreData, answered 'unknown'
  const walker = new ElementWalker(head, false);
  try {
    const { transferSyntax } = readFileMeta(walker);
    if (transferSyntax === EXPLICIT_BIG || transferSyntax === DEFLATED) return 'unknown';
    const encoding = encodingOf(transferSyntax);
    const found: InstanceIdentifiers = { transferSyntax };
    while (walker.offset < head.length) {
      const element = walker.header(encoding);
      if (element.tag > LAST_WANTED) return found;
      const field = WANTED.get(element.tag);
      if (field && element.length !== UNDEFINED_LENGTH) {
        walker.need(element.length);
        const value = trimmedText(head, element.valueOffset, element.length);
        if (value !== '') found[field] = value;
      }
      walker.skipValue(element, encoding, 0);
    }
    // ran to the end of the bytes: final only when they are the whole file
    return complete || found.seriesUid !== undefined ? found : 'unknown';
  } catch (error) {
    if (error instanceof NeedMoreData || error instanceof DicomScanError) return 'unknown';
    throw error;
  }
}

/**
 * The identifiers as the data set reader reads them (any transfer syntax); throws DicomParseError
 * when it cannot, NeedMoreData when `buffer` is a prefix too short for the header.
 */
export function parseIdentifiers(buffer: Buffer, complete = true): InstanceIdentifiers {
  let read;
  try {
    read = readDataset(buffer, { complete, stopAtPixelData: true });
  } catch (error) {
    if (error instanceof DicomScanError) throw new DicomParseError(`Cannot parse the DICOM file: ${error.message}`);
    throw error;
  }
  const text = (tag: string): string | undefined => elementToString(read.dataset[tag]) || undefined;
  return {
    transferSyntax: read.transferSyntax,
    sopClassUid: text('00080016'),
    sopInstanceUid: text('00080018'),
    studyUid: text('0020000D'),
    seriesUid: text('0020000E'),
  };
}

/**
 * Fast path, then the data set reader: identifiers of a file whose first bytes are `head`. `readMore(bytes)` returns
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
    return parseIdentifiers(head, complete);
  } catch (error) {
    if (!(error instanceof NeedMoreData)) throw error;
  }
  // a header longer than the head, or a deflated data set: read more of the file
  const more = await readMore(fileSize);
  if (!more) throw new DicomParseError('The DICOM header is too large to be read');
  return parseIdentifiers(more);
}
