import sharp from 'sharp';
import { DicomParseError } from '../../src/dicom/dicom-file';
import { parseViewport, parseWindow, RenderError, renderDicom, type RenderOptions } from '../../src/dicom/render';
import { buildInstance, makeNonImage, patternValue, TransferSyntax, type InstanceOptions, type PixelLayout } from '../helpers/dicom-factory';

/** PS3.3 C.11.2.1.2 written out again, independently of src/dicom/render.ts. */
function expectedVoi(x: number, c: number, w: number, fn: string): number {
  let y: number;
  if (fn === 'sigmoid') y = 255 / (1 + Math.exp((-4 * (x - c)) / w));
  else if (fn === 'linear-exact') y = x <= c - w / 2 ? 0 : x > c + w / 2 ? 255 : ((x - c) / w + 0.5) * 255;
  else y = x <= c - 0.5 - (w - 1) / 2 ? 0 : x > c - 0.5 + (w - 1) / 2 ? 255 : ((x - (c - 0.5)) / (w - 1) + 0.5) * 255;
  return Math.round(y);
}

/** The same bytes `shift` bytes further in memory: 16-bit words viewed in place, copied, 4-byte aligned or not. */
function shifted(shift: number): (buffer: Buffer) => Buffer {
  return (buffer) => Buffer.concat([Buffer.alloc(shift), buffer]).subarray(shift);
}

/** Renders to PNG and decodes it; `channels` is 1 for a greyscale PNG (colour type 0), else 3. */
async function renderRaw(options: InstanceOptions, render: RenderOptions = {}, bytes: (file: Buffer) => Buffer = (file) => file): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const { buffer } = buildInstance(options);
  const { body, mediaType } = await renderDicom(bytes(buffer), { mediaType: 'image/png', ...render });
  expect(mediaType).toBe('image/png');
  const grey = body[25] === 0;
  const decoder = grey ? sharp(body).toColourspace('b-w') : sharp(body);
  const { data, info } = await decoder.raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

function layoutOf(o: InstanceOptions): PixelLayout {
  const spp = o.SamplesPerPixel ?? 1;
  const ba = o.BitsAllocated ?? (spp === 3 ? 8 : 16);
  return { Rows: o.Rows ?? 16, Columns: o.Columns ?? 16, BitsAllocated: ba, BitsStored: o.BitsStored ?? ba, PixelRepresentation: o.PixelRepresentation ?? 0, SamplesPerPixel: spp };
}

/** Checks every pixel of a grey render against `expected(stored value)`. */
async function checkGrey(options: InstanceOptions, render: RenderOptions, expected: (stored: number) => number, frame = 0, bytes?: (file: Buffer) => Buffer): Promise<void> {
  const raw = await renderRaw(options, { ...render, frame }, bytes);
  const layout = layoutOf(options);
  expect([raw.width, raw.height, raw.channels]).toEqual([layout.Columns, layout.Rows, 1]);
  let mismatches = 0;
  for (let r = 0; r < layout.Rows; r++) {
    for (let c = 0; c < layout.Columns; c++) {
      if (raw.data[r * layout.Columns + c] !== expected(patternValue(layout, frame, r, c))) mismatches++;
    }
  }
  expect(mismatches).toBe(0);
}

describe('renderDicom greyscale (PS3.3 C.11)', () => {
  it('applies the modality LUT then a linear window from the query', async () => {
    const o: InstanceOptions = { BitsAllocated: 16, RescaleSlope: 2, RescaleIntercept: -100 };
    await checkGrey(o, { window: { center: 1500, width: 3000, fn: 'linear' } }, (v) => expectedVoi(v * 2 - 100, 1500, 3000, 'linear'));
  });

  it('uses the file window by default, and inverts MONOCHROME1 (8-bit)', async () => {
    const o: InstanceOptions = { BitsAllocated: 8, PhotometricInterpretation: 'MONOCHROME1', WindowCenter: 100, WindowWidth: 120 };
    await checkGrey(o, {}, (v) => 255 - expectedVoi(v, 100, 120, 'linear'));
  });

  it('maps min/max of a signed frame when no window is known', async () => {
    const o: InstanceOptions = { BitsAllocated: 16, PixelRepresentation: 1, BitsStored: 12, Rows: 64, Columns: 64 };
    const layout = layoutOf(o);
    const values = Array.from({ length: 64 * 64 }, (_, i) => patternValue(layout, 0, Math.floor(i / 64), i % 64));
    const min = Math.min(...values);
    const max = Math.max(...values);
    expect(min).toBeLessThan(0);
    await checkGrey(o, {}, (v) => expectedVoi(v, (min + max) / 2, max - min, 'linear-exact'));
  });

  it('implements sigmoid and linear-exact, and renders the asked frame', async () => {
    const o: InstanceOptions = { BitsAllocated: 16, NumberOfFrames: 3 };
    await checkGrey(o, { window: parseWindow('2000,1500,SIGMOID') }, (v) => expectedVoi(v, 2000, 1500, 'sigmoid'), 2);
    await checkGrey(o, { window: parseWindow('1000,800,linear-exact') }, (v) => expectedVoi(v, 1000, 800, 'linear-exact'), 1);
  });

  it('reads big endian files', async () => {
    const o: InstanceOptions = { BitsAllocated: 16, transferSyntax: TransferSyntax.ExplicitVRBigEndian };
    await checkGrey(o, { window: { center: 2000, width: 4000, fn: 'linear' } }, (v) => expectedVoi(v, 2000, 4000, 'linear'));
  });

  it.each([TransferSyntax.ImplicitVRLittleEndian, TransferSyntax.DeflatedExplicitVRLittleEndian])('reads the Pixel Data of %s files', async (transferSyntax) => {
    const o: InstanceOptions = { BitsAllocated: 16, NumberOfFrames: 2, transferSyntax };
    await checkGrey(o, { window: { center: 2000, width: 4000, fn: 'linear' } }, (v) => expectedVoi(v, 2000, 4000, 'linear'), 1);
  });

  it.each([0, 1, 2, 3])('reads 16-bit words wherever they are in memory (file shifted by %i bytes)', async (shift) => {
    // 5x7: eight groups of four pixels and three more
    const o: InstanceOptions = { BitsAllocated: 16, Rows: 5, Columns: 7, RescaleSlope: 2, RescaleIntercept: -100 };
    await checkGrey(o, { window: { center: 1500, width: 3000, fn: 'linear' } }, (v) => expectedVoi(v * 2 - 100, 1500, 3000, 'linear'), 0, shifted(shift));
  });

  it('applies a known window through a table of every stored value when the frame is larger than the table', async () => {
    // 12-bit signed, 64x128 pixels > 4096 table entries: no pass over the frame for its range
    const o: InstanceOptions = { BitsAllocated: 16, BitsStored: 12, PixelRepresentation: 1, Rows: 64, Columns: 128, RescaleSlope: 3, RescaleIntercept: 7 };
    await checkGrey(o, { window: { center: 100, width: 5000, fn: 'linear' } }, (v) => expectedVoi(v * 3 + 7, 100, 5000, 'linear'));
    await checkGrey({ ...o, PhotometricInterpretation: 'MONOCHROME1', WindowCenter: -300, WindowWidth: 2000 }, {}, (v) => 255 - expectedVoi(v * 3 + 7, -300, 2000, 'linear'));
  });

  it('renders RLE greyscale through the codecs with the same linear window (±1)', async () => {
    const o: InstanceOptions = { BitsAllocated: 16, transferSyntax: TransferSyntax.RLELossless };
    const raw = await renderRaw(o, { window: { center: 2000, width: 4000, fn: 'linear' } });
    const layout = layoutOf(o);
    const grey = (i: number): number => raw.data[i * raw.channels];
    for (let i = 0; i < 256; i++) expect(Math.abs(grey(i) - expectedVoi(patternValue(layout, 0, Math.floor(i / 16), i % 16), 2000, 4000, 'linear'))).toBeLessThanOrEqual(1);
  });
});

describe('renderDicom: 32-bit samples and enhanced multi-frame', () => {
  it('renders 32-bit signed samples with the modality LUT', async () => {
    // 4x4 32-bit samples: the factory writes 16-bit layouts, so a 4x8 16-bit image is relabelled (same byte count)
    const values = Int32Array.from({ length: 16 }, (_, i) => (i - 8) * 100_000);
    const pixelData = new Uint8Array(values.buffer);
    const extraElements = {
      '00280011': { vr: 'US', Value: [4] },
      '00280100': { vr: 'US', Value: [32] },
      '00280101': { vr: 'US', Value: [32] },
      '00280102': { vr: 'US', Value: [31] },
      '00280103': { vr: 'US', Value: [1] },
      '00281053': { vr: 'DS', Value: [0.5] },
      '00281052': { vr: 'DS', Value: [10] },
    };
    const raw = await renderRaw({ Rows: 4, Columns: 8, BitsAllocated: 16, pixelData, extraElements }, { window: { center: 0, width: 600_000, fn: 'linear' } });
    expect([raw.width, raw.height]).toEqual([4, 4]);
    expect([...raw.data]).toEqual([...values].map((v) => expectedVoi(v * 0.5 + 10, 0, 600_000, 'linear')));
  });

  it('takes rescale and window per frame from the functional groups (PS3.3 C.7.6.16)', async () => {
    const rescale = (slope: number, intercept: number): Record<string, unknown> => ({
      '00289145': { vr: 'SQ', Value: [{ '00281053': { vr: 'DS', Value: [slope] }, '00281052': { vr: 'DS', Value: [intercept] } }] },
    });
    const extraElements = {
      // shared: a window for every frame; per frame: the rescale
      '52009229': { vr: 'SQ', Value: [{ '00289132': { vr: 'SQ', Value: [{ '00281050': { vr: 'DS', Value: [1000] }, '00281051': { vr: 'DS', Value: [2000] } }] } }] },
      '52009230': { vr: 'SQ', Value: [rescale(1, 0), rescale(2, -500)] },
    };
    const o: InstanceOptions = { BitsAllocated: 16, NumberOfFrames: 2, extraElements: extraElements as never };
    await checkGrey(o, {}, (v) => expectedVoi(v, 1000, 2000, 'linear'), 0);
    await checkGrey(o, {}, (v) => expectedVoi(v * 2 - 500, 1000, 2000, 'linear'), 1);
  });
});

describe('renderDicom colour models (PS3.3 C.7.6.3)', () => {
  const ow = (values: number[]): ArrayBuffer => new Uint16Array(values).buffer;

  it('maps PALETTE COLOR indices through the red, green and blue tables', async () => {
    const indices = Uint8Array.from({ length: 64 }, (_, i) => (i * 5) % 256);
    const table = (f: (i: number) => number): number[] => Array.from({ length: 256 }, (_, i) => f(i) * 257);
    const red = (i: number): number => i;
    const green = (i: number): number => 255 - i;
    const blue = (i: number): number => (i * 3) % 256;
    const extraElements = {
      '00281101': { vr: 'US', Value: [0, 0, 16] },
      '00281102': { vr: 'US', Value: [0, 0, 16] },
      '00281103': { vr: 'US', Value: [0, 0, 16] },
      '00281201': { vr: 'OW', Value: [ow(table(red))] },
      '00281202': { vr: 'OW', Value: [ow(table(green))] },
      '00281203': { vr: 'OW', Value: [ow(table(blue))] },
    };
    const raw = await renderRaw({ Rows: 8, Columns: 8, BitsAllocated: 8, PhotometricInterpretation: 'PALETTE COLOR', pixelData: indices, extraElements: extraElements as never });
    expect(raw.channels).toBe(3);
    for (let i = 0; i < 64; i++) {
      expect([...raw.data.subarray(3 * i, 3 * i + 3)]).toEqual([red(indices[i]), green(indices[i]), blue(indices[i])]);
    }
  });

  it('converts YBR_FULL to RGB with the PS3.3 C.7.6.3.1.2 equations (±1)', async () => {
    const o: InstanceOptions = { SamplesPerPixel: 3, PhotometricInterpretation: 'YBR_FULL', Rows: 8, Columns: 8 };
    const raw = await renderRaw(o);
    const layout = layoutOf(o);
    const clamp = (v: number): number => Math.min(255, Math.max(0, Math.round(v)));
    for (let i = 0; i < 64; i++) {
      const [y, cb, cr] = [0, 1, 2].map((s) => patternValue(layout, 0, Math.floor(i / 8), i % 8, s));
      const expected = [clamp(y + 1.402 * (cr - 128)), clamp(y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128)), clamp(y + 1.772 * (cb - 128))];
      const got = [...raw.data.subarray(3 * i, 3 * i + 3)];
      for (let c = 0; c < 3; c++) expect(Math.abs(got[c] - expected[c])).toBeLessThanOrEqual(1);
    }
  });

  it('reads colour-by-plane samples (Planar Configuration 1)', async () => {
    const layout: PixelLayout = { Rows: 4, Columns: 4, BitsAllocated: 8, BitsStored: 8, PixelRepresentation: 0, SamplesPerPixel: 3 };
    const planes = new Uint8Array(48);
    for (let p = 0; p < 16; p++) for (let s = 0; s < 3; s++) planes[s * 16 + p] = patternValue(layout, 0, Math.floor(p / 4), p % 4, s);
    const raw = await renderRaw({ SamplesPerPixel: 3, Rows: 4, Columns: 4, pixelData: planes, extraElements: { '00280006': { vr: 'US', Value: [1] } } });
    for (let p = 0; p < 16; p++) {
      expect([...raw.data.subarray(3 * p, 3 * p + 3)]).toEqual([0, 1, 2].map((s) => patternValue(layout, 0, Math.floor(p / 4), p % 4, s)));
    }
  });
});

describe('renderDicom colour and geometry', () => {
  it('renders RGB samples unchanged', async () => {
    const o: InstanceOptions = { SamplesPerPixel: 3 };
    const raw = await renderRaw(o);
    const layout = layoutOf(o);
    expect(raw.channels).toBe(3);
    for (let r = 0; r < 16; r++) for (let c = 0; c < 16; c++) for (let s = 0; s < 3; s++) {
      expect(raw.data[(r * 16 + c) * 3 + s]).toBe(patternValue(layout, 0, r, c, s));
    }
  });

  it('fits a viewport, keeping the aspect ratio, and crops a source region', async () => {
    const o: InstanceOptions = { Rows: 32, Columns: 64, BitsAllocated: 8 };
    expect(await renderRaw(o, { viewport: parseViewport('32,32') })).toMatchObject({ width: 32, height: 16 });
    const cropped = await renderRaw(o, { viewport: parseViewport('8,8,0,0,8,8') });
    expect(cropped).toMatchObject({ width: 8, height: 8 });
    expect(cropped.data[9]).toBe(expectedVoi(patternValue(layoutOf(o), 0, 1, 1), 127.5, 255, 'linear-exact'));
  });

  it('encodes JPEG and GIF', async () => {
    const { buffer } = buildInstance({});
    const jpeg = await renderDicom(buffer, { quality: 50 });
    expect(jpeg.mediaType).toBe('image/jpeg');
    expect(jpeg.body.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
    const gif = await renderDicom(buffer, { mediaType: 'image/gif' });
    expect(gif.body.toString('latin1', 0, 3)).toBe('GIF');
  });
});

describe('renderDicom errors', () => {
  it.each(['sr', 'pdf'] as const)('refuses a %s object as not an image', async (kind) => {
    await expect(renderDicom(makeNonImage({ kind }))).rejects.toMatchObject({ kind: 'not-image' });
  });

  it('refuses a file that ends inside its Pixel Data as unreadable', async () => {
    const { buffer } = buildInstance({});
    await expect(renderDicom(buffer.subarray(0, buffer.length - 2))).rejects.toBeInstanceOf(DicomParseError);
  });

  it('refuses a frame that does not exist', async () => {
    await expect(renderDicom(buildInstance({}).buffer, { frame: 1 })).rejects.toBeInstanceOf(RenderError);
  });

  it.each(['1', 'a,b', '10,0', '10,0,linear-exact', '10,5,cubic', '10,-1,sigmoid'])('rejects window=%s', (text) => {
    expect(() => parseWindow(text)).toThrow(RenderError);
  });

  it.each(['0,10', '10', '10,10,0,0,0,5', 'x,y'])('rejects viewport=%s', (text) => {
    expect(() => parseViewport(text)).toThrow(RenderError);
  });
});
