import type { RequestHandler } from 'express';

/** What a browser from an allowed origin may send: DICOMweb needs no more (Accept negotiation, Basic auth, STOW bodies). */
export const CORS_ALLOWED_HEADERS = 'Accept, Authorization, Content-Type';
export const CORS_ALLOWED_METHODS = 'GET, HEAD, POST, PUT, DELETE, OPTIONS';
/** Seconds a browser may reuse a preflight answer: one preflight a day instead of one per request. */
export const CORS_MAX_AGE = 86400;
/** Headers a viewer script may read on cross-origin answers (STOW's Location, sizes for progress). */
const EXPOSED_HEADERS = 'Content-Length, Content-Type, Content-Location, Location';

export function isAllowedOrigin(origin: string | undefined, allowed: readonly string[]): origin is string {
  return origin !== undefined && (allowed.includes('*') || allowed.includes(origin));
}

/**
 * CORS for the configured origins. Mounted before authentication: a preflight never carries credentials,
 * so it is answered here (204) whatever the auth settings. Other origins get no CORS headers (the browser blocks).
 */
export function cors(allowed: readonly string[]): RequestHandler {
  return (req, res, next) => {
    // what res.append gives, without its generic path in the usual case (no Vary yet): this runs on every request
    if (res.getHeader('Vary') === undefined) res.setHeader('Vary', 'Origin');
    else res.append('Vary', 'Origin');
    const origin = req.headers.origin;
    if (!isAllowedOrigin(origin, allowed)) return next();
    res.setHeader('Access-Control-Allow-Origin', origin);
    // credentials (Basic auth remembered by the browser) only with an explicit origin, never with "*"
    if (!allowed.includes('*')) res.setHeader('Access-Control-Allow-Credentials', 'true');
    if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
      res.setHeader('Access-Control-Allow-Methods', CORS_ALLOWED_METHODS);
      res.setHeader('Access-Control-Allow-Headers', CORS_ALLOWED_HEADERS);
      res.setHeader('Access-Control-Max-Age', String(CORS_MAX_AGE));
      res.status(204).end();
      return;
    }
    res.setHeader('Access-Control-Expose-Headers', EXPOSED_HEADERS);
    next();
  };
}

/**
 * Cross-Origin-Resource-Policy on DICOMweb/WADO answers. Under the viewer's COEP, a same-origin viewer
 * loads them either way; "cross-origin" is needed only when viewers on other origins are allowed.
 */
export function resourcePolicy(allowed: readonly string[]): RequestHandler {
  const policy = allowed.length > 0 ? 'cross-origin' : 'same-origin';
  return (_req, res, next) => {
    res.setHeader('Cross-Origin-Resource-Policy', policy);
    next();
  };
}

/**
 * Cross-origin isolation for the viewer's pages: with COOP same-origin + COEP the page gets
 * SharedArrayBuffer (cornerstone's multi-threaded decoders and volume loading need it).
 * COEP "credentialless" rather than "require-corp": third-party assets without CORP headers still load.
 */
export function crossOriginIsolation(): RequestHandler {
  return (_req, res, next) => {
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Embedder-Policy', 'credentialless');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    next();
  };
}
