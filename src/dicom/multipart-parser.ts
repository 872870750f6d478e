/**
 * Streaming parser for multipart/related bodies (RFC 2046 §5.1, RFC 2387): STOW-RS requests and the
 * WADO-RS answers our DICOMweb client reads. busboy only handles multipart/form-data, hence this.
 *
 *   for await (const part of parseMultipart(req, getMultipartBoundary(req.headers['content-type']))) {
 *     part.headers['content-type'];  // header names are lower case
 *     await pipeline(part.body, file); // or skip it: moving on discards the rest of the part
 *   }
 *
 * Memory stays bounded whatever the part size: input is pulled only when the consumer reads a part
 * body (or asks for the next part), and at most one input chunk plus a boundary's length is held.
 */
import { Readable } from 'node:stream';
import { parseMediaType, type ParsedMediaType } from './media-types';

/** A malformed or truncated multipart body, or a limit exceeded: the client's fault (→ HTTP 400). */
export class MultipartError extends Error {
  override readonly name: string = 'MultipartError';
}

/** A body that is well formed but holds more parts than MultipartOptions.maxParts (callers may answer 413). */
export class MultipartLimitError extends MultipartError {
  override readonly name = 'MultipartLimitError';
}

export interface MultipartPart {
  /** 0-based position of the part in the body. */
  readonly index: number;
  /** Part headers; names in lower case, repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string>>;
  /**
   * The part's bytes. Read it before asking for the next part: once the consumer moves on, the rest
   * of an unread body is discarded and the stream is destroyed.
   */
  readonly body: Readable;
}

export interface MultipartOptions {
  /** Largest header block of one part, in bytes (default 16 KiB). */
  maxHeaderSize?: number;
  /** Largest number of parts; one more is a MultipartError. Default: no limit. */
  maxParts?: number;
}

export type MultipartSource = Readable | AsyncIterable<Uint8Array | string>;

const DEFAULT_MAX_HEADER_SIZE = 16 * 1024;
const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;
const SPACE = 0x20;
const TAB = 0x09;

/** Parses a Content-Type header; throws MultipartError when it is not a valid media type. */
export function parseContentType(header: string): ParsedMediaType {
  const parsed = parseMediaType(header);
  if ('error' in parsed) throw new MultipartError(`Invalid Content-Type: ${parsed.error}`);
  return parsed;
}

/** RFC 2046 allows 1 to 70 characters; we accept any printable ASCII but no trailing space. */
function checkBoundary(boundary: string): void {
  if (!/^[\x20-\x7e]{1,200}$/.test(boundary) || boundary.endsWith(' ')) {
    throw new MultipartError(`Invalid multipart boundary "${boundary}"`);
  }
}

/** The boundary of a multipart Content-Type; throws MultipartError when absent or not multipart. */
export function getMultipartBoundary(contentType: string | undefined): string {
  if (contentType === undefined || contentType.trim() === '') {
    throw new MultipartError('Missing Content-Type: expected multipart/related with a boundary');
  }
  const parsed = parseContentType(contentType);
  if (!parsed.type.startsWith('multipart/')) {
    throw new MultipartError(`Expected a multipart Content-Type, got "${parsed.type}"`);
  }
  const boundary = parsed.params.boundary;
  if (boundary === undefined) throw new MultipartError('The multipart Content-Type has no boundary parameter');
  checkBoundary(boundary);
  return boundary;
}

type ScanEvent =
  | { kind: 'headers'; headers: Record<string, string> }
  | { kind: 'data'; chunk: Buffer }
  | { kind: 'part-end' }
  | { kind: 'done' };

type ScanState = 'preamble' | 'delimiter' | 'headers' | 'body' | 'done';

/**
 * The synchronous heart of the parser: push() input, next() events until it answers null (needs
 * input), end() at end of input. Errors are sticky: once thrown, every next() throws the same error.
 */
class MultipartScanner {
  /** "\n--boundary": matching on LF alone also accepts bodies written with bare LF line ends. */
  private readonly needle: Buffer;
  private readonly boundary: string;
  // The body is read as if it began with CRLF, so a boundary on the very first line matches too.
  private buf: Buffer = Buffer.from('\r\n');
  private state: ScanState = 'preamble';
  private eof = false;
  private partOpen = false;
  private parts = 0;
  private headerBytes = 0;
  private headerLines: string[] = [];
  private failure: MultipartError | undefined;

  constructor(
    boundary: string,
    private readonly maxHeaderSize: number,
    private readonly maxParts: number | undefined,
  ) {
    this.boundary = boundary;
    this.needle = Buffer.from(`\n--${boundary}`, 'latin1');
  }

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
  }

  end(): void {
    this.eof = true;
  }

  next(): ScanEvent | null {
    if (this.failure) throw this.failure;
    try {
      return this.step();
    } catch (err) {
      if (err instanceof MultipartError) this.failure = err;
      throw err;
    }
  }

  private step(): ScanEvent | null {
    for (;;) {
      switch (this.state) {
        case 'preamble': {
          const at = this.buf.indexOf(this.needle);
          if (at < 0) {
            if (this.eof) throw new MultipartError(`The body contains no multipart boundary "--${this.boundary}"`);
            // Everything but a possible start of the boundary is preamble: drop it.
            this.buf = this.buf.subarray(Math.max(0, this.buf.length - this.needle.length + 1));
            return null;
          }
          this.buf = this.buf.subarray(at + this.needle.length);
          this.state = 'delimiter';
          continue;
        }
        case 'delimiter': {
          const line = this.delimiterLine();
          if (line === 'more') {
            if (this.eof) throw this.truncated();
            return null;
          }
          if (line === 'close') {
            this.state = 'done';
          } else {
            this.state = 'headers';
            this.headerBytes = 0;
            this.headerLines = [];
          }
          // The previous part is complete only once the boundary after it proved well formed.
          if (this.partOpen) {
            this.partOpen = false;
            return { kind: 'part-end' };
          }
          continue;
        }
        case 'headers': {
          // Checked here, after the previous part was delivered complete.
          if (this.maxParts !== undefined && this.parts >= this.maxParts) {
            throw new MultipartLimitError(`Too many parts in the multipart body (the limit is ${this.maxParts})`);
          }
          const headers = this.headerBlock();
          if (headers === null) return null;
          this.parts++;
          this.partOpen = true;
          this.state = 'body';
          return { kind: 'headers', headers };
        }
        case 'body': {
          const at = this.buf.indexOf(this.needle);
          if (at >= 0) {
            // The CR of CRLF belongs to the delimiter; it was kept back with the tail (see below).
            const end = at > 0 && this.buf[at - 1] === CR ? at - 1 : at;
            const chunk = this.buf.subarray(0, end);
            this.buf = this.buf.subarray(at + this.needle.length);
            this.state = 'delimiter';
            if (chunk.length > 0) return { kind: 'data', chunk };
            continue;
          }
          if (this.eof) throw this.truncated();
          const safe = this.buf.length - this.delimiterStartLength();
          if (safe <= 0) return null;
          const chunk = this.buf.subarray(0, safe);
          this.buf = this.buf.subarray(safe);
          return { kind: 'data', chunk };
        }
        case 'done':
          return { kind: 'done' };
      }
    }
  }

  /**
   * Bytes at the end of the buffer that may begin a delimiter (with the CR before it), kept back until more input
   * tells. Usually none: then the next input chunk becomes the buffer as it is, rather than being copied after a
   * kept tail (a copy of every byte of the body).
   */
  private delimiterStartLength(): number {
    const buf = this.buf;
    for (let at = buf.indexOf(LF, Math.max(0, buf.length - this.needle.length + 1)); at >= 0; at = buf.indexOf(LF, at + 1)) {
      if (buf.compare(this.needle, 0, buf.length - at, at) === 0) return buf.length - at + (at > 0 && buf[at - 1] === CR ? 1 : 0);
    }
    return buf.length > 0 && buf[buf.length - 1] === CR ? 1 : 0;
  }

  private truncated(): MultipartError {
    const where = this.partOpen || this.state === 'headers' ? `part ${this.parts + (this.partOpen ? 0 : 1)}` : 'the body';
    return new MultipartError(
      `Unexpected end of multipart body in ${where}: the closing boundary "--${this.boundary}--" is missing`,
    );
  }

  /**
   * After "--boundary": "--" closes the body; otherwise optional transport padding (spaces, tabs)
   * and a line end open a new part. Anything else is malformed (RFC 2046: the boundary may not
   * occur inside a part).
   */
  private delimiterLine(): 'more' | 'close' | 'next' {
    const buf = this.buf;
    if (buf.length === 0) return 'more';
    if (buf[0] === DASH) {
      if (buf.length < 2) return 'more';
      if (buf[1] !== DASH) throw this.badDelimiter();
      this.buf = buf.subarray(2);
      return 'close';
    }
    let pos = 0;
    while (pos < buf.length && (buf[pos] === SPACE || buf[pos] === TAB)) pos++;
    if (pos > this.maxHeaderSize) throw this.badDelimiter();
    if (pos === buf.length) return 'more';
    if (buf[pos] === LF) {
      this.buf = buf.subarray(pos + 1);
      return 'next';
    }
    if (buf[pos] !== CR) throw this.badDelimiter();
    if (pos + 1 === buf.length) return 'more';
    if (buf[pos + 1] !== LF) throw this.badDelimiter();
    this.buf = buf.subarray(pos + 2);
    return 'next';
  }

  private badDelimiter(): MultipartError {
    return new MultipartError(`Malformed multipart body: unexpected characters after boundary "--${this.boundary}"`);
  }

  /** Reads header lines up to the empty line; null when more input is needed. */
  private headerBlock(): Record<string, string> | null {
    for (;;) {
      const nl = this.buf.indexOf(LF);
      if (nl < 0) {
        if (this.headerBytes + this.buf.length > this.maxHeaderSize) throw this.headersTooLarge();
        if (this.eof) throw this.truncated();
        return null;
      }
      this.headerBytes += nl + 1;
      if (this.headerBytes > this.maxHeaderSize) throw this.headersTooLarge();
      const end = nl > 0 && this.buf[nl - 1] === CR ? nl - 1 : nl;
      const line = this.buf.toString('utf8', 0, end);
      this.buf = this.buf.subarray(nl + 1);
      if (line === '') return parseHeaderLines(this.headerLines, this.parts + 1);
      this.headerLines.push(line);
    }
  }

  private headersTooLarge(): MultipartError {
    return new MultipartError(
      `The headers of multipart part ${this.parts + 1} exceed ${this.maxHeaderSize} bytes`,
    );
  }
}

/** "Name: value" lines (with obsolete folding) into lower-cased names. */
function parseHeaderLines(lines: readonly string[], partNumber: number): Record<string, string> {
  const unfolded: string[] = [];
  for (const line of lines) {
    if (line[0] === ' ' || line[0] === '\t') {
      if (unfolded.length === 0) throw new MultipartError(`Malformed header in multipart part ${partNumber}`);
      unfolded[unfolded.length - 1] += ` ${line.trim()}`;
    } else {
      unfolded.push(line);
    }
  }
  // No prototype: a header named "__proto__" must stay a plain entry.
  const headers = Object.create(null) as Record<string, string>;
  for (const line of unfolded) {
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon).trim().toLowerCase() : '';
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) {
      throw new MultipartError(`Malformed header line in multipart part ${partNumber}: "${line.slice(0, 100)}"`);
    }
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return headers;
}

interface ChunkReader {
  /** The next chunk, or null at the end of input. */
  read(): Promise<Buffer | null>;
  /** Called when parsing stops before the input ended. */
  release(): Promise<void>;
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  throw new TypeError('multipart input must be bytes or strings');
}

function isNodeReadable(source: MultipartSource): source is Readable {
  const s = source as Partial<Readable>;
  return typeof s.read === 'function' && typeof s.on === 'function' && typeof s.removeListener === 'function';
}

/**
 * Pulls chunks from a Node Readable with read() rather than its async iterator, which would destroy
 * the stream (an HTTP request: its socket) when we stop early and so prevent a 400 answer.
 */
function readableReader(stream: Readable): ChunkReader {
  const read = (): Promise<Buffer | null> =>
    new Promise<Buffer | null>((resolve, reject) => {
      const attempt = (): boolean => {
        const chunk: unknown = stream.read();
        if (chunk !== null) resolve(toBuffer(chunk));
        else if (stream.readableEnded) resolve(null);
        else if (stream.errored) reject(stream.errored);
        else if (stream.destroyed) reject(new MultipartError('The multipart body was closed before its end'));
        else return false;
        return true;
      };
      if (attempt()) return;
      const cleanup = (): void => {
        stream.removeListener('readable', onReadable);
        stream.removeListener('end', onEnd);
        stream.removeListener('error', onError);
        stream.removeListener('close', onClose);
      };
      const onReadable = (): void => {
        if (attempt()) cleanup();
      };
      const onEnd = (): void => {
        cleanup();
        resolve(null);
      };
      const onError = (err: Error): void => {
        cleanup();
        reject(err);
      };
      const onClose = (): void => {
        cleanup();
        if (stream.readableEnded) resolve(null);
        else reject(stream.errored ?? new MultipartError('The multipart body was closed before its end'));
      };
      stream.on('readable', onReadable);
      stream.on('end', onEnd);
      stream.on('error', onError);
      stream.on('close', onClose);
    });
  return { read, release: async () => undefined };
}

function iterableReader(source: AsyncIterable<Uint8Array | string>): ChunkReader {
  const it = source[Symbol.asyncIterator]();
  return {
    read: async () => {
      const r = await it.next();
      return r.done ? null : toBuffer(r.value);
    },
    release: async () => {
      await it.return?.();
    },
  };
}

interface OpenPart {
  body: Readable;
  /** The part-end event was consumed: nothing of this part is left in the input. */
  ended: boolean;
  /** The consumer moved on or destroyed the body: discard its remaining bytes. */
  abandoned: boolean;
}

/**
 * Parses a multipart body part by part. The source is pulled only as fast as part bodies are read.
 * A Readable source is left as is when parsing stops early (the caller decides to drain or destroy
 * it); another async iterable is closed with return().
 */
export async function* parseMultipart(
  source: MultipartSource,
  boundary: string,
  options: MultipartOptions = {},
): AsyncGenerator<MultipartPart, void, undefined> {
  checkBoundary(boundary);
  const scanner = new MultipartScanner(boundary, options.maxHeaderSize ?? DEFAULT_MAX_HEADER_SIZE, options.maxParts);
  const reader = isNodeReadable(source) ? readableReader(source) : iterableReader(source);
  let inputEnded = false;
  let fatal: unknown;

  const nextEvent = async (): Promise<ScanEvent> => {
    if (fatal !== undefined) throw fatal;
    try {
      for (;;) {
        const event = scanner.next();
        if (event) return event;
        const chunk = await reader.read();
        if (chunk === null) {
          inputEnded = true;
          scanner.end();
        } else {
          scanner.push(chunk);
        }
      }
    } catch (err) {
      fatal = err;
      throw err;
    }
  };

  // A part body and the generator both pull events; one at a time, in call order.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(task: () => Promise<T>): Promise<T> => {
    const run = queue.then(task);
    queue = run.catch(() => undefined);
    return run;
  };

  const openPart = (): OpenPart => {
    const part: OpenPart = { ended: false, abandoned: false, body: undefined as unknown as Readable };
    part.body = new Readable({
      read() {
        serial(async () => {
          if (part.ended || part.abandoned) return;
          const event = await nextEvent();
          if (event.kind === 'part-end') {
            part.ended = true;
            if (!part.abandoned) part.body.push(null);
          } else if (event.kind === 'data') {
            if (!part.abandoned) part.body.push(event.chunk);
          }
        }).catch((err: unknown) => {
          if (!part.abandoned) part.body.destroy(err instanceof Error ? err : new Error(String(err)));
        });
      },
      destroy(err, callback) {
        part.abandoned = true;
        callback(err);
      },
    });
    return part;
  };

  let current: OpenPart | undefined;
  let index = 0;
  try {
    for (;;) {
      const previous = current;
      if (previous && !previous.ended) {
        // The consumer moved on: the unread rest of that part is skipped, still without buffering.
        previous.abandoned = true;
        previous.body.destroy();
      }
      const event = await serial(async () => {
        while (previous && !previous.ended) {
          if ((await nextEvent()).kind === 'part-end') previous.ended = true;
        }
        return nextEvent();
      });
      if (event.kind === 'done') return;
      if (event.kind !== 'headers') throw new Error(`multipart parser: unexpected ${event.kind} event`);
      current = openPart();
      yield { index: index++, headers: event.headers, body: current.body };
    }
  } catch (err) {
    if (current && !current.ended && !current.body.destroyed) {
      current.body.destroy(err instanceof Error ? err : new Error(String(err)));
    }
    throw err;
  } finally {
    if (current && !current.ended && !current.body.destroyed) current.body.destroy();
    // Not awaited: a read may still be pending on the source, and return() would wait for it.
    if (!inputEnded) reader.release().catch(() => undefined);
  }
}
