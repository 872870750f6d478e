import request from 'supertest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync, deflateSync } from 'node:zlib';
import { data } from 'dcmjs';
import { CORE_KINDS, startTestGateway, type CoreKind, type TestGateway } from '../helpers/test-gateway';
import { startOrthanc, type OrthancProcess } from '../helpers/orthanc-process';
import { makeInstance, makeStudy, readInstance, TransferSyntax, writePart10 } from '../helpers/dicom-factory';
import { EmbeddedCore } from '../../src/core/embedded/embedded-core';

const run = promisify(execFile);

const STUDY_URL = '00081190';
const REFERENCED = '00081199';
const FAILED = '00081198';
const SOP_CLASS = '00081150';
const SOP_INSTANCE = '00081155';
const FAILURE_REASON = '00081197';
const RELATED_DICOM = (boundary: string): string => `multipart/related; type="application/dicom"; boundary="${boundary}"`;

interface Part {
  data: Buffer;
  headers?: string;
}

/** A multipart/related body; `end: false` leaves out the closing delimiter. */
function multipart(parts: Array<Buffer | Part>, boundary = 'StowBoundary42', options: { end?: boolean } = {}): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const part = Buffer.isBuffer(p) ? { data: p } : p;
    chunks.push(Buffer.from(`--${boundary}\r\n${part.headers ?? 'Content-Type: application/dicom'}\r\n\r\n`, 'latin1'), part.data, Buffer.from('\r\n'));
  }
  if (options.end !== false) chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

type Json = Record<string, { vr: string; Value?: unknown[] }>;

/** supertest parser keeping a binary answer as bytes. */
function binary(res: NodeJS.ReadableStream, done: (error: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (chunk: Buffer) => chunks.push(chunk));
  res.on('end', () => done(null, Buffer.concat(chunks)));
}

function items(body: Json, tag: string): Json[] {
  return (body[tag]?.Value ?? []) as Json[];
}

function value(dataset: Json, tag: string): unknown {
  return dataset[tag]?.Value?.[0];
}

function sopUidOf(file: Buffer): string {
  return readInstance(file).dataset.SOPInstanceUID as string;
}

/** A copy of a Part 10 file without some attributes (to make it lack its UIDs). */
function without(file: Buffer, ...tags: string[]): Buffer {
  const dict = data.DicomMessage.readFile(file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer);
  const dataset = { ...dict.dict };
  for (const tag of tags) delete dataset[tag];
  return writePart10(dataset, TransferSyntax.ExplicitVRLittleEndian);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe.each(CORE_KINDS)('STOW-RS (%s core)', (kind: CoreKind) => {
  let gateway: TestGateway;
  let server: http.Server;
  let baseUrl: string;
  let work: string;

  beforeAll(async () => {
    gateway = await startTestGateway(kind);
    server = await new Promise<http.Server>((resolve) => {
      const s = gateway.app.listen(0, '127.0.0.1', () => resolve(s));
    });
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    work = mkdtempSync(join(tmpdir(), 'stow-test-'));
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await gateway.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** Temporary files our STOW-RS left behind (the embedded core's tmp/, or the OS one). */
  function leftovers(): string[] {
    if (gateway.core instanceof EmbeddedCore) return readdirSync(gateway.core.storage.tmpDirectory);
    return readdirSync(tmpdir()).filter((name) => name.startsWith('dicomweb-stow-'));
  }

  async function isStored(sopInstanceUid: string): Promise<boolean> {
    const matches = await gateway.core.lookup(sopInstanceUid);
    return matches.some((m) => m.Type === 'Instance');
  }

  /** Checks a 200 answer for these files, and that the store holds them. */
  async function expectAllStored(body: Json, files: Buffer[]): Promise<void> {
    const referenced = items(body, REFERENCED);
    expect(referenced.map((i) => value(i, SOP_INSTANCE))).toEqual(files.map(sopUidOf));
    expect(body[FAILED]).toBeUndefined();
    for (const file of files) expect(await isStored(sopUidOf(file))).toBe(true);
    expect(leftovers()).toEqual([]);
  }

  async function curl(args: string[]): Promise<{ status: number; body: Json }> {
    const { stdout } = await run('curl', ['-sS', '-w', '\n%{http_code}', ...args], { maxBuffer: 1 << 24 });
    const at = stdout.lastIndexOf('\n');
    return { status: Number(stdout.slice(at + 1)), body: JSON.parse(stdout.slice(0, at)) as Json };
  }

  function bodyFile(name: string, content: Buffer): string {
    const file = join(work, name);
    writeFileSync(file, content);
    return file;
  }

  describe('accepted bodies', () => {
    it('stores a multipart/related body and answers the Store Instances Response Module', async () => {
      const study = makeStudy({ seed: `${kind}-basic`, seriesCount: 2, instancesPerSeries: 2 });
      const res = await request(gateway.app)
        .post('/dicom-web/studies')
        .set('Content-Type', RELATED_DICOM('StowBoundary42'))
        .set('Accept', 'application/dicom+json')
        .send(multipart(study.buffers));
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/dicom\+json/);
      const body = JSON.parse(res.text) as Json;
      expect(Object.keys(body)).toEqual(['00080005', STUDY_URL, REFERENCED]);
      expect(body['00080005']).toEqual({ vr: 'CS', Value: ['ISO_IR 192'] });
      expect(body[STUDY_URL]).toEqual({ vr: 'UR', Value: [expect.stringMatching(new RegExp(`^http://127\\.0\\.0\\.1:\\d+/dicom-web/studies/${study.StudyInstanceUID}$`))] });
      const first = items(body, REFERENCED)[0];
      const instance = study.series[0].instances[0].tags;
      expect(first).toEqual({
        [SOP_CLASS]: { vr: 'UI', Value: [instance.SOPClassUID] },
        [SOP_INSTANCE]: { vr: 'UI', Value: [instance.SOPInstanceUID] },
        [STUDY_URL]: {
          vr: 'UR',
          Value: [`${value(body, STUDY_URL) as string}/series/${instance.SeriesInstanceUID}/instances/${instance.SOPInstanceUID}`],
        },
      });
      await expectAllStored(body, study.buffers);
    });

    it('reads unquoted parameters, parts with a transfer-syntax parameter, LF-only part headers', async () => {
      const files = [makeInstance({ seed: `${kind}-unquoted-1` }), makeInstance({ seed: `${kind}-unquoted-2`, transferSyntax: TransferSyntax.ImplicitVRLittleEndian })];
      const body = multipart([
        { data: files[0], headers: `Content-Type: application/dicom; transfer-syntax=${TransferSyntax.ExplicitVRLittleEndian}` },
        { data: files[1], headers: 'content-type: application/dicom\nContent-Length: 12' },
      ], 'plain-boundary');
      const res = await request(gateway.app)
        .post('/dicom-web/studies')
        .set('Content-Type', 'Multipart/Related; boundary=plain-boundary; type=application/dicom')
        .send(body);
      expect(res.status).toBe(200);
      await expectAllStored(res.body as Json, files);
    });

    it.each([
      ['gzip', gzipSync],
      ['deflate', deflateSync],
    ])('decodes a %s Content-Encoding', async (coding, compress) => {
      const files = [makeInstance({ seed: `${kind}-${coding}-1` }), makeInstance({ seed: `${kind}-${coding}-2` })];
      const res = await request(gateway.app)
        .post('/dicom-web/studies')
        .set('Content-Type', RELATED_DICOM('StowBoundary42'))
        .set('Content-Encoding', coding)
        .send(compress(multipart(files)));
      expect(res.status).toBe(200);
      await expectAllStored(res.body as Json, files);
    });

    it('takes multipart/form-data (browser and curl -F uploads)', async () => {
      const files = [makeInstance({ seed: `${kind}-form-1` }), makeInstance({ seed: `${kind}-form-2` })];
      const res = await request(gateway.app)
        .post('/dicom-web/studies')
        .field('comment', 'ignored')
        .attach('file', files[0], 'a.dcm')
        .attach('file', files[1], { filename: 'b.dcm', contentType: 'text/plain' });
      expect(res.status).toBe(200);
      await expectAllStored(res.body as Json, files);
    });

    it('takes a single application/dicom body', async () => {
      const file = makeInstance({ seed: `${kind}-single` });
      const res = await request(gateway.app).post('/dicom-web/studies').set('Content-Type', 'application/dicom').send(file);
      expect(res.status).toBe(200);
      await expectAllStored(res.body as Json, [file]);
    });

    it('streams a chunked body and answers 100 Continue to Expect: 100-continue', async () => {
      const files = [makeInstance({ seed: `${kind}-expect-1` }), makeInstance({ seed: `${kind}-expect-2` })];
      const body = multipart(files);
      let continued = false;
      const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = http.request(`${baseUrl}/dicom-web/studies`, {
          method: 'POST',
          headers: { 'Content-Type': RELATED_DICOM('StowBoundary42'), Expect: '100-continue', 'Transfer-Encoding': 'chunked' },
        });
        req.on('continue', () => {
          continued = true;
          // in several chunks, cutting through boundaries
          for (let at = 0; at < body.length; at += 1000) req.write(body.subarray(at, at + 1000));
          req.end();
        });
        req.on('response', (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (text += chunk));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        });
        req.on('error', reject);
        req.flushHeaders();
      });
      expect(continued).toBe(true);
      expect(answer.status).toBe(200);
      await expectAllStored(JSON.parse(answer.text) as Json, files);
    });

    it('accepts every body variant from curl against a listening server', async () => {
      const variant = (name: string): Buffer[] => [makeInstance({ seed: `${kind}-curl-${name}-1` }), makeInstance({ seed: `${kind}-curl-${name}-2` })];
      const url = `${baseUrl}/dicom-web/studies`;

      const quoted = variant('quoted');
      let res = await curl(['-X', 'POST', '-H', `Content-Type: ${RELATED_DICOM('StowBoundary42')}`, '--data-binary', `@${bodyFile('q.bin', multipart(quoted))}`, url]);
      expect(res.status).toBe(200);
      await expectAllStored(res.body, quoted);

      const chunked = variant('chunked');
      res = await curl([
        '-X', 'POST', '-H', 'Content-Type: multipart/related; type=application/dicom; boundary=StowBoundary42',
        '-H', 'Transfer-Encoding: chunked', '-H', 'Expect: 100-continue', '--data-binary', `@${bodyFile('c.bin', multipart(chunked))}`, url,
      ]);
      expect(res.status).toBe(200);
      await expectAllStored(res.body, chunked);

      const gzipped = variant('gzip');
      res = await curl([
        '-X', 'POST', '-H', `Content-Type: ${RELATED_DICOM('StowBoundary42')}`, '-H', 'Content-Encoding: gzip',
        '--data-binary', `@${bodyFile('g.bin', gzipSync(multipart(gzipped)))}`, url,
      ]);
      expect(res.status).toBe(200);
      await expectAllStored(res.body, gzipped);

      const form = variant('form');
      res = await curl(['-F', `file=@${bodyFile('f1.dcm', form[0])}`, '-F', `file=@${bodyFile('f2.dcm', form[1])}`, url]);
      expect(res.status).toBe(200);
      await expectAllStored(res.body, form);

      const [single] = variant('single');
      res = await curl(['-H', 'Content-Type: application/dicom', '--data-binary', `@${bodyFile('s.dcm', single)}`, url]);
      expect(res.status).toBe(200);
      await expectAllStored(res.body, [single]);
    });

    it('answers application/dicom+xml when asked, and 406 for what it cannot produce', async () => {
      const file = makeInstance({ seed: `${kind}-xml` });
      const res = await request(gateway.app)
        .post('/dicom-web/studies')
        .set('Content-Type', 'application/dicom')
        .set('Accept', 'application/dicom+xml')
        .send(file);
      expect(res.status).toBe(200);
      expect(res.headers['content-type']).toMatch(/^application\/dicom\+xml/);
      expect(res.text).toContain('<NativeDicomModel xmlns="http://dicom.nema.org/PS3.19/models/NativeDICOM">');
      expect(res.text).toContain(`<DicomAttribute tag="00081155" vr="UI" keyword="ReferencedSOPInstanceUID"><Value number="1">${sopUidOf(file)}</Value>`);

      const refused = await request(gateway.app).post('/dicom-web/studies').set('Content-Type', 'application/dicom').set('Accept', 'image/png').send(file);
      expect(refused.status).toBe(406);
    });

    it('keeps keep-alive connections usable after an epilogue, and after refusing a large body', async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const post = (headers: Record<string, string>, body: Buffer) =>
        new Promise<{ status: number; socket: unknown; connection?: string }>((resolve, reject) => {
          const req = http.request(`${baseUrl}/dicom-web/studies`, { method: 'POST', agent, headers: { ...headers, 'Content-Length': String(body.length) } });
          req.on('response', (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode ?? 0, socket: req.socket, connection: res.headers.connection }));
          });
          req.on('error', reject);
          req.end(body);
        });
      try {
        const file = makeInstance({ seed: `${kind}-keepalive` });
        const withEpilogue = Buffer.concat([multipart([file], 'b'), Buffer.from('an epilogue that nobody reads\r\n')]);
        const first = await post({ 'Content-Type': RELATED_DICOM('b') }, withEpilogue);
        expect(first.status).toBe(200);
        const second = await post({ 'Content-Type': RELATED_DICOM('b') }, multipart([file], 'b'));
        expect(second.status).toBe(200);
        expect(second.socket).toBe(first.socket);
        const refused = await post({ 'Content-Type': 'text/plain' }, Buffer.alloc(8 << 20));
        expect(refused.status).toBe(415);
        expect((await post({ 'Content-Type': RELATED_DICOM('b') }, multipart([file], 'b'))).status).toBe(200);
        // refused after reading some of it: the rest must not block the connection
        const corrupt = await post({ 'Content-Type': RELATED_DICOM('b'), 'Content-Encoding': 'gzip' }, Buffer.alloc(8 << 20, 1));
        expect(corrupt.status).toBe(400);
        expect(corrupt.connection).toBe('close');
        expect((await post({ 'Content-Type': RELATED_DICOM('b') }, multipart([file], 'b'))).status).toBe(200);
      } finally {
        agent.destroy();
      }
    });

    // a remote core stores several parts at once: big and small parts finish out of order, the answer must not
    it('answers the outcomes of many parts of mixed sizes in the order of the parts', async () => {
      const sizes = [600, 32, 800, 32, 64, 700, 32, 32, 500, 32];
      const files = sizes.map((side, i) => makeInstance({ seed: `${kind}-order-${i}`, Rows: side, Columns: side, BitsAllocated: 16, BitsStored: 16 }));
      const bad = Buffer.from('not DICOM either');
      const body = [...files.slice(0, 5), bad, ...files.slice(5)];
      const res = await request(gateway.app).post('/dicom-web/studies').set('Content-Type', RELATED_DICOM('b')).send(multipart(body, 'b'));
      expect(res.status).toBe(202);
      expect(items(res.body as Json, REFERENCED).map((i) => value(i, SOP_INSTANCE))).toEqual(files.map(sopUidOf));
      expect(items(res.body as Json, FAILED).map((f) => value(f, FAILURE_REASON))).toEqual([0xc000]);
      for (const file of files) expect(await isStored(sopUidOf(file))).toBe(true);
      expect(leftovers()).toEqual([]);
    });

    it('stores the exact bytes and MD5 of parts kept in memory and of parts streamed to disk', async () => {
      // 8 KB (hashed at once), 200 KB (written from memory, hashed on the hashing thread), 2 MB (a temporary file)
      const files = [16, 320, 1024].map((side, i) => makeInstance({ seed: `${kind}-bytes-${i}`, Rows: side, Columns: side, BitsAllocated: 16, BitsStored: 16 }));
      const res = await request(gateway.app).post('/dicom-web/studies').set('Content-Type', RELATED_DICOM('b')).send(multipart(files, 'b'));
      await expectAllStored(res.body as Json, files);
      for (const file of files) {
        const [match] = await gateway.core.lookup(sopUidOf(file));
        const stored = await request(gateway.app).get(`/instances/${match.ID}/file`).buffer(true).parse(binary);
        expect(Buffer.compare(stored.body as Buffer, file)).toBe(0);
        const md5 = await request(gateway.app).get(`/instances/${match.ID}/attachments/dicom/md5`);
        expect(md5.text).toBe(createHash('md5').update(file).digest('hex'));
      }
    });

    it('lists an instance stored again as a success', async () => {
      const file = makeInstance({ seed: `${kind}-again` });
      const post = () => request(gateway.app).post('/dicom-web/studies').set('Content-Type', RELATED_DICOM('b')).send(multipart([file], 'b'));
      expect((await post()).status).toBe(200);
      const again = await post();
      expect(again.status).toBe(200);
      await expectAllStored(again.body as Json, [file]);
    });
  });

  describe('study in the URL', () => {
    it('stores the instances of that study, refuses the others (0110H) with 202, or 409 when none fits', async () => {
      const study = makeStudy({ seed: `${kind}-target`, seriesCount: 1, instancesPerSeries: 2 });
      const stranger = makeInstance({ seed: `${kind}-stranger` });
      const url = `/dicom-web/studies/${study.StudyInstanceUID}`;
      const mixed = await request(gateway.app).post(url).set('Content-Type', RELATED_DICOM('b')).send(multipart([study.buffers[0], stranger, study.buffers[1]], 'b'));
      expect(mixed.status).toBe(202);
      const body = mixed.body as Json;
      expect(items(body, REFERENCED).map((i) => value(i, SOP_INSTANCE))).toEqual(study.buffers.map(sopUidOf));
      expect(items(body, FAILED)).toEqual([
        {
          [SOP_CLASS]: { vr: 'UI', Value: [readInstance(stranger).dataset.SOPClassUID] },
          [SOP_INSTANCE]: { vr: 'UI', Value: [sopUidOf(stranger)] },
          [FAILURE_REASON]: { vr: 'US', Value: [0x0110] },
        },
      ]);
      expect(await isStored(sopUidOf(stranger))).toBe(false);

      const conflict = await request(gateway.app).post(url).set('Content-Type', RELATED_DICOM('b')).send(multipart([stranger], 'b'));
      expect(conflict.status).toBe(409);
      expect(conflict.headers['content-type']).toMatch(/^application\/dicom\+json/);
      expect((conflict.body as Json)[STUDY_URL]).toEqual({ vr: 'UR' });
      expect(value(items(conflict.body as Json, FAILED)[0], FAILURE_REASON)).toBe(272);
      expect(leftovers()).toEqual([]);
    });
  });

  describe('bad input', () => {
    it('stores the good parts and lists a non-DICOM, an empty and a UID-less part as failed (C000H)', async () => {
      const good = [makeInstance({ seed: `${kind}-good-1` }), makeInstance({ seed: `${kind}-good-2` })];
      const noSeries = without(makeInstance({ seed: `${kind}-noseries` }), '0020000E');
      const res = await request(gateway.app)
        .post('/dicom-web/studies')
        .set('Content-Type', RELATED_DICOM('b'))
        .send(multipart([good[0], Buffer.from('this is not DICOM'), Buffer.alloc(0), noSeries, good[1]], 'b'));
      expect(res.status).toBe(202);
      const body = res.body as Json;
      expect(items(body, REFERENCED).map((i) => value(i, SOP_INSTANCE))).toEqual(good.map(sopUidOf));
      const failed = items(body, FAILED);
      expect(failed.map((f) => value(f, FAILURE_REASON))).toEqual([0xc000, 0xc000, 0xc000]);
      expect(failed[0]).toEqual({ [FAILURE_REASON]: { vr: 'US', Value: [49152] } });
      expect(value(failed[2], SOP_INSTANCE)).toBe(sopUidOf(noSeries));
      expect(await isStored(sopUidOf(noSeries))).toBe(false);
      for (const file of good) expect(await isStored(sopUidOf(file))).toBe(true);
      expect(leftovers()).toEqual([]);
    });

    it('answers 400 with the response module when no part is DICOM', async () => {
      const res = await request(gateway.app).post('/dicom-web/studies').set('Content-Type', RELATED_DICOM('b')).send(multipart([Buffer.from('nope')], 'b'));
      expect(res.status).toBe(400);
      expect(items(res.body as Json, FAILED)).toHaveLength(1);
      expect((res.body as Json)[REFERENCED]).toBeUndefined();
    });

    it('refuses a part whose transfer-syntax parameter disagrees with the file (A900H)', async () => {
      const file = makeInstance({ seed: `${kind}-tsmismatch` });
      const res = await request(gateway.app)
        .post('/dicom-web/studies')
        .set('Content-Type', RELATED_DICOM('b'))
        .send(multipart([{ data: file, headers: `Content-Type: application/dicom; transfer-syntax=${TransferSyntax.ImplicitVRLittleEndian}` }], 'b'));
      expect(res.status).toBe(409);
      expect(value(items(res.body as Json, FAILED)[0], FAILURE_REASON)).toBe(0xa900);
      expect(await isStored(sopUidOf(file))).toBe(false);
    });

    it('keeps the complete parts of a truncated body and drops the cut one', async () => {
      const files = [makeInstance({ seed: `${kind}-trunc-1`, Rows: 128 }), makeInstance({ seed: `${kind}-trunc-2`, Rows: 128 })];
      const whole = multipart(files, 'b');
      const cut = whole.subarray(0, whole.length - 2000);
      const res = await request(gateway.app).post('/dicom-web/studies').set('Content-Type', RELATED_DICOM('b')).send(cut);
      expect(res.status).toBe(202);
      expect(items(res.body as Json, REFERENCED).map((i) => value(i, SOP_INSTANCE))).toEqual([sopUidOf(files[0])]);
      // the cut part's UIDs are still read from what arrived
      expect(items(res.body as Json, FAILED)).toEqual([
        expect.objectContaining({ [SOP_INSTANCE]: { vr: 'UI', Value: [sopUidOf(files[1])] }, [FAILURE_REASON]: { vr: 'US', Value: [0xc000] } }),
      ]);
      expect(await isStored(sopUidOf(files[1]))).toBe(false);
      expect(leftovers()).toEqual([]);
    });

    it('does not trust a last part without the closing boundary', async () => {
      const files = [makeInstance({ seed: `${kind}-noend-1` }), makeInstance({ seed: `${kind}-noend-2` })];
      const res = await request(gateway.app).post('/dicom-web/studies').set('Content-Type', RELATED_DICOM('b')).send(multipart(files, 'b', { end: false }));
      expect(res.status).toBe(202);
      expect(items(res.body as Json, REFERENCED)).toHaveLength(1);
      expect(value(items(res.body as Json, FAILED)[0], SOP_INSTANCE)).toBe(sopUidOf(files[1]));
      expect(await isStored(sopUidOf(files[1]))).toBe(false);
      expect(leftovers()).toEqual([]);
    });

    it('answers 400 (Orthanc-style error) for a body where nothing can be read', async () => {
      for (const body of [Buffer.from('no boundary here'), Buffer.alloc(0)]) {
        const res = await request(gateway.app).post('/dicom-web/studies').set('Content-Type', RELATED_DICOM('b')).send(body);
        expect(res.status).toBe(400);
        expect(res.body).toMatchObject({ HttpStatus: 400, Message: expect.any(String) });
      }
      const corrupt = await request(gateway.app)
        .post('/dicom-web/studies')
        .set('Content-Type', RELATED_DICOM('b'))
        .set('Content-Encoding', 'gzip')
        .send(Buffer.from('not gzip at all'));
      expect(corrupt.status).toBe(400);
      expect(leftovers()).toEqual([]);
    });

    it.each([
      ['text/plain', undefined],
      ['multipart/related; type="application/dicom+json"; boundary=b', undefined],
      ['application/dicom', 'br'],
    ])('answers 415 to Content-Type %s (Content-Encoding %s)', async (contentType, encoding) => {
      const req = request(gateway.app).post('/dicom-web/studies').set('Content-Type', contentType);
      if (encoding) req.set('Content-Encoding', encoding);
      const res = await req.send(Buffer.from('whatever'));
      expect(res.status).toBe(415);
      expect(res.body).toMatchObject({ HttpStatus: 415 });
    });

    it('keeps the parts received before the client vanished, and nothing of the cut one', async () => {
      // the cut part is larger than what is kept in memory (1 MiB): it streams to a temporary file
      const files = [makeInstance({ seed: `${kind}-abort-1` }), makeInstance({ seed: `${kind}-abort-2`, Rows: 1024, Columns: 1024, BitsAllocated: 16 })];
      const body = multipart(files, 'b');
      const cutAt = body.length - 50_000;
      const req = http.request(`${baseUrl}/dicom-web/studies`, {
        method: 'POST',
        headers: { 'Content-Type': RELATED_DICOM('b'), 'Content-Length': String(body.length) },
      });
      req.on('error', () => undefined);
      req.write(body.subarray(0, cutAt));
      // the cut part is being written when the client vanishes
      const started = Date.now() + 10_000;
      while (!(await isStored(sopUidOf(files[0]))) || leftovers().length === 0) {
        if (Date.now() > started) throw new Error('the second part never started');
        await sleep(20);
      }
      req.destroy();
      const deadline = Date.now() + 10_000;
      while (!(await isStored(sopUidOf(files[0]))) || leftovers().length > 0) {
        if (Date.now() > deadline) throw new Error(`not settled: leftovers ${leftovers().join(', ')}`);
        await sleep(50);
      }
      await sleep(200);
      expect(await isStored(sopUidOf(files[1]))).toBe(false);
      expect(leftovers()).toEqual([]);
    });
  });

  if (kind === 'embedded') {
    it('answers A700H (out of resources) once MaximumStorageSize is reached', async () => {
      const small = await startTestGateway('embedded', { MaximumStorageSize: 1 });
      try {
        const pixels = Buffer.alloc(512 * 512 * 2, 7);
        const big = (n: number): Buffer => makeInstance({ seed: `full-${n}`, Rows: 512, Columns: 512, BitsAllocated: 16, pixelData: pixels });
        const files = [big(1), big(2), big(3)];
        const res = await request(small.app).post('/dicom-web/studies').set('Content-Type', RELATED_DICOM('b')).send(multipart(files, 'b'));
        expect(res.status).toBe(202);
        expect(items(res.body as Json, REFERENCED)).toHaveLength(1);
        const failed = items(res.body as Json, FAILED);
        expect(failed.map((f) => value(f, FAILURE_REASON))).toEqual([0xa700, 0xa700]);
        expect(failed.map((f) => value(f, SOP_INSTANCE))).toEqual([sopUidOf(files[1]), sopUidOf(files[2])]);
        const core = small.core as EmbeddedCore;
        expect(readdirSync(core.storage.tmpDirectory)).toEqual([]);
        expect(core.statistics().CountInstances).toBe(1);
      } finally {
        await small.close();
      }
    });
  }
});

describe('STOW-RS answer compared with the reference plugin', () => {
  let gateway: TestGateway;
  let orthanc: OrthancProcess;

  beforeAll(async () => {
    [gateway, orthanc] = await Promise.all([startTestGateway('embedded'), startOrthanc({ dicomWeb: true })]);
  });
  afterAll(async () => {
    await gateway.close();
    await orthanc.stop();
  });

  /** URLs compared by what follows the DICOMweb root. */
  function normalise(body: Json): unknown {
    return JSON.parse(JSON.stringify(body).replace(/https?:\/\/[^"]*?\/dicom-web\//g, '{root}/')) as unknown;
  }

  it('gives the same attributes and values (modulo URLs) for a successful upload', async () => {
    const study = makeStudy({ seed: 'compare', seriesCount: 2, instancesPerSeries: 2 });
    const body = multipart(study.buffers, 'b');
    const ours = await request(gateway.app).post('/dicom-web/studies').set('Content-Type', RELATED_DICOM('b')).send(body);
    const theirs = await fetch(`${orthanc.url}/dicom-web/studies`, { method: 'POST', headers: { 'Content-Type': RELATED_DICOM('b') }, body });
    expect(ours.status).toBe(theirs.status);
    const reference = (await theirs.json()) as Json;
    const answer = ours.body as Json;
    // documented differences: the plugin writes an empty FailedSOPSequence (Type 1C: absent when empty)
    // and claims ISO_IR 100 for a UTF-8 JSON document
    expect(reference[FAILED]).toEqual({ vr: 'SQ' });
    delete reference[FAILED];
    expect(reference['00080005']).toEqual({ vr: 'CS', Value: ['ISO_IR 100'] });
    expect(answer['00080005']).toEqual({ vr: 'CS', Value: ['ISO_IR 192'] });
    delete reference['00080005'];
    delete answer['00080005'];
    expect(normalise(answer)).toEqual(normalise(reference));
  });

  it('agrees on a study mismatch: 409 and FailureReason 0110H for each instance', async () => {
    const file = makeInstance({ seed: 'compare-conflict' });
    const body = multipart([file], 'b');
    const ours = await request(gateway.app).post('/dicom-web/studies/1.2.3').set('Content-Type', RELATED_DICOM('b')).send(body);
    const theirs = await fetch(`${orthanc.url}/dicom-web/studies/1.2.3`, { method: 'POST', headers: { 'Content-Type': RELATED_DICOM('b') }, body });
    expect(ours.status).toBe(409);
    expect(theirs.status).toBe(409);
    const reference = JSON.parse(await theirs.text()) as Json;
    expect(items(ours.body as Json, FAILED)).toEqual(items(reference, FAILED));
  });
});
