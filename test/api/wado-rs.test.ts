/**
 * WADO-RS against both cores: retrieve (study, series, instance), metadata (JSON, XML, cache, ETag,
 * gzip), frames (every transfer syntax the factory makes, native and encapsulated), bulk data (Range),
 * Accept negotiation, and a diff of the metadata against the reference plugin.
 *
 * Documented differences with the reference plugin (Orthanc 1.10.1 + DICOMweb 1.7), where we follow PS3.18:
 *  - OF/OD/OL/OV values: the plugin answers {"vr":"OF","Value":[0]} (a number, wrong per F.2.7);
 *    we answer InlineBinary (small values) or a BulkDataURI (above 1 KiB).
 *  - Encapsulated (compressed) Pixel Data: the plugin leaves (7FE0,0010) out of the metadata; we give
 *    its BulkDataURI, as for native Pixel Data.
 *  - Object keys: the plugin writes "Value" before "vr"; we write "vr" first (key order is not significant).
 */
import request from 'supertest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { data } from 'dcmjs';
import { CORE_KINDS, startTestGateway, type CoreKind, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import {
  buildInstance,
  CODEC_FACTORY_SYNTAXES,
  initCodecs,
  makeNonImage,
  makePdf,
  makeStudy,
  NATIVE_FACTORY_SYNTAXES,
  readInstance,
  TransferSyntax,
  type GeneratedInstance,
  type GeneratedStudy,
  type TransferSyntaxUid,
} from '../helpers/dicom-factory';
import { getMultipartBoundary, parseMultipart } from '../../src/dicom/multipart-parser';

const ELE = TransferSyntax.ExplicitVRLittleEndian;
const ROOT = '/dicom-web';
const FRAMES = 3;
const LOSSY: ReadonlySet<string> = new Set([TransferSyntax.JPEGBaseline8Bit, TransferSyntax.JPEGLSNearLossless, TransferSyntax.JPEG2000]);
const ALL_SYNTAXES: TransferSyntaxUid[] = [...NATIVE_FACTORY_SYNTAXES, ...CODEC_FACTORY_SYNTAXES];
const FRAME_MEDIA_TYPE: Record<string, string> = {
  [TransferSyntax.RLELossless]: 'image/dicom-rle',
  [TransferSyntax.JPEGBaseline8Bit]: 'image/jpeg',
  [TransferSyntax.JPEGLosslessSV1]: 'image/jpeg',
  [TransferSyntax.JPEGLSLossless]: 'image/jls',
  [TransferSyntax.JPEGLSNearLossless]: 'image/jls',
  [TransferSyntax.JPEG2000Lossless]: 'image/jp2',
  [TransferSyntax.JPEG2000]: 'image/jp2',
};

type Json = Record<string, { vr: string; Value?: unknown[]; BulkDataURI?: string; InlineBinary?: string }>;

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

interface Part {
  headers: Record<string, string>;
  body: Buffer;
}

/** GET with the body as bytes (no decompression: Accept-Encoding is ours to choose). */
async function get(gateway: TestGateway, url: string, headers: Record<string, string> = {}): Promise<RawResponse> {
  const response = await request(gateway.app)
    .get(url)
    .set({ 'Accept-Encoding': 'identity', ...headers })
    .buffer(true)
    .parse((res, done) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => done(null, Buffer.concat(chunks)));
    });
  return { status: response.status, headers: response.headers as Record<string, string>, body: response.body as Buffer };
}

/** GET over a real socket, bytes exactly as sent (supertest would inflate a gzip body). */
async function rawGet(gateway: TestGateway, url: string, headers: Record<string, string>): Promise<RawResponse> {
  const server = http.createServer(gateway.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    return await new Promise<RawResponse>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: url, headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body: Buffer.concat(chunks) }));
          res.on('error', reject);
        })
        .on('error', reject);
    });
  } finally {
    server.close();
  }
}

/** GET over a real socket from a client that stops reading for `pauseMs` after every 2 MiB. */
function pausingGet(port: number, url: string, headers: Record<string, string>, pauseMs: number): Promise<RawResponse> {
  return new Promise<RawResponse>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: url, headers }, (res) => {
        const chunks: Buffer[] = [];
        let sincePause = 0;
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          sincePause += chunk.length;
          if (pauseMs === 0 || sincePause < 2 << 20) return;
          sincePause = 0;
          res.pause();
          setTimeout(() => res.resume(), pauseMs);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

async function partsOf(response: RawResponse): Promise<Part[]> {
  expect(response.headers['content-type']).toMatch(/^multipart\/related/);
  const parts: Part[] = [];
  for await (const part of parseMultipart(Readable.from([response.body]), getMultipartBoundary(response.headers['content-type']))) {
    const chunks: Buffer[] = [];
    for await (const chunk of part.body) chunks.push(chunk as Buffer);
    parts.push({ headers: { ...part.headers }, body: Buffer.concat(chunks) });
  }
  return parts;
}

function jsonOf(response: RawResponse): Json[] {
  return JSON.parse(response.body.toString('utf8')) as Json[];
}

function frameOf(pixels: Buffer, frame: number, frames = FRAMES): Buffer {
  const size = pixels.length / frames;
  return pixels.subarray(frame * size, (frame + 1) * size);
}

function storedFragments(file: Buffer): Buffer[] {
  const dict = data.DicomMessage.readFile(file.buffer.slice(file.byteOffset, file.byteOffset + file.length));
  return (dict.dict['7FE00010'].Value as ArrayBuffer[]).map((v) => Buffer.from(v));
}

function pathOf(instance: GeneratedInstance): string {
  return `${ROOT}/studies/${instance.tags.StudyInstanceUID}/series/${instance.tags.SeriesInstanceUID}/instances/${instance.tags.SOPInstanceUID}`;
}

function float32(count: number): ArrayBuffer {
  return Float32Array.from({ length: count }, (_, i) => i / 3).buffer;
}

/** The same floats as a big endian file holds them (dcmjs writes binary values as given). */
function float32BigEndian(count: number): ArrayBuffer {
  return Uint8Array.from(Buffer.from(float32(count)).swap32()).buffer;
}

/** An instance with every kind of binary value: private OB, large and small OF, a nested icon Pixel Data. */
function binaryRichInstance(seed: string, syntax: TransferSyntaxUid = ELE): GeneratedInstance {
  const floats = syntax === TransferSyntax.ExplicitVRBigEndian ? float32BigEndian : float32;
  return buildInstance({
    seed,
    transferSyntax: syntax,
    NumberOfFrames: 2,
    PatientName: 'Müller^Zoë',
    extraElements: {
      '00090010': { vr: 'LO', Value: ['TESTCREATOR'] },
      '00091001': { vr: 'OB', Value: [new Uint8Array(40).fill(7).buffer] },
      '00660016': { vr: 'OF', Value: [floats(600)] },
      '00640009': { vr: 'OF', Value: [floats(4)] },
      '00880200': {
        vr: 'SQ',
        Value: [
          {
            '00280010': { vr: 'US', Value: [2] },
            '00280011': { vr: 'US', Value: [2] },
            '00280100': { vr: 'US', Value: [8] },
            '7FE00010': { vr: 'OB', Value: [new Uint8Array([1, 2, 3, 4]).buffer] },
          },
        ],
      },
    },
  });
}

const STUDY_UID = '1.2.826.0.1.3680043.8.498.424242';

function syntaxInstance(syntax: TransferSyntaxUid): GeneratedInstance {
  return buildInstance({
    seed: `wado-syntax-${syntax}`,
    StudyInstanceUID: STUDY_UID,
    transferSyntax: syntax,
    NumberOfFrames: FRAMES,
    BitsAllocated: syntax === TransferSyntax.JPEGBaseline8Bit ? 8 : 16,
    BitsStored: syntax === TransferSyntax.JPEGBaseline8Bit ? 8 : 12,
    Rows: 8,
    Columns: 12,
  });
}

describe.each(CORE_KINDS)('WADO-RS (%s core)', (kind: CoreKind) => {
  let gateway: TestGateway;
  const study = makeStudy({
    seed: `wado-study-${kind}`,
    seriesCount: 2,
    instancesPerSeries: 2,
    seriesOptions: (s) => (s === 1 ? { transferSyntax: TransferSyntax.ImplicitVRLittleEndian } : {}),
  });
  const bySyntax = new Map<string, GeneratedInstance>();
  let rich: GeneratedInstance;
  let richBigEndian: GeneratedInstance;
  // 512 KiB slices (several per read block) and one 5 MiB instance (larger than a block)
  const bigSeries = ((): { big: GeneratedStudy; instances: GeneratedInstance[] } => {
    const big = makeStudy({ seed: `wado-big-series-${kind}`, seriesCount: 1, instancesPerSeries: 24, Rows: 512, Columns: 512 });
    const multiFrame = buildInstance({
      seed: `wado-big-mf-${kind}`,
      PatientID: big.PatientID,
      StudyInstanceUID: big.StudyInstanceUID,
      SeriesInstanceUID: big.series[0].SeriesInstanceUID,
      InstanceNumber: 25,
      NumberOfFrames: 10,
      Rows: 512,
      Columns: 512,
    });
    return { big, instances: [...big.series[0].instances, multiFrame] };
  })();
  const pdfBytes = makePdf('WADO bulk');
  const pdf = makeNonImage({ kind: 'pdf', pdf: pdfBytes, seed: `wado-pdf-${kind}` });

  beforeAll(async () => {
    await initCodecs();
    gateway = await startTestGateway(kind);
    for (const syntax of ALL_SYNTAXES) bySyntax.set(syntax, syntaxInstance(syntax));
    rich = binaryRichInstance(`wado-rich-${kind}`);
    richBigEndian = binaryRichInstance(`wado-rich-be-${kind}`, TransferSyntax.ExplicitVRBigEndian);
    const files = [...study.buffers, ...[...bySyntax.values()].map((i) => i.buffer), rich.buffer, richBigEndian.buffer, pdf];
    for (const buffer of files) await gateway.core.storeInstance({ buffer });
  });
  afterAll(async () => {
    await gateway?.close();
  });

  describe('retrieve instances', () => {
    it('streams a study as multipart/related application/dicom, in Explicit VR Little Endian by default', async () => {
      const response = await get(gateway, `${ROOT}/studies/${study.StudyInstanceUID}`);
      expect(response.status).toBe(200);
      expect(response.headers['content-type']).toMatch(/^multipart\/related; type="application\/dicom"/);
      const parts = await partsOf(response);
      expect(parts).toHaveLength(4);
      const expected = study.series.flatMap((s) => s.instances);
      const sops = parts.map((part) => readInstance(part.body).dataset.SOPInstanceUID).sort();
      expect(sops).toEqual(expected.map((i) => i.tags.SOPInstanceUID).sort());
      for (const part of parts) {
        expect(part.headers['content-type']).toBe(`application/dicom; transfer-syntax=${ELE}`);
        const { meta, dataset } = readInstance(part.body);
        // the implicit VR series is re-encoded
        expect(meta.TransferSyntaxUID).toBe(ELE);
        const source = expected.find((i) => i.tags.SOPInstanceUID === dataset.SOPInstanceUID) as GeneratedInstance;
        expect(Buffer.from((dataset.PixelData as ArrayBuffer[])[0]).equals(source.pixels)).toBe(true);
        expect(part.headers['content-location']).toMatch(
          new RegExp(`^http://[^/]+/dicom-web/studies/${study.StudyInstanceUID}/series/${dataset.SeriesInstanceUID}/instances/${dataset.SOPInstanceUID}$`),
        );
      }
    });

    it('retrieves a series and an instance, as stored with transfer-syntax=*', async () => {
      const series = study.series[1];
      const response = await get(gateway, `${ROOT}/studies/${study.StudyInstanceUID}/series/${series.SeriesInstanceUID}`, {
        Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*',
      });
      expect(response.status).toBe(200);
      const parts = await partsOf(response);
      expect(parts.map((p) => p.body)).toEqual(expect.arrayContaining(series.instances.map((i) => i.buffer)));
      expect(parts[0].headers['content-type']).toBe(`application/dicom; transfer-syntax=${TransferSyntax.ImplicitVRLittleEndian}`);

      const one = series.instances[0];
      const single = await get(gateway, pathOf(one), { Accept: 'multipart/related; type=application/dicom; transfer-syntax=*' });
      const [part] = await partsOf(single);
      expect(part.body.equals(one.buffer)).toBe(true);
    });

    it('answers a single instance as application/dicom when asked', async () => {
      const one = study.series[0].instances[1];
      const response = await get(gateway, pathOf(one), { Accept: 'application/dicom' });
      expect(response.status).toBe(200);
      expect(response.headers['content-type']).toBe(`application/dicom; transfer-syntax=${ELE}`);
      expect(readInstance(response.body).dataset.SOPInstanceUID).toBe(one.tags.SOPInstanceUID);
    });

    it.each(ALL_SYNTAXES)('sends an instance stored in %s in Explicit VR Little Endian by default', async (syntax) => {
      const instance = bySyntax.get(syntax) as GeneratedInstance;
      const [part] = await partsOf(await get(gateway, pathOf(instance)));
      expect(part.headers['content-type']).toBe(`application/dicom; transfer-syntax=${ELE}`);
      const { meta, dataset } = readInstance(part.body);
      expect(meta.TransferSyntaxUID).toBe(ELE);
      const pixels = Buffer.from((dataset.PixelData as ArrayBuffer[])[0]);
      expect(pixels.length).toBe(instance.pixels.length);
      if (!LOSSY.has(syntax)) expect(pixels.equals(instance.pixels)).toBe(true);
    });

    it('passes a compressed syntax through, and says 406 (with the offer) for what it cannot encode', async () => {
      const jpeg = bySyntax.get(TransferSyntax.JPEGBaseline8Bit) as GeneratedInstance;
      const accept = `multipart/related; type="application/dicom"; transfer-syntax=${TransferSyntax.JPEGBaseline8Bit}`;
      const [part] = await partsOf(await get(gateway, pathOf(jpeg), { Accept: accept }));
      expect(part.body.equals(jpeg.buffer)).toBe(true);
      expect(part.headers['content-type']).toBe(`application/dicom; transfer-syntax=${TransferSyntax.JPEGBaseline8Bit}`);

      const native = study.series[0].instances[0];
      const refused = await get(gateway, pathOf(native), { Accept: accept });
      expect(refused.status).toBe(406);
      const body = JSON.parse(refused.body.toString('utf8'));
      expect(body.HttpStatus).toBe(406);
      expect(body.Details).toContain(`transfer-syntax=${ELE}`);
      expect(body.Details).toContain('transfer-syntax=*');
    });

    it('negotiates quoted or unquoted types, lists with q-values and */*', async () => {
      const one = study.series[0].instances[0];
      for (const accept of [
        'multipart/related; type=application/dicom',
        '*/*',
        'application/json;q=0.5, multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1; q=0.9',
        'multipart/related; type="application/dicom"; transfer-syntax="1.2.840.10008.1.2.4.50", multipart/related; type=application/dicom;q=0.2',
      ]) {
        const response = await get(gateway, pathOf(one), { Accept: accept });
        expect([accept, response.status]).toEqual([accept, 200]);
        expect((await partsOf(response))[0].headers['content-type']).toBe(`application/dicom; transfer-syntax=${ELE}`);
      }
      expect((await get(gateway, pathOf(one), { Accept: 'application/json' })).status).toBe(406);
      expect((await get(gateway, pathOf(one), { Accept: 'this is not a media type' })).status).toBe(400);
      // the accept query parameter wins over the header (PS3.18 §8.3.3.1)
      const query = await get(gateway, `${pathOf(one)}?accept=${encodeURIComponent('multipart/related; type="application/dicom"; transfer-syntax=*')}`, {
        Accept: 'application/json',
      });
      expect(query.status).toBe(200);
    });

    it('says 404 in JSON for unknown UIDs and for UIDs under the wrong parent', async () => {
      const [a, b] = study.series;
      const urls = [
        `${ROOT}/studies/1.2.3.4.5`,
        `${ROOT}/studies/${study.StudyInstanceUID}/series/1.2.3.4.5`,
        `${ROOT}/studies/${STUDY_UID}/series/${a.SeriesInstanceUID}`,
        `${ROOT}/studies/${study.StudyInstanceUID}/series/${a.SeriesInstanceUID}/instances/${b.instances[0].tags.SOPInstanceUID}`,
        `${ROOT}/studies/${study.StudyInstanceUID}/series/${a.SeriesInstanceUID}/instances/1.2.3/metadata`,
        `${ROOT}/studies/${study.StudyInstanceUID}/series/${a.SeriesInstanceUID}/instances/1.2.3/frames/1`,
        `${ROOT}/studies/${study.StudyInstanceUID}/series/${a.SeriesInstanceUID}/instances/1.2.3/bulk/7fe00010`,
      ];
      for (const url of urls) {
        const response = await get(gateway, url);
        expect([url, response.status]).toEqual([url, 404]);
        expect(JSON.parse(response.body.toString('utf8'))).toMatchObject({ HttpStatus: 404 });
      }
      expect((await request(gateway.app).delete(`${ROOT}/studies/${study.StudyInstanceUID}/metadata`)).status).toBe(405);
    });

    it('sends a series read in 4 MiB blocks whole after a client left mid-answer, to a fast and a slow client at once', async () => {
      const { big, instances } = bigSeries;
      const series = big.series[0];
      for (const instance of instances) await gateway.core.storeInstance({ buffer: instance.buffer });
      const url = `${ROOT}/studies/${big.StudyInstanceUID}/series/${series.SeriesInstanceUID}`;
      const accept = { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' };
      const server = http.createServer(gateway.app);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const { port } = server.address() as AddressInfo;
        // a client that goes away after 1 MiB of the 17 MiB answer
        const received = await new Promise<number>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port, path: url, headers: accept }, (res) => {
            let bytes = 0;
            res.on('data', (chunk: Buffer) => {
              bytes += chunk.length;
              if (bytes >= 1 << 20) {
                req.destroy();
                resolve(bytes);
              }
            });
            res.on('end', () => reject(new Error('the whole answer came before the client left')));
          });
          req.on('error', () => undefined);
        });
        expect(received).toBeGreaterThanOrEqual(1 << 20);
        // one client reads at once, the other stops for a while after every 2 MiB: what waits in its socket
        // queue must stay intact while the other answer reads files
        const answers = await Promise.all([0, 100].map((pauseMs) => pausingGet(port, url, accept, pauseMs)));
        const expected = new Map(instances.map((i) => [i.tags.SOPInstanceUID, i.buffer]));
        for (const answer of answers) {
          expect(answer.status).toBe(200);
          const parts = await partsOf(answer);
          expect(parts).toHaveLength(instances.length);
          for (const part of parts) {
            const sop = readInstance(part.body).dataset.SOPInstanceUID as string;
            expect([sop, part.body.equals(expected.get(sop) as Buffer)]).toEqual([sop, true]);
            expect(part.headers['content-length']).toBe(String(part.body.length));
          }
        }
      } finally {
        server.close();
      }
    });
  });

  describe('metadata', () => {
    it('answers every instance of a series with absolute bulk data URIs', async () => {
      const series = study.series[0];
      const response = await get(gateway, `${ROOT}/studies/${study.StudyInstanceUID}/series/${series.SeriesInstanceUID}/metadata`, { Host: 'viewer.example:8443' });
      expect(response.status).toBe(200);
      expect(response.headers['content-type']).toBe('application/dicom+json; charset=utf-8');
      const datasets = jsonOf(response);
      expect(datasets.map((d) => d['00080018'].Value?.[0]).sort()).toEqual(series.instances.map((i) => i.tags.SOPInstanceUID).sort());
      const first = datasets.find((d) => d['00080018'].Value?.[0] === series.instances[0].tags.SOPInstanceUID) as Json;
      expect(first['7FE00010']).toEqual({ vr: 'OW', BulkDataURI: `http://viewer.example:8443${pathOf(series.instances[0])}/bulk/7fe00010` });
      expect(first['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Doe^Sample' }] });
      expect(first['00020010']).toBeUndefined();
    });

    it('encodes binary values as bulk data or inline, nested ones with 1-based items', async () => {
      const [dataset] = jsonOf(await get(gateway, `${pathOf(rich)}/metadata`, { Host: 'h' }));
      const base = `http://h${pathOf(rich)}/bulk`;
      expect(dataset['00091001']).toEqual({ vr: 'OB', BulkDataURI: `${base}/00091001` });
      expect(dataset['00660016']).toEqual({ vr: 'OF', BulkDataURI: `${base}/00660016` });
      expect(dataset['00640009']).toEqual({ vr: 'OF', InlineBinary: Buffer.from(float32(4)).toString('base64') });
      const icon = (dataset['00880200'].Value as Json[])[0];
      expect(icon['7FE00010'].BulkDataURI).toBe(`${base}/00880200/1/7fe00010`);
      expect(dataset['00100010'].Value).toEqual([{ Alphabetic: 'Müller^Zoë' }]);

      // every bulk data URI answers the value's bytes
      const bytes = async (uri: string): Promise<Buffer> => (await get(gateway, uri.replace('http://h', ''), { Accept: 'application/octet-stream' })).body;
      expect(await bytes(dataset['00091001'].BulkDataURI as string)).toEqual(Buffer.alloc(40, 7));
      expect(await bytes(dataset['00660016'].BulkDataURI as string)).toEqual(Buffer.from(float32(600)));
      expect(await bytes(icon['7FE00010'].BulkDataURI as string)).toEqual(Buffer.from([1, 2, 3, 4]));
      expect(await bytes(dataset['7FE00010'].BulkDataURI as string)).toEqual(rich.pixels);
    });

    it('keeps big endian values little endian in metadata and bulk data', async () => {
      const [dataset] = jsonOf(await get(gateway, `${pathOf(richBigEndian)}/metadata`));
      expect(dataset['00660016'].BulkDataURI).toBeDefined();
      expect(dataset['00640009'].InlineBinary).toBe(Buffer.from(float32(4)).toString('base64'));
      const ofValue = await get(gateway, `${pathOf(richBigEndian)}/bulk/00660016`, { Accept: 'application/octet-stream' });
      expect(ofValue.body).toEqual(Buffer.from(float32(600)));
      const pixels = await get(gateway, `${pathOf(richBigEndian)}/bulk/7fe00010`, { Accept: 'application/octet-stream' });
      expect(pixels.body.equals(richBigEndian.pixels)).toBe(true);
    });

    it('answers inline binaries in InlineBinary mode, Pixel Data still as bulk data', async () => {
      const inline = await startTestGateway(kind, { DicomWeb: { OtherBinaryMode: 'InlineBinary' } });
      try {
        await inline.core.storeInstance({ buffer: rich.buffer });
        const [dataset] = jsonOf(await get(inline, `${pathOf(rich)}/metadata`));
        expect(dataset['00091001']).toEqual({ vr: 'OB', InlineBinary: Buffer.alloc(40, 7).toString('base64') });
        expect(dataset['00660016'].InlineBinary).toBe(Buffer.from(float32(600)).toString('base64'));
        expect(dataset['7FE00010'].BulkDataURI).toMatch(/\/bulk\/7fe00010$/);
      } finally {
        await inline.close();
      }
    });

    it('answers a study as one array, and multipart XML when asked', async () => {
      const json = jsonOf(await get(gateway, `${ROOT}/studies/${study.StudyInstanceUID}/metadata`));
      expect(json).toHaveLength(4);
      const xml = await get(gateway, `${ROOT}/studies/${study.StudyInstanceUID}/metadata`, { Accept: 'multipart/related; type="application/dicom+xml"' });
      expect(xml.status).toBe(200);
      const parts = await partsOf(xml);
      expect(parts).toHaveLength(4);
      for (const part of parts) {
        expect(part.headers['content-type']).toMatch(/^application\/dicom\+xml/);
        const text = part.body.toString('utf8');
        expect(text).toContain('<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM">');
        expect(text).toMatch(/<DicomAttribute tag="7FE00010" vr="O[BW]" keyword="PixelData"><BulkData uri="http:\/\/[^"]+\/bulk\/7fe00010"\/>/);
      }
    });

    it('serves series metadata from its cache with an ETag, 304 and gzip, and sees changes', async () => {
      const fresh = makeStudy({ seed: `wado-cache-${kind}`, seriesCount: 1, instancesPerSeries: 2 });
      const [series] = fresh.series;
      await gateway.core.storeInstance({ buffer: series.instances[0].buffer });
      const url = `${ROOT}/studies/${fresh.StudyInstanceUID}/series/${series.SeriesInstanceUID}/metadata`;

      const cold = await get(gateway, url, { Host: 'cache.test' });
      expect(cold.status).toBe(200);
      const etag = cold.headers.etag;
      expect(etag).toMatch(/^W\/".+"$/);
      expect(jsonOf(cold)).toHaveLength(1);
      expect((await get(gateway, url, { Host: 'cache.test', 'If-None-Match': etag })).status).toBe(304);

      for (let i = 0; i < 2; i++) {
        // the first answer makes the gzip file for this host, the second sends it as it is
        const gzipped = await rawGet(gateway, url, { Host: 'cache.test', 'Accept-Encoding': 'gzip, deflate' });
        expect(gzipped.headers['content-encoding']).toBe('gzip');
        expect(gzipped.headers.etag).toBe(etag);
        expect(gzipped.body.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
        expect(JSON.parse(gunzipSync(gzipped.body).toString('utf8'))).toEqual(jsonOf(cold));
      }

      // supertest would send a new port each time: the Host is fixed above, since URIs (and ETags) follow it
      // another host name: same content, its own URIs and ETag
      const other = await get(gateway, url, { Host: 'other.example' });
      expect(other.headers.etag).not.toBe(etag);
      expect(other.body.toString('utf8')).toContain('http://other.example/dicom-web/');
      expect(other.body.toString('utf8')).not.toContain('\\u0001');

      if (kind === 'embedded') {
        const folder = join(gateway.config.storageDirectory, 'metadata-cache');
        expect(existsSync(folder)).toBe(true);
        expect(readdirSync(folder).length).toBeGreaterThan(0);
      }

      await gateway.core.storeInstance({ buffer: series.instances[1].buffer });
      const changed = await get(gateway, url, { Host: 'cache.test', 'If-None-Match': etag });
      expect(changed.status).toBe(200);
      expect(changed.headers.etag).not.toBe(etag);
      expect(jsonOf(changed)).toHaveLength(2);
    });

    it('answers one instance, and 406 for a media type it does not offer', async () => {
      const one = study.series[1].instances[0];
      const response = await get(gateway, `${pathOf(one)}/metadata`);
      const [dataset] = jsonOf(response);
      expect(dataset['00080018'].Value).toEqual([one.tags.SOPInstanceUID]);
      // the implicit VR file's Pixel Data is OW, as the plugin says
      expect(dataset['7FE00010'].vr).toBe('OW');
      expect((await get(gateway, `${pathOf(one)}/metadata`, { Accept: 'application/json' })).status).toBe(200);
      expect((await get(gateway, `${pathOf(one)}/metadata`, { Accept: 'image/jpeg' })).status).toBe(406);
    });
  });

  describe('frames', () => {
    it.each(ALL_SYNTAXES)('sends frames of %s as Explicit VR Little Endian octets by default', async (syntax) => {
      const instance = bySyntax.get(syntax) as GeneratedInstance;
      const response = await get(gateway, `${pathOf(instance)}/frames/1,3`);
      expect(response.status).toBe(200);
      expect(response.headers['content-type']).toMatch(/^multipart\/related; type="application\/octet-stream"/);
      const parts = await partsOf(response);
      expect(parts).toHaveLength(2);
      [0, 2].forEach((frame, index) => {
        const part = parts[index];
        expect(part.headers['content-type']).toBe(`application/octet-stream; transfer-syntax=${ELE}`);
        expect(part.headers['content-location']).toMatch(new RegExp(`${pathOf(instance)}/frames/${frame + 1}$`));
        const expected = frameOf(instance.pixels, frame);
        expect(part.body.length).toBe(expected.length);
        if (!LOSSY.has(syntax)) expect(part.body.equals(expected)).toBe(true);
      });
    });

    it.each(Object.keys(FRAME_MEDIA_TYPE))('passes compressed frames of %s through in their media type', async (syntax) => {
      const instance = bySyntax.get(syntax) as GeneratedInstance;
      const mediaType = FRAME_MEDIA_TYPE[syntax];
      const fragments = storedFragments(instance.buffer);
      const response = await get(gateway, `${pathOf(instance)}/frames/2,3`, { Accept: `multipart/related; type="${mediaType}"` });
      expect(response.status).toBe(200);
      const parts = await partsOf(response);
      expect(parts[0].headers['content-type']).toBe(`${mediaType}; transfer-syntax=${syntax}`);
      expect(parts[0].body.equals(fragments[1])).toBe(true);
      expect(parts[1].body.equals(fragments[2])).toBe(true);

      const asStored = await partsOf(await get(gateway, `${pathOf(instance)}/frames/1`, { Accept: 'multipart/related; type=application/octet-stream; transfer-syntax=*' }));
      expect(asStored[0].headers['content-type']).toBe(`application/octet-stream; transfer-syntax=${syntax}`);
      expect(asStored[0].body.equals(fragments[0])).toBe(true);

      const single = await get(gateway, `${pathOf(instance)}/frames/3`, { Accept: mediaType });
      expect(single.headers['content-type']).toBe(`${mediaType}; transfer-syntax=${syntax}`);
      expect(single.body.equals(fragments[2])).toBe(true);
    });

    it('refuses a compressed media type for native frames, and another compressed syntax', async () => {
      const native = bySyntax.get(ELE) as GeneratedInstance;
      const refused = await get(gateway, `${pathOf(native)}/frames/1`, { Accept: 'multipart/related; type="image/jpeg"' });
      expect(refused.status).toBe(406);
      expect(JSON.parse(refused.body.toString('utf8')).Details).toContain('application/octet-stream');
      const jls = bySyntax.get(TransferSyntax.JPEGLSLossless) as GeneratedInstance;
      const other = await get(gateway, `${pathOf(jls)}/frames/1`, { Accept: `multipart/related; type="image/jls"; transfer-syntax=${TransferSyntax.JPEGLSNearLossless}` });
      expect(other.status).toBe(406);
    });

    it('checks the frame list: 0 or not a number is 400, beyond NumberOfFrames is 404', async () => {
      const instance = bySyntax.get(ELE) as GeneratedInstance;
      for (const list of ['0', 'x', '1,,2', '-1', '1.5']) expect([list, (await get(gateway, `${pathOf(instance)}/frames/${list}`)).status]).toEqual([list, 400]);
      expect((await get(gateway, `${pathOf(instance)}/frames/${FRAMES + 1}`)).status).toBe(404);
      expect((await get(gateway, `${pathOf(instance)}/frames/1,${FRAMES + 1}`)).status).toBe(404);
      const pdfUids = readInstance(pdf).dataset;
      const noPixels = `${ROOT}/studies/${pdfUids.StudyInstanceUID}/series/${pdfUids.SeriesInstanceUID}/instances/${pdfUids.SOPInstanceUID}/frames/1`;
      expect((await get(gateway, noPixels)).status).toBe(404);
    });
  });

  describe('bulk data', () => {
    it('answers Pixel Data as multipart octets by default, a single part when asked, with ranges', async () => {
      const instance = bySyntax.get(TransferSyntax.ExplicitVRBigEndian) as GeneratedInstance;
      const url = `${pathOf(instance)}/bulk/7fe00010`;
      const multipart = await partsOf(await get(gateway, url));
      expect(multipart).toHaveLength(1);
      expect(multipart[0].headers['content-type']).toBe(`application/octet-stream; transfer-syntax=${ELE}`);
      expect(multipart[0].body.equals(instance.pixels)).toBe(true);

      const single = await get(gateway, url, { Accept: 'application/octet-stream' });
      expect(single.status).toBe(200);
      expect(single.headers['accept-ranges']).toBe('bytes');
      expect(single.body.equals(instance.pixels)).toBe(true);

      const frameSize = instance.pixels.length / FRAMES;
      const ranged = await get(gateway, url, { Accept: 'application/octet-stream', Range: `bytes=${frameSize - 10}-${frameSize + 9}` });
      expect(ranged.status).toBe(206);
      expect(ranged.headers['content-range']).toBe(`bytes ${frameSize - 10}-${frameSize + 9}/${instance.pixels.length}`);
      expect(ranged.body.equals(instance.pixels.subarray(frameSize - 10, frameSize + 10))).toBe(true);
      const suffix = await get(gateway, url, { Accept: 'application/octet-stream', Range: 'bytes=-6' });
      expect(suffix.body.equals(instance.pixels.subarray(-6))).toBe(true);
      const beyond = await get(gateway, url, { Accept: 'application/octet-stream', Range: `bytes=${instance.pixels.length}-` });
      expect(beyond.status).toBe(416);
      expect(beyond.headers['content-range']).toBe(`bytes */${instance.pixels.length}`);
    });

    it('answers compressed Pixel Data decoded, or frame by frame in its media type', async () => {
      const instance = bySyntax.get(TransferSyntax.RLELossless) as GeneratedInstance;
      const url = `${pathOf(instance)}/bulk/7fe00010`;
      const decoded = await get(gateway, url, { Accept: 'application/octet-stream', Range: 'bytes=4-11' });
      expect(decoded.status).toBe(206);
      expect(decoded.body.equals(instance.pixels.subarray(4, 12))).toBe(true);
      const parts = await partsOf(await get(gateway, url, { Accept: 'multipart/related; type="image/dicom-rle"' }));
      expect(parts.map((p) => p.body)).toEqual(storedFragments(instance.buffer));
    });

    it('answers other bulk data, and 404 for a tag that is not there or not binary', async () => {
      const pdfUids = readInstance(pdf).dataset;
      const base = `${ROOT}/studies/${pdfUids.StudyInstanceUID}/series/${pdfUids.SeriesInstanceUID}/instances/${pdfUids.SOPInstanceUID}`;
      const document = await get(gateway, `${base}/bulk/00420011`, { Accept: 'application/octet-stream' });
      expect(document.status).toBe(200);
      expect(document.body.subarray(0, pdfBytes.length).equals(pdfBytes)).toBe(true);
      const [part] = await partsOf(await get(gateway, `${base}/bulk/00420011`));
      expect(part.headers['content-location']).toMatch(/\/bulk\/00420011$/);
      expect(part.body.equals(document.body)).toBe(true);
      expect((await get(gateway, `${base}/bulk/00091001`)).status).toBe(404);
      expect((await get(gateway, `${base}/bulk/00100010`)).status).toBe(404);
      expect((await get(gateway, `${pathOf(rich)}/bulk/00880200/2/7fe00010`)).status).toBe(404);
      expect((await get(gateway, `${pathOf(rich)}/bulk/00880200/0/7fe00010`)).status).toBe(400);
      expect((await get(gateway, `${pathOf(rich)}/bulk/not-a-tag`)).status).toBe(400);
    });
  });
});

describe('metadata compared with the reference plugin', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;

  beforeAll(async () => {
    await initCodecs();
    gateway = await startTestGateway('embedded');
    orthanc = await startOrthanc({ dicomWeb: true });
  });
  afterAll(async () => {
    await gateway?.close();
    await orthanc?.stop();
  });

  /** Sorted keys, so that key order (not significant in JSON) does not count. */
  function canonical(value: unknown): unknown {
    if (Array.isArray(value)) return value.map(canonical);
    if (value && typeof value === 'object') {
      return Object.fromEntries(Object.keys(value).sort().map((key) => [key, canonical((value as Record<string, unknown>)[key])]));
    }
    return value;
  }

  it('gives the same data sets, but for the documented differences', async () => {
    const files: Array<[string, Buffer]> = [
      ['implicit VR, private, OF, nested icon', binaryRichInstance('plugin-rich', TransferSyntax.ImplicitVRLittleEndian).buffer],
      ['big endian', binaryRichInstance('plugin-rich-be', TransferSyntax.ExplicitVRBigEndian).buffer],
      ['JPEG-LS', buildInstance({ seed: 'plugin-jls', transferSyntax: TransferSyntax.JPEGLSLossless, NumberOfFrames: 2 }).buffer],
      ['PDF', makeNonImage({ kind: 'pdf', seed: 'plugin-pdf' })],
      ['SR', makeNonImage({ kind: 'sr', seed: 'plugin-sr', text: 'Größe: 5 mm' })],
    ];
    const differences: string[] = [];
    for (const [name, file] of files) {
      await gateway.core.storeInstance({ buffer: file });
      await uploadToOrthanc(orthanc.url, file);
      const { dataset } = readInstance(file);
      const path = `studies/${dataset.StudyInstanceUID}/series/${dataset.SeriesInstanceUID}/metadata`;
      const ours = jsonOf(await get(gateway, `${ROOT}/${path}`, { Host: 'gateway.test' }))[0];
      const answer = await fetch(`${orthanc.url}/dicom-web/${path}`);
      expect(answer.status).toBe(200);
      const text = (await answer.text()).split(`${orthanc.url}/dicom-web/`).join('http://gateway.test/dicom-web/');
      const theirs = (JSON.parse(text) as Json[])[0];
      for (const tag of new Set([...Object.keys(ours), ...Object.keys(theirs)])) {
        if (JSON.stringify(canonical(ours[tag])) !== JSON.stringify(canonical(theirs[tag]))) differences.push(`${name} ${tag}`);
      }
    }
    expect(differences.sort()).toEqual(
      [
        // OF values: the plugin writes a number ([0]), PS3.18 F.2.7 wants InlineBinary or a BulkDataURI
        'implicit VR, private, OF, nested icon 00640009',
        'implicit VR, private, OF, nested icon 00660016',
        'big endian 00640009',
        'big endian 00660016',
        // compressed Pixel Data: the plugin leaves it out, we give its BulkDataURI
        'JPEG-LS 7FE00010',
      ].sort(),
    );
  });
});
