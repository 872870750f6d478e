/**
 * Timed HTTP requests with undici (keep-alive), bounded by timeouts; multipart/related bodies for STOW-RS.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { Readable } from 'node:stream';
import { Agent, request, type Dispatcher } from 'undici';

export interface TimedResponse {
  status: number;
  /** Body bytes received. */
  bytes: number;
  /** Milliseconds from sending to the last body byte. */
  ms: number;
  contentType: string;
  /** The body as text, when asked for. */
  text?: string;
}

export interface TimedRequestOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  headers?: Record<string, string>;
  body?: Buffer | Readable;
  /** Whole-request limit (default 300 s). */
  timeoutMs?: number;
  keepText?: boolean;
}

/** One keep-alive agent per system, so no connection setup is measured after the first request. */
export function keepAliveAgent(connections = 16): Agent {
  return new Agent({ connections, keepAliveTimeout: 30_000, headersTimeout: 300_000, bodyTimeout: 300_000 });
}

export async function timedRequest(
  dispatcher: Dispatcher,
  url: string,
  options: TimedRequestOptions = {},
): Promise<TimedResponse> {
  const started = process.hrtime.bigint();
  const response = await request(url, {
    dispatcher,
    method: options.method ?? 'GET',
    headers: options.headers,
    body: options.body,
    signal: AbortSignal.timeout(options.timeoutMs ?? 300_000),
  });
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of response.body) {
    const buffer = chunk as Buffer;
    bytes += buffer.length;
    if (options.keepText) chunks.push(buffer);
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const contentType = String(response.headers['content-type'] ?? '');
  const text = options.keepText ? Buffer.concat(chunks).toString('utf8') : undefined;
  return { status: response.statusCode, bytes, ms, contentType, text };
}

export interface StreamedMultipartBody {
  body: Readable;
  contentType: string;
  /** Exact body length, sent as Content-Length. */
  length: number;
}

/**
 * A multipart/related; type="application/dicom" body holding the given Part 10 files, read from disk
 * as it is sent (one file open at a time), so a request of any size costs the client no memory.
 */
export function streamedStowBody(files: string[]): StreamedMultipartBody {
  const boundary = `bench-${randomBytes(12).toString('hex')}`;
  const header = Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, 'latin1');
  const partEnd = Buffer.from('\r\n', 'latin1');
  const closing = Buffer.from(`--${boundary}--\r\n`, 'latin1');
  const length = files.reduce((sum, file) => sum + header.length + statSync(file).size + partEnd.length, closing.length);
  async function* pieces(): AsyncGenerator<Buffer> {
    for (const file of files) {
      yield header;
      for await (const chunk of createReadStream(file, { highWaterMark: 256 * 1024 })) yield chunk as Buffer;
      yield partEnd;
    }
    yield closing;
  }
  return { body: Readable.from(pieces()), contentType: `multipart/related; type="application/dicom"; boundary=${boundary}`, length };
}

/** Length of a JSON array answer, or undefined when the text is not a JSON array. */
export function jsonArrayLength(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? value.length : undefined;
  } catch {
    return undefined;
  }
}

/** Number of items in a DICOM JSON sequence attribute (e.g. 00081198 FailedSOPSequence) of a STOW answer. */
export function sequenceLength(text: string | undefined, tag: string): number {
  if (!text) return 0;
  try {
    const value = JSON.parse(text) as Record<string, { Value?: unknown[] } | undefined>;
    return value[tag]?.Value?.length ?? 0;
  } catch {
    return 0;
  }
}

/** A request whose answer text is kept (JSON bodies sent as JSON). */
export async function call(live: { agent: Dispatcher }, method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, body?: unknown): Promise<TimedResponse> {
  return timedRequest(live.agent, url, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : Buffer.from(JSON.stringify(body)),
    keepText: true,
    timeoutMs: 900_000,
  });
}

/** Native DELETE of a study; a study that is not there is fine. */
export async function deleteStudy(live: { agent: Dispatcher }, nativeUrl: string, id: string): Promise<void> {
  const response = await call(live, 'DELETE', `${nativeUrl}/studies/${id}`);
  if (response.status >= 400 && response.status !== 404) throw new Error(`DELETE /studies/${id}: status ${response.status}`);
}

export async function countInstances(live: { agent: Dispatcher }, nativeUrl: string, id: string): Promise<number> {
  const response = await call(live, 'GET', `${nativeUrl}/studies/${id}/instances`);
  if (response.status === 404) return 0;
  return (JSON.parse(response.text ?? '[]') as unknown[]).length;
}
