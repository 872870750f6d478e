import { pipeline } from 'node:stream/promises';
/**
 * /jobs: Orthanc's job API for the jobs the gateway runs itself.
 *
 * With a remote core, Orthanc has jobs of its own: a /jobs/{id} that is not ours falls through (next()) to the
 * proxy, and GET /jobs answers Orthanc's list followed by ours (the gateway's jobs live in this process only,
 * so another gateway in front of the same Orthanc does not list them).
 */
import { Router, type NextFunction, type Request, type Response } from 'express';
import type { JobEngine } from './jobs';
import { HttpError } from './errors';

export interface JobsRouterOptions {
  /** With a remote core: its own job list (ids, or expanded objects), shown before ours. */
  remoteJobs?: (expand: boolean) => Promise<unknown[]>;
}

type JobAction = 'cancel' | 'pause' | 'resume' | 'resubmit';
const ACTIONS: JobAction[] = ['cancel', 'pause', 'resume', 'resubmit'];

export function jobsRouter(engine: JobEngine, options: JobsRouterOptions = {}): Router {
  const router = Router();
  // embedded: every id is ours, so an unknown one is our 404; remote: it may be Orthanc's
  const unknown = (req: Request, next: NextFunction): void => {
    if (options.remoteJobs) next();
    else throw new HttpError(404, `Unknown job: ${String(req.params.id)}`);
  };

  router.get('/jobs', async (req: Request, res: Response) => {
    const expand = req.query.expand !== undefined;
    const ours = expand ? engine.ids().map((id) => engine.describe(id)) : engine.ids();
    const theirs = options.remoteJobs ? await options.remoteJobs(expand) : [];
    res.json([...theirs, ...ours]);
  });

  router.get('/jobs/:id', (req, res, next) => {
    const job = engine.describe(String(req.params.id));
    if (job) res.json(job);
    else unknown(req, next);
  });

  for (const action of ACTIONS) {
    router.post(`/jobs/:id/${action}`, (req, res, next) => {
      const id = String(req.params.id);
      if (!engine.has(id)) {
        unknown(req, next);
        return;
      }
      engine[action](id);
      res.json({});
    });
  }

  // the outputs jobs publish (the ZIP of an asynchronous archive or media job)
  router.get('/jobs/:id/:output', async (req, res, next) => {
    const id = String(req.params.id);
    if (!engine.has(id)) {
      unknown(req, next);
      return;
    }
    const output = engine.output(id, String(req.params.output));
    const stream = output?.open();
    if (!output || !stream) throw new HttpError(404, 'Accessing an inexistent item', `Job has no such output: ${String(req.params.output)}`);
    res.setHeader('Content-Type', output.contentType);
    res.setHeader('Content-Disposition', `filename="${output.filename}"`);
    await pipeline(stream, res);
  });

  return router;
}
