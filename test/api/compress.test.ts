/**
 * compressText() (server/compress.ts) answers byte for byte as the compression package with the same filter,
 * including for clients that send no Accept-Encoding, which it serves without the package (it only adds the
 * "Vary: Accept-Encoding" the package would add). Compared over a real socket: supertest would send its own
 * Accept-Encoding and inflate the bodies.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import compression from 'compression';
import express, { type Express, type Request, type Response } from 'express';
import { compressText, isCompressible } from '../../src/server/compress';

const JSON_BODY = JSON.stringify(Array.from({ length: 60 }, (_, i) => ({ '00100020': { vr: 'LO', Value: [`PATIENT-${i}`] } })));

/** The same routes behind either middleware: set headers, writeHead with headers, streams, no body, HEAD. */
function appWith(middleware: express.RequestHandler): Express {
  const app = express();
  app.use(middleware);
  app.get('/json', (_req, res) => {
    res.setHeader('Content-Type', 'application/dicom+json');
    res.setHeader('Content-Length', Buffer.byteLength(JSON_BODY));
    res.end(Buffer.from(JSON_BODY));
  });
  app.get('/small-json', (_req, res) => res.json({ ok: true }));
  app.get('/write-head-object', (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'X-Extra': 'yes' });
    res.end(JSON_BODY);
  });
  app.get('/write-head-array', (_req, res) => {
    res.writeHead(201, 'Made', ['Content-Type', 'text/plain', 'X-Extra', 'array']);
    res.end('x'.repeat(3000));
  });
  app.get('/vary-before', (_req, res) => {
    res.setHeader('Vary', 'Origin');
    res.type('application/json').send(JSON_BODY);
  });
  app.get('/no-transform', (_req, res) => {
    res.setHeader('Cache-Control', 'public, no-transform');
    res.type('application/json').send(JSON_BODY);
  });
  app.get('/image', (_req, res) => res.type('image/jpeg').send(Buffer.alloc(5000, 7)));
  app.get('/streamed', (_req, res) => {
    res.setHeader('Content-Type', 'text/plain');
    res.write('a'.repeat(2000));
    setImmediate(() => res.end('b'.repeat(2000)));
  });
  app.get('/empty', (_req, res) => res.status(204).end());
  app.head('/json-head', (_req, res) => {
    res.setHeader('Content-Type', 'application/json');
    res.setHeader('Content-Length', '5000');
    res.end();
  });
  return app;
}

interface Answer {
  status: number;
  message: string;
  headers: Array<[string, string]>;
  body: Buffer;
}

function fetchRaw(port: number, method: string, path: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const pairs: Array<[string, string]> = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) {
          if (res.rawHeaders[i].toLowerCase() !== 'date') pairs.push([res.rawHeaders[i], res.rawHeaders[i + 1]]);
        }
        resolve({ status: res.statusCode ?? 0, message: res.statusMessage ?? '', headers: pairs, body: Buffer.concat(chunks) });
      });
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function listen(app: Express): Promise<http.Server> {
  return new Promise((resolve) => {
    const server = http.createServer(app);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

describe('compressText', () => {
  let ours: http.Server;
  let reference: http.Server;
  const portOf = (server: http.Server): number => (server.address() as AddressInfo).port;

  beforeAll(async () => {
    ours = await listen(appWith(compressText()));
    reference = await listen(appWith(compression({ filter: (_req: Request, res: Response) => isCompressible(res.getHeader('Content-Type')?.toString()) })));
  });
  afterAll(async () => {
    await new Promise((resolve) => ours?.close(resolve));
    await new Promise((resolve) => reference?.close(resolve));
  });

  const paths = ['/json', '/small-json', '/write-head-object', '/write-head-array', '/vary-before', '/no-transform', '/image', '/streamed', '/empty'];
  const encodings: Array<Record<string, string>> = [{}, { 'Accept-Encoding': 'gzip' }, { 'Accept-Encoding': 'identity' }, { 'Accept-Encoding': 'br;q=0, deflate' }];

  it.each(paths.flatMap((path) => encodings.map((headers) => [path, headers] as const)))('GET %s %j: the same answer as the compression package', async (path, headers) => {
    const [got, expected] = await Promise.all([fetchRaw(portOf(ours), 'GET', path, headers), fetchRaw(portOf(reference), 'GET', path, headers)]);
    expect(got).toEqual(expected);
  });

  it('HEAD without Accept-Encoding: the same answer as the compression package', async () => {
    const [got, expected] = await Promise.all([fetchRaw(portOf(ours), 'HEAD', '/json-head', {}), fetchRaw(portOf(reference), 'HEAD', '/json-head', {})]);
    expect(got).toEqual(expected);
  });

  it('without Accept-Encoding, JSON says it varies by Accept-Encoding and is sent as is; images do not vary', async () => {
    const json = await fetchRaw(portOf(ours), 'GET', '/json', {});
    const headers = new Map(json.headers.map(([name, value]) => [name.toLowerCase(), value]));
    expect(headers.get('vary')).toBe('Accept-Encoding');
    expect(headers.get('content-encoding')).toBeUndefined();
    expect(json.body.toString('utf8')).toBe(JSON_BODY);
    const image = await fetchRaw(portOf(ours), 'GET', '/image', {});
    expect(image.headers.map(([name]) => name.toLowerCase())).not.toContain('vary');
  });
});
