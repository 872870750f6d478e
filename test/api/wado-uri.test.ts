import request from 'supertest';
import sharp from 'sharp';
import { buildInstance, makeNonImage, newUid, patternValue, TransferSyntax, type PixelLayout } from '../helpers/dicom-factory';
import { CORE_KINDS, startTestGateway, type CoreKind, type TestGateway } from '../helpers/test-gateway';

jest.setTimeout(60_000);

function binaryParser(res: NodeJS.ReadableStream, callback: (error: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (chunk: Buffer) => chunks.push(chunk));
  res.on('end', () => callback(null, Buffer.concat(chunks)));
}

describe.each(CORE_KINDS)('WADO-URI (%s core)', (kind: CoreKind) => {
  let gw: TestGateway;
  const image = buildInstance({ BitsAllocated: 8, PhotometricInterpretation: 'MONOCHROME1', Rows: 20, Columns: 40, transferSyntax: TransferSyntax.ImplicitVRLittleEndian });
  const { StudyInstanceUID: study, SeriesInstanceUID: series, SOPInstanceUID: sop } = image.tags;
  const srSop = newUid();
  const sr = makeNonImage({ kind: 'sr', SOPInstanceUID: srSop });
  const layout: PixelLayout = { Rows: 20, Columns: 40, BitsAllocated: 8, BitsStored: 8, PixelRepresentation: 0, SamplesPerPixel: 1 };
  const wado = (query: string): request.Test => request(gw.app).get(`/wado?${query}`).buffer(true).parse(binaryParser);
  const ids = `studyUID=${study}&seriesUID=${series}&objectUID=${sop}`;

  beforeAll(async () => {
    gw = await startTestGateway(kind);
    await gw.core.storeInstance({ buffer: image.buffer });
    await gw.core.storeInstance({ buffer: sr });
  });
  afterAll(async () => gw?.close());

  it('renders JPEG by default', async () => {
    const res = await wado(`requestType=WADO&${ids}`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^image\/jpeg/);
    expect((res.body as Buffer).subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
  });

  it('applies windowCenter/windowWidth and MONOCHROME1 inversion exactly (PNG)', async () => {
    const res = await wado(`requestType=WADO&objectUID=${sop}&contentType=image/png&windowCenter=100&windowWidth=101`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^image\/png/);
    const { data, info } = await sharp(res.body as Buffer).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([40, 20]);
    const linear = (x: number): number => (x <= 49.5 ? 0 : x > 149.5 ? 255 : Math.round(((x - 99.5) / 100 + 0.5) * 255));
    let mismatches = 0;
    for (let i = 0; i < 800; i++) if (data[i] !== 255 - linear(patternValue(layout, 0, Math.floor(i / 40), i % 40))) mismatches++;
    expect(mismatches).toBe(0);
  });

  it('honours rows/columns, region and GIF', async () => {
    const res = await wado(`requestType=WADO&${ids}&contentType=image/gif&columns=20&region=0,0,0.5,1`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^image\/gif/);
    const meta = await sharp(res.body as Buffer).metadata();
    expect([meta.width, meta.height]).toEqual([20, 20]);
  });

  it('returns the stored file, or transcodes it', async () => {
    const res = await wado(`requestType=WADO&${ids}&contentType=application/dicom`);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/dicom/);
    expect((res.body as Buffer).toString('latin1', 128, 132)).toBe('DICM');
    const ts = await wado(`requestType=WADO&${ids}&contentType=application/dicom&transferSyntax=${TransferSyntax.ExplicitVRLittleEndian}`);
    expect(ts.status).toBe(200);
    expect((ts.body as Buffer).includes(Buffer.from(TransferSyntax.ExplicitVRLittleEndian))).toBe(true);
  });

  it.each([
    ['objectUID=X', 400],
    ['requestType=OTHER&objectUID=X', 400],
    ['requestType=WADO', 400],
    ['requestType=WADO&objectUID=OBJ&anonymize=yes', 400],
    ['requestType=WADO&objectUID=OBJ&windowCenter=1', 400],
    ['requestType=WADO&objectUID=OBJ&windowCenter=1&windowWidth=0', 400],
    ['requestType=WADO&objectUID=OBJ&region=0,0,2,1', 400],
    ['requestType=WADO&objectUID=OBJ&imageQuality=101', 400],
    ['requestType=WADO&objectUID=OBJ&frameNumber=2', 400],
    ['requestType=WADO&objectUID=OBJ&contentType=text/html', 406],
    ['requestType=WADO&objectUID=SR', 400],
    ['requestType=WADO&objectUID=1.2.3.4', 404],
    ['requestType=WADO&objectUID=OBJ&studyUID=1.2.3', 404],
  ])('answers %s with %i', async (query, status) => {
    const res = await request(gw.app).get(`/wado?${query.replace('OBJ', sop).replace('=SR', `=${srSop}`)}`);
    expect(res.status).toBe(status);
    expect(res.body.HttpStatus).toBe(status);
  });
});
