/**
 * Orthanc's image extraction, for the native routes /instances/{id}[/frames/{n}]/preview, image-uint8,
 * image-uint16, image-int16, rendered and matlab (Orthanc 1.10: DicomImageDecoder, ImageProcessing).
 *
 * These routes do not follow PS3.3 (that is render.ts, for WADO): a frame is first decoded to one of
 * Orthanc's pixel formats (8/16-bit grey, signed 16-bit grey, RGB), then
 *  - preview stretches the grey range of the frame to 0..255 (MONOCHROME1 inverted), colour unchanged;
 *  - image-uint8/uint16/int16 clamp the grey values to the type (colour cannot be converted);
 *  - rendered applies the rescale and the file's window (or 2^BitsStored) with Orthanc's float
 *    arithmetic, then an optional nearest-neighbour resize (with an optional 5x5 Gaussian smoothing);
 * and the result is encoded as PNG (16-bit grey when the format is), JPEG (8-bit only), PAM or an
 * Octave/Matlab matrix. Arithmetic is done in 32-bit floats where Orthanc does, so that the pixels are
 * those of Orthanc. Pure: bytes in, bytes out.
 */
import sharp from 'sharp';
import type { DicomDataset } from './dicom-file';
import { firstNumber, firstText, RenderError } from './render';
import type { ImageAttributes } from './element-scanner';

export type PixelFormat = 'Grayscale8' | 'Grayscale16' | 'SignedGrayscale16' | 'RGB24';

/** A decoded frame: one value per pixel (grey) or three interleaved (RGB24). */
export interface DecodedImage {
  format: PixelFormat;
  width: number;
  height: number;
  data: Uint8Array | Uint16Array | Int16Array;
}

export type ExtractionMode = 'preview' | 'uint8' | 'uint16' | 'int16';

/** The attributes of Image Pixel module that decoding and rendering need. */
export interface PixelInfo {
  width: number;
  height: number;
  bitsAllocated: number;
  bitsStored: number;
  highBit: number;
  signed: boolean;
  samplesPerPixel: number;
  planar: boolean;
  photometric: string;
  numberOfFrames: number;
}

const f32 = Math.fround;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** boost::math::iround: half away from zero. */
function iround(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

export function pixelInfoOf(dataset: DicomDataset): PixelInfo {
  const bitsAllocated = firstNumber(dataset, '00280100') ?? 8;
  const bitsStored = firstNumber(dataset, '00280101') ?? bitsAllocated;
  return {
    width: firstNumber(dataset, '00280011') ?? 0,
    height: firstNumber(dataset, '00280010') ?? 0,
    bitsAllocated,
    bitsStored,
    highBit: firstNumber(dataset, '00280102') ?? bitsStored - 1,
    signed: firstNumber(dataset, '00280103') === 1,
    samplesPerPixel: firstNumber(dataset, '00280002') ?? 1,
    planar: firstNumber(dataset, '00280006') === 1,
    photometric: firstText(dataset, '00280004') ?? '',
    // as Orthanc: a missing NumberOfFrames is one frame, a bad one none
    numberOfFrames: dataset['00280008'] ? Math.max(0, Math.trunc(firstNumber(dataset, '00280008') ?? 0)) : 1,
  };
}

/** What the codecs need to decode a compressed frame (transcode.ts `decodeFrame`). */
export function imageAttributesOf(info: PixelInfo): ImageAttributes {
  return {
    rows: info.height,
    columns: info.width,
    bitsAllocated: info.bitsAllocated,
    bitsStored: info.bitsStored,
    samplesPerPixel: info.samplesPerPixel,
    pixelRepresentation: info.signed ? 1 : 0,
    planarConfiguration: info.planar ? 1 : 0,
    photometricInterpretation: info.photometric,
    numberOfFrames: info.numberOfFrames,
  };
}

/**
 * Orthanc's pixel format for an image, undefined when Orthanc cannot decode it. Native colour must be
 * RGB; the photometric interpretation of a compressed image is not looked at (the codec converts YBR).
 */
export function pixelFormatOf(info: PixelInfo, compressed: boolean): PixelFormat | undefined {
  // palette colour goes through lookup tables in Orthanc, which are not implemented here
  if (info.photometric === 'PALETTE COLOR') return undefined;
  const grey = compressed || info.photometric === 'MONOCHROME1' || info.photometric === 'MONOCHROME2';
  if (grey && info.samplesPerPixel === 1) {
    if (info.bitsAllocated === 8 && info.bitsStored === 8 && !info.signed) return 'Grayscale8';
    if (info.bitsAllocated === 16) return info.signed ? 'SignedGrayscale16' : 'Grayscale16';
  }
  if (info.samplesPerPixel === 3 && info.bitsAllocated === 8 && info.bitsStored === 8 && !info.signed && (compressed || info.photometric === 'RGB')) {
    return 'RGB24';
  }
  return undefined;
}

/**
 * A frame as little endian bytes (native, or decoded by a codec: interleaved) → Orthanc's decoded image.
 * Native grey values are shifted right by HighBit + 1 - BitsStored, as Orthanc does; decoded ones are not.
 */
export function toDecodedImage(bytes: Buffer, info: PixelInfo, format: PixelFormat, native: boolean): DecodedImage {
  const { width, height } = info;
  const count = width * height * (format === 'RGB24' ? 3 : 1);
  const bytesPerValue = format === 'Grayscale16' || format === 'SignedGrayscale16' ? 2 : 1;
  if (bytes.length < count * bytesPerValue) throw new RenderError('unsupported', `The frame holds ${bytes.length} bytes, ${count * bytesPerValue} expected`);
  if (format === 'RGB24') {
    const data = new Uint8Array(count);
    if (native && info.planar) {
      // colour-by-plane (PlanarConfiguration 1) → interleaved
      const plane = width * height;
      for (let i = 0; i < plane; i++) for (let s = 0; s < 3; s++) data[3 * i + s] = bytes[s * plane + i];
    } else {
      data.set(bytes.subarray(0, count));
    }
    return { format, width, height, data };
  }
  if (format === 'Grayscale8') return { format, width, height, data: Uint8Array.from(bytes.subarray(0, count)) };
  const shift = native ? Math.max(0, info.highBit + 1 - info.bitsStored) : 0;
  const signed = format === 'SignedGrayscale16';
  let data: Uint16Array | Int16Array;
  if (LITTLE_ENDIAN_HOST) {
    // a copy: aligned, and independent of the (maybe cached) frame bytes
    const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + 2 * count);
    data = signed ? new Int16Array(copy) : new Uint16Array(copy);
    if (shift > 0) for (let i = 0; i < count; i++) data[i] >>= shift;
  } else {
    data = signed ? new Int16Array(count) : new Uint16Array(count);
    for (let i = 0; i < count; i++) data[i] = (signed ? bytes.readInt16LE(2 * i) : bytes.readUInt16LE(2 * i)) >> shift;
  }
  return { format, width, height, data };
}

function isGrey(image: DecodedImage): boolean {
  return image.format !== 'RGB24';
}

const RANGE: Readonly<Record<Exclude<PixelFormat, 'RGB24'>, [number, number]>> = {
  Grayscale8: [0, 255],
  Grayscale16: [0, 65535],
  SignedGrayscale16: [-32768, 32767],
};

/** Clamps grey values into another grey format (ImageProcessing::Convert). */
function convertGrey(image: DecodedImage, format: Exclude<PixelFormat, 'RGB24'>): DecodedImage {
  if (image.format === format) return image;
  const [min, max] = RANGE[format];
  const data = format === 'Grayscale8' ? new Uint8Array(image.data.length) : format === 'Grayscale16' ? new Uint16Array(image.data.length) : new Int16Array(image.data.length);
  for (let i = 0; i < data.length; i++) data[i] = Math.min(max, Math.max(min, image.data[i]));
  return { format, width: image.width, height: image.height, data };
}

function valueRange(values: ArrayLike<number>): { lowest: number; highest: number } {
  let lowest = Infinity;
  let highest = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v < lowest) lowest = v;
    if (v > highest) highest = v;
  }
  return { lowest, highest };
}

/** A grey image (integer values, at most 16 bits) mapped to 8 bits through `map`, one evaluation per distinct value. */
function mapToUint8(image: DecodedImage, map: (value: number) => number): DecodedImage {
  const data = new Uint8Array(image.data.length);
  const { lowest, highest } = valueRange(image.data);
  if (data.length > 0) {
    const lut = new Uint8Array(highest - lowest + 1);
    for (let v = lowest; v <= highest; v++) lut[v - lowest] = map(v);
    for (let i = 0; i < data.length; i++) data[i] = lut[image.data[i] - lowest];
  }
  return { format: 'Grayscale8', width: image.width, height: image.height, data };
}

/** Grey range stretched to 0..255 with rounding (DicomImageDecoder::PreviewDecodedImage). */
function stretchToUint8(image: DecodedImage): DecodedImage {
  const { lowest, highest } = valueRange(image.data);
  if (!(highest > lowest)) return mapToUint8(image, () => 0);
  // ShiftScale(image, -min, 255 / (max - min), round) in the image's own type, then clamped to 8 bits
  const [typeMin, typeMax] = RANGE[image.format as Exclude<PixelFormat, 'RGB24'>];
  const scaling = f32(255 / f32(highest - lowest));
  const offset = f32(f32(-lowest) * scaling);
  return mapToUint8(image, (x) => {
    const v = f32(f32(scaling * x) + offset);
    const typed = v >= typeMax ? typeMax : v <= typeMin ? typeMin : iround(v);
    return Math.min(255, Math.max(0, typed));
  });
}

function invertUint8(image: DecodedImage): DecodedImage {
  if (image.format !== 'Grayscale8') throw new RenderError('unsupported', 'Only 8-bit grey images can be inverted');
  return { ...image, data: image.data.map((v) => 255 - v) };
}

/** DicomImageDecoder::ApplyExtractionMode: the image a mode gives, inverted for MONOCHROME1 when asked. */
export function applyExtractionMode(image: DecodedImage, mode: ExtractionMode, invert: boolean): DecodedImage {
  let result: DecodedImage;
  if (mode === 'preview') {
    result = isGrey(image) ? stretchToUint8(image) : image;
  } else {
    if (!isGrey(image)) throw new RenderError('unsupported', `A colour image cannot be extracted as image-${mode}`);
    result = convertGrey(image, mode === 'uint8' ? 'Grayscale8' : mode === 'uint16' ? 'Grayscale16' : 'SignedGrayscale16');
  }
  return invert ? invertUint8(result) : result;
}

// ---------------------------------------------------------------------------------------------
// rendered

export interface RenderedOptions {
  windowCenter?: number;
  windowWidth?: number;
  /** 0 = not given. */
  width: number;
  height: number;
  smooth: boolean;
}

/** RescaleSlope/Intercept (none for RT Dose) and the default window (the file's, else 2^BitsStored) as Orthanc reads them. */
export function renderingDefaults(dataset: DicomDataset): { slope: number; intercept: number; center: number; width: number } {
  const rtDose = firstText(dataset, '00080016') === '1.2.840.10008.5.1.4.1.1.481.2';
  const slope = firstNumber(dataset, '00281053');
  const intercept = firstNumber(dataset, '00281052');
  const rescale = !rtDose && slope !== undefined && intercept !== undefined ? { slope, intercept } : { slope: 1, intercept: 0 };
  const center = firstNumber(dataset, '00281050');
  const width = firstNumber(dataset, '00281051');
  if (center !== undefined && width !== undefined) return { ...rescale, center, width };
  const bitsStored = firstNumber(dataset, '00280101') || 8;
  return { ...rescale, center: 2 ** bitsStored / 2, width: 2 ** bitsStored };
}

/** Size of the rendered image: the asked width and/or height, aspect ratio kept (float ratio, as Orthanc). */
function targetSize(image: DecodedImage, options: RenderedOptions): { width: number; height: number } {
  const { width, height } = image;
  if (width === 0 || height === 0) return { width, height };
  let ratio = 1;
  if (options.width && options.height) ratio = Math.min(f32(options.width / width), f32(options.height / height));
  else if (options.width) ratio = f32(options.width / width);
  else if (options.height) ratio = f32(options.height / height);
  return { width: iround(f32(ratio * width)), height: iround(f32(ratio * height)) };
}

/** Window applied to grey values: floor(a * x + b) in float arithmetic, clamped to 0..255. */
function windowToUint8(image: DecodedImage, slope: number, intercept: number, center: number, width: number): DecodedImage {
  const windowWidth = width <= 1 ? 1 : width;
  const rescaleSlope = Math.abs(slope) <= 0.0001 ? 0.0001 : slope;
  const scaling = f32((255 * rescaleSlope) / windowWidth);
  const offset = f32(f32((intercept - center + windowWidth / 2) / rescaleSlope) * scaling);
  return mapToUint8(image, (x) => {
    const v = f32(f32(scaling * x) + offset);
    return v >= 255 ? 255 : v <= 0 ? 0 : Math.floor(v);
  });
}

/**
 * 5x5 Gaussian (1 4 6 4 1)², borders replicated, truncated (SmoothGaussian5x5 without rounding). Orthanc
 * sums in 32-bit floats, but every partial sum of 8-bit values is an integer below 2^24, so integer
 * arithmetic gives the same result.
 */
export function smoothGaussian5x5(image: DecodedImage): DecodedImage {
  const channels = image.format === 'RGB24' ? 3 : 1;
  const { width, height } = image;
  const source = image.data as Uint8Array;
  const stride = width * channels;
  // neighbour offsets of each column, borders replicated
  const at = (x: number): number => Math.min(width - 1, Math.max(0, x)) * channels;
  const columns = Int32Array.from({ length: width * 5 }, (_, i) => at(Math.floor(i / 5) + (i % 5) - 2));
  const horizontal = new Uint32Array(source.length);
  for (let y = 0; y < height; y++) {
    const row = y * stride;
    for (let x = 0; x < width; x++) {
      const k = 5 * x;
      const a = row + columns[k];
      const b = row + columns[k + 1];
      const c = row + columns[k + 2];
      const d = row + columns[k + 3];
      const e = row + columns[k + 4];
      for (let ch = 0; ch < channels; ch++) {
        horizontal[row + x * channels + ch] = source[a + ch] + 4 * source[b + ch] + 6 * source[c + ch] + 4 * source[d + ch] + source[e + ch];
      }
    }
  }
  const data = new Uint8Array(source.length);
  const rowAt = (y: number): number => Math.min(height - 1, Math.max(0, y)) * stride;
  for (let y = 0; y < height; y++) {
    const r0 = rowAt(y - 2);
    const r1 = rowAt(y - 1);
    const r2 = rowAt(y);
    const r3 = rowAt(y + 1);
    const r4 = rowAt(y + 2);
    const out = y * stride;
    for (let i = 0; i < stride; i++) {
      const sum = horizontal[r0 + i] + 4 * horizontal[r1 + i] + 6 * horizontal[r2 + i] + 4 * horizontal[r3 + i] + horizontal[r4 + i];
      data[out + i] = sum >>> 8; // at most 255 * 256 + 255: no clamping needed
    }
  }
  return { ...image, data };
}

/** Nearest-neighbour resize: target pixel x takes source floor((x + 0.5) * sourceWidth / targetWidth). */
export function resizeNearest(image: DecodedImage, width: number, height: number): DecodedImage {
  const channels = image.format === 'RGB24' ? 3 : 1;
  const data = new Uint8Array(width * height * channels);
  if (image.width === 0 || image.height === 0) return { format: image.format, width, height, data };
  const scaleX = f32(image.width / width);
  const scaleY = f32(image.height / height);
  const lookupX = Array.from({ length: width }, (_, x) => Math.min(image.width - 1, Math.floor(f32(f32(x + 0.5) * scaleX))));
  for (let y = 0; y < height; y++) {
    const sy = Math.min(image.height - 1, Math.floor(f32(f32(y + 0.5) * scaleY)));
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) data[(y * width + x) * channels + c] = image.data[(sy * image.width + lookupX[x]) * channels + c];
    }
  }
  return { format: image.format, width, height, data };
}

/**
 * Orthanc 1.10's /rendered: grey images through rescale and window to 8 bits, colour unchanged; then
 * resized when a size is asked (smoothed first when asked and shrinking); MONOCHROME1 inverted last.
 */
export function renderForDisplay(image: DecodedImage, dataset: DicomDataset, options: RenderedOptions): DecodedImage {
  const defaults = renderingDefaults(dataset);
  let result = isGrey(image)
    ? windowToUint8(image, defaults.slope, defaults.intercept, options.windowCenter ?? defaults.center, options.windowWidth ?? defaults.width)
    : image;
  const size = targetSize(image, options);
  if (size.width !== image.width || size.height !== image.height) {
    if (options.smooth && (size.width < image.width || size.height < image.height)) result = smoothGaussian5x5(result);
    result = resizeNearest(result, size.width, size.height);
  }
  return isGrey(image) && firstText(dataset, '00280004') === 'MONOCHROME1' ? invertUint8(result) : result;
}

// ---------------------------------------------------------------------------------------------
// encoders

/** PNG: 8-bit grey, 16-bit grey (signed values as their two's complement bits, as Orthanc) or RGB. */
export async function encodePng(image: DecodedImage): Promise<Buffer> {
  const { width, height } = image;
  if (image.format === 'Grayscale16' || image.format === 'SignedGrayscale16') {
    // sharp takes 16-bit samples from a Uint16Array
    const words = new Uint16Array(image.data.buffer, image.data.byteOffset, image.data.length);
    return sharp(words, { raw: { width, height, channels: 1 } }).toColourspace('grey16').png().toBuffer();
  }
  const channels = image.format === 'RGB24' ? 3 : 1;
  const pipeline = sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), { raw: { width, height, channels } });
  return (channels === 1 ? pipeline.toColourspace('b-w') : pipeline).png().toBuffer();
}

/** JPEG of an 8-bit image (grey or RGB). */
export async function encodeJpeg(image: DecodedImage, quality: number): Promise<Buffer> {
  if (image.format !== 'Grayscale8' && image.format !== 'RGB24') throw new RenderError('bad-parameter', 'JPEG holds 8-bit images only');
  const channels = image.format === 'RGB24' ? 3 : 1;
  const pipeline = sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), { raw: { width: image.width, height: image.height, channels } });
  return (channels === 1 ? pipeline.toColourspace('b-w') : pipeline).jpeg({ quality }).toBuffer();
}

/** Netpbm PAM (P7): grey or RGB tuples, 16-bit samples in big endian. */
export function encodePam(image: DecodedImage): Buffer {
  const wide = image.format === 'Grayscale16' || image.format === 'SignedGrayscale16';
  const depth = image.format === 'RGB24' ? 3 : 1;
  const header = Buffer.from(
    `P7\nWIDTH ${image.width}\nHEIGHT ${image.height}\nDEPTH ${depth}\nMAXVAL ${wide ? 65535 : 255}\nTUPLTYPE ${depth === 3 ? 'RGB' : 'GRAYSCALE'}\nENDHDR\n`,
    'latin1',
  );
  const body = Buffer.alloc(image.data.length * (wide ? 2 : 1));
  for (let i = 0; i < image.data.length; i++) {
    if (wide) body.writeUInt16BE(image.data[i] & 0xffff, 2 * i);
    else body[i] = image.data[i];
  }
  return Buffer.concat([header, body]);
}

/** Octave/Matlab matrix of the decoded values (`eval()` it); RGB as a height x width x 3 array. */
export function toMatlab(image: DecodedImage): string {
  const { width, height } = image;
  if (image.format === 'RGB24') {
    return `double(permute(reshape([ ${Array.from(image.data, (v) => `${v} `).join('')}], [ 3 ${height} ${width} ]), [ 3 2 1 ]))`;
  }
  const rows: string[] = [];
  for (let y = 0; y < height; y++) {
    let row = '';
    for (let x = 0; x < width; x++) row += `${image.data[y * width + x]} `;
    rows.push(row);
  }
  return `double([ ${rows.join('; ')}])`;
}
