/**
 * The STOW-RS answer: the Store Instances Response Module (PS3.18 Annex I) and the HTTP status
 * (PS3.18 §10.5.3), built from what happened to each part of the request.
 */
import { serializeDicomJson, tagValuesToDicomJson, type DicomJsonDataset, type NativeTagValues } from '../dicom/dicom-json';
import { dicomJsonToXml } from '../dicom/dicom-xml';

/** Failure Reason (0008,1197) values of PS3.18 Table I.2-2. */
export const FailureReason = {
  /** 0110H: a general failure while storing (also: instance outside the study named in the URL, as the plugin). */
  ProcessingFailure: 0x0110,
  /** A7xxH: the store is full (MaximumStorageSize reached, disk full). */
  OutOfResources: 0xa700,
  /** A9xxH: the instance does not match what the request declared (e.g. its transfer-syntax parameter). */
  DataSetMismatch: 0xa900,
  /** Cxxx: not DICOM, truncated, empty, or missing its UIDs. */
  CannotUnderstand: 0xc000,
} as const;

export interface StoredOutcome {
  kind: 'stored';
  sopClassUid: string;
  sopInstanceUid: string;
  studyUid: string;
  seriesUid: string;
}

export interface FailedOutcome {
  kind: 'failed';
  reason: number;
  /** For the log: PS3.18 has no attribute for a text. */
  message: string;
  sopClassUid?: string;
  sopInstanceUid?: string;
}

export type PartOutcome = StoredOutcome | FailedOutcome;

/**
 * 200 all stored; 202 some stored, some failed; none stored: 400 when every failure is a syntax
 * error ("bad syntax"), else 409 (a conflict, or "a mixture of reasons").
 */
export function stowHttpStatus(outcomes: readonly PartOutcome[]): number {
  const stored = outcomes.filter((o) => o.kind === 'stored').length;
  const failed = outcomes.filter((o): o is FailedOutcome => o.kind === 'failed');
  if (failed.length === 0) return 200;
  if (stored > 0) return 202;
  return failed.every((f) => f.reason === FailureReason.CannotUnderstand) ? 400 : 409;
}

/** `base` is the public DICOMweb root, ending with '/'. */
export function instanceRetrieveUrl(base: string, outcome: StoredOutcome): string {
  return `${base}studies/${outcome.studyUid}/series/${outcome.seriesUid}/instances/${outcome.sopInstanceUid}`;
}

function uidReference(sopClassUid: string | undefined, sopInstanceUid: string | undefined): NativeTagValues {
  const item: Record<string, string> = {};
  if (sopClassUid) item.ReferencedSOPClassUID = sopClassUid;
  if (sopInstanceUid) item.ReferencedSOPInstanceUID = sopInstanceUid;
  return item;
}

/**
 * The response data set. Unlike plugin 1.7, empty sequences are left out (they are Type 1C: present only
 * when they have items), Specific Character Set says what the JSON really is (UTF-8, not "ISO_IR 100"),
 * and failed parts are listed even when their UIDs could not be read (the plugin drops them silently).
 */
export function stowResponseDataset(outcomes: readonly PartOutcome[], base: string): DicomJsonDataset {
  const stored = outcomes.filter((o): o is StoredOutcome => o.kind === 'stored');
  const failed = outcomes.filter((o): o is FailedOutcome => o.kind === 'failed');
  const values: Record<string, NativeTagValues[keyof NativeTagValues]> = {
    SpecificCharacterSet: 'ISO_IR 192',
    // Type 2: the study of the stored instances, empty when nothing was stored
    RetrieveURL: stored.length > 0 ? `${base}studies/${stored[0].studyUid}` : '',
  };
  if (failed.length > 0) {
    values.FailedSOPSequence = failed.map((f) => ({ ...uidReference(f.sopClassUid, f.sopInstanceUid), FailureReason: String(f.reason) }));
  }
  if (stored.length > 0) {
    values.ReferencedSOPSequence = stored.map((s) => ({
      ...uidReference(s.sopClassUid, s.sopInstanceUid),
      RetrieveURL: instanceRetrieveUrl(base, s),
    }));
  }
  return tagValuesToDicomJson(values);
}

export type StowResponseFormat = 'json' | 'xml';

export function serializeStowResponse(dataset: DicomJsonDataset, format: StowResponseFormat): string {
  return format === 'xml' ? dicomJsonToXml(dataset) : serializeDicomJson(dataset);
}
