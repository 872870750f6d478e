import { Router } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import { HttpError } from '../../../server/errors';
import { anyBodyAsText } from './tools';

/** Orthanc's reading of a boolean in a request body ("Boolean value expected" otherwise). */
function parseProtected(body: unknown): boolean {
  const text = (typeof body === 'string' ? body : '').trim();
  if (text === '1' || text === 'true') return true;
  if (text === '0' || text === 'false') return false;
  throw new HttpError(400, 'Bad file format', 'Boolean value expected');
}

/** GET|PUT /patients/{id}/protected ("0" or "1"): a protected patient is never recycled. Orthanc 1.10 protects patients only. */
export function protectionRoutes(core: EmbeddedCore): Router {
  const router = Router();
  const unknown = (id: string): HttpError => new HttpError(404, `Unknown patient: ${id}`);

  router.get('/patients/:id/protected', (req, res) => {
    const isProtected = core.isPatientProtected(req.params.id);
    if (isProtected === undefined) throw unknown(req.params.id);
    res.type('text/plain').send(isProtected ? '1' : '0');
  });

  router.put('/patients/:id/protected', anyBodyAsText, (req, res) => {
    const protect = parseProtected(req.body);
    if (!core.setPatientProtected(req.params.id, protect)) throw unknown(req.params.id);
    res.type('text/plain').send('');
  });

  router.all('/patients/:id/protected', () => {
    throw new HttpError(405, 'The method is not allowed', 'Allowed: GET, PUT', { Allow: 'GET,PUT' });
  });
  return router;
}
