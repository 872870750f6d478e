import type { OutgoingHttpHeader, OutgoingHttpHeaders, ServerResponse } from 'node:http';
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

/** Cache-Control: no-transform forbids a Content-Encoding (as the compression package reads it). */
const NO_TRANSFORM = /(?:^|,)\s*?no-transform\s*?(?:,|$)/i;

/** gzip/deflate/br as the client's Accept-Encoding allows, for compressible types only; streams stay streams. */
export function compressText(): RequestHandler {
  const compress = compression({
    filter: (_req: Request, res: Response) => isCompressible(res.getHeader('Content-Type')?.toString()),
  });
  return (req, res, next) => {
    if (req.headers['accept-encoding'] !== undefined) {
      compress(req, res, next);
      return;
    }
    // Without Accept-Encoding the package sends identity and its only trace is "Vary: Accept-Encoding" on the
    // answers it would compress for other clients: that header alone, without wrapping write/end and negotiating
    // for every search (a few % of a QIDO request's CPU)
    onHeaders(res, () => {
      const cacheControl = res.getHeader('Cache-Control');
      if (isCompressible(res.getHeader('Content-Type')?.toString()) && !(typeof cacheControl === 'string' && NO_TRANSFORM.test(cacheControl))) {
        res.vary('Accept-Encoding');
      }
    });
    next();
  };
}

/**
 * Runs `listener` just before the status line and headers are written (explicit writeHead, or the implicit one of
 * the first write/end). Headers given to writeHead itself are set on the response first, so the listener sees them.
 */
function onHeaders(res: ServerResponse, listener: () => void): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: ServerResponse, statusCode: number, ...rest: unknown[]): ServerResponse {
    res.writeHead = writeHead;
    const reason = typeof rest[0] === 'string' ? rest.shift() : undefined;
    const headers = rest[0] as OutgoingHttpHeaders | OutgoingHttpHeader[] | undefined;
    if (Array.isArray(headers)) {
      for (let i = 0; i + 1 < headers.length; i += 2) this.setHeader(String(headers[i]), headers[i + 1]);
    } else if (headers) {
      for (const [name, value] of Object.entries(headers)) if (value !== undefined) this.setHeader(name, value);
    }
    listener();
    return (writeHead as (this: ServerResponse, code: number, reason?: string) => ServerResponse).call(this, statusCode, reason as string | undefined);
  } as ServerResponse['writeHead'];
}
