/**
 * Outbound HTTP to one configured DICOMweb server, with undici: Basic auth, the server's HttpHeaders,
 * client certificates, HttpProxy, HttpTimeout / per-server Timeout, HttpsVerifyPeers and
 * HttpsCACertificates. undici's request() never follows redirects: a 3xx is answered as is, so that a
 * remote server cannot bounce us to another host.
 */
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { Agent, ProxyAgent, request, type Dispatcher } from 'undici';
import type { DicomWebServerConfig, GatewayConfig } from '../config/gateway-config';
import { HttpError } from '../server/errors';

export interface OutboundRequest {
  method: 'GET' | 'POST' | 'DELETE';
  url: string;
  /** Per-request headers (the body's HttpHeaders); they override the server's. */
  headers?: Record<string, string>;
  body?: Readable | Buffer | string;
  /** Aborts the request, or the reading of its answer (a canceled job). */
  signal?: AbortSignal;
}

export interface OutboundResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Readable;
}

/**
 * The absolute URL of `uri` on the server. Only relative URIs inside the server's base are allowed
 * (SSRF guard): no scheme, no "//host", no backslashes, no ".." segment, even percent-encoded.
 */
export function resolveServerUrl(server: DicomWebServerConfig, uri: string, args: Record<string, string> = {}): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(uri) || uri.startsWith('//') || uri.includes('\\')) {
    throw new HttpError(400, 'The Uri must be relative to the DICOMweb server', `Uri: ${uri.slice(0, 200)}`);
  }
  const path = uri.split(/[?#]/, 1)[0] ?? '';
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    throw new HttpError(400, 'The Uri is not correctly percent-encoded');
  }
  if (decoded.split('/').some((segment) => segment === '..' || segment === '.')) {
    throw new HttpError(400, 'The Uri must not contain "." or ".." segments', `Uri: ${uri.slice(0, 200)}`);
  }
  const base = new URL(server.url);
  // The plugin appends the Uri to the base: "/studies" is relative to the base path, not to the host.
  const url = new URL(uri.replace(/^\/+/, ''), base);
  if (url.origin !== base.origin || !url.pathname.startsWith(base.pathname)) {
    throw new HttpError(400, 'The Uri escapes the base URL of the DICOMweb server');
  }
  for (const [name, value] of Object.entries(args)) url.searchParams.append(name, value);
  return url.href;
}

/** Seconds: the server's Timeout, else the global HttpTimeout; 0 = no limit. */
function timeoutMs(config: GatewayConfig, server: DicomWebServerConfig): number {
  return (server.timeout > 0 ? server.timeout : config.httpTimeout) * 1000;
}

function createDispatcher(config: GatewayConfig, server: DicomWebServerConfig): Dispatcher {
  const timeout = timeoutMs(config, server);
  const connect = {
    rejectUnauthorized: config.httpsVerifyPeers,
    ...(config.httpsCACertificates ? { ca: readFileSync(config.httpsCACertificates) } : {}),
    ...(server.certificateFile ? { cert: readFileSync(server.certificateFile) } : {}),
    ...(server.certificateKeyFile ? { key: readFileSync(server.certificateKeyFile) } : {}),
    ...(server.certificateKeyPassword ? { passphrase: server.certificateKeyPassword } : {}),
    ...(timeout > 0 ? { timeout } : {}),
  };
  const options = { headersTimeout: timeout, bodyTimeout: timeout, connect };
  if (config.httpProxy) {
    const proxy = /^[a-z]+:\/\//i.test(config.httpProxy) ? config.httpProxy : `http://${config.httpProxy}`;
    return new ProxyAgent({ uri: proxy, requestTls: connect, ...options });
  }
  return new Agent(options);
}

/** The headers of every request to the server: Basic auth, its HttpHeaders, then the request's own. */
export function outboundHeaders(server: DicomWebServerConfig, extra: Record<string, string> = {}): Record<string, string> {
  const headers: Record<string, string> = {};
  if (server.username !== undefined) {
    headers.authorization = `Basic ${Buffer.from(`${server.username}:${server.password ?? ''}`).toString('base64')}`;
  }
  for (const [name, value] of Object.entries({ ...server.httpHeaders, ...extra })) headers[name.toLowerCase()] = value;
  return headers;
}

/**
 * One connection pool per server definition, so that the requests of a STOW or peer transfer reuse their
 * keep-alive connections (a replaced definition is a new object, hence a new pool; idle sockets are unref'd).
 */
const dispatchers = new WeakMap<DicomWebServerConfig, Dispatcher>();

function dispatcherOf(config: GatewayConfig, server: DicomWebServerConfig): Dispatcher {
  let dispatcher = dispatchers.get(server);
  if (dispatcher === undefined) {
    dispatcher = createDispatcher(config, server);
    dispatchers.set(server, dispatcher);
  }
  return dispatcher;
}

/** Sends one request; network failures become 502/504 without any header or credential in the message. */
export async function sendOutbound(config: GatewayConfig, server: DicomWebServerConfig, req: OutboundRequest): Promise<OutboundResponse> {
  const dispatcher = dispatcherOf(config, server);
  try {
    const response = await request(req.url, {
      method: req.method,
      headers: outboundHeaders(server, req.headers),
      body: req.body,
      dispatcher,
      ...(req.signal ? { signal: req.signal } : {}),
    });
    return { status: response.statusCode, headers: response.headers, body: response.body };
  } catch (error) {
    if (req.signal?.aborted) throw new Error('The request was canceled');
    const code = (error as { code?: string }).code ?? '';
    const where = new URL(req.url).origin;
    if (code.includes('TIMEOUT')) throw new HttpError(504, 'Timeout while contacting the DICOMweb server', `${where}: ${code}`);
    throw new HttpError(502, 'Cannot contact the DICOMweb server', `${where}: ${code || (error as Error).message}`);
  }
}

/** Reads at most `limit` bytes of an answer as text (for error messages), then drops the rest. */
export async function bodyExcerpt(body: Readable, limit = 300): Promise<string> {
  let text = '';
  for await (const chunk of body) {
    text += Buffer.from(chunk as Buffer).toString('utf8');
    if (text.length >= limit) break;
  }
  body.destroy();
  return text.slice(0, limit).replace(/\s+/g, ' ').trim();
}

/** Reads a whole (small, JSON) answer. */
export async function readJson(body: Readable, limit = 64 * 1024 * 1024): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(502, 'The answer of the DICOMweb server is too large');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return text.trim() === '' ? null : (JSON.parse(text) as unknown);
  } catch {
    throw new HttpError(502, 'The DICOMweb server did not answer valid JSON', text.slice(0, 200));
  }
}

/** A 502 that says what the remote answered (status and a short excerpt; never our request headers). */
export async function remoteError(what: string, response: OutboundResponse): Promise<HttpError> {
  const excerpt = await bodyExcerpt(response.body);
  return new HttpError(502, `${what}: the DICOMweb server answered HTTP ${response.status}`, excerpt || undefined);
}
