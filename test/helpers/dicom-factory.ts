/// <reference path="../../src/types/dcmjs.d.ts" />
/**
 * Generates DICOM Part 10 files (as Buffers) for tests and benchmarks, with dcmjs.
 *
 * Every value is either given or derived from a seed, and the pixel data follow a documented
 * pattern (`patternValue`), so tests can check bytes. Native syntaxes, Deflated and RLE Lossless are
 * produced synchronously by this file; the JPEG family needs the dcmjs-codecs WebAssembly: call
 * `await initCodecs()` once (e.g. in `beforeAll`) before asking for one of them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { deflateRawSync } from 'node:zlib';
import { data, log } from 'dcmjs';
import { Context, NativeCodecs } from 'dcmjs-codecs';

type DicomDataset = data.DicomDataset;
type NaturalizedDataset = data.NaturalizedDataset;

export const TransferSyntax = {
  ImplicitVRLittleEndian: '1.2.840.10008.1.2',
  ExplicitVRLittleEndian: '1.2.840.10008.1.2.1',
  DeflatedExplicitVRLittleEndian: '1.2.840.10008.1.2.1.99',
  ExplicitVRBigEndian: '1.2.840.10008.1.2.2',
  RLELossless: '1.2.840.10008.1.2.5',
  JPEGBaseline8Bit: '1.2.840.10008.1.2.4.50',
  JPEGLosslessSV1: '1.2.840.10008.1.2.4.70',
  JPEGLSLossless: '1.2.840.10008.1.2.4.80',
  JPEGLSNearLossless: '1.2.840.10008.1.2.4.81',
  JPEG2000Lossless: '1.2.840.10008.1.2.4.90',
  JPEG2000: '1.2.840.10008.1.2.4.91',
} as const;

export type TransferSyntaxUid = (typeof TransferSyntax)[keyof typeof TransferSyntax];

/** Syntaxes written by this file alone (no WebAssembly needed). */
export const NATIVE_FACTORY_SYNTAXES: readonly TransferSyntaxUid[] = [
  TransferSyntax.ExplicitVRLittleEndian,
  TransferSyntax.ImplicitVRLittleEndian,
  TransferSyntax.ExplicitVRBigEndian,
  TransferSyntax.DeflatedExplicitVRLittleEndian,
  TransferSyntax.RLELossless,
];

/** Syntaxes encoded through dcmjs-codecs (call `initCodecs()` first). */
export const CODEC_FACTORY_SYNTAXES: readonly TransferSyntaxUid[] = [
  TransferSyntax.JPEGBaseline8Bit,
  TransferSyntax.JPEGLosslessSV1,
  TransferSyntax.JPEGLSLossless,
  TransferSyntax.JPEGLSNearLossless,
  TransferSyntax.JPEG2000Lossless,
  TransferSyntax.JPEG2000,
];

export const SopClass = {
  CTImageStorage: '1.2.840.10008.5.1.4.1.1.2',
  MRImageStorage: '1.2.840.10008.5.1.4.1.1.4',
  SecondaryCaptureImageStorage: '1.2.840.10008.5.1.4.1.1.7',
  EncapsulatedPDFStorage: '1.2.840.10008.5.1.4.1.1.104.1',
  BasicTextSRStorage: '1.2.840.10008.5.1.4.1.1.88.11',
} as const;

/** Options of `makeInstance`: DICOM keywords for the values written, lower-case for factory settings. */
export interface InstanceOptions {
  // Patient
  PatientID?: string;
  PatientName?: string;
  PatientBirthDate?: string;
  PatientSex?: string;
  // Study
  StudyInstanceUID?: string;
  StudyDate?: string;
  StudyTime?: string;
  AccessionNumber?: string;
  StudyDescription?: string;
  StudyID?: string;
  ReferringPhysicianName?: string;
  // Series
  SeriesInstanceUID?: string;
  Modality?: string;
  SeriesNumber?: number;
  SeriesDescription?: string;
  // Instance
  SOPInstanceUID?: string;
  SOPClassUID?: string;
  InstanceNumber?: number;
  /**
   * Written when given, else set to "ISO_IR 192" when some text is not ASCII. dcmjs always writes
   * text as UTF-8, so another charset with non-ASCII text gives a mislabelled file (negative tests).
   */
  SpecificCharacterSet?: string;
  // Image
  Rows?: number;
  Columns?: number;
  BitsAllocated?: 8 | 16;
  /** Defaults to BitsAllocated. */
  BitsStored?: number;
  PixelRepresentation?: 0 | 1;
  SamplesPerPixel?: 1 | 3;
  /** Defaults to MONOCHROME2 (1 sample) or RGB (3 samples). */
  PhotometricInterpretation?: string;
  /** Written (and the file is multi-frame) when given. */
  NumberOfFrames?: number;
  RescaleSlope?: number;
  RescaleIntercept?: number;
  WindowCenter?: number;
  WindowWidth?: number;
  // Factory settings
  /** Defaults to Explicit VR Little Endian. */
  transferSyntax?: TransferSyntaxUid;
  /** Denaturalized elements (upper-case "GGGGEEEE" -> { vr, Value }) merged last: private tags, sequences, overrides. */
  extraElements?: DicomDataset;
  /** Makes every generated UID (and nothing else) deterministic. */
  seed?: string;
  /** Native pixel bytes (little endian, interleaved, all frames) instead of the pattern. */
  pixelData?: Uint8Array;
}

export interface PixelLayout {
  Rows: number;
  Columns: number;
  BitsAllocated: 8 | 16;
  BitsStored: number;
  PixelRepresentation: 0 | 1;
  SamplesPerPixel: 1 | 3;
}

/** The options with every default filled in: what was written. */
export interface ResolvedInstance extends PixelLayout {
  PatientID: string;
  PatientName: string;
  PatientBirthDate: string;
  PatientSex: string;
  StudyInstanceUID: string;
  StudyDate: string;
  StudyTime: string;
  AccessionNumber: string;
  StudyDescription: string;
  StudyID: string;
  ReferringPhysicianName: string;
  SeriesInstanceUID: string;
  Modality: string;
  SeriesNumber: number;
  SeriesDescription: string;
  SOPInstanceUID: string;
  SOPClassUID: string;
  InstanceNumber: number;
  SpecificCharacterSet?: string;
  PhotometricInterpretation: string;
  NumberOfFrames?: number;
  RescaleSlope?: number;
  RescaleIntercept?: number;
  WindowCenter?: number;
  WindowWidth?: number;
  transferSyntax: TransferSyntaxUid;
}

export interface GeneratedInstance {
  buffer: Buffer;
  tags: ResolvedInstance;
  /** The native (uncompressed, little endian) pixel bytes that were encoded. */
  pixels: Buffer;
}

/** Runs `fn` with dcmjs logging off: it warns about every private tag it cannot name, and about implicit-VR pixel data. */
function quietly<T>(fn: () => T): T {
  const loggers = [log, log.getLogger('validation.dcmjs')];
  const levels = loggers.map((logger) => logger.getLevel());
  loggers.forEach((logger) => logger.setLevel('silent'));
  try {
    return fn();
  } finally {
    loggers.forEach((logger, i) => logger.setLevel(levels[i]));
  }
}

// ---------------------------------------------------------------------------------------------
// UIDs

/**
 * A UID of the form 2.25.<128-bit decimal> (PS3.5 B.2). With a seed, the UID is a pure function of
 * it (SHA-256 of the seed); without, it is random.
 */
export function newUid(seed?: string): string {
  const bytes = seed === undefined ? randomBytes(16) : createHash('sha256').update(seed).digest().subarray(0, 16);
  return `2.25.${BigInt('0x' + bytes.toString('hex')).toString(10)}`;
}

const IMPLEMENTATION_CLASS_UID = newUid('dicomweb-gateway test factory');
const IMPLEMENTATION_VERSION_NAME = 'DWGW_TESTFACTORY';

// ---------------------------------------------------------------------------------------------
// Pixel pattern

/** Largest value range the pattern uses for the layout (2^BitsStored, at most 4096 for 16-bit). */
function patternModulus(layout: PixelLayout): number {
  return 2 ** Math.min(layout.BitsStored, layout.BitsAllocated === 8 ? 8 : 12);
}

/**
 * The stored value of one sample in a generated image: a diagonal gradient shifted per frame and
 * per sample, wrapped to the stored bit range (centred on 0 when PixelRepresentation is 1).
 */
export function patternValue(layout: PixelLayout, frame: number, row: number, col: number, sample = 0): number {
  const modulus = patternModulus(layout);
  const step = Math.max(1, Math.floor(modulus / 256));
  const raw = ((row * layout.Columns + col) * step + frame * 31 * step + sample * 85 * step) % modulus;
  return layout.PixelRepresentation === 1 ? raw - modulus / 2 : raw;
}

/** Native pixel bytes (little endian, interleaved samples, frames one after the other). */
export function makePixelData(layout: PixelLayout, frames: number): Buffer {
  const bytesPerSample = layout.BitsAllocated / 8;
  const samples = layout.Rows * layout.Columns * layout.SamplesPerPixel;
  const out = Buffer.alloc(samples * bytesPerSample * frames);
  let offset = 0;
  for (let f = 0; f < frames; f++) {
    for (let r = 0; r < layout.Rows; r++) {
      for (let c = 0; c < layout.Columns; c++) {
        for (let s = 0; s < layout.SamplesPerPixel; s++) {
          const v = patternValue(layout, f, r, c, s);
          if (bytesPerSample === 1) out.writeUInt8(v & 0xff, offset);
          else out.writeUInt16LE(v & 0xffff, offset);
          offset += bytesPerSample;
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// RLE Lossless (PS3.5 Annex G)

/** PackBits of one row into `out` (G.3.1): runs of 2..128 replicated, literals of 1..128. */
function packBits(src: Uint8Array, out: number[]): void {
  let i = 0;
  while (i < src.length) {
    let run = 1;
    while (i + run < src.length && run < 128 && src[i + run] === src[i]) run++;
    if (run >= 2) {
      out.push(257 - run, src[i]);
      i += run;
      continue;
    }
    const start = i;
    while (i < src.length && i - start < 128 && !(i + 1 < src.length && src[i] === src[i + 1])) i++;
    out.push(i - start - 1);
    for (let k = start; k < i; k++) out.push(src[k]);
  }
}

/**
 * One RLE frame (G.2): a 64-byte header (segment count, 15 offsets) then one segment per byte plane,
 * for each sample the most significant byte first; rows are encoded separately, segments even-length.
 */
export function rleEncodeFrame(frame: Uint8Array, layout: PixelLayout): Buffer {
  const bytesPerSample = layout.BitsAllocated / 8;
  const spp = layout.SamplesPerPixel;
  const segmentCount = spp * bytesPerSample;
  const segments: Buffer[] = [];
  const row = new Uint8Array(layout.Columns);
  for (let s = 0; s < spp; s++) {
    for (let b = bytesPerSample - 1; b >= 0; b--) {
      const out: number[] = [];
      for (let r = 0; r < layout.Rows; r++) {
        for (let c = 0; c < layout.Columns; c++) {
          row[c] = frame[((r * layout.Columns + c) * spp + s) * bytesPerSample + b];
        }
        packBits(row, out);
      }
      if (out.length % 2 === 1) out.push(0x80); // -128: a no-op byte, pads to even length
      segments.push(Buffer.from(out));
    }
  }
  const header = Buffer.alloc(64);
  header.writeUInt32LE(segmentCount, 0);
  let offset = 64;
  segments.forEach((segment, index) => {
    header.writeUInt32LE(offset, 4 + index * 4);
    offset += segment.length;
  });
  return Buffer.concat([header, ...segments]);
}

// ---------------------------------------------------------------------------------------------
// Codecs (dcmjs-codecs WebAssembly)

/** Loads the dcmjs-codecs WebAssembly once; needed before making a JPEG-family instance. */
export async function initCodecs(): Promise<void> {
  if (!NativeCodecs.isInitialized()) await NativeCodecs.initializeAsync();
}

interface CodecChoice {
  lossyMethod?: string;
  encode(context: Context): Context;
}

/** How each JPEG-family syntax is encoded with the dcmjs-codecs WebAssembly. */
const CODECS: Partial<Record<TransferSyntaxUid, CodecChoice>> = {
  [TransferSyntax.JPEGBaseline8Bit]: {
    lossyMethod: 'ISO_10918_1',
    encode: (c) => NativeCodecs.encodeJpeg(c, { lossy: true, quality: 95 }),
  },
  [TransferSyntax.JPEGLosslessSV1]: {
    encode: (c) => NativeCodecs.encodeJpeg(c, { lossy: false, predictor: 1, pointTransform: 0 }),
  },
  [TransferSyntax.JPEGLSLossless]: { encode: (c) => NativeCodecs.encodeJpegLs(c, { lossy: false }) },
  [TransferSyntax.JPEGLSNearLossless]: {
    lossyMethod: 'ISO_14495_1',
    encode: (c) => NativeCodecs.encodeJpegLs(c, { lossy: true, allowedLossyError: 2 }),
  },
  [TransferSyntax.JPEG2000Lossless]: { encode: (c) => NativeCodecs.encodeJpeg2000(c, { lossy: false }) },
  [TransferSyntax.JPEG2000]: {
    lossyMethod: 'ISO_15444_1',
    encode: (c) => NativeCodecs.encodeJpeg2000(c, { lossy: true, rate: 10 }),
  },
};

/**
 * Encodes each frame with the dcmjs-codecs WebAssembly (its Transcoder is not used: it drops private
 * tags and gives lossy results a new SOPInstanceUID, which a test factory must not do).
 */
function encodeFrames(
  pixels: Buffer,
  frames: number,
  t: ResolvedInstance,
): { fragments: ArrayBuffer[]; extra: NaturalizedDataset } {
  const codec = CODECS[t.transferSyntax];
  if (!codec) throw new Error(`no codec for transfer syntax ${t.transferSyntax}`);
  if (!NativeCodecs.isInitialized()) {
    throw new Error(`transfer syntax ${t.transferSyntax} needs the dcmjs-codecs WebAssembly: await initCodecs() first`);
  }
  if (t.transferSyntax === TransferSyntax.JPEGBaseline8Bit && t.BitsAllocated !== 8) {
    throw new Error('JPEG Baseline (1.2.840.10008.1.2.4.50) holds 8-bit samples only: use BitsAllocated 8');
  }
  const frameSize = pixels.length / frames;
  const fragments: ArrayBuffer[] = [];
  for (let f = 0; f < frames; f++) {
    const context = new Context({
      width: t.Columns,
      height: t.Rows,
      bitsAllocated: t.BitsAllocated,
      bitsStored: t.BitsStored,
      samplesPerPixel: t.SamplesPerPixel,
      pixelRepresentation: t.PixelRepresentation,
      planarConfiguration: 0,
      photometricInterpretation: t.PhotometricInterpretation,
      decodedBuffer: new Uint8Array(pixels.subarray(f * frameSize, (f + 1) * frameSize)),
    });
    const encoded = codec.encode(context).getEncodedBuffer();
    if (!encoded) throw new Error(`dcmjs-codecs gave no data for frame ${f} in ${t.transferSyntax}`);
    fragments.push(toArrayBuffer(encoded));
  }
  const extra: NaturalizedDataset = {};
  if (t.SamplesPerPixel === 3) {
    const photometric = colorPhotometric(new Uint8Array(fragments[0]), t.transferSyntax);
    if (photometric) extra.PhotometricInterpretation = photometric;
  }
  if (codec.lossyMethod) {
    const encodedSize = fragments.reduce((sum, fragment) => sum + fragment.byteLength, 0);
    extra.LossyImageCompression = '01';
    extra.LossyImageCompressionRatio = Number((pixels.length / encodedSize).toFixed(3));
    extra.LossyImageCompressionMethod = codec.lossyMethod;
  }
  return { fragments, extra };
}

/**
 * The PhotometricInterpretation that matches a colour codestream (PS3.5 8.2), or undefined to keep
 * RGB. dcmjs-codecs keeps "RGB" on colour images whose codestream is YCbCr (JPEG baseline) or uses a
 * component transform (JPEG 2000); other decoders (DCMTK, Orthanc) trust the label, so fix it.
 */
function colorPhotometric(firstFragment: Uint8Array, syntax: TransferSyntaxUid): string | undefined {
  if (syntax === TransferSyntax.JPEGBaseline8Bit) return 'YBR_FULL'; // libjpeg writes YCbCr, no subsampling
  if (syntax !== TransferSyntax.JPEG2000Lossless && syntax !== TransferSyntax.JPEG2000) return undefined;
  const cod = Buffer.from(firstFragment).indexOf(Buffer.from([0xff, 0x52]));
  const multipleComponentTransform = cod >= 0 ? firstFragment[cod + 8] : 0;
  if (multipleComponentTransform !== 1) return undefined;
  return syntax === TransferSyntax.JPEG2000Lossless ? 'YBR_RCT' : 'YBR_ICT';
}

// ---------------------------------------------------------------------------------------------
// Part 10 writing

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy.buffer;
}

function swap16(bytes: Uint8Array): Buffer {
  const out = Buffer.from(bytes);
  out.swap16();
  return out;
}

function fileMeta(sopClassUid: string, sopInstanceUid: string, syntax: string): DicomDataset {
  return data.DicomMetaDictionary.denaturalizeDataset({
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: sopClassUid,
    MediaStorageSOPInstanceUID: sopInstanceUid,
    TransferSyntaxUID: syntax,
    ImplementationClassUID: IMPLEMENTATION_CLASS_UID,
    ImplementationVersionName: IMPLEMENTATION_VERSION_NAME,
  });
}

/** Offset of the first dataset byte: preamble + "DICM" + (0002,0000) element + the group it counts. */
function datasetOffset(part10: Buffer): number {
  return 132 + 12 + part10.readUInt32LE(140);
}

/**
 * Writes the dataset as Part 10 (encapsulated syntaxes: PixelData holds one ArrayBuffer per frame).
 * dcmjs copies binary values as they are, so OW pixel data are byte-swapped here for big endian,
 * and the Deflated syntax is made by writing explicit LE and deflating what follows the meta group.
 */
export function writePart10(dataset: DicomDataset, syntax: string): Buffer {
  const sopClassUid = String(dataset['00080016']?.Value?.[0] ?? '');
  const sopInstanceUid = String(dataset['00080018']?.Value?.[0] ?? '');
  const dict = new data.DicomDict(fileMeta(sopClassUid, sopInstanceUid, syntax));
  const body: DicomDataset = { ...dataset };
  const pixel = body['7FE00010'];
  if (syntax === TransferSyntax.ExplicitVRBigEndian && pixel?.vr === 'OW' && pixel.Value) {
    body['7FE00010'] = { vr: 'OW', Value: pixel.Value.map((v) => toArrayBuffer(swap16(new Uint8Array(v as ArrayBuffer)))) };
  }
  dict.dict = body;
  const written = Buffer.from(dict.write({ fragmentMultiframe: false }));
  if (syntax !== TransferSyntax.DeflatedExplicitVRLittleEndian) return written;
  const start = datasetOffset(written);
  return Buffer.concat([written.subarray(0, start), deflateRawSync(written.subarray(start))]);
}

// ---------------------------------------------------------------------------------------------
// Datasets

function isAscii(text: string): boolean {
  return /^[\x00-\x7f]*$/.test(text);
}

/** True when some string in the (denaturalized) dataset, nested sequences included, is not ASCII. */
export function hasNonAsciiText(value: unknown): boolean {
  if (typeof value === 'string') return !isAscii(value);
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return false;
  if (Array.isArray(value)) return value.some(hasNonAsciiText);
  if (value !== null && typeof value === 'object') return Object.values(value).some(hasNonAsciiText);
  return false;
}

function withCharacterSet(dataset: DicomDataset, given: string | undefined): DicomDataset {
  if (given !== undefined) return { ...dataset, '00080005': { vr: 'CS', Value: given.split('\\') } };
  if (hasNonAsciiText(dataset)) return { ...dataset, '00080005': { vr: 'CS', Value: ['ISO_IR 192'] } };
  return dataset;
}

function seeded(seed: string | undefined, label: string): string {
  return newUid(seed === undefined ? undefined : `${seed}/${label}`);
}

/** Fills every default; UIDs are derived from `seed` when one is given. */
export function resolveInstanceOptions(options: InstanceOptions = {}): ResolvedInstance {
  const samplesPerPixel = options.SamplesPerPixel ?? 1;
  const bitsAllocated = options.BitsAllocated ?? (samplesPerPixel === 3 ? 8 : 16);
  const seed = options.seed;
  return {
    PatientID: options.PatientID ?? 'TEST-PATIENT',
    PatientName: options.PatientName ?? 'Doe^Sample',
    PatientBirthDate: options.PatientBirthDate ?? '19700101',
    PatientSex: options.PatientSex ?? 'O',
    StudyInstanceUID: options.StudyInstanceUID ?? seeded(seed, 'study'),
    StudyDate: options.StudyDate ?? '20240102',
    StudyTime: options.StudyTime ?? '030405',
    AccessionNumber: options.AccessionNumber ?? 'ACC0001',
    StudyDescription: options.StudyDescription ?? 'Generated test study',
    StudyID: options.StudyID ?? 'S1',
    ReferringPhysicianName: options.ReferringPhysicianName ?? 'Referrer^Test',
    SeriesInstanceUID: options.SeriesInstanceUID ?? seeded(seed, 'series'),
    Modality: options.Modality ?? 'CT',
    SeriesNumber: options.SeriesNumber ?? 1,
    SeriesDescription: options.SeriesDescription ?? 'Generated test series',
    SOPInstanceUID: options.SOPInstanceUID ?? seeded(seed, 'instance'),
    SOPClassUID: options.SOPClassUID ?? SopClass.CTImageStorage,
    InstanceNumber: options.InstanceNumber ?? 1,
    SpecificCharacterSet: options.SpecificCharacterSet,
    Rows: options.Rows ?? 16,
    Columns: options.Columns ?? 16,
    BitsAllocated: bitsAllocated,
    BitsStored: options.BitsStored ?? bitsAllocated,
    PixelRepresentation: options.PixelRepresentation ?? 0,
    SamplesPerPixel: samplesPerPixel,
    PhotometricInterpretation: options.PhotometricInterpretation ?? (samplesPerPixel === 3 ? 'RGB' : 'MONOCHROME2'),
    NumberOfFrames: options.NumberOfFrames,
    RescaleSlope: options.RescaleSlope,
    RescaleIntercept: options.RescaleIntercept,
    WindowCenter: options.WindowCenter,
    WindowWidth: options.WindowWidth,
    transferSyntax: options.transferSyntax ?? TransferSyntax.ExplicitVRLittleEndian,
  };
}

function dropUndefined(dataset: NaturalizedDataset): NaturalizedDataset {
  return Object.fromEntries(Object.entries(dataset).filter(([, v]) => v !== undefined));
}

function patientStudySeries(
  t: Pick<ResolvedInstance, 'PatientID' | 'PatientName' | 'PatientBirthDate' | 'PatientSex' | 'StudyInstanceUID' | 'StudyDate' | 'StudyTime' | 'AccessionNumber' | 'StudyDescription' | 'StudyID' | 'ReferringPhysicianName' | 'SeriesInstanceUID' | 'Modality' | 'SeriesNumber' | 'SeriesDescription'>,
): NaturalizedDataset {
  return {
    PatientID: t.PatientID,
    PatientName: t.PatientName,
    PatientBirthDate: t.PatientBirthDate,
    PatientSex: t.PatientSex,
    StudyInstanceUID: t.StudyInstanceUID,
    StudyDate: t.StudyDate,
    StudyTime: t.StudyTime,
    AccessionNumber: t.AccessionNumber,
    StudyDescription: t.StudyDescription,
    StudyID: t.StudyID,
    ReferringPhysicianName: t.ReferringPhysicianName,
    SeriesInstanceUID: t.SeriesInstanceUID,
    Modality: t.Modality,
    SeriesNumber: t.SeriesNumber,
    SeriesDescription: t.SeriesDescription,
  };
}

function layoutOf(t: ResolvedInstance): PixelLayout {
  return {
    Rows: t.Rows,
    Columns: t.Columns,
    BitsAllocated: t.BitsAllocated,
    BitsStored: t.BitsStored,
    PixelRepresentation: t.PixelRepresentation,
    SamplesPerPixel: t.SamplesPerPixel,
  };
}

/** PixelData values (one per frame when encapsulated) and the attributes the encoding adds. */
function encodePixels(t: ResolvedInstance, pixels: Buffer): { value: ArrayBuffer[]; extra: NaturalizedDataset } {
  const frames = t.NumberOfFrames ?? 1;
  if (isCodecSyntax(t.transferSyntax)) {
    const { fragments, extra } = encodeFrames(pixels, frames, t);
    return { value: fragments, extra };
  }
  if (t.transferSyntax !== TransferSyntax.RLELossless) return { value: [toArrayBuffer(pixels)], extra: {} };
  const frameSize = pixels.length / frames;
  const value = Array.from({ length: frames }, (_, f) =>
    toArrayBuffer(rleEncodeFrame(pixels.subarray(f * frameSize, (f + 1) * frameSize), layoutOf(t))),
  );
  return { value, extra: {} };
}

function isCodecSyntax(syntax: string): boolean {
  return (CODEC_FACTORY_SYNTAXES as readonly string[]).includes(syntax);
}

function imageDataset(t: ResolvedInstance, pixels: Buffer): DicomDataset {
  const encapsulated = t.transferSyntax === TransferSyntax.RLELossless || isCodecSyntax(t.transferSyntax);
  const encoded = encodePixels(t, pixels);
  const natural: NaturalizedDataset = dropUndefined({
    ...patientStudySeries(t),
    SOPClassUID: t.SOPClassUID,
    SOPInstanceUID: t.SOPInstanceUID,
    InstanceNumber: t.InstanceNumber,
    ImageType: ['ORIGINAL', 'PRIMARY', 'AXIAL'],
    ContentDate: t.StudyDate,
    ContentTime: t.StudyTime,
    ConversionType: t.SOPClassUID === SopClass.SecondaryCaptureImageStorage ? 'WSD' : undefined,
    ImagePositionPatient: [0, 0, t.InstanceNumber],
    ImageOrientationPatient: [1, 0, 0, 0, 1, 0],
    PixelSpacing: [1, 1],
    SliceThickness: 1,
    SamplesPerPixel: t.SamplesPerPixel,
    PhotometricInterpretation: t.PhotometricInterpretation,
    PlanarConfiguration: t.SamplesPerPixel === 3 ? 0 : undefined,
    NumberOfFrames: t.NumberOfFrames,
    Rows: t.Rows,
    Columns: t.Columns,
    BitsAllocated: t.BitsAllocated,
    BitsStored: t.BitsStored,
    HighBit: t.BitsStored - 1,
    PixelRepresentation: t.PixelRepresentation,
    RescaleSlope: t.RescaleSlope,
    RescaleIntercept: t.RescaleIntercept,
    RescaleType: t.RescaleSlope !== undefined && t.Modality !== 'CT' ? 'US' : undefined,
    WindowCenter: t.WindowCenter,
    WindowWidth: t.WindowWidth,
    ...encoded.extra,
    PixelData: encoded.value,
    _vrMap: { PixelData: encapsulated || t.BitsAllocated === 8 ? 'OB' : 'OW' },
  });
  return data.DicomMetaDictionary.denaturalizeDataset(natural);
}

function checkPixelOptions(t: ResolvedInstance, pixels: Buffer): void {
  const frames = t.NumberOfFrames ?? 1;
  const expected = t.Rows * t.Columns * t.SamplesPerPixel * (t.BitsAllocated / 8) * frames;
  if (pixels.length !== expected) {
    throw new Error(`pixelData has ${pixels.length} bytes, the image needs ${expected}`);
  }
  if (t.BitsStored > t.BitsAllocated || t.BitsStored < 1) {
    throw new Error(`BitsStored ${t.BitsStored} does not fit BitsAllocated ${t.BitsAllocated}`);
  }
}

/** Builds one image instance and tells what it wrote. */
export function buildInstance(options: InstanceOptions = {}): GeneratedInstance {
  const tags = resolveInstanceOptions(options);
  if (!NATIVE_FACTORY_SYNTAXES.includes(tags.transferSyntax) && !isCodecSyntax(tags.transferSyntax)) {
    throw new Error(`the factory cannot write transfer syntax ${tags.transferSyntax}`);
  }
  const layout = layoutOf(tags);
  const pixels = options.pixelData ? Buffer.from(options.pixelData) : makePixelData(layout, tags.NumberOfFrames ?? 1);
  checkPixelOptions(tags, pixels);
  const dataset = withCharacterSet(
    { ...imageDataset(tags, pixels), ...(options.extraElements ?? {}) },
    tags.SpecificCharacterSet,
  );
  const resolved: ResolvedInstance = { ...tags, SpecificCharacterSet: dataset['00080005']?.Value?.join('\\') };
  return { buffer: writePart10(dataset, tags.transferSyntax), tags: resolved, pixels };
}

/** One image instance as Part 10 bytes. */
export function makeInstance(options: InstanceOptions = {}): Buffer {
  return buildInstance(options).buffer;
}

// ---------------------------------------------------------------------------------------------
// Studies

export interface StudyOptions extends Omit<InstanceOptions, 'SeriesInstanceUID' | 'SOPInstanceUID' | 'SeriesNumber' | 'InstanceNumber'> {
  seriesCount?: number;
  instancesPerSeries?: number;
  /** Per-series overrides (index 0..seriesCount-1), e.g. a different Modality or transfer syntax. */
  seriesOptions?: (series: number) => Partial<InstanceOptions>;
}

export interface GeneratedSeries {
  SeriesInstanceUID: string;
  instances: GeneratedInstance[];
}

export interface GeneratedStudy {
  PatientID: string;
  StudyInstanceUID: string;
  series: GeneratedSeries[];
  /** Every instance's bytes, series after series. */
  buffers: Buffer[];
}

/** A study of `seriesCount` series (default 2) of `instancesPerSeries` instances (default 3). */
export function makeStudy(options: StudyOptions = {}): GeneratedStudy {
  const { seriesCount = 2, instancesPerSeries = 3, seriesOptions, ...common } = options;
  const seed = common.seed;
  const StudyInstanceUID = common.StudyInstanceUID ?? seeded(seed, 'study');
  const PatientID = common.PatientID ?? 'TEST-PATIENT';
  const series: GeneratedSeries[] = [];
  for (let s = 0; s < seriesCount; s++) {
    const SeriesInstanceUID = seeded(seed, `series/${s}`);
    const instances: GeneratedInstance[] = [];
    for (let i = 0; i < instancesPerSeries; i++) {
      instances.push(
        buildInstance({
          ...common,
          PatientID,
          StudyInstanceUID,
          SeriesInstanceUID,
          SeriesNumber: s + 1,
          InstanceNumber: i + 1,
          SOPInstanceUID: seeded(seed, `series/${s}/instance/${i}`),
          ...(seriesOptions?.(s) ?? {}),
        }),
      );
    }
    series.push({ SeriesInstanceUID, instances });
  }
  return { PatientID, StudyInstanceUID, series, buffers: series.flatMap((x) => x.instances.map((i) => i.buffer)) };
}

// ---------------------------------------------------------------------------------------------
// Non-image instances

export interface NonImageOptions
  extends Pick<
    InstanceOptions,
    | 'PatientID'
    | 'PatientName'
    | 'PatientBirthDate'
    | 'PatientSex'
    | 'StudyInstanceUID'
    | 'StudyDate'
    | 'StudyTime'
    | 'AccessionNumber'
    | 'StudyDescription'
    | 'StudyID'
    | 'ReferringPhysicianName'
    | 'SeriesInstanceUID'
    | 'SeriesDescription'
    | 'SOPInstanceUID'
    | 'InstanceNumber'
    | 'SpecificCharacterSet'
    | 'extraElements'
    | 'seed'
  > {
  kind: 'pdf' | 'sr';
  /** Explicit VR Little Endian by default; any native syntax of this factory. */
  transferSyntax?: TransferSyntaxUid;
  /** PDF: the document bytes (default: a one-page PDF that shows `text`). SR: the text of the TEXT item. */
  text?: string;
  pdf?: Uint8Array;
}

/** A minimal, well-formed one-page PDF showing `text` (xref offsets computed). */
export function makePdf(text: string): Buffer {
  const escaped = text.replace(/[\\()]/g, (c) => `\\${c}`);
  const stream = `BT /F1 18 Tf 36 100 Td (${escaped}) Tj ET`;
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 144] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    `<< /Length ${Buffer.byteLength(stream, 'latin1')} >>\nstream\n${stream}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let body = '%PDF-1.4\n';
  const offsets: number[] = [];
  objects.forEach((object, index) => {
    offsets.push(Buffer.byteLength(body, 'latin1'));
    body += `${index + 1} 0 obj\n${object}\nendobj\n`;
  });
  const xrefAt = Buffer.byteLength(body, 'latin1');
  body += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  body += offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`).join('');
  body += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xrefAt}\n%%EOF\n`;
  return Buffer.from(body, 'latin1');
}

function code(value: string, scheme: string, meaning: string): NaturalizedDataset {
  return { CodeValue: value, CodingSchemeDesignator: scheme, CodeMeaning: meaning };
}

function pdfDataset(pdf: Uint8Array, title: string): NaturalizedDataset {
  const even = pdf.length % 2 === 0 ? Buffer.from(pdf) : Buffer.concat([Buffer.from(pdf), Buffer.alloc(1)]);
  return {
    SOPClassUID: SopClass.EncapsulatedPDFStorage,
    Modality: 'DOC',
    ConversionType: 'WSD',
    BurnedInAnnotation: 'YES',
    DocumentTitle: title,
    ConceptNameCodeSequence: [],
    MIMETypeOfEncapsulatedDocument: 'application/pdf',
    EncapsulatedDocumentLength: pdf.length,
    EncapsulatedDocument: [toArrayBuffer(even)],
    _vrMap: { EncapsulatedDocument: 'OB' },
  };
}

function srDataset(text: string, date: string, time: string): NaturalizedDataset {
  return {
    SOPClassUID: SopClass.BasicTextSRStorage,
    Modality: 'SR',
    ValueType: 'CONTAINER',
    ConceptNameCodeSequence: [code('18748-4', 'LN', 'Diagnostic Imaging Report')],
    ContinuityOfContent: 'SEPARATE',
    CompletionFlag: 'COMPLETE',
    VerificationFlag: 'UNVERIFIED',
    ReferencedPerformedProcedureStepSequence: [],
    PerformedProcedureCodeSequence: [],
    ContentSequence: [
      {
        RelationshipType: 'CONTAINS',
        ValueType: 'TEXT',
        ConceptNameCodeSequence: [code('121071', 'DCM', 'Finding')],
        TextValue: text,
      },
    ],
    ContentDate: date,
    ContentTime: time,
  };
}

/** An Encapsulated PDF or a Basic Text SR instance, for tests of non-image objects. */
export function makeNonImage(options: NonImageOptions): Buffer {
  const base = resolveInstanceOptions({ ...options, transferSyntax: undefined, Modality: options.kind === 'pdf' ? 'DOC' : 'SR' });
  const syntax = options.transferSyntax ?? TransferSyntax.ExplicitVRLittleEndian;
  if (!(NATIVE_FACTORY_SYNTAXES as readonly string[]).includes(syntax) || syntax === TransferSyntax.RLELossless) {
    throw new Error(`non-image instances are written in a native syntax, not ${syntax}`);
  }
  const text = options.text ?? (options.kind === 'pdf' ? 'Sample document' : 'No acute findings.');
  const specific =
    options.kind === 'pdf' ? pdfDataset(options.pdf ?? makePdf(text), text) : srDataset(text, base.StudyDate, base.StudyTime);
  const natural: NaturalizedDataset = {
    ...patientStudySeries(base),
    SOPInstanceUID: base.SOPInstanceUID,
    InstanceNumber: base.InstanceNumber,
    ContentDate: base.StudyDate,
    ContentTime: base.StudyTime,
    Manufacturer: 'dicomweb-gateway tests',
    ...specific,
  };
  const dataset = withCharacterSet(
    { ...data.DicomMetaDictionary.denaturalizeDataset(natural), ...(options.extraElements ?? {}) },
    base.SpecificCharacterSet,
  );
  return writePart10(dataset, syntax);
}

// ---------------------------------------------------------------------------------------------
// Reading back

/** Parses Part 10 bytes with dcmjs: the meta group and the naturalized dataset. */
export function readInstance(buffer: Uint8Array): { meta: NaturalizedDataset; dataset: NaturalizedDataset } {
  return quietly(() => {
    const dict = data.DicomMessage.readFile(toArrayBuffer(buffer));
    return {
      meta: data.DicomMetaDictionary.naturalizeDataset(dict.meta),
      dataset: data.DicomMetaDictionary.naturalizeDataset(dict.dict),
    };
  });
}
