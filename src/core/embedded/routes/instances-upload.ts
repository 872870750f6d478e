import type { Request, Response } from 'express';
import { pipeline } from 'node:stream/promises';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import yauzl from 'yauzl';
import type { EmbeddedCore } from '../embedded-core';
import { CoreError, type StoreResult } from '../../native-model';
import { HttpError } from '../../../server/errors';
import { readFileHead } from '../storage-area';

/** Orthanc refuses ZIP archives with more entries than this, a guard against ZIP bombs. */
const MAX_ZIP_ENTRIES = 100_000;
/**
 * Another guard against ZIP bombs: an entry that inflates more than this many times is refused once it is large.
 * DICOM files, even of blank images, stay far below it (their headers and noise do not deflate a thousandfold).
 */
const MAX_INFLATION_RATIO = 1000;
const INFLATION_CHECK_BYTES = 256 << 20;

/**
 * POST /instances: one DICOM file, or a ZIP of DICOM files, as the request body (any Content-Type but multipart:
 * curl --data-binary sends application/x-www-form-urlencoded). The body streams to a temporary file, never to memory.
 */
export async function uploadInstances(core: EmbeddedCore, req: Request, res: Response): Promise<void> {
  const contentType = req.headers['content-type'] ?? '';
  if (/^multipart\//i.test(contentType)) {
    throw new HttpError(415, 'POST /instances takes the DICOM file (or a ZIP) as the raw body', 'Use the DICOMweb STOW-RS route for multipart uploads');
  }
  const temporaryPath = core.storage.newTemporaryPath();
  try {
    await pipeline(req, fs.createWriteStream(temporaryPath));
    const head = await readFileHead(temporaryPath, 132);
    if (head.length >= 4 && head.readUInt32LE(0) === 0x04034b50) {
      res.json(await storeZip(core, temporaryPath));
      return;
    }
    if (head.length === 0) throw new HttpError(400, 'The request body is empty');
    res.json(await core.storeInstance({ file: temporaryPath }));
  } finally {
    await fsp.rm(temporaryPath, { force: true });
  }
}

async function storeZip(core: EmbeddedCore, zipPath: string): Promise<StoreResult[]> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.open(zipPath, { lazyEntries: true, validateEntrySizes: true }, (error, file) => (error ? reject(new HttpError(400, 'Invalid ZIP archive', error.message)) : resolve(file))),
  );
  if (zip.entryCount > MAX_ZIP_ENTRIES) {
    zip.close();
    throw new HttpError(400, `The ZIP archive has too many entries (${zip.entryCount})`);
  }
  try {
    await checkInflation(zipPath, core.storage.tmpDirectory);
  } catch (error) {
    zip.close();
    throw error;
  }
  const results: StoreResult[] = [];
  try {
    for (;;) {
      const entry = await nextEntry(zip);
      if (!entry) break;
      if (entry.fileName.endsWith('/')) continue;
      const entryPath = core.storage.newTemporaryPath();
      try {
        const stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) =>
          zip.openReadStream(entry, (error, s) => (error ? reject(new HttpError(400, 'Invalid ZIP entry', error.message)) : resolve(s))),
        );
        await pipeline(stream, fs.createWriteStream(entryPath)).catch((error: Error) => {
          throw new HttpError(400, `Cannot extract ${entry.fileName} from the ZIP archive`, error.message);
        });
        const head = await readFileHead(entryPath, 132);
        // Orthanc skips what is not DICOM in an archive (DICOMDIR is DICOM but has no instance UIDs)
        if (head.length < 132 || head.toString('latin1', 128, 132) !== 'DICM') continue;
        try {
          results.push(await core.storeInstance({ file: entryPath }));
        } catch (error) {
          if (!(error instanceof CoreError) || error.httpStatus !== 400) throw error;
        }
      } finally {
        await fsp.rm(entryPath, { force: true });
      }
    }
  } finally {
    zip.close();
  }
  return results;
}

/**
 * Reads the central directory first (declared sizes; yauzl checks them while inflating): refuses an entry that
 * inflates like a ZIP bomb, and an archive whose content cannot fit in the free space of the storage disk.
 */
async function checkInflation(zipPath: string, storageDirectory: string): Promise<void> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.open(zipPath, { lazyEntries: true }, (error, file) => (error ? reject(new HttpError(400, 'Invalid ZIP archive', error.message)) : resolve(file))),
  );
  let total = 0;
  try {
    for (let entry = await nextEntry(zip); entry; entry = await nextEntry(zip)) {
      const { uncompressedSize, compressedSize, fileName } = entry;
      if (uncompressedSize > INFLATION_CHECK_BYTES && uncompressedSize > MAX_INFLATION_RATIO * Math.max(1, compressedSize)) {
        throw new HttpError(400, 'The ZIP archive looks like a ZIP bomb', `${fileName} inflates from ${compressedSize} to ${uncompressedSize} bytes`);
      }
      total += uncompressedSize;
    }
  } finally {
    zip.close();
  }
  const { bavail, bsize } = await fsp.statfs(storageDirectory);
  if (total > bavail * bsize) throw new HttpError(507, 'The ZIP archive does not fit in the storage area', `It holds ${total} bytes once extracted`);
}

function nextEntry(zip: yauzl.ZipFile): Promise<yauzl.Entry | undefined> {
  return new Promise((resolve, reject) => {
    const onEntry = (entry: yauzl.Entry): void => {
      cleanup();
      resolve(entry);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(undefined);
    };
    const onError = (error: Error): void => {
      cleanup();
      reject(new HttpError(400, 'Invalid ZIP archive', error.message));
    };
    const cleanup = (): void => {
      zip.off('entry', onEntry);
      zip.off('end', onEnd);
      zip.off('error', onError);
    };
    zip.on('entry', onEntry);
    zip.on('end', onEnd);
    zip.on('error', onError);
    zip.readEntry();
  });
}
