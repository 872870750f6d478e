/**
 * "ReadOnly": true turns the gateway into a viewer's back end that cannot change the store.
 *
 * One middleware, one list: every request that writes (stores, deletes, changes configuration or
 * starts a job that stores into us) is refused with 403 before any router sees it; everything else,
 * including POSTs that only read (/tools/find, /tools/lookup, archives, client get/qido/stow to
 * remote servers), goes on. The list is matched on a normalised path, so that spellings Express or a
 * remote Orthanc would still route (case, trailing or doubled slashes, percent-encoding) cannot slip by.
 */
import type { RequestHandler } from 'express';
import { sendError } from './errors';

export interface WriteRoute {
  method: string;
  pattern: RegExp;
}

const ID = '[^/]+';
const LEVELS = '(?:patients|studies|series|instances)';

/** The write routes of the native API (ours and a remote Orthanc's); PUT and DELETE are refused whatever the path. */
const NATIVE_WRITES: ReadonlyArray<[string, string]> = [
  ['POST', '/instances'],
  ['POST', '/tools/bulk-delete'],
  // Orthanc routes a remote core would carry out
  ['POST', '/tools/(?:reset|reconstruct|bulk-modify|bulk-anonymize|execute-script)'],
  ['POST', `/${LEVELS}/${ID}/(?:modify|anonymize|merge|split|reconstruct|attachments/${ID}/.*)`],
  // C-MOVE / C-GET whose target is (by default) us: they store
  ['POST', `/modalities/${ID}/(?:move|retrieve|get)`],
  ['POST', `/queries/${ID}(?:/answers/${ID})?/retrieve`],
  ['POST', `/jobs/${ID}/resubmit`],
];

/** The write routes under DicomWeb.Root (given as "/dicom-web/"). */
function dicomWebWrites(root: string): Array<[string, string]> {
  const base = escapeRegExp(root.replace(/\/$/, ''));
  return [
    ['POST', `${base}/studies(?:/${ID})?`], // STOW-RS
    ['POST', `${base}/servers/${ID}/(?:retrieve|wado)`], // store what they fetch
  ];
}

export function writeRoutes(dicomWebRoot: string): WriteRoute[] {
  return [...NATIVE_WRITES, ...dicomWebWrites(dicomWebRoot)].map(([method, path]) => ({
    method,
    pattern: new RegExp(`^${path}$`, 'i'),
  }));
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Decoded, lower-level spelling of a path: "//Instances%2F/" → "/Instances". */
export function normalisePath(path: string): string {
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    // a malformed escape: match on the raw text (the routers will refuse it anyway)
  }
  const collapsed = decoded.replace(/\/{2,}/g, '/').replace(/\/+$/, '');
  return collapsed === '' ? '/' : collapsed;
}

export function isWrite(method: string, path: string, routes: readonly WriteRoute[]): boolean {
  const m = method.toUpperCase();
  if (m === 'PUT' || m === 'DELETE' || m === 'PATCH') return true;
  const normalised = normalisePath(path);
  return routes.some((route) => route.method === m && route.pattern.test(normalised));
}

export function readOnlyGuard(dicomWebRoot: string): RequestHandler {
  const routes = writeRoutes(dicomWebRoot);
  return (req, res, next) => {
    if (!isWrite(req.method, req.path, routes)) {
      next();
      return;
    }
    sendError(req, res, 403, 'This gateway is read-only', `"ReadOnly" is true in the configuration: ${req.method} ${req.path} would change the store`);
  };
}
