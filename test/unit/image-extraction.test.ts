import {
  applyExtractionMode,
  encodePam,
  pixelFormatOf,
  pixelInfoOf,
  renderForDisplay,
  resizeNearest,
  smoothGaussian5x5,
  toDecodedImage,
  toMatlab,
  type DecodedImage,
} from '../../src/dicom/image-extraction';

const grey16 = (values: number[], width: number): DecodedImage => ({ format: 'Grayscale16', width, height: values.length / width, data: Uint16Array.from(values) });

describe('Orthanc-style image extraction', () => {
  it('chooses Orthanc\'s pixel format, colour only for RGB unless compressed', () => {
    const info = (extra: Record<string, unknown>) =>
      pixelInfoOf(Object.fromEntries(Object.entries({ '00280011': 4, '00280010': 2, '00280100': 8, '00280101': 8, '00280002': 1, '00280004': 'MONOCHROME2', ...extra }).map(([tag, v]) => [tag, { vr: 'US', Value: [v] }])));
    expect(pixelFormatOf(info({}), false)).toBe('Grayscale8');
    expect(pixelFormatOf(info({ '00280100': 16, '00280101': 12, '00280103': 1 }), false)).toBe('SignedGrayscale16');
    expect(pixelFormatOf(info({ '00280101': 7 }), false)).toBeUndefined();
    expect(pixelFormatOf(info({ '00280002': 3, '00280004': 'YBR_FULL' }), false)).toBeUndefined();
    expect(pixelFormatOf(info({ '00280002': 3, '00280004': 'YBR_FULL_422' }), true)).toBe('RGB24');
    expect(info({}).numberOfFrames).toBe(1);
  });

  it('shifts native values by HighBit + 1 - BitsStored and de-planarizes RGB', () => {
    const info = pixelInfoOf({ '00280011': { vr: 'US', Value: [2] }, '00280010': { vr: 'US', Value: [1] }, '00280100': { vr: 'US', Value: [16] }, '00280101': { vr: 'US', Value: [12] }, '00280102': { vr: 'US', Value: [15] } });
    const image = toDecodedImage(Buffer.from([0x10, 0x00, 0xf0, 0xff]), info, 'Grayscale16', true);
    expect(Array.from(image.data)).toEqual([1, 0xfff]);
    const rgb = toDecodedImage(Buffer.from([1, 2, 10, 20, 100, 200]), { ...info, bitsAllocated: 8, bitsStored: 8, samplesPerPixel: 3, planar: true }, 'RGB24', true);
    expect(Array.from(rgb.data)).toEqual([1, 10, 100, 2, 20, 200]);
  });

  it('stretches the preview with rounding, clamps the image-* values, inverts MONOCHROME1', () => {
    const image = grey16([100, 101, 102, 70000 % 65536], 2);
    expect(Array.from(applyExtractionMode(grey16([0, 1, 2, 3], 2), 'preview', false).data)).toEqual([0, 85, 170, 255]);
    expect(Array.from(applyExtractionMode(grey16([10, 11, 13, 10], 2), 'preview', true).data)).toEqual([255, 170, 0, 255]);
    expect(Array.from(applyExtractionMode(image, 'uint8', false).data)).toEqual([100, 101, 102, 255]);
    expect(Array.from(applyExtractionMode(grey16([0, 40000], 2), 'int16', false).data)).toEqual([0, 32767]);
    expect(() => applyExtractionMode({ format: 'RGB24', width: 1, height: 1, data: new Uint8Array(3) }, 'uint16', false)).toThrow(/colour/);
  });

  it('renders with the window (floor), the default 2^BitsStored window, and nearest-neighbour resizing', () => {
    const values = grey16([0, 50, 100, 150], 2);
    const windowed = renderForDisplay(values, { '00281050': { vr: 'DS', Value: [100] }, '00281051': { vr: 'DS', Value: [200] } }, { width: 0, height: 0, smooth: false });
    expect(Array.from(windowed.data)).toEqual([0, 63, 127, 191]);
    const byDefault = renderForDisplay(values, { '00280101': { vr: 'US', Value: [8] } }, { width: 0, height: 0, smooth: false });
    expect(Array.from(byDefault.data)).toEqual([0, 49, 99, 149]);
    const resized = resizeNearest({ format: 'Grayscale8', width: 4, height: 1, data: Uint8Array.of(1, 2, 3, 4) }, 2, 1);
    expect(Array.from(resized.data)).toEqual([2, 4]);
  });

  it('smooths with a 5x5 binomial kernel, borders replicated and truncated', () => {
    const flat = smoothGaussian5x5({ format: 'Grayscale8', width: 3, height: 3, data: new Uint8Array(9).fill(77) });
    expect(Array.from(flat.data)).toEqual(new Array(9).fill(77));
    const dot = new Uint8Array(25);
    dot[12] = 255;
    const smoothed = smoothGaussian5x5({ format: 'Grayscale8', width: 5, height: 5, data: dot });
    // centre: 255 * 36 / 256 = 35.86 → 35
    expect(smoothed.data[12]).toBe(35);
    expect(smoothed.data[0]).toBe(0);
  });

  it('writes PAM (16-bit big endian, signed as two\'s complement) and Matlab matrices', () => {
    const pam = encodePam({ format: 'SignedGrayscale16', width: 2, height: 1, data: Int16Array.of(-2, 258) });
    expect(pam.toString('latin1', 0, pam.length - 4)).toBe('P7\nWIDTH 2\nHEIGHT 1\nDEPTH 1\nMAXVAL 65535\nTUPLTYPE GRAYSCALE\nENDHDR\n');
    expect(Array.from(pam.subarray(pam.length - 4))).toEqual([0xff, 0xfe, 0x01, 0x02]);
    expect(toMatlab({ format: 'SignedGrayscale16', width: 2, height: 2, data: Int16Array.of(-1, 2, 3, 4) })).toBe('double([ -1 2 ; 3 4 ])');
    expect(toMatlab({ format: 'RGB24', width: 1, height: 1, data: Uint8Array.of(1, 2, 3) })).toBe('double(permute(reshape([ 1 2 3 ], [ 3 1 1 ]), [ 3 2 1 ]))');
  });
});
