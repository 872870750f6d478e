import compression from 'compression';
import type { Request, RequestHandler, Response } from 'express';

/** Text worth compressing: DICOM JSON/XML answers, and the viewer's scripts, styles and wasm. */
const COMPRESSIBLE = /^(?:application\/(?:[\w.+-]*\+)?(?:json|xml)|application\/(?:javascript|wasm)|text\/[\w.+-]+|image\/svg\+xml)\s*(?:;|$)/i;

/**
 * Whether an answer may be gzipped: only text types. Multipart answers (frames, bulk data, STOW
 * replies with bodies) and images are left alone: already compressed or too big to hold back,
 * and clients of multipart/related rarely expect a Content-Encoding on top.
 */
export function isCompressible(contentType: string | undefined): boolean {
  return contentType !== undefined && COMPRESSIBLE.test(contentType.trim());
}

/** gzip/deflate/br as the client's Accept-Encoding allows, for compressible types only; streams stay streams. */
export function compressText(): RequestHandler {
  return compression({
    filter: (_req: Request, res: Response) => isCompressible(res.getHeader('Content-Type')?.toString()),
  });
}
