import fsp from 'node:fs/promises';
import { readDataset } from '../../dicom/dataset-reader';
import type { DicomDataset } from '../../dicom/dicom-file';
import { scanDicom, withFileSource } from '../../dicom/element-scanner';
import { encodingOf } from '../../dicom/transfer-syntax';
import { walkElements, type RawElement } from '../../dicom/raw-elements';
import { readFileHead } from './storage-area';

export interface StoredHeader {
  dataset: DicomDataset;
  transferSyntax: string;
  hasPixelData: boolean;
  /** Where values lie in the file (an empty US has no value; the length tells). Undefined for Deflated files. */
  raw?: RawElement[];
}

/**
 * Reads a stored file up to its Pixel Data for the native tags routes (the file on disk, with value
 * positions); WADO-RS reads headers through the NativeCore instead (src/dicomweb/instance-header.ts).
 */
export async function readStoredHeader(filePath: string): Promise<StoredHeader> {
  const layout = await withFileSource(filePath, (source) => scanDicom(source));
  const pixelData = layout.pixelData;
  // a Deflated file has no layout past its meta group: read it whole
  const bytes = pixelData ? await readFileHead(filePath, pixelData.tagOffset) : await fsp.readFile(filePath);
  const encoding = encodingOf(layout.transferSyntax);
  const raw = encoding.deflated ? undefined : walkElements(bytes, encoding, layout.datasetOffset);
  const { dataset, transferSyntax } = readDataset(bytes, { complete: true, stopAtPixelData: true });
  return { dataset, transferSyntax, hasPixelData: pixelData !== undefined, raw };
}
