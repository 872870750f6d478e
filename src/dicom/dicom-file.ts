import { isBinaryVr } from './dictionary';
import { readDicomFileWithCharsets } from './charset';

/** One element of a dcmjs "denaturalized" data set: the DICOM JSON model plus dcmjs's raw string values. */
export interface DicomElement {
  vr: string;
  Value?: unknown[];
  _rawValue?: unknown;
}

export type DicomDataset = Record<string, DicomElement>;

export interface ParsedDicom {
  meta: DicomDataset;
  dataset: DicomDataset;
  transferSyntax: string;
}

/** The input is not a DICOM Part 10 file we can read (the HTTP layer answers 400). */
export class DicomParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DicomParseError';
  }
}

const PIXEL_DATA = '7FE00010';

/**
 * Parses a DICOM Part 10 buffer with dcmjs. With `untilPixelData`, stops before Pixel Data so that
 * indexing a large image never decodes its pixels.
 */
export function parseDicom(buffer: Buffer, options: { untilPixelData?: boolean } = {}): ParsedDicom {
  if (buffer.length < 132 || buffer.toString('latin1', 128, 132) !== 'DICM') {
    throw new DicomParseError('Not a DICOM Part 10 file (no DICM prefix)');
  }
  const arrayBuffer = buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength) as ArrayBuffer;
  try {
    // dcmjs alone mis-decodes ISO 2022 and text inside sequences: charset.ts decodes every text value itself
    const file = readDicomFileWithCharsets(arrayBuffer, {
      ignoreErrors: false,
      untilTag: options.untilPixelData ? PIXEL_DATA : null,
      includeUntilTagValue: false,
      noCopy: true,
    });
    const meta = file.meta as DicomDataset;
    const transferSyntax = firstString(meta['00020010']);
    if (!transferSyntax) throw new DicomParseError('The file meta information has no TransferSyntaxUID');
    return { meta, dataset: file.dict as DicomDataset, transferSyntax };
  } catch (error) {
    if (error instanceof DicomParseError) throw error;
    throw new DicomParseError(`Cannot parse the DICOM file: ${(error as Error).message}`);
  }
}

function firstString(element: DicomElement | undefined): string | undefined {
  const value = element?.Value?.[0];
  return typeof value === 'string' ? value.trim() : undefined;
}

/**
 * The value of an element as Orthanc renders a main DICOM tag: multi-values joined by '\',
 * person names as "Alphabetic=Ideographic=Phonetic", IS/DS as written in the file.
 * Undefined for sequences and binary elements.
 */
export function elementToString(element: DicomElement | undefined): string | undefined {
  if (!element) return undefined;
  if (element.vr === 'SQ' || isBinaryVr(element.vr)) return undefined;
  const raw = element._rawValue;
  const values: unknown[] =
    (element.vr === 'IS' || element.vr === 'DS') && raw !== undefined ? (Array.isArray(raw) ? raw : [raw]) : (element.Value ?? []);
  return values.map((v) => valueToString(v).trim()).join('\\');
}

function valueToString(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') {
    const pn = value as { Alphabetic?: string; Ideographic?: string; Phonetic?: string };
    return [pn.Alphabetic ?? '', pn.Ideographic ?? '', pn.Phonetic ?? ''].join('=').replace(/=+$/, '');
  }
  return String(value);
}

/** A string value of the data set (first value, trimmed), or undefined. */
export function datasetString(dataset: DicomDataset, tag: string): string | undefined {
  return elementToString(dataset[tag]);
}
