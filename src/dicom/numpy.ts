/**
 * Decoded frames as numpy arrays (.npy format 1.0), byte for byte as Orthanc 1.10 writes them for
 * /instances/{id}/numpy, /instances/{id}/frames/{n}/numpy and /series/{id}/numpy:
 *  - frames are first decoded to Orthanc's pixel formats (image-extraction.ts); the dtype follows:
 *    Grayscale8 `<u1`, Grayscale16 `<u2`, SignedGrayscale16 `<i2`, RGB24 `<u1` with 3 channels;
 *  - with `rescale` (Orthanc's default) greyscale becomes `<f4` holding slope * value + intercept computed
 *    in float32 and floored (Orthanc's ShiftScale2 floors, even into a float image), colour is unchanged;
 *  - shape (frames, rows, columns, channels), or (rows, columns, channels) for one frame, with Orthanc's
 *    spacing ("(2, 16,16,1)"), the header padded with spaces to a multiple of 64 bytes.
 * Pure: decoded images in, bytes out.
 */
import { datasetString, type DicomDataset, type DicomElement } from './dicom-file';
import type { DecodedImage, PixelFormat } from './image-extraction';

export type NumpyDtype = '<u1' | '<u2' | '<i2' | '<f4';

export interface Rescale {
  slope: number;
  intercept: number;
}

export interface ArrayFormat {
  dtype: NumpyDtype;
  channels: 1 | 3;
}

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 0x01, 0x00]); // \x93NUMPY, version 1.0
const RT_DOSE_STORAGE = '1.2.840.10008.5.1.4.1.1.481.2';
const FLOAT_EPSILON = 1.1920928955078125e-7;
const FLOAT_MAX = 3.4028234663852886e38;

/** The .npy header; `depth` undefined for a single 2D frame. */
export function npyHeader(format: ArrayFormat, depth: number | undefined, rows: number, columns: number): Buffer {
  const shape = `${depth === undefined ? '' : `${depth}, `}${rows},${columns},${format.channels}`;
  const info = `{'descr': '${format.dtype}', 'fortran_order': False, 'shape': (${shape}), }`;
  const minimum = MAGIC.length + 2 + info.length + 1;
  const total = Math.ceil(minimum / 64) * 64;
  const length = Buffer.alloc(2);
  length.writeUInt16LE(total - MAGIC.length - 2);
  return Buffer.concat([MAGIC, length, Buffer.from(`${info}${' '.repeat(total - minimum)}\n`, 'latin1')]);
}

/** dtype and channels of the array holding frames of a pixel format. */
export function arrayFormat(format: PixelFormat, rescale: boolean): ArrayFormat {
  if (format === 'RGB24') return { dtype: '<u1', channels: 3 };
  if (rescale) return { dtype: '<f4', channels: 1 };
  return { dtype: format === 'Grayscale8' ? '<u1' : format === 'Grayscale16' ? '<u2' : '<i2', channels: 1 };
}

/** SerializationToolbox::ParseDouble of the element's text: one finite number, else undefined. */
function parseDouble(dataset: DicomDataset, tag: string): number | undefined {
  const text = datasetString(dataset, tag);
  if (text === undefined || text === '' || text.includes('\\')) return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? value : undefined;
}

function rescaleIn(dataset: DicomDataset | undefined): Rescale | undefined {
  if (!dataset) return undefined;
  const intercept = parseDouble(dataset, '00281052');
  const slope = parseDouble(dataset, '00281053');
  return intercept === undefined || slope === undefined ? undefined : { slope, intercept };
}

function item(element: DicomElement | undefined, index: number): DicomDataset | undefined {
  const value = element?.Value?.[index];
  return value && typeof value === 'object' ? (value as DicomDataset) : undefined;
}

/**
 * Orthanc's ParsedDicomFile::GetRescale: none for RT Dose; else the top-level Rescale Intercept/Slope;
 * else those of the frame's Pixel Value Transformation (enhanced multi-frame); else identity.
 */
export function rescaleOf(dataset: DicomDataset, frame: number): Rescale {
  const identity = { slope: 1, intercept: 0 };
  if (datasetString(dataset, '00080016') === RT_DOSE_STORAGE) return identity;
  const perFrame = item(item(dataset['52009230'], frame)?.['00289145'], 0);
  return rescaleIn(dataset) ?? rescaleIn(perFrame) ?? identity;
}

/** Orthanc's IsIdentityRescaling (in float32): such a rescale is skipped, values are not floored. */
function isIdentity(a: number, b: number): boolean {
  return Math.abs(b) <= 10 * FLOAT_EPSILON && Math.abs(a - 1) <= 10 * FLOAT_EPSILON;
}

/** One decoded frame as the array's bytes (little endian); `rescale` only applies to greyscale. */
export function frameToNumpy(image: DecodedImage, rescale: Rescale | undefined): Buffer {
  const { data } = image;
  if (image.format === 'RGB24' || !rescale) {
    // the typed arrays are little endian on every platform Node runs on
    return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  }
  const out = new Float32Array(data.length);
  const a = Math.fround(rescale.slope);
  const b = Math.fround(rescale.intercept);
  if (isIdentity(a, b)) {
    out.set(data);
  } else {
    for (let i = 0; i < data.length; i++) {
      // float v = a * x + b, then std::floor and the clamps of ShiftScaleInternal<float>
      const v = Math.fround(Math.fround(a * data[i]) + b);
      out[i] = v >= FLOAT_MAX ? FLOAT_MAX : v <= -FLOAT_MAX ? -FLOAT_MAX : Math.floor(v);
    }
  }
  return Buffer.from(out.buffer);
}

/** An instance of a series as the index knows it (main DICOM tags, Orthanc's IndexInSeries). */
export interface Slice {
  id: string;
  tags: Readonly<Record<string, string | undefined>>;
  indexInSeries: number | null;
}

type Vector = [number, number, number];

/** boost::lexical_cast<float> of each '\'-separated value, or undefined (wrong count, not a number). */
function floats(text: string | undefined, count: number): number[] | undefined {
  if (text === undefined) return undefined;
  const tokens = text.split('\\');
  if (tokens.length !== count) return undefined;
  const values = tokens.map((token) => (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(token.trim()) ? Math.fround(Number(token.trim())) : NaN));
  return values.every((v) => Number.isFinite(v)) ? values : undefined;
}

function normalOf(orientation: string | undefined): Vector | undefined {
  const c = floats(orientation, 6);
  if (!c) return undefined;
  const f = Math.fround;
  return [f(f(c[1] * c[5]) - f(c[2] * c[4])), f(f(c[2] * c[3]) - f(c[0] * c[5])), f(f(c[0] * c[4]) - f(c[1] * c[3]))];
}

function isCloseToZero(x: number): boolean {
  return Math.abs(x) < 10 * FLOAT_EPSILON;
}

function isParallelOrOpposite(u: Vector, v: Vector): boolean {
  const normU = Math.hypot(...u);
  const normV = Math.hypot(...v);
  if (isCloseToZero(normU * normV)) return false;
  const cosAngle = (u[0] * v[0] + u[1] * v[1] + u[2] * v[2]) / (normU * normV);
  return isCloseToZero(cosAngle - 1) || isCloseToZero(Math.abs(cosAngle) - 1);
}

/** Orthanc's frame count of an instance from its main tags: NumberOfFrames, 1 when absent or unreadable. */
export function framesCountOf(tags: Readonly<Record<string, string | undefined>>): number {
  const text = tags.NumberOfFrames?.trim();
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : 1;
}

/**
 * Orthanc's SliceOrdering: along the normal of the series' ImageOrientationPatient when every slice has a
 * position (and a parallel orientation, if any) and no two positions coincide; else by IndexInSeries
 * when every slice has one; else undefined (Orthanc: "Unable to order the slices").
 */
export function orderSlices(seriesOrientation: string | undefined, slices: readonly Slice[]): Slice[] | undefined {
  if (slices.length <= 1) return [...slices];
  const normal = normalOf(seriesOrientation);
  if (normal) {
    const f = Math.fround;
    const positioned = slices.map((slice) => {
      const position = floats(slice.tags.ImagePositionPatient, 3);
      const own = normalOf(slice.tags.ImageOrientationPatient);
      const ok = position !== undefined && (own === undefined || isParallelOrOpposite(own, normal));
      const distance = position ? f(f(f(normal[0] * position[0]) + f(normal[1] * position[1])) + f(normal[2] * position[2])) : 0;
      return { slice, ok, distance };
    });
    if (positioned.every((p) => p.ok)) {
      positioned.sort((a, b) => a.distance - b.distance);
      const distinct = positioned.every((p, i) => i === 0 || Math.abs(f(p.distance - positioned[i - 1].distance)) > 10 * FLOAT_EPSILON);
      if (distinct) return positioned.map((p) => p.slice);
    }
  }
  if (!slices.every((slice) => slice.indexInSeries !== null)) return undefined;
  return [...slices].sort((a, b) => (a.indexInSeries as number) - (b.indexInSeries as number));
}
