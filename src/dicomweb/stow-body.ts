/**
 * A STOW-RS request body as a sequence of parts, whatever its framing: multipart/related (our streaming
 * parser), multipart/form-data (busboy: `curl -F`, browser uploads) or one bare application/dicom body,
 * after undoing any Content-Encoding. Parts arrive one at a time; nothing is buffered beyond a chunk.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Transform, type Readable } from 'node:stream';
import zlib from 'node:zlib';
import busboy from 'busboy';
import { HttpError } from '../server/errors';
import { getMultipartBoundary, MultipartError, MultipartLimitError, parseMultipart } from '../dicom/multipart-parser';
import { parseMediaType, splitHeaderList } from '../dicom/media-types';

export interface BodyPart {
  /** Media type of the part in lower case without parameters ('' when the part has none). */
  mediaType: string;
  /** Its transfer-syntax parameter, when the client gave one. */
  transferSyntax?: string;
  body: Readable;
}

export type BodyFraming = { kind: 'related'; boundary: string } | { kind: 'form-data' } | { kind: 'single'; part: Omit<BodyPart, 'body'> };

const DICOM = 'application/dicom';

/** Caps of one request's body (DicomWeb.StowMaxRequestSize / StowMaxParts); beyond them the answer is 413. */
export interface StowBodyLimits {
  /** Bytes once Content-Encoding is undone (a small gzip body may inflate to any size). */
  maxBytes?: number;
  maxParts?: number;
}

/** Set per request by server/request-limits.ts before the STOW-RS route runs; follows the body through decoding. */
const bodyLimits = new WeakMap<Readable, StowBodyLimits>();

export function limitStowBody(req: Readable, limits: StowBodyLimits): void {
  bodyLimits.set(req, limits);
}

/**
 * What the Content-Type announces. Throws HttpError 415 for what STOW-RS cannot take
 * (including the metadata + bulk data variants, which this server does not implement) and 400 for a
 * multipart type without a usable boundary.
 */
export function bodyFraming(contentType: string | undefined): BodyFraming {
  if (!contentType || contentType.trim() === '') {
    throw new HttpError(415, 'A STOW-RS request needs a Content-Type', 'Expected multipart/related; type="application/dicom"');
  }
  const parsed = parseMediaType(contentType);
  if ('error' in parsed) throw new HttpError(415, 'Unsupported Content-Type for STOW-RS', parsed.error);
  if (parsed.type === 'multipart/related') {
    // the type parameter is mandatory in PS3.18, but a missing one only means "look at each part"
    const partType = (parsed.params.type ?? DICOM).toLowerCase();
    if (partType !== DICOM) {
      throw new HttpError(
        415,
        `STOW-RS parts of type "${partType}" are not supported`,
        'Send DICOM PS3.10 instances: multipart/related; type="application/dicom" (metadata and bulk data requests are not implemented)',
      );
    }
    try {
      return { kind: 'related', boundary: getMultipartBoundary(contentType) };
    } catch (error) {
      throw new HttpError(400, 'Malformed multipart Content-Type', (error as Error).message);
    }
  }
  if (parsed.type === 'multipart/form-data') {
    if (!parsed.params.boundary) throw new HttpError(400, 'Malformed multipart Content-Type', 'multipart/form-data without a boundary');
    return { kind: 'form-data' };
  }
  if (parsed.type === DICOM) {
    return { kind: 'single', part: { mediaType: DICOM, transferSyntax: parsed.params['transfer-syntax'] } };
  }
  throw new HttpError(
    415,
    `Unsupported Content-Type for STOW-RS: ${parsed.type}`,
    'Expected multipart/related; type="application/dicom", multipart/form-data or application/dicom',
  );
}

/** The decoders for a Content-Encoding header, outermost last (RFC 9110 §8.4); 415 for an unknown coding. */
function decoderNames(contentEncoding: string | undefined): string[] {
  const codings = splitHeaderList(contentEncoding ?? '').map((c) => c.toLowerCase());
  for (const coding of codings) {
    if (!['gzip', 'x-gzip', 'deflate', 'identity'].includes(coding)) {
      throw new HttpError(415, `Unsupported Content-Encoding: ${coding}`, 'Supported: gzip, deflate, identity');
    }
  }
  return codings.filter((c) => c !== 'identity').reverse();
}

/** Checks a Content-Encoding header up front (before the body is read). */
export function checkContentEncoding(contentEncoding: string | undefined): void {
  decoderNames(contentEncoding);
}

/**
 * The request body with its Content-Encoding undone. Not `pipeline()`: that would destroy the request
 * (and its socket) when the compressed data is corrupt, and then no 400 could be answered.
 */
export function decodedBody(req: Readable, contentEncoding: string | undefined): Readable {
  let stream = req;
  for (let layers = decoderNames(contentEncoding).length; layers > 0; layers--) {
    // createUnzip reads both gzip and zlib-wrapped deflate (what "deflate" means in HTTP)
    const decoder = zlib.createUnzip();
    forwardAbort(stream, decoder);
    stream.pipe(decoder);
    stream = decoder;
  }
  const limits = bodyLimits.get(req);
  if (limits?.maxBytes !== undefined) stream = cappedBody(stream, limits.maxBytes);
  if (limits) bodyLimits.set(stream, limits);
  return stream;
}

/** The body, cut with an HttpError 413 (which the part readers pass on) once it exceeds maxBytes. */
function cappedBody(source: Readable, maxBytes: number): Readable {
  let total = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      total += chunk.length;
      if (total > maxBytes) done(new HttpError(413, 'The STOW-RS request is too large', `More than ${maxBytes} bytes of DICOM data`));
      else done(null, chunk);
    },
  });
  forwardAbort(source, counter);
  source.pipe(counter);
  return counter;
}

function tooManyParts(maxParts: number): HttpError {
  return new HttpError(413, 'Too many parts in the STOW-RS request', `At most ${maxParts} instances per request`);
}

/** pipe() does not pass on errors or an early close: a client that vanishes must still end the consumer. */
function forwardAbort(source: Readable, target: { destroy(error?: Error): unknown }): void {
  const onError = (error: Error): void => {
    target.destroy(error);
  };
  source.once('error', onError);
  source.once('close', () => {
    source.off('error', onError);
    if (!source.readableEnded) target.destroy(new MultipartError('The request body was closed before its end'));
  });
}

function partOf(mediaType: string | undefined, body: Readable): BodyPart {
  const parsed = mediaType ? parseMediaType(mediaType) : undefined;
  if (!parsed || 'error' in parsed) return { mediaType: mediaType ? mediaType.toLowerCase() : '', body };
  return { mediaType: parsed.type, transferSyntax: parsed.params['transfer-syntax'], body };
}

async function* relatedParts(body: Readable, boundary: string, maxParts: number | undefined): AsyncGenerator<BodyPart> {
  try {
    for await (const part of parseMultipart(body, boundary, { maxParts })) yield partOf(part.headers['content-type'], part.body);
  } catch (error) {
    if (error instanceof MultipartLimitError && maxParts !== undefined) throw tooManyParts(maxParts);
    throw error;
  }
}

/**
 * busboy pushes files; this turns them into a pull sequence. busboy waits until a file stream is read
 * (backpressure), so at most one file is in flight; unread files must be resumed by the consumer.
 */
async function* formDataParts(body: Readable, headers: IncomingHttpHeaders, maxParts: number | undefined): AsyncGenerator<BodyPart> {
  let parser: busboy.Busboy;
  try {
    parser = busboy({ headers, defParamCharset: 'utf8', limits: maxParts === undefined ? {} : { files: maxParts } });
  } catch (error) {
    throw new HttpError(400, 'Malformed multipart/form-data request', (error as Error).message);
  }
  const queue: BodyPart[] = [];
  let finished = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const signal = (): void => {
    wake?.();
    wake = undefined;
  };
  parser.on('file', (_name, stream) => {
    // browsers label files as they please (octet-stream, text/plain...): the bytes decide
    queue.push({ mediaType: '', body: stream });
    signal();
  });
  parser.on('close', () => {
    finished = true;
    signal();
  });
  parser.on('error', (error: Error) => {
    failure = error instanceof HttpError ? error : new MultipartError(error.message);
    signal();
  });
  parser.on('filesLimit', () => {
    failure ??= tooManyParts(maxParts ?? 0);
    signal();
  });
  forwardAbort(body, parser);
  body.pipe(parser);
  try {
    for (;;) {
      const next = queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (failure) throw failure;
      if (finished) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    body.unpipe(parser);
    for (const left of queue) left.body.resume();
  }
}

/** The parts of a request body, one after the other, as they arrive. */
export function bodyParts(framing: BodyFraming, body: Readable, headers: IncomingHttpHeaders): AsyncGenerator<BodyPart> {
  const maxParts = bodyLimits.get(body)?.maxParts;
  if (framing.kind === 'related') return relatedParts(body, framing.boundary, maxParts);
  if (framing.kind === 'form-data') return formDataParts(body, headers, maxParts);
  return (async function* single() {
    yield { ...framing.part, body };
    // the size cap cut the body: that is the answer to the request, not an outcome of its one part
    if (body.errored instanceof HttpError) throw body.errored;
  })();
}
