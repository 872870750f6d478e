/**
 * Writing multipart/related bodies part by part (WADO-RS answers, STOW-RS requests of our client).
 *
 * The layout, for each part:   partHeader(boundary, fields)  body bytes  PART_END
 * and once at the end:         closingDelimiter(boundary)
 * i.e. "--b CRLF headers CRLF CRLF body CRLF --b CRLF ... CRLF --b-- CRLF", as RFC 2046 §5.1.1 wants:
 * the CRLF before each boundary belongs to the boundary, not to the body.
 */
import { randomBytes } from 'node:crypto';
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
