import { isBinaryVr } from './dictionary';

/** One element of a dcmjs "denaturalized" data set: the DICOM JSON model plus dcmjs's raw string values. */
export interface DicomElement {
  vr: string;
  Value?: unknown[];
  _rawValue?: unknown;
}

export type DicomDataset = Record<string, DicomElement>;

/** The input is not a DICOM Part 10 file we can read (the HTTP layer answers 400). */
export class DicomParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DicomParseError';
  }
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
