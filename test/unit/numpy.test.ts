/**
 * The .npy writer and the series order of numpy.ts; the files are read back with numpy itself
 * (python3 -c "import numpy"), which checks the header, its padding, the dtype and the shape.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { arrayFormat, frameToNumpy, framesCountOf, npyHeader, orderSlices, rescaleOf, type Slice } from '../../src/dicom/numpy';
import type { DecodedImage } from '../../src/dicom/image-extraction';
import type { DicomDataset } from '../../src/dicom/dicom-file';
import { runTool } from '../helpers/dcmtk';

/** What numpy reads from the bytes: dtype, shape and the values as a flat list. */
async function numpyLoad(bytes: Buffer): Promise<{ dtype: string; shape: number[]; values: number[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'npy-'));
  try {
    const file = join(dir, 'a.npy');
    writeFileSync(file, bytes);
    const script = `import numpy, json; a = numpy.load(${JSON.stringify(file)}); print(json.dumps({"dtype": a.dtype.str, "shape": list(a.shape), "values": a.flatten().tolist()}))`;
    const { code, output } = await runTool('python3', ['-c', script]);
    if (code !== 0) throw new Error(output);
    return JSON.parse(output) as { dtype: string; shape: number[]; values: number[] };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function grey16(values: number[], signed = false): DecodedImage {
  return { format: signed ? 'SignedGrayscale16' : 'Grayscale16', width: values.length, height: 1, data: signed ? Int16Array.from(values) : Uint16Array.from(values) };
}

describe('npyHeader', () => {
  it("writes Orthanc's header: version 1.0, its shape spacing, padded to 64 bytes", () => {
    const header = npyHeader({ dtype: '<f4', channels: 1 }, 2, 16, 16);
    expect(header.length % 64).toBe(0);
    expect(header.subarray(0, 8)).toEqual(Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]));
    expect(header.readUInt16LE(8)).toBe(header.length - 10);
    expect(header.toString('latin1', 10).trimEnd()).toBe("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 16,16,1), }");
    expect(header[header.length - 1]).toBe(0x0a);
    expect(npyHeader({ dtype: '<u1', channels: 3 }, undefined, 8, 4).toString('latin1')).toContain("'shape': (8,4,3), }");
  });

  it('gives files numpy reads: a frame, frames, colour', async () => {
    const image = grey16([1, 2, 65535]);
    const one = Buffer.concat([npyHeader(arrayFormat('Grayscale16', false), undefined, 1, 3), frameToNumpy(image, undefined)]);
    expect(await numpyLoad(one)).toEqual({ dtype: '<u2', shape: [1, 3, 1], values: [1, 2, 65535] });
    const signed = grey16([-5, 0, 7], true);
    const two = Buffer.concat([npyHeader(arrayFormat('SignedGrayscale16', false), 2, 1, 3), frameToNumpy(signed, undefined), frameToNumpy(signed, undefined)]);
    expect(await numpyLoad(two)).toEqual({ dtype: '<i2', shape: [2, 1, 3, 1], values: [-5, 0, 7, -5, 0, 7] });
    const rgb: DecodedImage = { format: 'RGB24', width: 2, height: 1, data: Uint8Array.from([1, 2, 3, 4, 5, 6]) };
    const colour = Buffer.concat([npyHeader(arrayFormat('RGB24', true), 1, 1, 2), frameToNumpy(rgb, { slope: 2, intercept: 1 })]);
    expect(await numpyLoad(colour)).toEqual({ dtype: '|u1', shape: [1, 1, 2, 3], values: [1, 2, 3, 4, 5, 6] });
  });
});

describe('frameToNumpy with a rescale', () => {
  it("floors slope * value + intercept, computed in float32 (Orthanc's ShiftScale2)", async () => {
    const bytes = Buffer.concat([npyHeader(arrayFormat('SignedGrayscale16', true), undefined, 1, 4), frameToNumpy(grey16([-3, 0, 1, 3], true), { slope: 0.5, intercept: -1 })]);
    // -2.5, -1, -0.5, 0.5 floored
    expect(await numpyLoad(bytes)).toEqual({ dtype: '<f4', shape: [1, 4, 1], values: [-3, -1, -1, 0] });
  });

  it('leaves values unfloored by an identity rescale', () => {
    const out = frameToNumpy(grey16([0, 7]), { slope: 1, intercept: 0 });
    expect([out.readFloatLE(0), out.readFloatLE(4)]).toEqual([0, 7]);
    const shifted = frameToNumpy(grey16([0, 7]), { slope: 1, intercept: -1024 });
    expect([shifted.readFloatLE(0), shifted.readFloatLE(4)]).toEqual([-1024, -1017]);
  });
});

function ds(values: Record<string, unknown>): DicomDataset {
  const out: DicomDataset = {};
  for (const [tag, value] of Object.entries(values)) {
    out[tag] = Array.isArray(value) ? { vr: 'SQ', Value: value } : { vr: tag === '00080016' ? 'UI' : 'DS', Value: [value], _rawValue: [value] };
  }
  return out;
}

describe('rescaleOf', () => {
  it('reads the top level, else the frame\'s Pixel Value Transformation, else identity; none for RT Dose', () => {
    expect(rescaleOf(ds({ '00281052': '-1024', '00281053': '1' }), 0)).toEqual({ slope: 1, intercept: -1024 });
    const perFrame = ds({
      '52009230': [ds({ '00289145': [ds({ '00281052': '0', '00281053': '2' })] }), ds({ '00289145': [ds({ '00281052': '5', '00281053': '3' })] })],
    });
    expect(rescaleOf(perFrame, 1)).toEqual({ slope: 3, intercept: 5 });
    expect(rescaleOf(ds({ '00281052': '-1024' }), 0)).toEqual({ slope: 1, intercept: 0 });
    expect(rescaleOf(ds({ '00281052': '1\\2', '00281053': '1' }), 0)).toEqual({ slope: 1, intercept: 0 });
    expect(rescaleOf(ds({ '00080016': '1.2.840.10008.5.1.4.1.1.481.2', '00281052': '3', '00281053': '2' }), 0)).toEqual({ slope: 1, intercept: 0 });
  });
});

describe('orderSlices', () => {
  const slice = (id: string, position: string | undefined, indexInSeries: number | null): Slice => ({
    id,
    tags: position === undefined ? {} : { ImagePositionPatient: position, ImageOrientationPatient: '1\\0\\0\\0\\1\\0' },
    indexInSeries,
  });
  const axial = '1\\0\\0\\0\\1\\0';

  it('orders along the normal of the series, whatever the order of arrival', () => {
    const slices = [slice('a', '0\\0\\20', 1), slice('b', '0\\0\\-5', 2), slice('c', '0\\0\\7.5', 3)];
    expect(orderSlices(axial, slices)?.map((s) => s.id)).toEqual(['b', 'c', 'a']);
  });

  it('falls back to IndexInSeries without positions, or with two slices at one position', () => {
    expect(orderSlices(axial, [slice('a', undefined, 3), slice('b', undefined, 1), slice('c', undefined, 2)])?.map((s) => s.id)).toEqual(['b', 'c', 'a']);
    expect(orderSlices(axial, [slice('a', '0\\0\\1', 2), slice('b', '0\\0\\1', 1)])?.map((s) => s.id)).toEqual(['b', 'a']);
    expect(orderSlices(undefined, [slice('a', '0\\0\\2', 2), slice('b', '0\\0\\1', 1)])?.map((s) => s.id)).toEqual(['b', 'a']);
  });

  it('cannot order slices with neither', () => {
    expect(orderSlices(undefined, [slice('a', undefined, null), slice('b', undefined, 1)])).toBeUndefined();
    expect(orderSlices(undefined, [slice('a', undefined, null)])?.map((s) => s.id)).toEqual(['a']);
  });
});

describe('framesCountOf', () => {
  it("counts NumberOfFrames as Orthanc's index does", () => {
    expect(framesCountOf({})).toBe(1);
    expect(framesCountOf({ NumberOfFrames: ' 12 ' })).toBe(12);
    expect(framesCountOf({ NumberOfFrames: 'x' })).toBe(1);
    expect(framesCountOf({ NumberOfFrames: '0' })).toBe(0);
  });
});
