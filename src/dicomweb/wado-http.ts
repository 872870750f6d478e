/**
 * HTTP plumbing shared by the WADO-RS routes: Accept negotiation with PS3.18 errors, the `accept`
 * query parameter, conditional requests, Accept-Encoding, byte ranges, and streaming a multipart
 * answer part by part with backpressure.
 */
import type { Request, Response } from 'express';
import { negotiateMediaType, type MediaOffer, type MediaSelection } from '../dicom/media-types';
import { writeMultipart, type MultipartBodyPart } from '../dicom/multipart-writer';
import { HttpError } from '../server/errors';

/** The `accept` query parameter (PS3.18 §8.3.3.1), which takes precedence over the header. */
function acceptQuery(req: Request): string | undefined {
  const at = req.url.indexOf('?');
  if (at < 0) return undefined;
  const values = [...new URLSearchParams(req.url.slice(at + 1))].filter(([key]) => key.toLowerCase() === 'accept').map(([, value]) => value);
  return values.length > 0 ? values.join(',') : undefined;
}

/** Negotiates, or throws 400 (malformed Accept) / 406 (nothing acceptable, with what is offered). */
export function negotiate(req: Request, offers: readonly MediaOffer[], what: string): MediaSelection {
  const result = negotiateMediaType(req.get('accept'), offers, { acceptQuery: acceptQuery(req) });
  if (result.kind === 'malformed') throw new HttpError(400, 'Malformed Accept header', result.message);
  if (result.kind === 'not-acceptable') throw notAcceptable(what, result.offered);
  return result;
}

export function notAcceptable(what: string, offered: readonly string[]): HttpError {
  return new HttpError(406, `${what} cannot be returned in the requested media type or transfer syntax`, `Available: ${offered.join(', ')}`);
}

/** True when the client takes gzip (Accept-Encoding, RFC 7231 §5.3.4). */
export function acceptsGzip(req: Request): boolean {
  const header = req.get('accept-encoding');
  if (!header) return false;
  return header.split(',').some((item) => {
    const [coding, ...params] = item.trim().split(';');
    const name = coding.trim().toLowerCase();
    if (name !== 'gzip' && name !== 'x-gzip' && name !== '*') return false;
    const q = params.map((p) => p.trim()).find((p) => p.toLowerCase().startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  });
}

/** If-None-Match (weak comparison, RFC 7232 §3.2) against our ETag. */
export function notModified(req: Request, etag: string): boolean {
  const header = req.get('if-none-match');
  if (!header) return false;
  const opaque = (tag: string): string => tag.trim().replace(/^W\//, '');
  return header.split(',').some((tag) => tag.trim() === '*' || opaque(tag) === opaque(etag));
}

export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

/**
 * The single byte range asked by a Range header, undefined when there is none or it is not one we
 * serve (several ranges, other units: the whole representation is sent, as RFC 7233 allows), or
 * 'unsatisfiable' (→ 416).
 */
export function requestedRange(req: Request, size: number): ByteRange | 'unsatisfiable' | undefined {
  const header = req.get('range');
  if (!header) return undefined;
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  if (match[1] === '') {
    const suffix = Number(match[2]);
    if (suffix === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/**
 * The items of `items`, the first one awaited before this resolves: an answer prepared this way
 * still gets a proper error status when its first item fails (unknown file, impossible transcoding);
 * a later failure can only cut the answer short. Closing the result closes `items`.
 */
export async function primed<T>(items: AsyncIterator<T>): Promise<AsyncIterable<T>> {
  const first = await items.next();
  async function* all(): AsyncGenerator<T> {
    try {
      if (first.done) return;
      yield first.value;
      for (;;) {
        const next = await items.next();
        if (next.done) return;
        yield next.value;
      }
    } finally {
      await items.return?.();
    }
  }
  return all();
}

/** Sends a multipart answer, its first part prepared before anything is sent (see primed). */
export async function sendMultipart(res: Response, contentType: string, boundary: string, parts: AsyncIterator<MultipartBodyPart>): Promise<void> {
  const ready = await primed(parts);
  res.status(200);
  res.setHeader('Content-Type', contentType);
  await writeMultipart(res, boundary, ready);
}

/** The comma-separated frame list of a frames URL: 1-based integers (400 otherwise). */
export function parseFrameList(text: string): number[] {
  const items = text.split(',').map((item) => item.trim());
  const frames = items.map((item) => (/^\d+$/.test(item) ? Number(item) : NaN));
  if (frames.length === 0 || frames.some((n) => !Number.isSafeInteger(n) || n < 1)) {
    throw new HttpError(400, 'Invalid frame list', `Frame numbers are positive integers separated by commas, got "${text}"`);
  }
  return frames;
}
