/**
 * Transcoding to the native transfer syntaxes WADO-RS needs (Explicit VR Little Endian above all):
 *  - native → native (from implicit LE, big endian, deflated): a dcmjs read + write, with the byte swap
 *    of OW/OF/OL/OD/OV values dcmjs does not do for big endian;
 *  - compressed → native: every frame decoded with the dcmjs-codecs WebAssembly.
 * Encoding into a compressed syntax is not offered (not cheap, and lossy ones would change the SOP
 * Instance UID): `canTranscode` says what is possible so that callers answer 406 instead of failing.
 */
import * as dcmjs from 'dcmjs';
import { Context, NativeCodecs } from 'dcmjs-codecs';
import { readDicomFileWithCharsets } from './charset';
import { quietDcmjs } from './dcmjs-quiet';
import { bufferSource, scanDicom, type ImageAttributes } from './element-scanner';
import { indexFrames, readFrame, type FrameIndex } from './pixel-data';
import { encodingOf, isEncapsulated, TS } from './transfer-syntax';

/** The requested transcoding is not possible (unknown codec, corrupt codestream): a 406/415, not a 500. */
export class TranscodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TranscodeError';
  }
}

/** Native syntaxes we write (PS3.18 allows neither implicit LE nor big endian on the web; the native API may ask for implicit). */
const NATIVE_TARGETS: ReadonlySet<string> = new Set([TS.ExplicitVRLittleEndian, TS.ImplicitVRLittleEndian]);

type Decoder = (context: Context) => Context;

/** Compressed syntaxes the dcmjs-codecs WebAssembly decodes (each one checked by test/unit/transcode.test.ts). */
const DECODERS: Readonly<Record<string, Decoder>> = {
  [TS.RLELossless]: (c) => NativeCodecs.decodeRle(c),
  [TS.JPEGBaseline8Bit]: (c) => NativeCodecs.decodeJpeg(c, { convertColorspaceToRgb: true }),
  [TS.JPEGLossless]: (c) => NativeCodecs.decodeJpeg(c),
  [TS.JPEGLosslessSV1]: (c) => NativeCodecs.decodeJpeg(c),
  [TS.JPEGLSLossless]: (c) => NativeCodecs.decodeJpegLs(c),
  [TS.JPEGLSNearLossless]: (c) => NativeCodecs.decodeJpegLs(c),
  [TS.JPEG2000Lossless]: (c) => NativeCodecs.decodeJpeg2000(c),
  [TS.JPEG2000]: (c) => NativeCodecs.decodeJpeg2000(c),
  [TS.HTJ2KLossless]: (c) => NativeCodecs.decodeHtJpeg2000(c),
  [TS.HTJ2KLosslessRPCL]: (c) => NativeCodecs.decodeHtJpeg2000(c),
  [TS.HTJ2K]: (c) => NativeCodecs.decodeHtJpeg2000(c),
};

const LOSSY_SYNTAXES: ReadonlySet<string> = new Set([TS.JPEGBaseline8Bit, TS.JPEGExtended12Bit, TS.JPEGLSNearLossless, TS.JPEG2000, TS.JPEG2000MC, TS.HTJ2K]);

export function canDecode(transferSyntax: string): boolean {
  return !isEncapsulated(transferSyntax) || transferSyntax in DECODERS;
}

/** Whether a file stored in `from` can be delivered in `to`. */
export function canTranscode(from: string, to: string): boolean {
  if (from === to) return true;
  return NATIVE_TARGETS.has(to) && canDecode(from);
}

let codecsReady: Promise<void> | undefined;

/** Loads the WebAssembly codecs once (only needed for compressed sources). */
export function ensureCodecs(): Promise<void> {
  codecsReady ??= NativeCodecs.isInitialized() ? Promise.resolve() : NativeCodecs.initializeAsync();
  return codecsReady;
}


function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy.buffer;
}

/** Big endian → little endian for binary values whose unit is larger than a byte. */
const SWAP_WIDTH: Readonly<Record<string, 2 | 4 | 8>> = { OW: 2, OF: 4, OL: 4, OD: 8, OV: 8 };

export function swapBytes(bytes: Uint8Array, width: 2 | 4 | 8): Buffer {
  const out = Buffer.from(bytes);
  const usable = out.length - (out.length % width);
  const view = out.subarray(0, usable);
  if (width === 2) view.swap16();
  else if (width === 4) view.swap32();
  else view.swap64();
  return out;
}

/** Swaps big endian OW/OF/OL/OD/OV values (nested ones too) to little endian, in place. */
export function swapBinaryValues(dataset: dcmjs.data.DicomDataset): void {
  for (const element of Object.values(dataset)) {
    if (element.vr === 'SQ') {
      for (const item of element.Value ?? []) swapBinaryValues(item as dcmjs.data.DicomDataset);
      continue;
    }
    const width = SWAP_WIDTH[element.vr];
    if (!width || !element.Value) continue;
    element.Value = element.Value.map((v) => (v instanceof ArrayBuffer ? toArrayBuffer(swapBytes(new Uint8Array(v), width)) : v));
  }
}

function numberOf(dataset: dcmjs.data.DicomDataset, tag: string): number | undefined {
  const value = dataset[tag]?.Value?.[0];
  const number = typeof value === 'number' ? value : parseInt(String(value ?? ''), 10);
  return Number.isFinite(number) ? number : undefined;
}

function imageAttributesOf(dataset: dcmjs.data.DicomDataset): ImageAttributes {
  const photometric = dataset['00280004']?.Value?.[0];
  return {
    rows: numberOf(dataset, '00280010'),
    columns: numberOf(dataset, '00280011'),
    bitsAllocated: numberOf(dataset, '00280100'),
    bitsStored: numberOf(dataset, '00280101'),
    samplesPerPixel: numberOf(dataset, '00280002'),
    pixelRepresentation: numberOf(dataset, '00280103'),
    planarConfiguration: numberOf(dataset, '00280006'),
    photometricInterpretation: typeof photometric === 'string' ? photometric.trim() : undefined,
    numberOfFrames: numberOf(dataset, '00280008'),
  };
}

/** Photometric Interpretation of decoded pixels: the codecs output RGB for YBR JPEG and J2K colour transforms. */
export function decodedPhotometric(transferSyntax: string, stored: string | undefined): string | undefined {
  if (!stored) return stored;
  if (stored === 'YBR_RCT' || stored === 'YBR_ICT') return 'RGB';
  if (transferSyntax === TS.JPEGBaseline8Bit && stored.startsWith('YBR_')) return 'RGB';
  if (stored === 'YBR_FULL_422' || stored === 'YBR_PARTIAL_420') return 'RGB';
  return stored;
}

/** Decodes one compressed frame to native little endian bytes, interleaved (PlanarConfiguration 0). */
export async function decodeFrame(frame: Uint8Array, transferSyntax: string, image: ImageAttributes): Promise<Buffer> {
  const decoder = DECODERS[transferSyntax];
  if (!decoder) throw new TranscodeError(`Cannot decode transfer syntax ${transferSyntax}`);
  await ensureCodecs();
  const context = new Context({
    width: image.columns,
    height: image.rows,
    bitsAllocated: image.bitsAllocated,
    bitsStored: image.bitsStored ?? image.bitsAllocated,
    samplesPerPixel: image.samplesPerPixel ?? 1,
    pixelRepresentation: image.pixelRepresentation ?? 0,
    planarConfiguration: image.planarConfiguration ?? 0,
    photometricInterpretation: image.photometricInterpretation ?? 'MONOCHROME2',
    encodedBuffer: new Uint8Array(frame.buffer, frame.byteOffset, frame.byteLength),
  });
  let decoded: Uint8Array | undefined;
  try {
    decoded = decoder(context).getDecodedBuffer();
  } catch (error) {
    throw new TranscodeError(`Cannot decode a ${transferSyntax} frame: ${String((error as Error)?.message ?? error)}`);
  }
  if (!decoded) throw new TranscodeError(`The ${transferSyntax} decoder gave no pixels`);
  const expected = (image.rows ?? 0) * (image.columns ?? 0) * (image.samplesPerPixel ?? 1) * Math.ceil((image.bitsAllocated ?? 8) / 8);
  if (expected > 0 && decoded.byteLength !== expected) {
    throw new TranscodeError(`The ${transferSyntax} frame decodes to ${decoded.byteLength} bytes, ${expected} expected`);
  }
  return Buffer.from(decoded.buffer, decoded.byteOffset, decoded.byteLength);
}

/** A native frame as stored → little endian bytes (only big endian files differ). */
export function nativeFrameToLittleEndian(frame: Buffer, transferSyntax: string, bitsAllocated: number | undefined): Buffer {
  if (encodingOf(transferSyntax).littleEndian || !bitsAllocated || bitsAllocated <= 8) return frame;
  return swapBytes(frame, bitsAllocated > 16 ? 4 : 2);
}

/** Replaces encapsulated Pixel Data by its decoded frames; frames are cut in `file` as WADO-RS frames are. */
async function decodePixelData(dataset: dcmjs.data.DicomDataset, file: Buffer, transferSyntax: string): Promise<void> {
  if (!dataset['7FE00010']) return;
  const image = imageAttributesOf(dataset);
  const source = bufferSource(file);
  let index: FrameIndex;
  try {
    index = await indexFrames(source, await scanDicom(source));
  } catch (error) {
    throw new TranscodeError(`Cannot locate the frames: ${(error as Error).message}`);
  }
  const decoded: Buffer[] = [];
  for (let frame = 0; frame < index.numberOfFrames; frame++) {
    decoded.push(await decodeFrame(await readFrame(source, index, frame), transferSyntax, image));
  }
  const bytes = Buffer.concat(decoded);
  const padded = bytes.length % 2 === 1 ? Buffer.concat([bytes, Buffer.alloc(1)]) : bytes;
  dataset['7FE00010'] = { vr: (image.bitsAllocated ?? 8) > 8 ? 'OW' : 'OB', Value: [toArrayBuffer(padded)] };
  const photometric = decodedPhotometric(transferSyntax, image.photometricInterpretation);
  if (photometric) dataset['00280004'] = { vr: 'CS', Value: [photometric] };
  if ((image.samplesPerPixel ?? 1) > 1) dataset['00280006'] = { vr: 'US', Value: [0] };
  // The offset tables describe fragments, which native data no longer has.
  delete dataset['7FE00001'];
  delete dataset['7FE00002'];
  if (LOSSY_SYNTAXES.has(transferSyntax) && !dataset['00282110']) dataset['00282110'] = { vr: 'CS', Value: ['01'] };
}

function arrayBufferOf(buffer: Buffer): ArrayBuffer {
  return buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.byteLength) as ArrayBuffer;
}

/**
 * A Part 10 file in `target` (a native syntax), or the input itself when it is already in it.
 * Text is re-encoded in UTF-8 (Specific Character Set ISO_IR 192), as dcmjs writes it.
 */
export async function transcodeFile(file: Buffer, source: string, target: string): Promise<Buffer> {
  if (source === target) return file;
  if (!canTranscode(source, target)) throw new TranscodeError(`Cannot transcode from ${source} to ${target}`);
  let dict: dcmjs.data.DicomDict;
  try {
    dict = quietDcmjs(() => readDicomFileWithCharsets(arrayBufferOf(file), { ignoreErrors: true }));
  } catch (error) {
    throw new TranscodeError(`Cannot parse the stored file: ${(error as Error).message}`);
  }
  if (!encodingOf(source).littleEndian) swapBinaryValues(dict.dict);
  if (isEncapsulated(source)) await decodePixelData(dict.dict, file, source);
  return quietDcmjs(() => {
    dict.meta['00020010'] = { vr: 'UI', Value: [target] };
    return Buffer.from(dict.write({ fragmentMultiframe: false }));
  });
}
