import pino from 'pino';

/**
 * The process logger. LOG_LEVEL overrides the level; under jest it defaults to silent so test output stays readable.
 * Secrets never reach it: request logs carry method, path and status only (no headers, no query strings).
 */
export const logger = pino({
  level: process.env.LOG_LEVEL ?? (process.env.JEST_WORKER_ID ? 'silent' : 'info'),
  base: undefined,
  redact: ['req.headers.authorization', 'password', 'Password', '*.Password', '*.password'],
});
