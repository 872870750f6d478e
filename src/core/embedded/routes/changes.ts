import { Router, type Request } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import { HttpError } from '../../../server/errors';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 10_000;

function integerArgument(req: Request, name: string, fallback: number): number {
  const raw = req.query[name];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (typeof raw !== 'string' || !Number.isInteger(value) || value < 0) throw new HttpError(400, `The "${name}" argument must be a non-negative integer`);
  return value;
}

/** GET/DELETE /changes and /exports. */
export function changeRoutes(core: EmbeddedCore): Router {
  const router = Router();

  router.get('/changes', async (req, res) => {
    if (req.query.last !== undefined) {
      res.json(core.lastChange());
      return;
    }
    const limit = Math.min(integerArgument(req, 'limit', DEFAULT_LIMIT), MAX_LIMIT);
    res.json(await core.getChanges(integerArgument(req, 'since', 0), limit));
  });

  router.delete('/changes', (_req, res) => {
    core.clearChanges();
    res.json({});
  });

  router.get('/exports', (req, res) => {
    const limit = Math.min(integerArgument(req, 'limit', DEFAULT_LIMIT), MAX_LIMIT);
    res.json(core.getExports(integerArgument(req, 'since', 0), limit));
  });

  router.delete('/exports', (_req, res) => {
    core.clearExports();
    res.json({});
  });

  return router;
}
