/**
 * What WADO-RS reads of a stored instance, through the native model: the file is streamed and cut
 * short once enough is known (at Pixel Data), so metadata, frames and bulk data never load pixels
 * they do not serve. Works the same for both cores (a remote core's HTTP body is simply cut short).
 */
import type { Readable } from 'node:stream';
import type { NativeCore } from '../core/native-model';
import { readDataset } from '../dicom/dataset-reader';
import type { DicomDataset } from '../dicom/dicom-file';
import { bufferSource, DicomScanError, NeedMoreData, scanDicom, scanStreamHead, type DicomLayout } from '../dicom/element-scanner';
import { inflateDataset } from '../dicom/pixel-data';
import { Lru } from '../core/lru';
import { encodingOf } from '../dicom/transfer-syntax';
import { HttpError } from '../server/errors';
import type { InstanceRef } from './wado-resources';

/** Transfer syntax, image attributes and Pixel Data position, from the first bytes of the file. */
async function readLayout(core: NativeCore, ref: InstanceRef): Promise<DicomLayout> {
  const file = await core.readInstanceFile(ref.id);
  try {
    const { head, layout } = await scanStreamHead(file.stream);
    if (!encodingOf(layout.transferSyntax).deflated) return layout;
    return await scanDicom(bufferSource(inflateDataset(head, layout.datasetOffset)), { inflated: true });
  } catch (error) {
    if (error instanceof DicomScanError) throw new HttpError(500, `The stored instance ${ref.id} cannot be read`, error.message);
    throw error;
  } finally {
    file.stream.destroy();
  }
}

const layouts = new Lru<string, DicomLayout>(512);

/** Names one stored file: a replaced instance keeps its identifier but gets a new FileUuid. */
function fileKey(ref: InstanceRef): string {
  return `${ref.id}|${ref.resource.FileUuid}`;
}

/**
 * The layout of an instance, cached by file (frames need it on every request). For a Deflated file,
 * Pixel Data offsets are those of the inflated data set.
 */
export async function instanceLayout(core: NativeCore, ref: InstanceRef): Promise<DicomLayout> {
  const key = fileKey(ref);
  const cached = layouts.get(key);
  if (cached) return cached;
  const layout = await readLayout(core, ref);
  layouts.set(key, layout);
  return layout;
}

const storedSyntaxes = new Lru<string, string>(100_000);

/**
 * The transfer syntax an instance is stored in (its TransferSyntax metadata), remembered by file: a
 * stored file never changes, so a retrieve asked again does not cost a round trip to a remote core per
 * instance. Undefined when the core does not say.
 */
export async function storedTransferSyntax(core: NativeCore, ref: InstanceRef): Promise<string | undefined> {
  const key = ref.resource.FileUuid ? fileKey(ref) : undefined;
  const known = key === undefined ? undefined : storedSyntaxes.get(key);
  if (known !== undefined) return known;
  const syntax = await core.getInstanceMetadata(ref.id, 'TransferSyntax');
  if (key !== undefined && syntax !== undefined) storedSyntaxes.set(key, syntax);
  return syntax;
}

/** Stand-in for a Pixel Data value that was not read: the DICOM JSON encoder only needs to see it is not empty. */
const NOT_READ = new Uint8Array([0]).buffer;

export interface InstanceDataset {
  transferSyntax: string;
  /** dcmjs-shaped, text decoded, binary values little endian (see dataset-reader.ts). */
  dataset: DicomDataset;
  /** The file was read whole (otherwise the top-level Pixel Data holds a placeholder). */
  complete: boolean;
}

/**
 * A remote core's file is an HTTP body: cutting it closes the connection, so a short rest is read to
 * its end instead (in the background), which keeps the connection for the next file.
 */
const DRAIN_BELOW_BYTES = 2 * 1024 * 1024;

/**
 * Reads a stream chunk by chunk, offering the bytes so far to `attempt` until it stops asking for
 * more (NeedMoreData); then the stream is destroyed, or drained when at most `drainBelow` bytes of
 * `expectedSize` remain. `attempt` gets the whole file at the end.
 */
function readUntil<T>(stream: Readable, attempt: (bytes: Buffer, complete: boolean) => T, expectedSize: number, drainBelow: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let nextAttempt = 0;
    const stop = (remaining = 0): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      // Destroying an HTTP body (remote core) may report the abort: nobody listens any more.
      stream.on('error', () => undefined);
      if (remaining > 0 && remaining <= drainBelow) stream.resume();
      else stream.destroy();
    };
    const bytes = (): Buffer => {
      const joined = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
      chunks.length = 0;
      chunks.push(joined);
      return joined;
    };
    function onData(chunk: Buffer | string): void {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
      chunks.push(buffer);
      total += buffer.length;
      if (total < nextAttempt) return;
      try {
        const result = attempt(bytes(), false);
        stop(expectedSize - total);
        resolve(result);
      } catch (error) {
        if (error instanceof NeedMoreData) {
          // Try again once the prefix has doubled: linear work overall.
          nextAttempt = total * 2;
          return;
        }
        stop();
        reject(error);
      }
    }
    function onEnd(): void {
      stop();
      try {
        resolve(attempt(bytes(), true));
      } catch (error) {
        reject(error);
      }
    }
    function onError(error: Error): void {
      stop();
      reject(error);
    }
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('error', onError);
  });
}

/**
 * An instance's data set for metadata and bulk data. Only the header is read (the file is cut at
 * Pixel Data) unless `whole`, or elements may follow native Pixel Data (the file is longer than its
 * Pixel Data ends), or the file has no Pixel Data, or it is Deflated.
 */
export async function readInstanceDataset(core: NativeCore, id: string, options: { whole?: boolean; fileSize?: number } = {}): Promise<InstanceDataset> {
  const file = await core.readInstanceFile(id);
  const size = file.size ?? options.fileSize ?? 0;
  try {
    return await readUntil(file.stream, (bytes, complete) => {
      if (options.whole && !complete) throw new NeedMoreData(bytes.length);
      // Once the whole file is in memory, everything is read, Pixel Data and what follows it included.
      const read = readDataset(bytes, { complete, stopAtPixelData: !complete });
      const pixelData = read.pixelData;
      if (pixelData?.length !== undefined && size > pixelData.valueOffset + pixelData.length) throw new NeedMoreData(bytes.length);
      if (pixelData) read.dataset['7FE00010'] = { vr: pixelData.vr, Value: [NOT_READ] };
      return { transferSyntax: read.transferSyntax, dataset: read.dataset, complete };
    }, size, core.kind === 'remote' ? DRAIN_BELOW_BYTES : 0);
  } catch (error) {
    if (error instanceof DicomScanError) throw new HttpError(500, `The stored instance ${id} cannot be read`, error.message);
    throw error;
  }
}
