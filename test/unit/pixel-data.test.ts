import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { data } from 'dcmjs';
import {
  buildInstance,
  CODEC_FACTORY_SYNTAXES,
  initCodecs,
  NATIVE_FACTORY_SYNTAXES,
  TransferSyntax,
  type TransferSyntaxUid,
} from '../helpers/dicom-factory';
import { bufferSource, DicomScanError, scanDicom, scanStreamHead, type DicomLayout } from '../../src/dicom/element-scanner';
import { indexFrames, PixelDataError, readFrame, readStoredFrame, shiftBits } from '../../src/dicom/pixel-data';
import { nativeFrameToLittleEndian } from '../../src/dicom/transcode';

const ALL_SYNTAXES: TransferSyntaxUid[] = [...NATIVE_FACTORY_SYNTAXES, ...CODEC_FACTORY_SYNTAXES];
const FRAMES = 3;

function frameOf(pixels: Buffer, frame: number, frames: number): Buffer {
  const size = pixels.length / frames;
  return pixels.subarray(frame * size, (frame + 1) * size);
}

function instanceIn(syntax: TransferSyntaxUid, extra: Parameters<typeof buildInstance>[0] = {}): ReturnType<typeof buildInstance> {
  const bits = syntax === TransferSyntax.JPEGBaseline8Bit ? 8 : 16;
  return buildInstance({ transferSyntax: syntax, NumberOfFrames: FRAMES, BitsAllocated: bits, Rows: 8, Columns: 12, seed: `pd-${syntax}`, ...extra });
}

/** The stored fragments of an encapsulated factory file, one per frame (the factory writes them so). */
function storedFragments(file: Buffer): Buffer[] {
  const dict = data.DicomMessage.readFile(file.buffer.slice(file.byteOffset, file.byteOffset + file.length));
  return (dict.dict['7FE00010'].Value as ArrayBuffer[]).map((v) => Buffer.from(v));
}

/** Item header (FFFE,E000) + value. */
function item(value: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt16LE(0xfffe, 0);
  header.writeUInt16LE(0xe000, 2);
  header.writeUInt32LE(value.length, 4);
  return Buffer.concat([header, value]);
}

/**
 * Rebuilds encapsulated Pixel Data by hand: `split` fragments per frame, an optional Basic Offset Table,
 * and an optional Extended Offset Table before it.
 */
async function reencapsulate(file: Buffer, split: number, options: { bot?: boolean; eot?: boolean } = {}): Promise<Buffer> {
  const layout = await scanDicom(bufferSource(file));
  const frames = storedFragments(file);
  const fragmentItems: Buffer[][] = frames.map((frame) => {
    const size = Math.ceil(frame.length / split / 2) * 2;
    const parts: Buffer[] = [];
    for (let at = 0; at < frame.length; at += size) parts.push(item(frame.subarray(at, at + size)));
    return parts;
  });
  const offsets: number[] = [];
  let position = 0;
  for (const parts of fragmentItems) {
    offsets.push(position);
    position += parts.reduce((sum, p) => sum + p.length, 0);
  }
  const bot = Buffer.alloc(options.bot ? offsets.length * 4 : 0);
  offsets.forEach((offset, i) => options.bot && bot.writeUInt32LE(offset, i * 4));
  const pixelHeader = Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x42, 0, 0, 0xff, 0xff, 0xff, 0xff]);
  const delimiter = Buffer.from([0xfe, 0xff, 0xdd, 0xe0, 0, 0, 0, 0]);
  const eot: Buffer[] = [];
  if (options.eot) {
    const ov = (tagElement: number, values: number[]): Buffer => {
      const header = Buffer.from([0xe0, 0x7f, tagElement, 0x00, 0x4f, 0x56, 0, 0, 0, 0, 0, 0]);
      header.writeUInt32LE(values.length * 8, 8);
      const body = Buffer.alloc(values.length * 8);
      values.forEach((v, i) => body.writeBigUInt64LE(BigInt(v), i * 8));
      return Buffer.concat([header, body]);
    };
    eot.push(ov(0x01, offsets), ov(0x02, frames.map((f) => f.length)));
  }
  const pixelTag = (layout.pixelData as NonNullable<DicomLayout['pixelData']>).tagOffset;
  return Buffer.concat([file.subarray(0, pixelTag), ...eot, pixelHeader, item(bot), ...fragmentItems.flat(), delimiter]);
}

describe('element scanner', () => {
  it('finds Pixel Data and the image attributes in every factory syntax', async () => {
    await initCodecs();
    for (const syntax of ALL_SYNTAXES) {
      const { buffer } = instanceIn(syntax);
      const source = bufferSource(buffer);
      const layout = await scanDicom(source, { inflated: false });
      expect(layout.transferSyntax).toBe(syntax);
      if (syntax === TransferSyntax.DeflatedExplicitVRLittleEndian) {
        expect(layout.pixelData).toBeUndefined();
        continue;
      }
      expect(layout.image).toMatchObject({ rows: 8, columns: 12, numberOfFrames: FRAMES, samplesPerPixel: 1 });
      expect(layout.pixelData).toBeDefined();
      expect(buffer.readUInt16LE(layout.pixelData!.tagOffset) === 0x7fe0 || buffer.readUInt16BE(layout.pixelData!.tagOffset) === 0x7fe0).toBe(true);
    }
  });

  it('skips sequences of undefined length, even with Pixel Data inside an item', async () => {
    const icon = { vr: 'SQ', Value: [{ '00280010': { vr: 'US', Value: [2] }, '7FE00010': { vr: 'OB', Value: [new Uint8Array([1, 2, 3, 4]).buffer] } }] };
    const { buffer } = buildInstance({ extraElements: { '00880200': icon }, Rows: 4, Columns: 4 });
    const layout = await scanDicom(bufferSource(buffer));
    expect(layout.image.rows).toBe(4);
    expect(layout.pixelData?.length).toBe(32);
    expect(buffer.subarray(layout.pixelData!.valueOffset).length).toBe(32);
  });

  it('reads a stream only up to Pixel Data', async () => {
    const { buffer } = buildInstance({ Rows: 256, Columns: 256 });
    let pulled = 0;
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let at = 0; at < buffer.length; at += 1000) {
        pulled += 1;
        yield buffer.subarray(at, at + 1000);
      }
    }
    const head = await scanStreamHead(chunks());
    expect(head.complete).toBe(false);
    expect(head.layout.pixelData?.length).toBe(256 * 256 * 2);
    expect(head.head.length).toBeGreaterThanOrEqual(head.layout.pixelData!.tagOffset);
    expect(pulled).toBeLessThan(10);
    const deflated = buildInstance({ transferSyntax: TransferSyntax.DeflatedExplicitVRLittleEndian });
    const whole = await scanStreamHead(Readable.from([deflated.buffer.subarray(0, 500), deflated.buffer.subarray(500)]));
    expect(whole.complete).toBe(true);
    expect(whole.head.equals(deflated.buffer)).toBe(true);
  });

  it('rejects what is not DICOM', async () => {
    await expect(scanDicom(bufferSource(Buffer.alloc(300)))).rejects.toBeInstanceOf(DicomScanError);
  });
});

describe('frames', () => {
  let dir: string;
  beforeAll(async () => {
    await initCodecs();
    dir = mkdtempSync(join(tmpdir(), 'pixel-data-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function stored(file: Buffer, name: string, frame: number): Promise<Buffer> {
    const path = join(dir, name);
    writeFileSync(path, file);
    return (await readStoredFrame(path, path, frame)).bytes;
  }

  it.each(NATIVE_FACTORY_SYNTAXES.filter((s) => s !== TransferSyntax.RLELossless))('cuts native frames of %s byte for byte', async (syntax) => {
    const generated = instanceIn(syntax);
    for (let frame = 0; frame < FRAMES; frame++) {
      const raw = await stored(generated.buffer, `native-${syntax}`, frame);
      expect(nativeFrameToLittleEndian(raw, syntax, 16).equals(frameOf(generated.pixels, frame, FRAMES))).toBe(true);
    }
    await expect(stored(generated.buffer, `native-${syntax}`, FRAMES)).rejects.toBeInstanceOf(PixelDataError);
  });

  it.each(['1.2.840.10008.1.2.5', ...CODEC_FACTORY_SYNTAXES] as TransferSyntaxUid[])('cuts encapsulated frames of %s as stored', async (syntax) => {
    const generated = instanceIn(syntax);
    const fragments = storedFragments(generated.buffer);
    expect(fragments).toHaveLength(FRAMES);
    for (let frame = 0; frame < FRAMES; frame++) {
      expect((await stored(generated.buffer, `enc-${syntax}`, frame)).equals(fragments[frame])).toBe(true);
    }
  });

  it.each([
    // RLE has no start marker: only the table can tell its frames apart
    ['a Basic Offset Table', TransferSyntax.RLELossless, { bot: true }],
    ['an Extended Offset Table that does not fit (ignored)', TransferSyntax.JPEGLSLossless, { eot: true }],
    ['no table (codestream markers)', TransferSyntax.JPEGLSLossless, {}],
  ] as const)('joins several fragments per frame with %s', async (_name, syntax, options) => {
    const generated = instanceIn(syntax, { Rows: 32, Columns: 32 });
    const frames = storedFragments(generated.buffer);
    const file = await reencapsulate(generated.buffer, 3, options);
    const source = bufferSource(file);
    const index = await indexFrames(source, await scanDicom(source));
    expect(index.frames.map((f) => f.ranges.length)).toEqual([3, 3, 3]);
    for (let frame = 0; frame < FRAMES; frame++) expect((await readFrame(source, index, frame)).equals(frames[frame])).toBe(true);
  });

  it('refuses RLE frames it cannot tell apart', async () => {
    const file = await reencapsulate(instanceIn(TransferSyntax.RLELossless, { Rows: 32, Columns: 32 }).buffer, 2);
    const source = bufferSource(file);
    await expect(indexFrames(source, await scanDicom(source))).rejects.toMatchObject({ status: 500 });
  });

  it('uses the Extended Offset Table when each frame is one fragment', async () => {
    const generated = instanceIn(TransferSyntax.JPEG2000Lossless);
    const file = await reencapsulate(generated.buffer, 1, { eot: true });
    const source = bufferSource(file);
    const layout = await scanDicom(source);
    expect(layout.extendedOffsetTable).toHaveLength(FRAMES);
    const index = await indexFrames(source, layout);
    const frames = storedFragments(generated.buffer);
    for (let frame = 0; frame < FRAMES; frame++) expect((await readFrame(source, index, frame)).equals(frames[frame])).toBe(true);
  });

  it('cuts 1-bit frames that do not start on a byte boundary', async () => {
    // 3 x 3 pixels = 9 bits per frame; bits are packed LSB first
    const bits = [1, 0, 1, 1, 0, 0, 1, 0, 1, /* frame 2 */ 0, 1, 1, 0, 1, 0, 0, 1, 1];
    const packed = Buffer.alloc(Math.ceil(bits.length / 8) + 1);
    bits.forEach((b, i) => (packed[i >> 3] |= b << (i & 7)));
    const layout: DicomLayout = {
      transferSyntax: TransferSyntax.ExplicitVRLittleEndian,
      datasetOffset: 0,
      image: { rows: 3, columns: 3, bitsAllocated: 1, numberOfFrames: 2 },
      pixelData: { tagOffset: 0, valueOffset: 0, length: packed.length, vr: 'OB' },
    };
    const source = bufferSource(packed);
    const index = await indexFrames(source, layout);
    const second = await readFrame(source, index, 1);
    const unpacked = Array.from({ length: 9 }, (_, i) => (second[i >> 3] >> (i & 7)) & 1);
    expect(unpacked).toEqual(bits.slice(9));
    expect(second[1] & 0xfe).toBe(0);
    expect(shiftBits(Buffer.from([0xf0, 0x0f]), 4, 8)).toEqual(Buffer.from([0xff]));
  });

  it('reads frames of a Deflated file', async () => {
    const generated = instanceIn(TransferSyntax.DeflatedExplicitVRLittleEndian);
    expect((await stored(generated.buffer, 'deflated', 2)).equals(frameOf(generated.pixels, 2, FRAMES))).toBe(true);
  });

  it('says 404 for a file without Pixel Data', async () => {
    const generated = buildInstance({});
    const dict = data.DicomMessage.readFile(generated.buffer.buffer.slice(generated.buffer.byteOffset, generated.buffer.byteOffset + generated.buffer.length));
    delete dict.dict['7FE00010'];
    const file = Buffer.from(dict.write());
    await expect(stored(file, 'no-pixels', 0)).rejects.toMatchObject({ status: 404 });
  });
});
