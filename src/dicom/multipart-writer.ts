/**
 * Writing multipart/related bodies part by part (WADO-RS answers, STOW-RS requests of our client).
 *
 * The layout, for each part:   partHeader(boundary, fields)  body bytes  PART_END
 * and once at the end:         closingDelimiter(boundary)
 * i.e. "--b CRLF headers CRLF CRLF body CRLF --b CRLF ... CRLF --b-- CRLF", as RFC 2046 §5.1.1 wants:
 * the CRLF before each boundary belongs to the boundary, not to the body.
 */
import { randomBytes } from 'node:crypto';
import type { Writable } from 'node:stream';
import { formatMediaType } from './media-types';

export interface PartHeaderFields {
  /** Full media type of the part, e.g. 'application/dicom; transfer-syntax=1.2.840.10008.1.2.1'. */
  contentType: string;
  contentLocation?: string;
  contentLength?: number;
  /** Any other header, written as given after the ones above. */
  extra?: Readonly<Record<string, string>>;
}

export interface MultipartBodyPart {
  headers: PartHeaderFields;
  body: Uint8Array | AsyncIterable<Uint8Array | string>;
  /**
   * Called with each chunk of the body (the body itself when a Uint8Array) once the output has handed
   * it over (a socket: copied to the kernel), so that its memory may be reused; not called for the
   * chunks the output could not write.
   */
  written?: (chunk: Uint8Array) => void;
}

/** CRLF that ends every part body. */
export const PART_END: Buffer = Buffer.from('\r\n');

/** A fresh boundary: 32 hex digits can neither need quoting nor plausibly occur inside a DICOM file. */
export function createBoundary(): string {
  return `DICOMwebBoundary${randomBytes(16).toString('hex')}`;
}

/** The Content-Type of the whole body, e.g. multipart/related; type="application/dicom"; boundary=... */
export function multipartContentType(
  boundary: string,
  partType: string,
  extraParams: Readonly<Record<string, string>> = {},
): string {
  return formatMediaType('multipart/related', { type: partType, ...extraParams, boundary });
}

function checkHeaderValue(name: string, value: string): void {
  // A CR or LF would end the header early and let data smuggle in headers or boundaries.
  if (/[\r\n]/.test(value)) throw new TypeError(`multipart header ${name} contains a line break`);
}

/** "--boundary", the part's headers and the empty line that precedes its body. */
export function partHeader(boundary: string, fields: PartHeaderFields): Buffer {
  const lines = [`--${boundary}`];
  const add = (name: string, value: string): void => {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new TypeError(`invalid multipart header name ${name}`);
    checkHeaderValue(name, value);
    lines.push(`${name}: ${value}`);
  };
  add('Content-Type', fields.contentType);
  if (fields.contentLocation !== undefined) add('Content-Location', fields.contentLocation);
  if (fields.contentLength !== undefined) {
    if (!Number.isSafeInteger(fields.contentLength) || fields.contentLength < 0) {
      throw new TypeError(`invalid Content-Length ${fields.contentLength}`);
    }
    add('Content-Length', String(fields.contentLength));
  }
  for (const [name, value] of Object.entries(fields.extra ?? {})) add(name, value);
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'utf8');
}

/** "--boundary--" CRLF: the end of the body. */
export function closingDelimiter(boundary: string): Buffer {
  return Buffer.from(`--${boundary}--\r\n`, 'latin1');
}

/**
 * The whole body as a stream of chunks, part after part; wrap it in Readable.from() to pipe it
 * with backpressure (the next part is not touched before the previous one was sent).
 */
export async function* encodeMultipart(
  boundary: string,
  parts: Iterable<MultipartBodyPart> | AsyncIterable<MultipartBodyPart>,
): AsyncGenerator<Buffer, void, undefined> {
  for await (const part of parts) {
    yield partHeader(boundary, part.headers);
    if (part.body instanceof Uint8Array) {
      if (part.body.length > 0) yield Buffer.from(part.body.buffer, part.body.byteOffset, part.body.byteLength);
    } else {
      for await (const chunk of part.body) {
        const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        if (bytes.length > 0) yield bytes;
      }
    }
    yield PART_END;
  }
  yield closingDelimiter(boundary);
}

/** Thrown when the output closes before the whole body was handed over (e.g. the client went away). */
function prematureClose(): Error {
  return Object.assign(new Error('the output closed before the multipart body was written'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
}

/**
 * Bytes an output may hold before a writer waits for it to drain. More than its high-water mark: the
 * bytes are in memory already (a frame, a read chunk), and waiting after every part would wake the
 * writer once per part; this way it sleeps until a socket has a few MiB to take at once.
 */
const QUEUED_BYTES = 4 << 20;

/** Resolves at once when `out` holds few bytes, else on 'drain'; rejects when `out` closes or fails first. */
function room(out: Writable): Promise<void> {
  return out.writableLength < QUEUED_BYTES ? Promise.resolve() : drained(out);
}

/** Resolves on 'drain', rejects when `out` closes or fails first. */
function drained(out: Writable): Promise<void> {
  if (out.destroyed) return Promise.reject(prematureClose());
  return new Promise((resolve, reject) => {
    const settle = (error?: Error): void => {
      out.off('drain', onDrain);
      out.off('close', onClose);
      out.off('error', onClose);
      if (error) reject(error);
      else resolve();
    };
    const onDrain = (): void => settle();
    const onClose = (error?: Error): void => settle(error ?? prematureClose());
    out.on('drain', onDrain);
    out.on('close', onClose);
    out.on('error', onClose);
  });
}

/** Resolves once `out` has finished, rejects when it closes or fails first. */
function finished(out: Writable): Promise<void> {
  if (out.writableFinished) return Promise.resolve();
  if (out.destroyed) return Promise.reject(prematureClose());
  return new Promise((resolve, reject) => {
    const settle = (error?: Error): void => {
      out.off('finish', onFinish);
      out.off('close', onClose);
      out.off('error', onClose);
      if (error) reject(error);
      else resolve();
    };
    const onFinish = (): void => settle();
    const onClose = (error?: Error): void => settle(out.writableFinished ? undefined : (error ?? prematureClose()));
    out.on('finish', onFinish);
    out.on('close', onClose);
    out.on('error', onClose);
  });
}

/**
 * Writes the whole body to `out` and ends it, part after part, with backpressure but no stream layer
 * in between: the header, a Uint8Array body and the CRLF of a part go out corked (one writev of a
 * socket), and the next part is only asked for once `out` has room. Rejects when `out` closes first;
 * `parts` is then closed (its `return`), so that what it holds open is released.
 */
export async function writeMultipart(
  out: Writable,
  boundary: string,
  parts: Iterable<MultipartBodyPart> | AsyncIterable<MultipartBodyPart>,
): Promise<void> {
  for await (const part of parts) {
    if (out.destroyed) throw prematureClose();
    const header = partHeader(boundary, part.headers);
    if (part.body instanceof Uint8Array) {
      out.cork();
      out.write(header);
      if (part.body.length > 0) write(out, part.body, part.written);
      const free = out.write(PART_END);
      out.uncork();
      if (!free) await room(out);
      continue;
    }
    if (!out.write(header)) await drained(out);
    await writeChunks(out, part.body, { written: part.written });
    if (!out.write(PART_END)) await drained(out);
  }
  out.end(closingDelimiter(boundary));
  await finished(out);
}

/** out.write, and `written(chunk)` once `out` has handed a byte chunk over; false when `out` wants a drain first. */
function write(out: Writable, chunk: Uint8Array | string, written?: (chunk: Uint8Array) => void): boolean {
  if (!written || typeof chunk === 'string') return out.write(chunk);
  return out.write(chunk, (error) => {
    if (!error) written(chunk);
  });
}

/**
 * Writes the chunks to `out` as they come, waiting for room when `out` asks to (backpressure), and,
 * with `end`, ends `out` and waits until it has finished. Rejects when `out` closes first; the
 * chunks' iterator is then closed. `written` as in MultipartBodyPart.
 */
export async function writeChunks(
  out: Writable,
  chunks: Iterable<Uint8Array | string> | AsyncIterable<Uint8Array | string>,
  options: { end?: boolean; written?: (chunk: Uint8Array) => void } = {},
): Promise<void> {
  for await (const chunk of chunks) {
    if (chunk.length === 0) continue;
    if (out.destroyed) throw prematureClose();
    if (!write(out, chunk, options.written)) await room(out);
  }
  if (!options.end) return;
  out.end();
  await finished(out);
}
