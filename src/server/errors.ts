import type { ErrorRequestHandler, Request, Response } from 'express';
import { CoreError } from '../core/native-model';
import { logger } from './logger';

/** An error a client caused or should see, answered with an Orthanc-style JSON body. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  416: 'Range Not Satisfiable',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  507: 'Insufficient Storage',
};

/** Orthanc's error names and codes for the statuses we produce (OrthancError / OrthancStatus fields). */
const ORTHANC_ERRORS: Record<number, [string, number]> = {
  400: ['Bad request', 8],
  401: ['Unauthorized', 30],
  403: ['Forbidden access', 31],
  404: ['Unknown resource', 17],
  405: ['The method is not allowed', 28],
  406: ['Not acceptable', 35],
  409: ['Conflict', 8],
  413: ['Request entity too large', 8],
  415: ['Unsupported media type', 34],
  500: ['Internal error', -1],
  501: ['Not implemented yet', 2],
  502: ['Error in the network protocol', 9],
  503: ['Service unavailable', 38],
  504: ['Timeout', 10],
  507: ['The file storage is full', 19],
};

/** Orthanc's error name and code for an HTTP status (jobs report them as ErrorDescription / ErrorCode). */
export function orthancErrorOf(status: number): [string, number] {
  return ORTHANC_ERRORS[status] ?? ['Internal error', -1];
}

export function errorBody(req: Request, status: number, message: string, details?: string): Record<string, unknown> {
  const [orthancError, orthancStatus] = orthancErrorOf(status);
  return {
    HttpError: REASONS[status] ?? 'Error',
    HttpStatus: status,
    Message: message,
    ...(details ? { Details: details } : {}),
    Method: req.method,
    OrthancError: orthancError,
    OrthancStatus: orthancStatus,
    Uri: req.originalUrl,
  };
}

export function sendError(req: Request, res: Response, status: number, message: string, details?: string): void {
  res.status(status).json(errorBody(req, status, message, details));
}

/** Maps every error to an Orthanc-style JSON answer; only unexpected errors are 500 (and logged with their stack). */
export const errorHandler: ErrorRequestHandler = (error: unknown, req, res, next) => {
  if (res.headersSent) {
    // the body is already streaming: all we can do is cut it, so that the client sees a truncated answer
    logger.warn({ err: error, url: req.originalUrl }, 'error after the response started');
    res.destroy();
    return;
  }
  if (error instanceof HttpError) {
    for (const [name, value] of Object.entries(error.headers)) res.setHeader(name, value);
    sendError(req, res, error.status, error.message, error.details);
    return;
  }
  if (error instanceof CoreError) {
    sendError(req, res, error.httpStatus, error.message, error.details);
    return;
  }
  const bodyError = error as { type?: string; status?: number; message?: string };
  if (bodyError.type === 'entity.parse.failed') {
    sendError(req, res, 400, 'The request body is not valid JSON', bodyError.message);
    return;
  }
  if (bodyError.type === 'entity.too.large') {
    sendError(req, res, 413, 'The request body is too large');
    return;
  }
  if (typeof bodyError.status === 'number' && bodyError.status >= 400 && bodyError.status < 500) {
    sendError(req, res, bodyError.status, bodyError.message ?? 'Bad request');
    return;
  }
  logger.error({ err: error, method: req.method, url: req.originalUrl }, 'unexpected error');
  void next;
  sendError(req, res, 500, 'Internal error');
};
