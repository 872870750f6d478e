import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { keepAliveLoad } from '../../../bench/keep-alive-load';

let server: Server;
let url: string;
let handler: (path: string, res: import('node:http').ServerResponse) => void;
const connections = new Set<string>();

beforeAll(async () => {
  server = createServer((req, res) => handler(req.url ?? '', res));
  server.on('connection', (socket) => connections.add(`${socket.remoteAddress}:${socket.remotePort}`));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});
beforeEach(() => connections.clear());

/** Answers the number in the path back as JSON, with a Content-Length or chunked in two writes. */
function echo(path: string, res: import('node:http').ServerResponse): void {
  const n = Number(path.split('=')[1]);
  const body = JSON.stringify([{ n }]);
  res.setHeader('Content-Type', 'application/json');
  if (n % 2 === 0) {
    res.setHeader('Content-Length', Buffer.byteLength(body));
    res.end(body);
  } else {
    res.write(body.slice(0, 3));
    res.end(body.slice(3));
  }
}

function numbered(): () => string {
  let counter = 0;
  return () => `/q?n=${counter++}`;
}

function checkEcho(body: Buffer, path: string): string | undefined {
  const expected = Number(path.split('=')[1]);
  const answer = JSON.parse(body.toString('utf8')) as Array<{ n: number }>;
  return answer[0]?.n === expected ? undefined : `answered ${answer[0]?.n}`;
}

describe('keepAliveLoad', () => {
  it('keeps each connection open and reads Content-Length and chunked answers, checking sampled bodies', async () => {
    handler = echo;
    const checked: string[] = [];
    const result = await keepAliveLoad({
      url,
      connections: 4,
      seconds: 0.5,
      nextPath: numbered(),
      accept: 'application/json',
      check: (body, path) => {
        checked.push(path);
        return checkEcho(body, path);
      },
    });
    expect(result.firstError).toBeUndefined();
    expect(result.ok).toBeGreaterThan(20);
    expect(result.elapsed).toBeGreaterThanOrEqual(0.5);
    expect(connections.size).toBe(4);
    // the first answer on every connection, then one in a hundred
    expect(checked.length).toBeGreaterThanOrEqual(4);
    expect(checked.length).toBeLessThanOrEqual(4 + Math.ceil(result.ok / 100));
  });

  it('reports a wrong body, an error status and a connection closed during an answer', async () => {
    handler = (path, res) => res.end(JSON.stringify([{ n: -1 }]));
    const wrong = await keepAliveLoad({ url, connections: 2, seconds: 0.2, nextPath: numbered(), accept: '*/*', check: checkEcho });
    expect(wrong.firstError).toMatch(/^\/q\?n=\d+: answered -1$/);

    handler = (_path, res) => {
      res.statusCode = 404;
      res.end('{}');
    };
    const missing = await keepAliveLoad({ url, connections: 2, seconds: 0.2, nextPath: numbered(), accept: '*/*', check: checkEcho });
    expect(missing.firstError).toMatch(/^status 404 for \/q\?n=\d+$/);
    expect(missing.ok).toBe(0);

    handler = (_path, res) => res.socket?.destroy();
    const closed = await keepAliveLoad({ url, connections: 1, seconds: 0.2, nextPath: numbered(), accept: '*/*', check: checkEcho });
    expect(closed.firstError).toBe('the server closed the connection during /q?n=0');
  });
});
