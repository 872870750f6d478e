import request from 'supertest';
import sharp from 'sharp';
import { buildInstance, makeNonImage, newUid, patternValue, type PixelLayout } from '../helpers/dicom-factory';
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
