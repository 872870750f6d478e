/**
 * Every route the gateway does not own goes to the core's native REST API, streamed both ways.
 *
 * The gateway's own authentication (RegisteredUsers) happens before this; the core sees the gateway's
 * credentials instead of the client's. The core's credentials never travel back: a core 401/403 becomes our
 * 502 (without WWW-Authenticate), and a core that is down or slow answers 503/504 in Orthanc's JSON error format.
 */
import { Agent as HttpAgent, type ClientRequest } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Socket } from 'node:net';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { createProxyMiddleware } from 'http-proxy-middleware';
import type { GatewayConfig } from '../../config/gateway-config';
import { errorBody } from '../../server/errors';
import { logger } from '../../server/logger';
import { CORE_UNREACHABLE, CREDENTIALS_REFUSED, type CoreTarget } from './orthanc-http';

export interface NativeProxyOptions {
  target: CoreTarget;
  /** Seconds without bytes from the core before answering 504; 0 = wait forever. */
  timeoutSeconds: number;
  /** Path prefixes the gateway serves itself (e.g. '/dicom-web'): never proxied. */
  ownedPrefixes: string[];
  verifyPeers?: boolean;
}

/** Response headers of the core that describe its connection or its authentication, not the answer. */
const DROPPED_RESPONSE_HEADERS = ['www-authenticate', 'keep-alive'];

const timedOut = new WeakSet<Request>();

/** Idempotent methods (RFC 9110 §9.2.2): sending one twice has the effect of sending it once. */
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE', 'PUT']);

/** The request carries no body: once read, it can still be sent again as it was. */
function hasNoBody(req: Request): boolean {
  return req.headers['transfer-encoding'] === undefined && (req.headers['content-length'] ?? '0') === '0';
}

/**
 * A request that failed because the core closed a kept-alive connection just as it was reused (the race Node's
 * documentation describes for `request.reusedSocket`): an idempotent one without a body is sent once more.
 */
function lostToAClosedConnection(error: Error, sent: ClientRequest | undefined, req: Request): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return sent?.reusedSocket === true && (code === 'ECONNRESET' || code === 'EPIPE') && IDEMPOTENT_METHODS.has(req.method) && hasNoBody(req);
}

/** The proxy middleware, and `close` to release its idle connections to the core. */
export type NativeProxy = RequestHandler & { close(): void };

export function nativeProxy(options: NativeProxyOptions): NativeProxy {
  const { target } = options;
  const secure = target.origin.startsWith('https:');
  const agent = secure ? new HttpsAgent({ keepAlive: true, rejectUnauthorized: options.verifyPeers ?? true }) : new HttpAgent({ keepAlive: true });
  const owned = options.ownedPrefixes.map((p) => p.replace(/\/+$/, '')).filter((p) => p !== '');
  // per client request: what was sent to the core, and how to send it again (once)
  const sentRequests = new WeakMap<Request, ClientRequest>();
  const resend = new WeakMap<Request, () => void>();

  const proxy = createProxyMiddleware<Request, Response>({
    target: `${target.origin}${target.basePath}`,
    changeOrigin: true,
    agent,
    secure: options.verifyPeers ?? true,
    pathFilter: (path) => !owned.some((prefix) => path === prefix || path.startsWith(`${prefix}/`)),
    on: {
      proxyReq: (proxyReq, req) => {
        sentRequests.set(req, proxyReq);
        if (options.timeoutSeconds > 0) {
          proxyReq.setTimeout(options.timeoutSeconds * 1000, () => {
            timedOut.add(req);
            proxyReq.destroy(new Error('The core did not answer in time'));
          });
        }
      },
      proxyRes: (proxyRes, req, res) => {
        for (const name of DROPPED_RESPONSE_HEADERS) delete proxyRes.headers[name];
        if (proxyRes.statusCode === 401 || proxyRes.statusCode === 403) {
          // the core refused *our* credentials: the client can do nothing about it, and must not be asked for them
          proxyRes.resume();
          logger.warn({ core: target.display, status: proxyRes.statusCode }, CREDENTIALS_REFUSED);
          res.status(502).json(errorBody(req, 502, CREDENTIALS_REFUSED));
        }
      },
      error: (error, req, res) => {
        const code = (error as NodeJS.ErrnoException).code;
        const late = timedOut.has(req);
        if (!isResponse(res)) {
          res.destroy();
          return;
        }
        if (res.headersSent) {
          // the answer is already streaming: cut it, so that the client sees a truncated body
          res.destroy();
          return;
        }
        const again = resend.get(req);
        if (again && !late && lostToAClosedConnection(error, sentRequests.get(req), req)) {
          resend.delete(req);
          again();
          return;
        }
        const status = late ? 504 : 503;
        const message = late ? 'The core did not answer in time' : CORE_UNREACHABLE;
        logger.warn({ core: target.display, code, method: req.method, path: req.path }, message);
        res.status(status).json(errorBody(req, status, message, late ? `HttpTimeout is ${options.timeoutSeconds} s` : code));
      },
    },
  });

  const handler = (req: Request, res: Response, next: NextFunction): void => {
    // the core gets the gateway's credentials, never the client's (which are for the gateway, if anything)
    delete req.headers.authorization;
    if (target.authorization) req.headers.authorization = target.authorization;
    // Node already answered "100 Continue" to the client; forwarding Expect would also stop
    // http-proxy from emitting 'proxyReq' (where the timeout is set)
    delete req.headers.expect;
    // the request's body is empty and already read: piped again, it ends the new request at once
    resend.set(req, () => void proxy(req, res, next));
    void proxy(req, res, next);
  };
  return Object.assign(handler, { close: () => agent.destroy() });
}

/** The proxy for a gateway configuration: everything but the gateway's own roots (DICOMweb, WADO-URI, OHIF). */
export function coreProxy(config: GatewayConfig, target: CoreTarget): NativeProxy {
  const web = config.dicomWeb;
  const owned = web.enable ? [web.root, ...(web.enableWado ? [web.wadoRoot] : [])] : [];
  if (config.ohifRoot) owned.push(config.ohifRoot);
  return nativeProxy({ target, timeoutSeconds: config.httpTimeout, ownedPrefixes: owned, verifyPeers: config.httpsVerifyPeers });
}

function isResponse(res: Response | Socket): res is Response {
  return typeof (res as Response).writeHead === 'function';
}
