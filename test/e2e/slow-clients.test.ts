/**
 * Slow clients (slowloris) against the real command (server/request-limits.ts): a client that sends its headers
 * one byte per second, one that sends nothing, one that trickles its body, and an idle keep-alive connection
 * are each cut within their bound (HttpLimits.HeadersTimeout / RequestTimeout / KeepAliveTimeout, plus the
 * one-second period at which Node checks them); a timed-out request gets a 408 with an Orthanc-style JSON body.
 */
import net from 'node:net';
import { removeDir, startGatewayProcess, type GatewayProcess } from '../helpers/gateway-process';

const HEADERS_TIMEOUT = 2;
const REQUEST_TIMEOUT = 4;
const KEEP_ALIVE_TIMEOUT = 1;
/** Node looks for expired connections every second; a loaded 2-core machine may add some. */
const SLACK_MS = 2500;
/** Every client here gives up on its own after this long. */
const CLIENT_LIMIT_MS = 15_000;

interface Outcome {
  /** Milliseconds from connect to the server's close, or undefined when the client gave up first. */
  closedAfterMs?: number;
  received: string;
  bytesSent: number;
}

/**
 * Connects, sends `head` at once, then `drip` one byte per second (stopping when the server closes), and
 * records when the server closed the connection.
 */
function slowClient(port: number, head: string, drip: string, afterHead?: (socket: net.Socket) => void): Promise<Outcome> {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, '127.0.0.1');
    let received = '';
    let bytesSent = 0;
    let timer: NodeJS.Timeout | undefined;
    const giveUp = setTimeout(() => finish(undefined), CLIENT_LIMIT_MS);
    function finish(closedAfterMs: number | undefined): void {
      clearTimeout(giveUp);
      clearInterval(timer);
      socket.destroy();
      resolve({ closedAfterMs, received, bytesSent });
    }
    socket.on('connect', () => {
      if (head) socket.write(head);
      bytesSent += head.length;
      afterHead?.(socket);
      let index = 0;
      if (drip) {
        timer = setInterval(() => {
          if (socket.destroyed || !socket.writable) return;
          socket.write(drip[index % drip.length]);
          bytesSent++;
          index++;
        }, 1000);
      }
    });
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => finish(Date.now() - started));
  });
}

function jsonBody(answer: string): Record<string, unknown> {
  return JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
}

describe('slow clients are cut within their bound', () => {
  let gateway: GatewayProcess;
  beforeAll(async () => {
    gateway = await startGatewayProcess({
      HttpLimits: { HeadersTimeout: HEADERS_TIMEOUT, RequestTimeout: REQUEST_TIMEOUT, KeepAliveTimeout: KEEP_ALIVE_TIMEOUT },
    });
  }, 300_000);
  afterAll(async () => {
    await gateway?.stop('SIGKILL');
    if (gateway) removeDir(gateway.dir);
  });

  it('headers sent one byte per second: 408 JSON and closed within HeadersTimeout', async () => {
    const head = 'GET /system HTTP/1.1\r\nHost: 127.0.0.1\r\n';
    const outcome = await slowClient(gateway.port, head, `X-Slow: ${'a'.repeat(100)}`);
    expect(outcome.closedAfterMs).toBeDefined();
    expect(outcome.closedAfterMs).toBeGreaterThanOrEqual(HEADERS_TIMEOUT * 1000 - 100);
    expect(outcome.closedAfterMs).toBeLessThan(HEADERS_TIMEOUT * 1000 + SLACK_MS);
    // the client was still sending when it was cut
    expect(outcome.bytesSent).toBeGreaterThan(head.length);
    expect(outcome.received).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(jsonBody(outcome.received)).toMatchObject({ HttpStatus: 408, Message: 'The request did not arrive in time', OrthancError: 'Timeout' });
  });

  it('a connection that sends nothing is closed within HeadersTimeout', async () => {
    const outcome = await slowClient(gateway.port, '', '');
    expect(outcome.closedAfterMs).toBeDefined();
    expect(outcome.closedAfterMs).toBeLessThan(HEADERS_TIMEOUT * 1000 + SLACK_MS);
  });

  it('a body trickled one byte per second: 408 and closed within RequestTimeout', async () => {
    const head = 'POST /tools/find HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n';
    const outcome = await slowClient(gateway.port, head, ' ');
    expect(outcome.closedAfterMs).toBeDefined();
    expect(outcome.closedAfterMs).toBeGreaterThanOrEqual(REQUEST_TIMEOUT * 1000 - 100);
    expect(outcome.closedAfterMs).toBeLessThan(REQUEST_TIMEOUT * 1000 + SLACK_MS);
    expect(outcome.received).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    expect(jsonBody(outcome.received)).toMatchObject({ HttpStatus: 408 });
  });

  it('an idle keep-alive connection is closed after KeepAliveTimeout, once its answer is sent', async () => {
    const outcome = await slowClient(gateway.port, 'GET /system HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', '');
    expect(outcome.received).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(outcome.received).toMatch(/\r\nKeep-Alive: timeout=1\r\n/i);
    expect(outcome.closedAfterMs).toBeDefined();
    expect(outcome.closedAfterMs).toBeLessThan(KEEP_ALIVE_TIMEOUT * 1000 + SLACK_MS);
  });

  it('a client slow but within the bounds is served', async () => {
    // headers over one second, then the body at once
    const body = '{"Level":"Study","Query":{}}';
    const outcome = await slowClient(gateway.port, 'POST /tools/find HTTP/1.1\r\nHost: 127.0.0.1\r\n', '', (socket) => {
      setTimeout(() => socket.write(`Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`), 1000);
    });
    expect(outcome.received).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(outcome.received.endsWith('[]')).toBe(true);
  });
});
