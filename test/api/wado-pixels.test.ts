/**
 * WADO-RS frames and Pixel Data bulk data of a multi-frame instance larger than one read block
 * (src/dicom/block-pool.ts), against both cores and the reference plugin: every byte of every part,
 * with answers sent at the same time and answers cut short by the client, so that a block read into
 * again too early (before its bytes were written out) would show as wrong bytes.
 *
 * Differences with the reference plugin (Orthanc 1.10.1 + DICOMweb 1.7): it answers the bulk data of
 * Pixel Data only as multipart (a single-part Accept is 400 there); we also answer a single part, with
 * Range (PS3.18 §8.7.3 allows both).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { CORE_KINDS, startTestGateway, type CoreKind, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, uploadToOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { buildInstance, type GeneratedInstance } from '../helpers/dicom-factory';
import { getMultipartBoundary, parseMultipart } from '../../src/dicom/multipart-parser';
import { BLOCK_BYTES } from '../../src/dicom/block-pool';

const FRAMES = 80;
const OCTETS = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function get(url: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

/** Reads the first bytes of an answer, then goes away. */
function getAndHangUp(url: string, headers: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers }, (res) => {
      res.once('data', () => {
        req.destroy();
        resolve();
      });
    });
    req.on('error', (error: NodeJS.ErrnoException) => (error.code === 'ECONNRESET' ? resolve() : reject(error)));
  });
}

async function bodiesOf(answer: Answer): Promise<Array<{ headers: Record<string, string>; body: Buffer }>> {
  expect(answer.status).toBe(200);
  const parts: Array<{ headers: Record<string, string>; body: Buffer }> = [];
  for await (const part of parseMultipart(Readable.from([answer.body]), getMultipartBoundary(String(answer.headers['content-type'])))) {
    const chunks: Buffer[] = [];
    for await (const chunk of part.body) chunks.push(chunk as Buffer);
    parts.push({ headers: { ...part.headers }, body: Buffer.concat(chunks) });
  }
  return parts;
}

const instance: GeneratedInstance = buildInstance({ Rows: 256, Columns: 256, BitsAllocated: 16, NumberOfFrames: FRAMES, seed: 'wado-pixels-multiframe' });
const frameSize = instance.pixels.length / FRAMES;
const path = `/dicom-web/studies/${instance.tags.StudyInstanceUID}/series/${instance.tags.SeriesInstanceUID}/instances/${instance.tags.SOPInstanceUID}`;
const frameOf = (frame: number): Buffer => instance.pixels.subarray((frame - 1) * frameSize, frame * frameSize);
const allFrames = Array.from({ length: FRAMES }, (_, i) => i + 1);

/** The part bodies are these frames, in this order (Buffer.equals: toEqual walks megabytes byte by byte). */
function expectFrames(bodies: Buffer[], frames: number[]): void {
  expect(bodies.length).toBe(frames.length);
  const wrong = frames.filter((frame, i) => !bodies[i].equals(frameOf(frame)));
  expect(wrong).toEqual([]);
}

it('uses an instance of several read blocks', () => {
  expect(instance.pixels.length).toBeGreaterThan(2 * BLOCK_BYTES);
});

describe.each(CORE_KINDS)('frames and bulk data of a large multi-frame instance (%s core)', (kind: CoreKind) => {
  let gateway: TestGateway;
  let server: http.Server;
  let base: string;

  beforeAll(async () => {
    gateway = await startTestGateway(kind);
    await gateway.core.storeInstance({ buffer: instance.buffer });
    server = http.createServer(gateway.app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
  }, 60_000);
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await gateway?.close();
  });

  it('sends every frame in one answer, byte for byte, with its length and location', async () => {
    const parts = await bodiesOf(await get(`${base}/frames/${allFrames.join(',')}`, { Accept: OCTETS }));
    expect(parts).toHaveLength(FRAMES);
    parts.forEach((part, i) => {
      expect(part.headers['content-length']).toBe(String(frameSize));
      expect(part.headers['content-location']).toMatch(new RegExp(`${path}/frames/${i + 1}$`));
      expect(part.body.equals(frameOf(i + 1))).toBe(true);
    });
  });

  it('keeps every answer right when several are sent at once and some clients go away', async () => {
    const backwards = [...allFrames].reverse();
    const answers = await Promise.all([
      get(`${base}/frames/${allFrames.join(',')}`, { Accept: OCTETS }),
      get(`${base}/frames/${backwards.join(',')}`, { Accept: OCTETS }),
      getAndHangUp(`${base}/frames/${allFrames.join(',')}`, { Accept: OCTETS }),
      get(`${base}/bulk/7fe00010`, { Accept: 'application/octet-stream' }),
      getAndHangUp(`${base}/bulk/7fe00010`, { Accept: 'application/octet-stream' }),
      get(`${base}/frames/${allFrames.join(',')}`, { Accept: OCTETS }),
    ]);
    const [forward, reverse, , bulk, , again] = answers as Answer[];
    for (const answer of [forward, again]) expectFrames((await bodiesOf(answer)).map((p) => p.body), allFrames);
    expectFrames((await bodiesOf(reverse)).map((p) => p.body), backwards);
    expect(bulk.status).toBe(200);
    expect(bulk.body.equals(instance.pixels)).toBe(true);
    // and after the clients that went away, still the right bytes
    const after = await bodiesOf(await get(`${base}/frames/${allFrames.join(',')}`, { Accept: OCTETS }));
    expectFrames(after.map((p) => p.body), allFrames);
  });

  it('answers Pixel Data as one part or a single body with its length, and ranges across blocks', async () => {
    const [part] = await bodiesOf(await get(`${base}/bulk/7fe00010`, { Accept: OCTETS }));
    expect(part.headers['content-length']).toBe(String(instance.pixels.length));
    expect(part.body.equals(instance.pixels)).toBe(true);

    const single = await get(`${base}/bulk/7fe00010`, { Accept: 'application/octet-stream' });
    expect(single.headers['content-length']).toBe(String(instance.pixels.length));
    expect(single.body.equals(instance.pixels)).toBe(true);

    const start = BLOCK_BYTES - frameSize - 7;
    const end = 2 * BLOCK_BYTES + frameSize + 11;
    const ranged = await get(`${base}/bulk/7fe00010`, { Accept: 'application/octet-stream', Range: `bytes=${start}-${end}` });
    expect(ranged.status).toBe(206);
    expect(ranged.headers['content-range']).toBe(`bytes ${start}-${end}/${instance.pixels.length}`);
    expect(ranged.headers['content-length']).toBe(String(end - start + 1));
    expect(ranged.body.equals(instance.pixels.subarray(start, end + 1))).toBe(true);
  });
});

describe('the same frames as the reference plugin', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;
  let server: http.Server;
  let base: string;

  beforeAll(async () => {
    gateway = await startTestGateway('embedded');
    orthanc = await startOrthanc({ dicomWeb: true });
    await gateway.core.storeInstance({ buffer: instance.buffer });
    await uploadToOrthanc(orthanc.url, instance.buffer);
    server = http.createServer(gateway.app);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }, 60_000);
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await gateway?.close();
    await orthanc?.stop();
  });

  it('gives the plugin’s part bodies for a frame list and for the Pixel Data bulk data', async () => {
    for (const url of [`${path}/frames/${[3, 1, 40, 41, 80].join(',')}`, `${path}/bulk/7fe00010`]) {
      const ours = await bodiesOf(await get(`${base}${url}`, { Accept: OCTETS }));
      const plugin = await bodiesOf(await get(`${orthanc.url}${url}`, { Accept: OCTETS }));
      expect(ours.length).toBe(plugin.length);
      expect(ours.every((part, i) => part.body.equals(plugin[i].body))).toBe(true);
    }
  });
});
