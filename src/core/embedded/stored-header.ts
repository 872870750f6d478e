import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { readDataset, type DatasetRead } from '../../dicom/dataset-reader';
import { DicomParseError, type DicomDataset } from '../../dicom/dicom-file';
import { NeedMoreData, scanDicom, withFileSource } from '../../dicom/element-scanner';
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

/** Enough to hold the header of nearly every file; a larger header is read whole. */
export const HEADER_READ_BYTES = 1 << 20;

export type HeaderRead = Pick<DatasetRead, 'transferSyntax' | 'dataset' | 'pixelData'>;

/** Reads a data set up to Pixel Data; what is not DICOM (or is cut short) is a DicomParseError, answered 400. */
export function readHeader(buffer: Buffer, complete: boolean): HeaderRead {
  if (buffer.length < 132 || buffer.toString('latin1', 128, 132) !== 'DICM') throw new DicomParseError('Not a DICOM Part 10 file (no DICM prefix)');
  try {
    return readDataset(buffer, { complete, stopAtPixelData: true });
  } catch (error) {
    if (error instanceof NeedMoreData) throw error;
    throw new DicomParseError(`Cannot parse the DICOM file: ${(error as Error).message}`);
  }
}

export function readDatasetSync(filePath: string): DicomDataset | undefined {
  // synchronous on purpose: only used for the rare attributes outside the index, inside synchronous SQL loops
  const fd = fs.openSync(filePath, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.allocUnsafe(Math.min(size, HEADER_READ_BYTES));
    fs.readSync(fd, head, 0, head.length, 0);
    try {
      return readHeader(head, head.length === size).dataset;
    } catch (error) {
      if (!(error instanceof NeedMoreData)) throw error;
      return readHeader(fs.readFileSync(filePath), true).dataset;
    }
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}
