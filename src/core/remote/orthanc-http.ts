/**
 * The HTTP client of the remote core: one keep-alive undici Pool to one Orthanc, Basic credentials added to
 * every request, and every failure translated into a CoreError with the status a DICOMweb client should see.
 */
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { Pool, type Dispatcher } from 'undici';
import { CoreError } from '../native-model';

export interface OrthancHttpOptions {
  /** Base URL, possibly with a path prefix (Orthanc behind a reverse proxy) and user info. */
  url: string;
  username?: string;
  password?: string;
  /** Seconds without headers or body bytes before giving up; 0 = wait forever (Orthanc's HttpTimeout). */
  timeoutSeconds: number;
  verifyPeers?: boolean;
  /** PEM file of extra trusted CAs (HttpsCACertificates). */
  caFile?: string;
}

export interface CoreTarget {
  /** scheme://host:port, without credentials or path. */
  origin: string;
  /** '' or a path prefix without a trailing slash, e.g. '/orthanc'. */
  basePath: string;
  /** The value of the Authorization header for the core, or undefined without credentials. */
  authorization?: string;
  /** The URL without credentials, for logs. */
  display: string;
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface RequestOptions {
  body?: Buffer | string | Readable;
  headers?: Record<string, string>;
}

export interface CoreResponse {
  status: number;
  headers: Dispatcher.ResponseData['headers'];
  body: Readable;
}

/** Orthanc's JSON error body (the fields we use). */
interface OrthancErrorBody {
  Message?: string;
  Details?: string;
}

/**
 * Orthanc's embedded server announces "Keep-Alive: timeout=1"; undici subtracts this margin from the hint
 * (2 s by default, which would disable reuse altogether) so that a socket is never reused as the core closes it.
 */
const KEEP_ALIVE_MARGIN_MS = 400;
const CONNECT_TIMEOUT_MS = 10_000;
const MAX_CONNECTIONS = 32;

export const CREDENTIALS_REFUSED = "The core refused the gateway's credentials";
export const CORE_UNREACHABLE = 'The core is not reachable';

/** Splits the configured URL into what the pool, the proxy and the logs need (credentials never in `display`). */
export function coreTarget(url: string, username?: string, password?: string): CoreTarget {
  const parsed = new URL(url);
  const user = username ?? (parsed.username ? decodeURIComponent(parsed.username) : undefined);
  const pass = password ?? (parsed.password ? decodeURIComponent(parsed.password) : undefined);
  parsed.username = '';
  parsed.password = '';
  const basePath = parsed.pathname.replace(/\/+$/, '');
  return {
    origin: parsed.origin,
    basePath,
    authorization: user !== undefined ? `Basic ${Buffer.from(`${user}:${pass ?? ''}`, 'utf8').toString('base64')}` : undefined,
    display: `${parsed.origin}${basePath}`,
  };
}

export class OrthancHttp {
  readonly target: CoreTarget;
  private readonly pool: Pool;
  private readonly timeoutSeconds: number;

  constructor(options: OrthancHttpOptions) {
    this.target = coreTarget(options.url, options.username, options.password);
    this.timeoutSeconds = options.timeoutSeconds;
    const timeout = options.timeoutSeconds * 1000;
    this.pool = new Pool(this.target.origin, {
      connections: MAX_CONNECTIONS,
      keepAliveTimeoutThreshold: KEEP_ALIVE_MARGIN_MS,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      connect: {
        timeout: CONNECT_TIMEOUT_MS,
        rejectUnauthorized: options.verifyPeers ?? true,
        ...(options.caFile ? { ca: readFileSync(options.caFile) } : {}),
      },
    });
  }

  /** Sends a request; any status is answered (the caller decides), only network failures throw (as CoreError). */
  async send(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<CoreResponse> {
    const headers: Record<string, string> = { ...options.headers };
    if (this.target.authorization) headers.authorization = this.target.authorization;
    try {
      const answer = await this.pool.request({ method, path: this.target.basePath + path, headers, body: options.body });
      return { status: answer.statusCode, headers: answer.headers, body: answer.body };
    } catch (error) {
      throw this.networkError(error);
    }
  }

  /** Sends a request and answers the body of a 2xx; other statuses become CoreErrors. */
  async ok(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<CoreResponse> {
    const response = await this.send(method, path, options);
    if (response.status >= 200 && response.status < 300) return response;
    throw await this.statusError(response);
  }

  /** A JSON request (a string body is sent as text, as /tools/lookup wants) answering JSON. */
  async json<T>(method: HttpMethod, path: string, body?: unknown): Promise<T> {
    return this.requestJson<T>(method, path, jsonBody(body));
  }

  /** Any request answering JSON. */
  async requestJson<T>(method: HttpMethod, path: string, options: RequestOptions): Promise<T> {
    const response = await this.ok(method, path, options);
    return (await this.readJson(response)) as T;
  }

  /** A text answer (e.g. one metadata value); undefined on 404. */
  async textOrUndefined(path: string): Promise<string | undefined> {
    const response = await this.send('GET', path);
    if (response.status === 404) {
      response.body.resume();
      return undefined;
    }
    if (response.status < 200 || response.status >= 300) throw await this.statusError(response);
    return (await this.readAll(response.body)).toString('utf8');
  }

  /** Like `json`, but a 404 answers undefined (unknown resource). */
  async jsonOrUndefined<T>(method: HttpMethod, path: string, body?: unknown): Promise<T | undefined> {
    const response = await this.send(method, path, jsonBody(body));
    if (response.status === 404) {
      response.body.resume();
      return undefined;
    }
    if (response.status < 200 || response.status >= 300) throw await this.statusError(response);
    return (await this.readJson(response)) as T;
  }

  async buffer(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<Buffer> {
    const response = await this.ok(method, path, options);
    return this.readAll(response.body);
  }

  /** The CoreError for a non-2xx answer (its body is consumed). */
  async statusError(response: CoreResponse): Promise<CoreError> {
    let error: OrthancErrorBody = {};
    try {
      const text = (await this.readAll(response.body)).toString('utf8');
      if (text) error = JSON.parse(text) as OrthancErrorBody;
    } catch {
      // not JSON (or cut): the status alone tells enough
    }
    return statusToCoreError(response.status, error);
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  private async readJson(response: CoreResponse): Promise<unknown> {
    const text = (await this.readAll(response.body)).toString('utf8');
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new CoreError(502, 'The core answered something that is not JSON');
    }
  }

  private async readAll(body: Readable): Promise<Buffer> {
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of body) chunks.push(chunk as Buffer);
    } catch (error) {
      throw this.networkError(error);
    }
    return Buffer.concat(chunks);
  }

  networkError(error: unknown): CoreError {
    if (error instanceof CoreError) return error;
    const code = errorCode(error);
    if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
      return new CoreError(504, 'The core did not answer in time', `HttpTimeout is ${this.timeoutSeconds} s`);
    }
    // refused, reset, unknown host, connect timeout, closed pool: in every case the core cannot be used now
    return new CoreError(503, CORE_UNREACHABLE, code ?? (error instanceof Error ? error.message : undefined));
  }
}

/** Maps a status of the core to the one our client should see; the core's credentials problems are ours (502). */
export function statusToCoreError(status: number, error: OrthancErrorBody = {}): CoreError {
  const message = error.Message ?? `The core answered HTTP ${status}`;
  if (status === 401 || status === 403) return new CoreError(502, CREDENTIALS_REFUSED);
  if (status >= 400 && status < 500) return new CoreError(status, message, error.Details);
  if (status === 501 || status === 503 || status === 504 || status === 507) return new CoreError(status, message, error.Details);
  return new CoreError(502, `The core failed: ${message}`, error.Details);
}

function jsonBody(body: unknown): RequestOptions {
  if (body === undefined) return {};
  if (typeof body === 'string') return { body, headers: { 'content-type': 'text/plain' } };
  return { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } };
}

/** The code of a network error, looking into `cause` and aggregated errors (happy eyeballs). */
function errorCode(error: unknown): string | undefined {
  const candidate = error as { code?: unknown; cause?: unknown; errors?: unknown[] } | undefined;
  if (!candidate || typeof candidate !== 'object') return undefined;
  if (typeof candidate.code === 'string') return candidate.code;
  if (candidate.cause) return errorCode(candidate.cause);
  if (Array.isArray(candidate.errors) && candidate.errors.length > 0) return errorCode(candidate.errors[0]);
  return undefined;
}
