/**
 * What one client may ask of the HTTP server (issue #11). Configured by our "HttpLimits" section and, for
 * STOW-RS, by "DicomWeb.StowMaxRequestSize" / "StowMaxParts":
 *  - request line + headers: at most MaxHeaderSize KB (Node's maxHeaderSize) → 431;
 *  - slow clients (slowloris): the headers must arrive within HeadersTimeout, the whole request within
 *    RequestTimeout → 408 and the connection is closed; idle keep-alive connections close after KeepAliveTimeout;
 *  - bodies: uploads (native POST /instances and the like) are not limited here; STOW-RS bodies are limited
 *    in size (declared up front, then counted as they are decoded) and in parts; any other body, JSON mostly,
 *    may declare at most MaxRequestBodySize MB → 413 before it is read.
 * Errors are Orthanc-style JSON, including those Node's HTTP parser raises before any route runs.
 */
import { STATUS_CODES, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RequestHandler } from 'express';
import type { GatewayConfig } from '../config/gateway-config';
import { limitStowBody } from '../dicomweb/stow-body';
import { orthancErrorOf, sendError } from './errors';
import { normalisePath } from './read-only';

const MB = 1024 * 1024;
/** How often Node looks for connections past HeadersTimeout / RequestTimeout (its default, 30 s, would add up to that). */
const TIMEOUT_CHECK_INTERVAL_MS = 1000;

/** Options of http(s).createServer that only the constructor takes. */
export function serverOptions(config: GatewayConfig): { maxHeaderSize: number; connectionsCheckingInterval: number } {
  return { maxHeaderSize: config.httpLimits.maxHeaderSize * 1024, connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS };
}

/** Timeouts and the JSON answer to protocol-level errors, on a server created with serverOptions(). */
export function applyServerLimits(server: Server, config: GatewayConfig): void {
  const limits = config.httpLimits;
  server.headersTimeout = limits.headersTimeout * 1000;
  server.requestTimeout = limits.requestTimeout * 1000;
  server.keepAliveTimeout = limits.keepAliveTimeout * 1000;
  server.on('clientError', answerClientError);
}

/** Orthanc's error name and code where errors.ts has none (no route ran: there is no Request). */
const CLIENT_ERRORS: Record<number, [string, number]> = { 408: ['Timeout', 10], 431: ['Bad request', 8] };

/** Node's own answer is an empty 400/408/431; ours says why, in the same JSON as every other error. */
function answerClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
  // as Node's default handler: nothing to answer on a dead socket or once a response has begun
  const started = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true;
  if (error.code === 'ECONNRESET' || !socket.writable || started) {
    socket.destroy();
    return;
  }
  const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const message =
    status === 431 ? 'The request line and headers are too large' : status === 408 ? 'The request did not arrive in time' : 'Malformed HTTP request';
  const [orthancError, orthancStatus] = CLIENT_ERRORS[status] ?? orthancErrorOf(status);
  const body = JSON.stringify({ HttpError: STATUS_CODES[status], HttpStatus: status, Message: message, OrthancError: orthancError, OrthancStatus: orthancStatus });
  const head = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`;
  socket.end(head + body, () => socket.destroy());
}

const ID = '[^/]+';

/** Routes whose bodies are DICOM files or other large payloads (native API, ours or a remote Orthanc's). */
const UPLOAD_ROUTES: ReadonlyArray<[string, RegExp]> = [
  ['POST', /^\/instances$/i],
  ['POST', /^\/tools\/create-dicom$/i],
  ['POST', new RegExp(`^/(?:modalities|peers)/${ID}/store-straight$`, 'i')],
  ['PUT', new RegExp(`^/(?:patients|studies|series|instances)/${ID}/attachments/${ID}$`, 'i')],
];

function declaredLength(header: string | undefined): number | undefined {
  return header !== undefined && /^\d+$/.test(header) ? Number(header) : undefined;
}

/** Refuses bodies that declare too much before anything reads them; hands the STOW-RS caps to its body reader. */
export function requestBodyLimits(config: GatewayConfig): RequestHandler {
  const maxBody = config.httpLimits.maxRequestBodySize * MB;
  const maxStow = config.dicomWeb.stowMaxRequestSize * MB;
  const maxParts = config.dicomWeb.stowMaxParts;
  const stowRoute = new RegExp(`^${config.dicomWeb.root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}studies(?:/${ID})?$`, 'i');
  return (req, res, next) => {
    const length = declaredLength(req.headers['content-length']);
    const refuse = (message: string, details: string): void => {
      // the rest of the body is not worth reading: the connection closes after the answer
      res.setHeader('Connection', 'close');
      sendError(req, res, 413, message, details);
    };
    // STOW-RS and uploads are POST or PUT: other requests (searches, retrievals) skip the path's decoding
    const path = req.method === 'POST' || req.method === 'PUT' ? normalisePath(req.path) : '';
    if (req.method === 'POST' && config.dicomWeb.enable && stowRoute.test(path)) {
      if (maxStow > 0 && length !== undefined && length > maxStow) {
        refuse('The STOW-RS request is too large', `${length} bytes; "DicomWeb.StowMaxRequestSize" is ${config.dicomWeb.stowMaxRequestSize} MB`);
        return;
      }
      limitStowBody(req, { maxBytes: maxStow > 0 ? maxStow : undefined, maxParts: maxParts > 0 ? maxParts : undefined });
      next();
      return;
    }
    if (UPLOAD_ROUTES.some(([method, pattern]) => method === req.method && pattern.test(path))) {
      next();
      return;
    }
    if (length !== undefined && length > maxBody) {
      refuse('The request body is too large', `${length} bytes; "HttpLimits.MaxRequestBodySize" is ${config.httpLimits.maxRequestBodySize} MB`);
      return;
    }
    next();
  };
}
