import fsp from 'node:fs/promises';
import { parseDicom, type ParsedDicom } from '../../dicom/dicom-file';
import { scanDicom, withFileSource } from '../../dicom/element-scanner';
import { encodingOf } from '../../dicom/transfer-syntax';
import { walkElements, type RawElement } from '../../dicom/raw-elements';
import { readFileHead } from './storage-area';

export interface StoredHeader extends ParsedDicom {
  hasPixelData: boolean;
  /** Where values lie in the file (dcmjs reads an empty US as 0; the length tells). Undefined for Deflated files. */
  raw?: RawElement[];
}

/** Parses a stored file up to its Pixel Data: only the bytes before it are read from disk. */
export async function readStoredHeader(filePath: string): Promise<StoredHeader> {
  const layout = await withFileSource(filePath, (source) => scanDicom(source));
  const pixelData = layout.pixelData;
  // a Deflated file has no layout past its meta group: read it whole
  const bytes = pixelData ? await readFileHead(filePath, pixelData.tagOffset) : await fsp.readFile(filePath);
  const encoding = encodingOf(layout.transferSyntax);
  const raw = encoding.deflated ? undefined : walkElements(bytes, encoding, layout.datasetOffset);
  return { ...parseDicom(bytes, { untilPixelData: true }), hasPixelData: pixelData !== undefined, raw };
}
