import { createHash } from 'node:crypto';

/**
 * Orthanc's resource identifier: SHA-1 of the DICOM identifiers joined by '|', in hex, as five groups of eight.
 * patient = (PatientID); study = (PatientID, StudyInstanceUID); series = (..., SeriesInstanceUID);
 * instance = (..., SOPInstanceUID).
 */
export function orthancId(...dicomIdentifiers: string[]): string {
  const hex = createHash('sha1').update(dicomIdentifiers.join('|')).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 16)}-${hex.slice(16, 24)}-${hex.slice(24, 32)}-${hex.slice(32, 40)}`;
}

const ORTHANC_ID = /^[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$/;

/** True for a well-formed Orthanc identifier (checked before any use in SQL or file paths). */
export function isOrthancId(value: string): boolean {
  return ORTHANC_ID.test(value);
}
