/**
 * What one client may ask (server/request-limits.ts, work-limiter.ts): body sizes, STOW-RS size and parts,
 * header size, and the image work limiter, each with a low configured limit.
 *
 * Deliberate differences with Orthanc 1.10, which has none of these limits: a body over a limit is 413 here
 * (Orthanc reads any size); request headers over the limit are 431 with a JSON body here, where Orthanc
 * answers "400 Bad Request" in plain text over HTTP/1.0 (asserted below); a full image work queue is 503
 * with Retry-After (Orthanc queues behind its HTTP threads).
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import request from 'supertest';
import { createServer } from '../../src/server/cli';
import { CORE_KINDS, startTestGateway, type TestGateway } from '../helpers/test-gateway';
import { makeInstance, TransferSyntax } from '../helpers/dicom-factory';
import { startOrthanc } from '../helpers/orthanc-process';
import { storedFiles } from '../helpers/stored-files';

const MB = 1024 * 1024;
const related = (boundary: string): string => `multipart/related; type="application/dicom"; boundary=${boundary}`;

function multipartBody(boundary: string, files: Buffer[]): Buffer {
  const parts = files.flatMap((file) => [Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), file, Buffer.from('\r\n')]);
  return Buffer.concat([...parts, Buffer.from(`--${boundary}--\r\n`)]);
}

function formDataBody(boundary: string, files: Buffer[]): Buffer {
  const parts = files.flatMap((file, i) => [
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="f${i}.dcm"\r\nContent-Type: application/dicom\r\n\r\n`),
    file,
    Buffer.from('\r\n'),
  ]);
  return Buffer.concat([...parts, Buffer.from(`--${boundary}--\r\n`)]);
}

/** A gateway listening like the CLI's (server options and timeouts included) on a free loopback port. */
async function listen(gateway: TestGateway): Promise<{ server: http.Server; port: number }> {
  const server = createServer(gateway.config, gateway.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

/** POSTs a body in chunks without Content-Length (chunked transfer encoding); the answer as status + JSON. */
function postChunked(port: number, path: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', headers: { ...headers, 'transfer-encoding': 'chunked' } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : {} }));
    });
    // a server that answers early may close while we still send: the answer is what counts
    req.on('error', reject);
    let offset = 0;
    const step = 64 * 1024;
    const pump = (): void => {
      while (offset < body.length) {
        const chunk = body.subarray(offset, offset + step);
        offset += step;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
}

/** Sends raw bytes, reads until the server closes (or 5 s). */
function rawExchange(port: number, text: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(text));
    let out = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(`${out}<no close>`);
    }, 5000);
    socket.on('data', (c: Buffer) => (out += c.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

describe.each(CORE_KINDS)('request body limits, %s core', (kind) => {
  let gateway: TestGateway;
  let port: number;
  let server: http.Server;
  const big = makeInstance({ PatientID: `BIG-${kind}`, seed: `limits-big-${kind}`, Rows: 1024, Columns: 1024, BitsAllocated: 16 });
  const small = (n: number): Buffer => makeInstance({ PatientID: `SMALL-${kind}`, seed: `limits-small-${kind}-${n}` });
  const instanceCount = async (): Promise<number> => (await request(gateway.app).get('/instances')).body.length as number;

  beforeAll(async () => {
    gateway = await startTestGateway(kind, { HttpLimits: { MaxRequestBodySize: 1 }, DicomWeb: { StowMaxRequestSize: 1, StowMaxParts: 2 } });
    ({ server, port } = await listen(gateway));
  });
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await gateway?.close();
  });

  it('a JSON body declaring more than MaxRequestBodySize is 413 before it is read', async () => {
    const res = await request(gateway.app).post('/tools/find').type('application/json').send(`{"Level":"Study","Query":{}}${' '.repeat(1.5 * MB)}`);
    expect(res.status).toBe(413);
    expect(res.headers.connection).toBe('close');
    expect(res.body).toMatchObject({ HttpError: 'Payload Too Large', HttpStatus: 413, Message: 'The request body is too large' });
    expect(res.body.Details).toContain('"HttpLimits.MaxRequestBodySize" is 1 MB');
  });

  it('a JSON body under the limit goes through', async () => {
    const res = await request(gateway.app).post('/tools/find').type('application/json').send(`{"Level":"Study","Query":{}}${' '.repeat(0.9 * MB)}`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual([]);
  });

  it('native uploads are not limited: POST /instances of a 2 MB file', async () => {
    expect(big.length).toBeGreaterThan(2 * MB);
    const res = await request(gateway.app).post('/instances').type('application/dicom').send(big);
    expect(res.status).toBe(200);
    expect(await instanceCount()).toBe(1);
    await request(gateway.app).delete(`/instances/${res.body.ID as string}`).expect(200);
  });

  it('STOW-RS: a declared Content-Length over StowMaxRequestSize is 413 and stores nothing', async () => {
    const res = await request(gateway.app).post('/dicom-web/studies').type(related('b')).send(multipartBody('b', [big]));
    expect(res.status).toBe(413);
    expect(res.body).toMatchObject({ HttpStatus: 413, Message: 'The STOW-RS request is too large' });
    expect(await instanceCount()).toBe(0);
  });

  it('STOW-RS: a chunked body is counted as it arrives; the part cut by the limit leaves nothing behind', async () => {
    const res = await postChunked(port, '/dicom-web/studies', { 'content-type': related('c') }, multipartBody('c', [small(1), big]));
    expect(res.status).toBe(413);
    expect(res.json).toMatchObject({ HttpStatus: 413, Message: 'The STOW-RS request is too large' });
    // the part before the limit was complete and is stored, as with any body cut short; the big one is not
    const instances = (await request(gateway.app).get('/instances?expand')).body as Array<{ ID: string; FileSize: number }>;
    expect(instances).toHaveLength(1);
    expect(instances[0].FileSize).toBeLessThan(MB);
    if (kind === 'embedded') expect(storedFiles(gateway.config.storageDirectory, { withTmp: true })).toHaveLength(1);
    await request(gateway.app).delete(`/instances/${instances[0].ID}`).expect(200);
  });

  it('STOW-RS: a single application/dicom body sent chunked over the limit is 413', async () => {
    const res = await postChunked(port, '/dicom-web/studies', { 'content-type': 'application/dicom' }, big);
    expect(res.status).toBe(413);
    expect(await instanceCount()).toBe(0);
  });

  it('STOW-RS: the limit applies to the decoded bytes (a small gzip body that inflates beyond it is 413)', async () => {
    const zipped = gzipSync(multipartBody('z', [big]));
    expect(zipped.length).toBeLessThan(MB);
    const res = await request(gateway.app).post('/dicom-web/studies').type(related('z')).set('Content-Encoding', 'gzip').send(zipped);
    expect(res.status).toBe(413);
    expect(await instanceCount()).toBe(0);
  });

  it('STOW-RS: more parts than StowMaxParts is 413, as many is stored', async () => {
    const three = await request(gateway.app).post('/dicom-web/studies').type(related('p')).send(multipartBody('p', [small(2), small(3), small(4)]));
    expect(three.status).toBe(413);
    expect(three.body).toMatchObject({ HttpStatus: 413, Message: 'Too many parts in the STOW-RS request' });
    const form = await request(gateway.app).post('/dicom-web/studies').type('multipart/form-data; boundary=f').send(formDataBody('f', [small(5), small(6), small(7)]));
    expect(form.status).toBe(413);
    expect(form.body).toMatchObject({ HttpStatus: 413, Message: 'Too many parts in the STOW-RS request' });
    for (const id of (await request(gateway.app).get('/instances')).body as string[]) {
      expect((await request(gateway.app).delete(`/instances/${id}`)).status).toBe(200);
    }
    const two = await request(gateway.app).post('/dicom-web/studies').type(related('q')).send(multipartBody('q', [small(8), small(9)]));
    expect(two.status).toBe(200);
    expect(await instanceCount()).toBe(2);
  });
});

describe('request header size (HttpLimits.MaxHeaderSize)', () => {
  const headerOf = (bytes: number): string => `GET /system HTTP/1.1\r\nHost: localhost\r\nX-Filler: ${'x'.repeat(bytes)}\r\nConnection: close\r\n\r\n`;

  it('over the default 16 KB: 431 with a JSON body, and the connection is closed; under it: 200', async () => {
    const gateway = await startTestGateway('embedded');
    const { server, port } = await listen(gateway);
    try {
      const refused = await rawExchange(port, headerOf(20 * 1024));
      expect(refused).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
      expect(refused).not.toContain('<no close>');
      const body = JSON.parse(refused.slice(refused.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
      expect(body).toMatchObject({ HttpStatus: 431, Message: 'The request line and headers are too large' });
      expect(await rawExchange(port, headerOf(10 * 1024))).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await gateway.close();
    }
  });

  it('MaxHeaderSize 32 lets a 20 KB header through', async () => {
    const gateway = await startTestGateway('embedded', { HttpLimits: { MaxHeaderSize: 32 } });
    const { server, port } = await listen(gateway);
    try {
      expect(await rawExchange(port, headerOf(20 * 1024))).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await gateway.close();
    }
  });

  it('Orthanc refuses the same 20 KB header too, as a plain-text 400', async () => {
    const orthanc = await startOrthanc();
    try {
      const answer = await rawExchange(orthanc.httpPort, headerOf(20 * 1024));
      expect(answer).toMatch(/^HTTP\/1\.[01] 400 Bad Request\r\n/);
    } finally {
      await orthanc.stop();
    }
  });
});

describe('image work limiter (HttpLimits.ImageWorkConcurrency / ImageWorkQueueSize)', () => {
  let gateway: TestGateway;
  let server: http.Server;
  let port: number;
  const study = '1.2.826.0.1.3680043.8.498.1111';
  const series = '1.2.826.0.1.3680043.8.498.1112';
  const image = makeInstance({ PatientID: 'LIMIT', StudyInstanceUID: study, SeriesInstanceUID: series, SOPInstanceUID: '1.2.826.0.1.3680043.8.498.1113', Rows: 1024, Columns: 1024, BitsAllocated: 16 });
  const rle = makeInstance({
    PatientID: 'LIMIT',
    StudyInstanceUID: study,
    SeriesInstanceUID: series,
    SOPInstanceUID: '1.2.826.0.1.3680043.8.498.1114',
    Rows: 1024,
    Columns: 1024,
    BitsAllocated: 16,
    transferSyntax: TransferSyntax.RLELossless,
  });
  const instanceUrl = (sop: string): string => `/dicom-web/studies/${study}/series/${series}/instances/${sop}`;

  beforeAll(async () => {
    gateway = await startTestGateway('embedded', { HttpLimits: { ImageWorkConcurrency: 1, ImageWorkQueueSize: 0 } });
    await request(gateway.app).post('/instances').send(image).expect(200);
    await request(gateway.app).post('/instances').send(rle).expect(200);
    ({ server, port } = await listen(gateway));
  });
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    await gateway?.close();
  });

  /** Sends `count` requests at once over separate connections; the statuses, Retry-After values and bodies. */
  async function burst(path: string, count: number, accept?: string): Promise<Array<{ status: number; retryAfter?: string; type: string; body: Buffer }>> {
    const agent = new http.Agent({ keepAlive: false, maxSockets: count });
    try {
      return await Promise.all(
        Array.from({ length: count }, async () => {
          const res = await fetchWith(agent, path, accept);
          return res;
        }),
      );
    } finally {
      agent.destroy();
    }
  }

  function fetchWith(agent: http.Agent, path: string, accept?: string): Promise<{ status: number; retryAfter?: string; type: string; body: Buffer }> {
    return new Promise((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, agent, headers: accept ? { accept } : {} }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], type: res.headers['content-type'] ?? '', body: Buffer.concat(chunks) }),
          );
        })
        .on('error', reject);
    });
  }

  function expectSaturated(answers: Array<{ status: number; retryAfter?: string; type: string; body: Buffer }>, okType: RegExp): void {
    const statuses = answers.map((a) => a.status);
    expect(statuses.every((s) => s === 200 || s === 503)).toBe(true);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(1);
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThanOrEqual(1);
    for (const answer of answers) {
      if (answer.status === 200) {
        expect(answer.type).toMatch(okType);
        continue;
      }
      expect(answer.retryAfter).toBe('1');
      expect(JSON.parse(answer.body.toString())).toMatchObject({ HttpStatus: 503, HttpError: 'Service Unavailable', Message: 'The server is busy with image work' });
    }
  }

  it('WADO-RS rendered: a burst over one slot and no queue gets 503 + Retry-After for the rest', async () => {
    expectSaturated(await burst(`${instanceUrl('1.2.826.0.1.3680043.8.498.1113')}/rendered`, 8), /^image\/jpeg/);
    // once the burst is over, the next one renders
    expect((await burst(`${instanceUrl('1.2.826.0.1.3680043.8.498.1113')}/rendered`, 1))[0].status).toBe(200);
  });

  it('WADO-URI image/jpeg: the same limiter', async () => {
    const path = `/wado?requestType=WADO&studyUID=${study}&seriesUID=${series}&objectUID=1.2.826.0.1.3680043.8.498.1113&contentType=image/jpeg`;
    expectSaturated(await burst(path, 8), /^image\/jpeg/);
  });

  it('WADO-RS frames decoded from RLE: the same limiter; compressed frames as stored are not limited', async () => {
    const frames = `${instanceUrl('1.2.826.0.1.3680043.8.498.1114')}/frames/1`;
    expectSaturated(await burst(frames, 8, 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1'), /^multipart\/related/);
    const asStored = await burst(frames, 8, `multipart/related; type="image/dicom-rle"; transfer-syntax=${TransferSyntax.RLELossless}`);
    expect(asStored.map((a) => a.status)).toEqual(Array(8).fill(200));
  });
});
