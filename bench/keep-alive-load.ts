/**
 * The load generator of the concurrent-search test: `connections` keep-alive HTTP/1.1 connections, each sending its
 * next GET as soon as the previous answer is complete, for a fixed time.
 *
 * Plain sockets and a minimal response reader rather than undici: on a 2-core machine the client shares the CPU with
 * the server under test, and undici's request path (a timer, an abort signal and an async body iterator per request,
 * ~0.4-0.6 ms of CPU) took a third of it. Every answer is checked for its status and framing, and a sample of them
 * (the first on each connection, then one in SAMPLE_EVERY) by the caller's `check` of the body.
 */
import net from 'node:net';

export interface KeepAliveLoadOptions {
  /** Base URL of the server, http only (loopback). */
  url: string;
  connections: number;
  seconds: number;
  /** Path and query of the next request. */
  nextPath(): string;
  accept: string;
  /** Undefined when a sampled answer body is right for its path, else what is wrong. */
  check(body: Buffer, path: string): string | undefined;
}

export interface KeepAliveLoadResult {
  /** Complete 2xx answers. */
  ok: number;
  /** Measured time in seconds (the last answers may end a little after `seconds`). */
  elapsed: number;
  firstError?: string;
}

const SAMPLE_EVERY = 100;
/** An answer that takes longer than this fails the run. */
const ANSWER_TIMEOUT_MS = 10_000;
const HEADER_END = Buffer.from('\r\n\r\n');
const CRLF = Buffer.from('\r\n');

/** Framing of one answer: where its body ends, once the bytes received say so. */
interface Answer {
  status: number;
  headerLength: number;
  /** Content-Length, or undefined for a chunked body. */
  length?: number;
}

function parseHead(head: string): Answer | string {
  const lines = head.split('\r\n');
  const status = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]);
  if (!status) return `unexpected status line "${lines[0].slice(0, 40)}"`;
  let length: number | undefined;
  let chunked = false;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim().toLowerCase();
    if (name === 'content-length') length = Number(value);
    else if (name === 'transfer-encoding') chunked = value.includes('chunked');
    else if (name === 'connection' && value === 'close') return 'the server closes the connection after each answer';
  }
  if (!chunked && length === undefined) return 'an answer with neither Content-Length nor chunked encoding';
  return { status: Number(status[1]), headerLength: Buffer.byteLength(head) + HEADER_END.length, length: chunked ? undefined : length };
}

/** The body of a chunked answer and the bytes it took, or undefined while incomplete. */
function dechunk(data: Buffer, from: number): { body: Buffer; end: number } | undefined {
  const chunks: Buffer[] = [];
  let at = from;
  for (;;) {
    const lineEnd = data.indexOf(CRLF, at);
    if (lineEnd < 0) return undefined;
    const size = parseInt(data.toString('latin1', at, lineEnd), 16);
    if (size === 0) {
      // no trailers are expected: the answer ends with the empty line after the last chunk
      return data.length >= lineEnd + 4 ? { body: Buffer.concat(chunks), end: lineEnd + 4 } : undefined;
    }
    const start = lineEnd + 2;
    if (data.length < start + size + 2) return undefined;
    chunks.push(data.subarray(start, start + size));
    at = start + size + 2;
  }
}

export function keepAliveLoad(options: KeepAliveLoadOptions): Promise<KeepAliveLoadResult> {
  const target = new URL(options.url);
  const port = Number(target.port || 80);
  const host = target.hostname;
  const started = process.hrtime.bigint();
  const deadline = Date.now() + options.seconds * 1000;
  let ok = 0;
  let firstError: string | undefined;
  const fail = (message: string): void => {
    firstError ??= message;
  };

  const connection = (): Promise<void> =>
    new Promise((resolve) => {
      const socket = net.connect({ host, port, noDelay: true });
      let buffered: Buffer = Buffer.alloc(0);
      let path = '';
      let answered = 0;
      let sentAt = 0;
      const send = (): void => {
        if (Date.now() >= deadline || firstError !== undefined) {
          socket.end();
          return;
        }
        path = options.nextPath();
        sentAt = Date.now();
        socket.write(`GET ${path} HTTP/1.1\r\nHost: ${target.host}\r\nAccept: ${options.accept}\r\n\r\n`);
      };
      const watchdog = setInterval(() => {
        if (sentAt !== 0 && Date.now() - sentAt > ANSWER_TIMEOUT_MS) {
          fail(`no answer to ${path} within ${ANSWER_TIMEOUT_MS / 1000} s`);
          socket.destroy();
        }
      }, 1000);
      socket.on('connect', send);
      socket.on('data', (chunk: Buffer) => {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
        const headEnd = buffered.indexOf(HEADER_END);
        if (headEnd < 0) return;
        const answer = parseHead(buffered.toString('latin1', 0, headEnd));
        if (typeof answer === 'string') {
          fail(answer);
          socket.destroy();
          return;
        }
        let body: Buffer;
        let end: number;
        if (answer.length !== undefined) {
          end = answer.headerLength + answer.length;
          if (buffered.length < end) return;
          body = buffered.subarray(answer.headerLength, end);
        } else {
          const chunked = dechunk(buffered, answer.headerLength);
          if (!chunked) return;
          ({ body, end } = chunked);
        }
        if (buffered.length > end) {
          fail('bytes after the answer to a request that was not pipelined');
          socket.destroy();
          return;
        }
        buffered = Buffer.alloc(0);
        sentAt = 0;
        if (answer.status >= 300) {
          fail(`status ${answer.status} for ${path}`);
        } else {
          const wrong = answered % SAMPLE_EVERY === 0 ? options.check(body, path) : undefined;
          if (wrong !== undefined) fail(`${path}: ${wrong}`);
          else ok++;
        }
        answered++;
        send();
      });
      socket.on('error', (error) => fail(error.message));
      socket.on('close', () => {
        clearInterval(watchdog);
        if (sentAt !== 0) fail(`the server closed the connection during ${path}`);
        resolve();
      });
    });

  return Promise.all(Array.from({ length: options.connections }, connection)).then(() => ({
    ok,
    elapsed: Number(process.hrtime.bigint() - started) / 1e9,
    ...(firstError !== undefined ? { firstError } : {}),
  }));
}
