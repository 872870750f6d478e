/**
 * dcmjs logs through loglevel: the root logger for most warnings, and a "validation.dcmjs" child for
 * every ambiguous VR of an implicit VR file ("Invalid vr type ox - using OW"). Reading stored files
 * must not flood the gateway's stderr with those.
 */
import * as dcmjs from 'dcmjs';

interface LevelLogger {
  getLevel(): number;
  setLevel(level: 'silent' | number): void;
}

const loggers: LevelLogger[] = [
  dcmjs.log,
  (dcmjs.log as unknown as { getLogger(name: string): LevelLogger }).getLogger('validation.dcmjs'),
];

/** Runs `fn` (synchronous) with dcmjs's loggers silent. */
export function quietDcmjs<T>(fn: () => T): T {
  const levels = loggers.map((logger) => logger.getLevel());
  for (const logger of loggers) logger.setLevel('silent');
  try {
    return fn();
  } finally {
    loggers.forEach((logger, index) => logger.setLevel(levels[index]));
  }
}
