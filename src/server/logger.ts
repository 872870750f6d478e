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

/** Orthanc's verbosity levels (GET/PUT /tools/log-level). */
export const VERBOSITIES = ['default', 'verbose', 'trace'] as const;
export type Verbosity = (typeof VERBOSITIES)[number];

/** Orthanc 1.10's log categories (/tools/log-level-{category}). */
export const LOG_CATEGORIES = ['generic', 'plugins', 'http', 'dicom', 'sqlite', 'jobs', 'lua'] as const;
export type LogCategory = (typeof LOG_CATEGORIES)[number];

/** Orthanc's "default" shows warnings and errors, "verbose" adds information messages, "trace" everything. */
const PINO_LEVEL: Readonly<Record<Verbosity, pino.Level>> = { default: 'warn', verbose: 'info', trace: 'trace' };
const RANK: Readonly<Record<Verbosity, number>> = { default: 0, verbose: 1, trace: 2 };

function verbosityOfLevel(level: string): Verbosity {
  if (level === 'trace' || level === 'debug') return 'trace';
  return level === 'info' ? 'verbose' : 'default';
}

const categoryVerbosity = new Map<LogCategory, Verbosity>(
  LOG_CATEGORIES.map((category) => [category, verbosityOfLevel(logger.level)]),
);

function mostVerbose(): Verbosity {
  let most: Verbosity = 'default';
  for (const value of categoryVerbosity.values()) if (RANK[value] > RANK[most]) most = value;
  return most;
}

/** The verbosity of a category; without one, the main level: the most verbose category (as Orthanc reports it). */
export function getVerbosity(category?: LogCategory): Verbosity {
  return category ? categoryVerbosity.get(category) ?? 'default' : mostVerbose();
}

/**
 * Sets the verbosity of one category, or of all of them when none is given (as Orthanc does for the main level).
 * There is one logger: it runs at the most verbose category's level, so that what a category asks for reaches the output.
 */
export function setVerbosity(verbosity: Verbosity, category?: LogCategory): void {
  for (const name of category ? [category] : LOG_CATEGORIES) categoryVerbosity.set(name, verbosity);
  logger.level = PINO_LEVEL[mostVerbose()];
}
