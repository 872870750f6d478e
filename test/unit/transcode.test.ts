import { data } from 'dcmjs';
import { Context, NativeCodecs } from 'dcmjs-codecs';
import {
  buildInstance,
  CODEC_FACTORY_SYNTAXES,
  initCodecs,
  NATIVE_FACTORY_SYNTAXES,
  readInstance,
  TransferSyntax,
  writePart10,
  type TransferSyntaxUid,
} from '../helpers/dicom-factory';
import { canTranscode, decodeFrame, TranscodeError, transcodeFile } from '../../src/dicom/transcode';
import { TS } from '../../src/dicom/transfer-syntax';

const LOSSY: ReadonlySet<string> = new Set([TransferSyntax.JPEGBaseline8Bit, TransferSyntax.JPEGLSNearLossless, TransferSyntax.JPEG2000]);
const FRAMES = 2;

function pixelsOf(file: Buffer): Buffer {
  const { dataset } = readInstance(file);
  return Buffer.from((dataset.PixelData as ArrayBuffer[])[0]);
}

/** Mean absolute difference between two sample arrays (16-bit signed or 8-bit). */
function meanDifference(a: Buffer, b: Buffer, bits: 8 | 16): number {
  let sum = 0;
  for (let i = 0; i < a.length; i += bits / 8) {
    const x = bits === 8 ? a[i] : a.readInt16LE(i);
    const y = bits === 8 ? b[i] : b.readInt16LE(i);
    sum += Math.abs(x - y);
  }
  return sum / (a.length / (bits / 8));
}

/** Re-encodes an Explicit LE factory file in a syntax the factory cannot write, frame by frame. */
function encodeWith(file: Buffer, syntax: string, encode: (c: Context) => Context, layout: { bits: 8 | 16; frames: number }): Buffer {
  const dict = data.DicomMessage.readFile(file.buffer.slice(file.byteOffset, file.byteOffset + file.length));
  const n = data.DicomMetaDictionary.naturalizeDataset(dict.dict);
  const pixels = Buffer.from((dict.dict['7FE00010'].Value as ArrayBuffer[])[0]);
  const size = pixels.length / layout.frames;
  const fragments: ArrayBuffer[] = [];
  for (let f = 0; f < layout.frames; f++) {
    const context = new Context({
      width: n.Columns as number,
      height: n.Rows as number,
      bitsAllocated: layout.bits,
      bitsStored: n.BitsStored as number,
      samplesPerPixel: 1,
      pixelRepresentation: n.PixelRepresentation as number,
      planarConfiguration: 0,
      photometricInterpretation: 'MONOCHROME2',
      decodedBuffer: new Uint8Array(pixels.subarray(f * size, (f + 1) * size)),
    });
    const encoded = encode(context).getEncodedBuffer() as Uint8Array;
    fragments.push(Uint8Array.from(encoded).buffer);
  }
  return writePart10({ ...dict.dict, '7FE00010': { vr: 'OB', Value: fragments } }, syntax);
}

describe('transcoding to Explicit VR Little Endian', () => {
  beforeAll(() => initCodecs());

  it.each(NATIVE_FACTORY_SYNTAXES.filter((s) => s !== TransferSyntax.RLELossless))('re-encodes native %s with the same pixels and text', (syntax) =>
    (async () => {
      const generated = buildInstance({ transferSyntax: syntax, NumberOfFrames: FRAMES, PatientName: 'Müller^Zoë', seed: syntax });
      const out = await transcodeFile(generated.buffer, syntax, TS.ExplicitVRLittleEndian);
      const { meta, dataset } = readInstance(out);
      expect(meta.TransferSyntaxUID).toBe(TS.ExplicitVRLittleEndian);
      expect(pixelsOf(out).equals(generated.pixels)).toBe(true);
      expect(dataset.PatientName).toEqual([{ Alphabetic: 'Müller^Zoë' }]);
      expect(dataset.SOPInstanceUID).toBe(generated.tags.SOPInstanceUID);
      expect(dataset.Rows).toBe(16);
    })());

  it.each(['1.2.840.10008.1.2.5', ...CODEC_FACTORY_SYNTAXES] as TransferSyntaxUid[])('decodes %s', async (syntax) => {
    const bits = syntax === TransferSyntax.JPEGBaseline8Bit ? 8 : 16;
    for (const samples of [1, 3] as const) {
      if (samples === 3 && bits === 16) continue;
      const generated = buildInstance({ transferSyntax: syntax, NumberOfFrames: FRAMES, BitsAllocated: samples === 3 ? 8 : bits, SamplesPerPixel: samples });
      const out = await transcodeFile(generated.buffer, syntax, TS.ExplicitVRLittleEndian);
      const { meta, dataset } = readInstance(out);
      expect(meta.TransferSyntaxUID).toBe(TS.ExplicitVRLittleEndian);
      const pixels = pixelsOf(out);
      expect(pixels.length).toBe(generated.pixels.length);
      if (LOSSY.has(syntax)) {
        // lossy: close to the original (the pattern spans 256 values in 8 bits, 4096 in 16)
        expect(meanDifference(pixels, generated.pixels, samples === 3 ? 8 : bits)).toBeLessThan(samples === 3 || bits === 8 ? 10 : 200);
        expect(dataset.LossyImageCompression).toBe('01');
      } else {
        expect(pixels.equals(generated.pixels)).toBe(true);
      }
      expect(dataset.PhotometricInterpretation).toBe(samples === 3 ? 'RGB' : 'MONOCHROME2');
      if (samples === 3) expect(dataset.PlanarConfiguration).toBe(0);
    }
  });

  it.each([
    ['JPEG Lossless, predictor 6 (1.2.840.10008.1.2.4.57)', TS.JPEGLossless, (c: Context) => NativeCodecs.encodeJpeg(c, { lossy: false, predictor: 6 })],
    ['HTJ2K lossless (1.2.840.10008.1.2.4.201)', TS.HTJ2KLossless, (c: Context) => NativeCodecs.encodeHtJpeg2000(c, { lossy: false })],
  ])('decodes %s', async (_name, syntax, encode) => {
    const generated = buildInstance({ NumberOfFrames: FRAMES, BitsAllocated: 16, BitsStored: 12 });
    const file = encodeWith(generated.buffer, syntax, encode, { bits: 16, frames: FRAMES });
    const out = await transcodeFile(file, syntax, TS.ExplicitVRLittleEndian);
    expect(pixelsOf(out).equals(generated.pixels)).toBe(true);
  });

  it('decodes one frame', async () => {
    const generated = buildInstance({ transferSyntax: TransferSyntax.JPEGLSLossless, NumberOfFrames: 3, seed: 'one-frame' });
    const { dataset } = readInstance(generated.buffer);
    const second = Buffer.from((dataset.PixelData as ArrayBuffer[])[1]);
    const decoded = await decodeFrame(second, TransferSyntax.JPEGLSLossless, { rows: 16, columns: 16, bitsAllocated: 16, bitsStored: 16, samplesPerPixel: 1 });
    expect(decoded.equals(generated.pixels.subarray(512, 1024))).toBe(true);
    await expect(decodeFrame(Buffer.from('not a codestream'), TransferSyntax.JPEGLSLossless, { rows: 16, columns: 16, bitsAllocated: 16 })).rejects.toBeInstanceOf(
      TranscodeError,
    );
  });

  it('says what it cannot do instead of failing', async () => {
    expect(canTranscode(TS.JPEGBaseline8Bit, TS.ExplicitVRLittleEndian)).toBe(true);
    expect(canTranscode(TS.ExplicitVRLittleEndian, TS.JPEGBaseline8Bit)).toBe(false);
    expect(canTranscode('1.2.840.10008.1.2.4.100', TS.ExplicitVRLittleEndian)).toBe(false);
    expect(canTranscode('1.2.840.10008.1.2.4.100', '1.2.840.10008.1.2.4.100')).toBe(true);
    const generated = buildInstance({});
    await expect(transcodeFile(generated.buffer, TS.ExplicitVRLittleEndian, TS.JPEG2000Lossless)).rejects.toBeInstanceOf(TranscodeError);
    const implicit = await transcodeFile(generated.buffer, TS.ExplicitVRLittleEndian, TS.ImplicitVRLittleEndian);
    expect(readInstance(implicit).meta.TransferSyntaxUID).toBe(TS.ImplicitVRLittleEndian);
    expect(pixelsOf(implicit).equals(generated.pixels)).toBe(true);
  });
});
