import { gunzipSync } from 'node:zlib';
import request from 'supertest';
import sharp from 'sharp';
import { startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { buildInstance, initCodecs, makeNonImage, readInstance, TransferSyntax as TS, type InstanceOptions } from '../helpers/dicom-factory';

/*
 * The frame and image routes of the embedded core against a real Orthanc 1.10.1, on the same files:
 * /instances/{id}/frames, /frames/{n}/raw(.gz), preview, image-uint8/uint16/int16 (PNG, JPEG, PAM),
 * rendered (window, size, smoothing, quality), matlab, also under /frames/{n}; and /file?transcode.
 * Images are compared pixel by pixel (decoded with sharp), PAM, Matlab and raw frames byte by byte.
 *
 * Deliberate differences (each asserted below against Orthanc's own answer):
 *  - JPEG 2000 is decoded here (dcmjs-codecs); Orthanc 1.10 without a decoder plugin answers 415;
 *  - a bad argument (quality, window-center, width, smooth) is 400 here; Orthanc answers 415 or 404
 *    (its catch-all turns "parameter out of range" into 404 and any other error into 415);
 *  - an Accept that none of PNG/JPEG/PAM satisfies, and JPEG for the 16-bit images, are 406 here
 *    (Orthanc: 404, an empty answer);
 *  - a frame number beyond the last is 404 for every image (Orthanc: 415 on compressed syntaxes);
 *  - raw frames of an instance without Pixel Data are 404, and its matlab 415 (Orthanc: 500);
 *  - /file?transcode=<UID> transcodes as Orthanc 1.12.2 does (to native syntaxes); Orthanc 1.10
 *    ignores the argument and answers the stored file;
 *  - error answers carry an Orthanc-style JSON body
 *    where Orthanc sends an empty one.
 */
const STUDY = '1.2.826.0.1.3680043.8.498.1313';
const LAYOUT: InstanceOptions = { PatientID: 'P-IMAGES', StudyInstanceUID: STUDY, Rows: 24, Columns: 30 };

interface Sample {
  name: string;
  buffer: Buffer;
  frames: number;
}

/** The single fragment of a one-frame encapsulated file split in two items: one frame, two fragments. */
function splitFragment(file: Buffer): Buffer {
  const pixelData = file.lastIndexOf(Buffer.from([0xe0, 0x7f, 0x10, 0x00, 0x4f, 0x42, 0, 0, 0xff, 0xff, 0xff, 0xff]));
  let at = pixelData + 12;
  at += 8 + file.readUInt32LE(at + 4); // Basic Offset Table
  const length = file.readUInt32LE(at + 4);
  const cut = Math.floor(length / 4) * 2; // both halves even-length
  const item = (bytes: Buffer): Buffer => {
    const header = Buffer.from([0xfe, 0xff, 0x00, 0xe0, 0, 0, 0, 0]);
    header.writeUInt32LE(bytes.length, 4);
    return Buffer.concat([header, bytes]);
  };
  const fragment = file.subarray(at + 8, at + 8 + length);
  return Buffer.concat([file.subarray(0, at), item(fragment.subarray(0, cut)), item(fragment.subarray(cut)), file.subarray(at + 8 + length)]);
}

/**
 * Native pixel bytes of pseudo-random values in [low, high] (a fixed LCG): unlike the factory's gradient,
 * they do not scale to whole numbers, so rounding and windowing slips show.
 */
function noise(options: InstanceOptions, low: number, high: number): Buffer {
  const samples = (options.Rows ?? 0) * (options.Columns ?? 0) * (options.SamplesPerPixel ?? 1) * (options.NumberOfFrames ?? 1);
  const wide = options.BitsAllocated === 16;
  const out = Buffer.alloc(samples * (wide ? 2 : 1));
  let state = 12345;
  for (let i = 0; i < samples; i++) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    const value = low + (state % (high - low + 1));
    if (wide) out.writeUInt16LE(value & 0xffff, 2 * i);
    else out[i] = value;
  }
  return out;
}

function samples(): Sample[] {
  const make = (name: string, options: InstanceOptions, range?: [number, number]): Sample => {
    const all = { ...LAYOUT, ...options, seed: `images-${name}`, SeriesDescription: name };
    const pixelData = range ? noise(all, ...range) : undefined;
    return { name, buffer: buildInstance({ ...all, pixelData }).buffer, frames: options.NumberOfFrames ?? 1 };
  };
  return [
    make('u8', { BitsAllocated: 8 }),
    make('u16-12bit', { BitsAllocated: 16, BitsStored: 12 }, [100, 3000]),
    make('s16-rescale-window', { BitsAllocated: 16, BitsStored: 16, PixelRepresentation: 1, RescaleSlope: 2, RescaleIntercept: -100, WindowCenter: 40, WindowWidth: 400 }, [-1500, 2500]),
    make('s12', { BitsAllocated: 16, BitsStored: 12, PixelRepresentation: 1 }),
    make('mono1', { BitsAllocated: 16, BitsStored: 12, PhotometricInterpretation: 'MONOCHROME1', WindowCenter: 2000, WindowWidth: 3000 }, [7, 4000]),
    make('rgb', { SamplesPerPixel: 3, BitsAllocated: 8 }, [0, 255]),
    make('multi', { BitsAllocated: 16, BitsStored: 16, NumberOfFrames: 3 }, [0, 60000]),
    make('big-endian', { BitsAllocated: 16, BitsStored: 16, transferSyntax: TS.ExplicitVRBigEndian }),
    make('implicit', { BitsAllocated: 16, BitsStored: 16, transferSyntax: TS.ImplicitVRLittleEndian }),
    make('deflated', { BitsAllocated: 8, transferSyntax: TS.DeflatedExplicitVRLittleEndian }),
    make('rle-multi', { BitsAllocated: 16, NumberOfFrames: 2, transferSyntax: TS.RLELossless }, [3, 999]),
    make('rle-rgb', { SamplesPerPixel: 3, BitsAllocated: 8, transferSyntax: TS.RLELossless }),
    make('jpeg', { BitsAllocated: 8, transferSyntax: TS.JPEGBaseline8Bit }),
    make('jpeg-ybr', { SamplesPerPixel: 3, BitsAllocated: 8, transferSyntax: TS.JPEGBaseline8Bit }),
    make('jpegls-multi', { BitsAllocated: 16, BitsStored: 12, NumberOfFrames: 2, transferSyntax: TS.JPEGLSLossless }, [50, 4000]),
    make('jpeg-lossless', { BitsAllocated: 16, BitsStored: 12, transferSyntax: TS.JPEGLosslessSV1 }),
    { name: 'jpeg-2-fragments', buffer: splitFragment(make('x', { BitsAllocated: 8, SamplesPerPixel: 3, transferSyntax: TS.JPEGBaseline8Bit, SOPInstanceUID: '1.2.3.13.1' }).buffer), frames: 1 },
  ];
}

interface Answer {
  status: number;
  type: string;
  body: Buffer;
}

function binary(res: NodeJS.ReadableStream & { setEncoding(e: string): void }, done: (error: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (chunk: Buffer) => chunks.push(chunk));
  res.on('end', () => done(null, Buffer.concat(chunks)));
}

/** Pixels of a PNG or JPEG, with what the file says about itself. */
async function decode(body: Buffer): Promise<{ shape: string; values: number[] }> {
  const meta = await sharp(body).metadata();
  const wide = meta.depth === 'ushort';
  const pipeline = sharp(body).toColourspace(meta.channels === 1 ? (wide ? 'grey16' : 'b-w') : wide ? 'rgb16' : 'srgb');
  const { data } = await pipeline.raw(wide ? { depth: 'ushort' } : {}).toBuffer({ resolveWithObject: true });
  const values = wide ? Array.from(new Uint16Array(data.buffer, data.byteOffset, data.length / 2)) : Array.from(data);
  return { shape: `${meta.format} ${meta.width}x${meta.height} ${meta.channels}ch ${meta.depth}`, values };
}

function maxDifference(a: number[], b: number[]): number {
  expect(a.length).toBe(b.length);
  return a.reduce((max, v, i) => Math.max(max, Math.abs(v - b[i])), 0);
}

/** Equal within rounding: no pixel more than 1 apart, and such pixels rare (a systematic rounding slip is not). */
function withinRounding(a: number[], b: number[]): boolean {
  const off = a.filter((v, i) => v !== b[i]).length;
  return maxDifference(a, b) <= 1 && off <= a.length / 100;
}

// many requests to both servers per test: room for a busy CI machine
jest.setTimeout(240_000);

describe('native frame and image routes: same answers as Orthanc 1.10', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;
  const ids = new Map<string, string>();
  let list: Sample[];
  let pdf: string;

  beforeAll(async () => {
    await initCodecs();
    list = samples();
    [gateway, orthanc] = await Promise.all([startTestGateway('embedded'), startOrthanc()]);
    const pdfFile = makeNonImage({ PatientID: 'P-IMAGES', StudyInstanceUID: STUDY, kind: 'pdf', seed: 'images-pdf' });
    for (const { name, buffer } of [...list, { name: 'pdf', buffer: pdfFile }]) {
      const ours = await request(gateway.app).post('/instances').send(buffer);
      const reference = await uploadToOrthanc(orthanc.url, buffer);
      expect(ours.body.ID).toBe(reference.ID);
      ids.set(name, reference.ID);
    }
    pdf = ids.get('pdf') as string;
  });
  afterAll(async () => {
    await gateway?.close();
    await orthanc?.stop();
  });

  async function ours(path: string, accept?: string): Promise<Answer> {
    const call = request(gateway.app).get(path);
    if (accept) call.set('Accept', accept);
    const response = await call.buffer(true).parse(binary);
    return { status: response.status, type: response.headers['content-type'] ?? '', body: response.body as Buffer };
  }

  async function theirs(path: string, accept?: string): Promise<Answer> {
    const response = await fetch(orthanc.url + path, { headers: accept ? { Accept: accept } : {} });
    return { status: response.status, type: response.headers.get('content-type') ?? '', body: Buffer.from(await response.arrayBuffer()) };
  }

  /** Same status and Content-Type; same pixels (PNG/JPEG, at most 1 apart), same bytes otherwise. */
  async function compare(path: string, accept?: string): Promise<Answer> {
    const [a, b] = await Promise.all([ours(path, accept), theirs(path, accept)]);
    expect([path, accept, a.status]).toEqual([path, accept, b.status]);
    if (b.status !== 200) return a;
    expect([path, a.type]).toEqual([path, b.type]);
    if (b.type === 'image/png' || b.type === 'image/jpeg') {
      const [x, y] = await Promise.all([decode(a.body), decode(b.body)]);
      expect([path, x.shape]).toEqual([path, y.shape]);
      expect([path, withinRounding(x.values, y.values)]).toEqual([path, true]);
    } else if (b.type === 'application/gzip') {
      expect(gunzipSync(a.body).equals(gunzipSync(b.body))).toBe(true);
    } else if (b.type.startsWith('application/json')) {
      expect(JSON.parse(a.body.toString())).toEqual(JSON.parse(b.body.toString()));
    } else {
      expect([path, a.body.equals(b.body)]).toEqual([path, true]);
    }
    return a;
  }

  it('lists frames and answers raw frames with Orthanc\'s bytes and Content-Type (native, compressed, multi-fragment)', async () => {
    for (const { name, frames } of list) {
      const id = ids.get(name) as string;
      const listed = await compare(`/instances/${id}/frames`);
      expect(JSON.parse(listed.body.toString())).toEqual(Array.from({ length: frames }, (_, i) => i));
      for (let frame = 0; frame < frames; frame++) {
        const raw = await compare(`/instances/${id}/frames/${frame}/raw`);
        expect(raw.body.length).toBeGreaterThan(0);
        await compare(`/instances/${id}/frames/${frame}/raw.gz`);
      }
      for (const bad of [String(frames), '-1', 'x']) await compare(`/instances/${id}/frames/${bad}/raw`);
    }
    expect((await ours(`/instances/${ids.get('jpeg')}/frames/0/raw`)).type).toBe('image/jpeg');
    expect((await ours(`/instances/${ids.get('jpegls-multi')}/frames/1/raw`)).type).toBe('application/octet-stream');
    const children = JSON.parse((await ours(`/instances/${ids.get('multi')}/frames/1`)).body.toString());
    const reference = JSON.parse((await theirs(`/instances/${ids.get('multi')}/frames/1`)).body.toString()) as string[];
    expect(children).toEqual(reference);
  });

  it('decodes preview, image-uint8/uint16/int16, rendered and matlab as Orthanc, per frame too', async () => {
    for (const { name, frames } of list) {
      const id = ids.get(name) as string;
      const prefixes = [`/instances/${id}`, ...Array.from({ length: frames }, (_, f) => `/instances/${id}/frames/${f}`)];
      for (const prefix of prefixes) {
        for (const route of ['preview', 'image-uint8', 'image-uint16', 'image-int16', 'rendered', 'matlab']) await compare(`${prefix}/${route}`);
      }
      await compare(`/instances/${id}/frames/x/preview`);
    }
    // a few answers that must not be trivially equal: a stretched preview, a windowed MONOCHROME1, RGB
    const preview = await decode((await ours(`/instances/${ids.get('u16-12bit')}/preview`)).body);
    expect(Math.min(...preview.values)).toBe(0);
    expect(Math.max(...preview.values)).toBe(255);
    expect((await decode((await ours(`/instances/${ids.get('rgb')}/preview`)).body)).shape).toBe('png 30x24 3ch uchar');
    expect((await decode((await ours(`/instances/${ids.get('multi')}/image-uint16`)).body)).shape).toBe('png 30x24 1ch ushort');
    expect((await ours(`/instances/${ids.get('s12')}/matlab`)).body.toString()).toMatch(/^double\(\[ -2048 -2032 .* \]\)$/s);
  });

  it('negotiates PNG, JPEG (quality) and PAM as Orthanc', async () => {
    for (const name of ['u8', 's16-rescale-window', 'mono1', 'rgb', 'jpeg-ybr', 'rle-multi', 'jpegls-multi']) {
      const id = ids.get(name) as string;
      for (const accept of ['image/jpeg', 'image/x-portable-arbitrarymap', '*/*', 'image/*', 'image/png;q=0.5, image/jpeg']) {
        await compare(`/instances/${id}/preview`, accept);
        await compare(`/instances/${id}/image-uint8`, accept);
        await compare(`/instances/${id}/rendered`, accept);
      }
      await compare(`/instances/${id}/image-uint16`, 'image/x-portable-arbitrarymap');
      await compare(`/instances/${id}/image-int16`, 'image/x-portable-arbitrarymap');
      await compare(`/instances/${id}/preview?quality=40`, 'image/jpeg');
      await compare(`/instances/${id}/frames/0/rendered?quality=100`, 'image/jpeg');
    }
    const pam = await ours(`/instances/${ids.get('u16-12bit')}/image-uint16`, 'image/x-portable-arbitrarymap');
    expect(pam.body.toString('latin1', 0, 80)).toMatch(/^P7\nWIDTH 30\nHEIGHT 24\nDEPTH 1\nMAXVAL 65535\nTUPLTYPE GRAYSCALE\nENDHDR\n/);
  });

  it('renders with window-center/width, width/height and smooth as Orthanc', async () => {
    for (const name of ['u8', 's16-rescale-window', 'mono1', 'rgb', 'jpeg-ybr', 'multi']) {
      const id = ids.get(name) as string;
      for (const query of ['window-center=100&window-width=50', 'window-width=0.5', 'window-center=-20.5&window-width=1000', 'width=13', 'height=50', 'width=60&height=10', 'width=10&smooth=1', 'height=7&smooth=true&window-center=0&window-width=300', 'width=0']) {
        await compare(`/instances/${id}/rendered?${query}`);
        await compare(`/instances/${id}/frames/0/rendered?${query}`, 'image/jpeg');
      }
    }
    const small = await decode((await ours(`/instances/${ids.get('u8')}/rendered?width=15`)).body);
    expect(small.shape).toBe('png 15x12 1ch uchar');
  });

  it('decodes JPEG 2000, which Orthanc 1.10 cannot: the same pixels as Orthanc gives for the native file', async () => {
    const layout: InstanceOptions = { ...LAYOUT, BitsAllocated: 16, BitsStored: 12, NumberOfFrames: 2 };
    const j2k = buildInstance({ ...layout, seed: 'images-j2k', transferSyntax: TS.JPEG2000Lossless }).buffer;
    const native = buildInstance({ ...layout, seed: 'images-j2k-native' }).buffer;
    const j2kId = (await request(gateway.app).post('/instances').send(j2k)).body.ID as string;
    await uploadToOrthanc(orthanc.url, j2k);
    const nativeId = (await uploadToOrthanc(orthanc.url, native)).ID;
    expect((await theirs(`/instances/${j2kId}/preview`)).status).toBe(415);
    for (const route of ['frames/1/preview', 'frames/1/image-uint16', 'frames/0/rendered?width=12', 'frames/1/matlab']) {
      const [a, b] = await Promise.all([ours(`/instances/${j2kId}/${route}`), theirs(`/instances/${nativeId}/${route}`)]);
      expect([route, a.status]).toEqual([route, 200]);
      if (route.endsWith('matlab')) expect(a.body.equals(b.body)).toBe(true);
      else expect(maxDifference((await decode(a.body)).values, (await decode(b.body)).values)).toBe(0);
    }
    await compare(`/instances/${j2kId}/frames/1/raw`);
    expect((await ours(`/instances/${j2kId}/frames/1/raw`)).type).toBe('image/jp2');
  });

  it('answers errors: the same status as Orthanc, or the documented one', async () => {
    const u8 = ids.get('u8') as string;
    const unknown = '00000000-00000000-00000000-00000000-00000000';
    for (const path of [`/instances/${unknown}/frames`, `/instances/${unknown}/frames/0/raw`, `/instances/${unknown}/preview`, `/instances/${unknown}/frames/0/rendered`, `/instances/${unknown}/matlab`]) {
      await compare(path);
    }
    for (const route of ['preview', 'image-uint8', 'rendered', 'frames/0/image-int16']) await compare(`/instances/${pdf}/${route}`);
    for (const route of ['image-uint8', 'image-uint16', 'image-int16']) await compare(`/instances/${ids.get('rgb')}/${route}`);
    await compare(`/instances/${u8}/frames/1/preview`);
    // deliberate differences: [path, accept, ours, Orthanc 1.10]
    const differences: Array<[string, string | undefined, number, number]> = [
      [`/instances/${u8}/preview?quality=0`, undefined, 400, 415],
      [`/instances/${u8}/preview?quality=abc`, 'image/jpeg', 400, 415],
      [`/instances/${u8}/rendered?window-center=abc`, undefined, 400, 404],
      [`/instances/${u8}/rendered?width=-5`, undefined, 400, 404],
      [`/instances/${u8}/rendered?smooth=yes`, undefined, 400, 415],
      [`/instances/${u8}/preview`, 'text/plain', 406, 404],
      [`/instances/${u8}/image-uint16`, 'image/jpeg', 406, 404],
      [`/instances/${ids.get('jpeg')}/frames/1/preview`, undefined, 404, 415],
      [`/instances/${pdf}/frames/0/raw`, undefined, 404, 500],
      [`/instances/${pdf}/matlab`, undefined, 415, 500],
    ];
    for (const [path, accept, expected, orthancStatus] of differences) {
      const [a, b] = await Promise.all([ours(path, accept), theirs(path, accept)]);
      expect([path, accept, a.status, b.status]).toEqual([path, accept, expected, orthancStatus]);
      expect(JSON.parse(a.body.toString()).HttpStatus).toBe(expected);
    }
  });

  it('transcodes /file?transcode= to a native syntax with the pixels Orthanc decodes', async () => {
    const explicit = TS.ExplicitVRLittleEndian;
    for (const name of ['rle-multi', 'jpegls-multi', 'big-endian']) {
      const id = ids.get(name) as string;
      const answer = await ours(`/instances/${id}/file?transcode=${explicit}`);
      expect([name, answer.status, answer.type]).toEqual([name, 200, 'application/dicom']);
      const { meta, dataset } = readInstance(answer.body);
      expect(meta.TransferSyntaxUID).toBe(explicit);
      const pixels = Buffer.from((dataset.PixelData as ArrayBuffer[])[0]);
      const frames = list.find((s) => s.name === name)?.frames as number;
      const decoded: Buffer[] = [];
      for (let frame = 0; frame < frames; frame++) {
        // Orthanc's 16-bit values, big endian in its PAM
        const pam = (await theirs(`/instances/${id}/frames/${frame}/image-uint16`, 'image/x-portable-arbitrarymap')).body;
        decoded.push(Buffer.from(pam.subarray(pam.indexOf('ENDHDR\n') + 7)).swap16());
      }
      expect(pixels.equals(Buffer.concat(decoded))).toBe(true);
      // Orthanc 1.10 ignores the argument: its answer is the stored file
      expect((await theirs(`/instances/${id}/file?transcode=${explicit}`)).body.equals((await ours(`/instances/${id}/file`)).body)).toBe(true);
    }
    const u8 = ids.get('u8') as string;
    expect((await ours(`/instances/${u8}/file?transcode=${explicit}`)).body.equals((await theirs(`/instances/${u8}/file`)).body)).toBe(true);
    expect((await ours(`/instances/${u8}/file?transcode=${TS.JPEGLSLossless}`)).status).toBe(415);
    expect((await ours(`/instances/${u8}/file?transcode=abc`)).status).toBe(400);
    expect((await ours(`/instances/00000000-00000000-00000000-00000000-00000000/file?transcode=${explicit}`)).status).toBe(404);
  });
});
