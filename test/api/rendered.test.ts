import request from 'supertest';
import sharp from 'sharp';
import { buildInstance, initCodecs, makeNonImage, newUid, patternValue, TransferSyntax, type InstanceOptions, type PixelLayout } from '../helpers/dicom-factory';
import { startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { CORE_KINDS, startTestGateway, type CoreKind, type TestGateway } from '../helpers/test-gateway';

jest.setTimeout(60_000);

/** PS3.3 C.11.2.1.2.1 linear VOI function (0..255). */
function linear(x: number, c: number, w: number): number {
  if (x <= c - 0.5 - (w - 1) / 2) return 0;
  if (x > c - 0.5 + (w - 1) / 2) return 255;
  return Math.round(((x - (c - 0.5)) / (w - 1) + 0.5) * 255);
}

function binaryParser(res: NodeJS.ReadableStream, callback: (error: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (chunk: Buffer) => chunks.push(chunk));
  res.on('end', () => callback(null, Buffer.concat(chunks)));
}

async function greyPixels(png: Buffer): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(png).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

describe.each(CORE_KINDS)('WADO-RS rendered (%s core)', (kind: CoreKind) => {
  let gw: TestGateway;
  const study = newUid();
  const series = newUid();
  const image = buildInstance({ StudyInstanceUID: study, SeriesInstanceUID: series, BitsAllocated: 16, NumberOfFrames: 2, RescaleSlope: 2, RescaleIntercept: -10, Rows: 32, Columns: 32 });
  const sop = image.tags.SOPInstanceUID;
  const pdfSeries = newUid();
  const pdfSop = newUid();
  const pdf = makeNonImage({ kind: 'pdf', StudyInstanceUID: study, SeriesInstanceUID: pdfSeries, SOPInstanceUID: pdfSop });
  const base = `/dicom-web/studies/${study}/series/${series}/instances/${sop}`;
  const layout: PixelLayout = { Rows: 32, Columns: 32, BitsAllocated: 16, BitsStored: 16, PixelRepresentation: 0, SamplesPerPixel: 1 };

  beforeAll(async () => {
    gw = await startTestGateway(kind);
    await gw.core.storeInstance({ buffer: image.buffer });
    await gw.core.storeInstance({ buffer: pdf });
  });
  afterAll(async () => gw?.close());

  it('renders an instance as JPEG by default', async () => {
    const res = await request(gw.app).get(`${base}/rendered`).buffer(true).parse(binaryParser);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^image\/jpeg/);
    expect((res.body as Buffer).subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
  });

  it('applies window and rescale exactly (PNG, frame 2)', async () => {
    const res = await request(gw.app).get(`${base}/frames/2/rendered?window=3000,4000,linear`).set('Accept', 'image/png').buffer(true).parse(binaryParser);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^image\/png/);
    const { data, width } = await greyPixels(res.body as Buffer);
    expect(width).toBe(32);
    let mismatches = 0;
    for (let i = 0; i < 32 * 32; i++) {
      if (data[i] !== linear(patternValue(layout, 1, Math.floor(i / 32), i % 32) * 2 - 10, 3000, 4000)) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  it.each(['', `/series/${series}`])('renders study/series level%s as the first instance', async (level) => {
    const res = await request(gw.app).get(`/dicom-web/studies/${study}${level}/rendered`).set('Accept', 'image/gif').buffer(true).parse(binaryParser);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^image\/gif/);
  });

  it('serves thumbnails within 128x128, or a viewport', async () => {
    const res = await request(gw.app).get(`${base}/thumbnail?viewport=16,8`).set('Accept', 'image/png').buffer(true).parse(binaryParser);
    expect(res.status).toBe(200);
    expect((await greyPixels(res.body as Buffer)).width).toBe(8);
    const again = await request(gw.app).get(`/dicom-web/studies/${study}/series/${series}/thumbnail`).buffer(true).parse(binaryParser);
    expect(again.status).toBe(200);
    const meta = await sharp(again.body as Buffer).metadata();
    expect(Math.max(meta.width ?? 0, meta.height ?? 0)).toBeLessThanOrEqual(128);
  });

  it('renders a list of frames as an animated GIF, and nothing else', async () => {
    const res = await request(gw.app).get(`${base}/frames/2,1/rendered?window=3000,4000,linear`).buffer(true).parse(binaryParser);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^image\/gif/);
    const meta = await sharp(res.body as Buffer, { animated: true }).metadata();
    expect([meta.pages, meta.width, meta.pageHeight]).toEqual([2, 32, 32]);
    // the first page is frame 2: its pixels follow the frame's values through the window
    const { data } = await sharp(res.body as Buffer, { page: 0 }).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
    const expected = Array.from({ length: 32 }, (_, c) => linear(patternValue(layout, 1, 0, c) * 2 - 10, 3000, 4000));
    const firstRow = [...data.subarray(0, 32)];
    expect(Math.max(...firstRow.map((v, c) => Math.abs(v - expected[c])))).toBeLessThanOrEqual(2);
    expect((await request(gw.app).get(`${base}/frames/1,2/rendered`).set('Accept', 'image/jpeg')).status).toBe(406);
    expect((await request(gw.app).get(`${base}/frames/1,3/rendered`)).status).toBe(400);
    expect((await request(gw.app).get(`${base}/frames/1,,2/rendered`)).status).toBe(400);
  });

  it.each([
    ['window=1', 400],
    ['window=10,0,linear', 400],
    ['window=10,10,cubic', 400],
    ['viewport=0,10', 400],
    ['quality=0', 400],
  ])('answers %s with %i', async (query, status) => {
    const res = await request(gw.app).get(`${base}/rendered?${query}`);
    expect(res.status).toBe(status);
    expect(res.body.HttpStatus).toBe(status);
  });

  it('answers 406 for a non-image or an unsupported Accept, 404 for unknown UIDs, 400 for a bad frame', async () => {
    expect((await request(gw.app).get(`/dicom-web/studies/${study}/series/${pdfSeries}/instances/${pdfSop}/rendered`)).status).toBe(406);
    expect((await request(gw.app).get(`${base}/rendered`).set('Accept', 'application/pdf')).status).toBe(406);
    expect((await request(gw.app).get(`/dicom-web/studies/${study}/series/${series}/instances/${newUid()}/rendered`)).status).toBe(404);
    expect((await request(gw.app).get(`/dicom-web/studies/${newUid()}/rendered`)).status).toBe(404);
    expect((await request(gw.app).get(`${base}/frames/3/rendered`)).status).toBe(400);
    expect((await request(gw.app).get(`${base}/frames/x/rendered`)).status).toBe(400);
  });
});

describe.each(CORE_KINDS)('WADO-RS thumbnails after a file changes (%s core)', (kind: CoreKind) => {
  it('renders the new file, not the cached thumbnail of the deleted one', async () => {
    const gw = await startTestGateway(kind);
    try {
      const uids = { StudyInstanceUID: newUid(), SeriesInstanceUID: newUid(), SOPInstanceUID: newUid() };
      const thumbnail = async (): Promise<Buffer> => {
        const res = await request(gw.app).get(`/dicom-web/studies/${uids.StudyInstanceUID}/series/${uids.SeriesInstanceUID}/thumbnail`).set('Accept', 'image/png').buffer(true).parse(binaryParser);
        expect(res.status).toBe(200);
        return (await greyPixels(res.body as Buffer)).data;
      };
      const first = await gw.core.storeInstance({ buffer: buildInstance({ ...uids, BitsAllocated: 8, Rows: 8, Columns: 8 }).buffer });
      const before = await thumbnail();
      expect(new Set(before).size).toBeGreaterThan(1);
      await gw.core.deleteResource('Instance', first.ID);
      // the same UIDs (so the same Orthanc id), a flat image this time
      await gw.core.storeInstance({ buffer: buildInstance({ ...uids, BitsAllocated: 8, Rows: 8, Columns: 8, pixelData: new Uint8Array(64).fill(7) }).buffer });
      const after = await thumbnail();
      expect(new Set(after).size).toBe(1);
    } finally {
      await gw.close();
    }
  });
});

/*
 * Against the reference plugin (Orthanc 1.10.1 + DICOMweb 1.7) on the same files: equal pixels wherever both follow
 * PS3.3. Deliberate differences, not compared here: without `window`, a file's own Window Center/Width is used
 * (PS3.18 §8.3.5.1.4; the plugin stretches min/max instead), viewports are resampled by another filter, and
 * native YBR_FULL and JPEG 2000 are rendered (Debian's Orthanc answers 400: no such decoder).
 */
describe('WADO-RS rendered pixels equal the reference plugin\'s', () => {
  let gw: TestGateway;
  let orthanc: OrthancProcess;
  beforeAll(async () => {
    await initCodecs();
    [gw, orthanc] = await Promise.all([startTestGateway('embedded'), startOrthanc({ dicomWeb: true })]);
  });
  afterAll(async () => {
    await gw?.close();
    await orthanc?.stop();
  });

  const grey16 = { BitsAllocated: 16, Rows: 32, Columns: 32 } as const;
  it.each<[string, InstanceOptions, string, number]>([
    ['16-bit with rescale, min/max window', { ...grey16, RescaleSlope: 2, RescaleIntercept: -100 }, '/rendered', 0],
    ['16-bit with rescale, linear window asked', { ...grey16, RescaleSlope: 2, RescaleIntercept: -100 }, '/rendered?window=3000,5000,linear', 0],
    ['16-bit, sigmoid window asked', grey16, '/rendered?window=1000,1500,sigmoid', 0],
    ['signed 12-bit', { BitsAllocated: 16, BitsStored: 12, PixelRepresentation: 1, Rows: 64, Columns: 64 }, '/rendered', 0],
    ['12-bit CT with rescale, window asked (through a table of every stored value)', { BitsAllocated: 16, BitsStored: 12, Rows: 128, Columns: 128, RescaleSlope: 1, RescaleIntercept: -1024 }, '/rendered?window=1024,4096,linear', 0],
    ['8-bit MONOCHROME1', { BitsAllocated: 8, PhotometricInterpretation: 'MONOCHROME1', Rows: 32, Columns: 32 }, '/rendered', 0],
    ['8-bit MONOCHROME1, window asked', { BitsAllocated: 8, PhotometricInterpretation: 'MONOCHROME1', Rows: 32, Columns: 32 }, '/rendered?window=100,120,linear', 0],
    ['frame 2 of 3', { ...grey16, NumberOfFrames: 3 }, '/frames/2/rendered', 0],
    ['RGB', { SamplesPerPixel: 3, Rows: 32, Columns: 32 }, '/rendered', 0],
    ['RLE greyscale', { ...grey16, transferSyntax: TransferSyntax.RLELossless }, '/rendered', 0],
    ['RLE RGB', { SamplesPerPixel: 3, Rows: 32, Columns: 32, transferSyntax: TransferSyntax.RLELossless }, '/rendered', 0],
    ['JPEG baseline', { BitsAllocated: 8, Rows: 32, Columns: 32, transferSyntax: TransferSyntax.JPEGBaseline8Bit }, '/rendered', 2],
    ['JPEG-LS lossless', { ...grey16, transferSyntax: TransferSyntax.JPEGLSLossless }, '/rendered', 1],
    ['JPEG lossless (process 14)', { ...grey16, transferSyntax: TransferSyntax.JPEGLosslessSV1 }, '/rendered', 1],
  ])('%s', async (_name, options, suffix, tolerance) => {
    const instance = buildInstance({ ...options, StudyInstanceUID: newUid(), SeriesInstanceUID: newUid() });
    await gw.core.storeInstance({ buffer: instance.buffer });
    await uploadToOrthanc(orthanc.url, instance.buffer);
    const { StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID } = instance.tags;
    const path = `/dicom-web/studies/${StudyInstanceUID}/series/${SeriesInstanceUID}/instances/${SOPInstanceUID}${suffix}`;
    const ours = await request(gw.app).get(path).set('Accept', 'image/png').buffer(true).parse(binaryParser);
    const theirs = await fetch(orthanc.url + path, { headers: { accept: 'image/png' } });
    expect([ours.status, theirs.status]).toEqual([200, 200]);
    const rgb = async (png: Buffer): Promise<{ data: Buffer; width: number; height: number }> => {
      const { data, info } = await sharp(png).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
      return { data, width: info.width, height: info.height };
    };
    const a = await rgb(ours.body as Buffer);
    const b = await rgb(Buffer.from(await theirs.arrayBuffer()));
    expect([a.width, a.height]).toEqual([b.width, b.height]);
    let worst = 0;
    for (let i = 0; i < a.data.length; i++) worst = Math.max(worst, Math.abs(a.data[i] - b.data[i]));
    expect(worst).toBeLessThanOrEqual(tolerance);
    // not a trivial image: the comparison means something
    expect(new Set(a.data).size).toBeGreaterThan(8);
  });

  // both encode the same 8-bit pixels at quality 90 with libjpeg-turbo (its default integer DCT): the JPEG bytes
  // differ (headers, Huffman tables), the decoded pixels do not
  it('JPEG of a 512x512 12-bit CT slice: single-channel, decoded pixels equal to those of the plugin\'s JPEG', async () => {
    const instance = buildInstance({ BitsAllocated: 16, BitsStored: 12, Rows: 512, Columns: 512, RescaleSlope: 1, RescaleIntercept: -1024, StudyInstanceUID: newUid(), SeriesInstanceUID: newUid() });
    await gw.core.storeInstance({ buffer: instance.buffer });
    await uploadToOrthanc(orthanc.url, instance.buffer);
    const { StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID } = instance.tags;
    const path = `/dicom-web/studies/${StudyInstanceUID}/series/${SeriesInstanceUID}/instances/${SOPInstanceUID}/rendered?window=1024,4096,linear`;
    const ours = await request(gw.app).get(path).set('Accept', 'image/jpeg').buffer(true).parse(binaryParser);
    const theirs = await fetch(orthanc.url + path, { headers: { accept: 'image/jpeg' } });
    expect([ours.status, theirs.status]).toEqual([200, 200]);
    // channels: the JPEG's components (1 = a greyscale JPEG, as the plugin writes)
    const decode = async (jpeg: Buffer): Promise<{ data: Buffer; channels: number }> => {
      const { data } = await sharp(jpeg).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
      return { data, channels: (await sharp(jpeg).metadata()).channels ?? 0 };
    };
    const a = await decode(ours.body as Buffer);
    const b = await decode(Buffer.from(await theirs.arrayBuffer()));
    expect([a.channels, b.channels]).toEqual([1, 1]);
    expect(a.data.length).toBe(b.data.length);
    let mismatches = 0;
    for (let i = 0; i < a.data.length; i++) if (a.data[i] !== b.data[i]) mismatches++;
    expect(mismatches).toBe(0);
    expect(new Set(a.data).size).toBeGreaterThan(8);
  });
});
