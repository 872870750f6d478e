import { Router } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import { LEVELS, LEVEL_PATH } from '../../main-dicom-tags';
import { HttpError } from '../../../server/errors';
import { sendText } from './stored-values';

/** Orthanc 1.12's rule for labels: 1 to 64 letters, digits, "_" or "-". */
const LABEL = /^[A-Za-z0-9_-]{1,64}$/;

export function checkLabel(label: string): string {
  if (!LABEL.test(label)) throw new HttpError(400, `A label must be a non-empty, alphanumeric string with at most 64 characters: "${label}"`);
  return label;
}

/**
 * Labels (Orthanc 1.12, not in 1.10): GET /{level}/{id}/labels, GET|PUT|DELETE /{level}/{id}/labels/{label}
 * (200 with an empty body; GET of a label the resource lacks is 404), GET /tools/labels.
 */
export function resourceLabelRoutes(core: EmbeddedCore): Router {
  const router = Router();
  for (const level of LEVELS) {
    const segment: string = LEVEL_PATH[level];
    router.get(`/${segment}/:id/labels`, (req, res) => {
      res.json(core.labelsOfResource(level, req.params.id));
    });
    router.get(`/${segment}/:id/labels/:label`, (req, res) => {
      const wanted = checkLabel(req.params.label);
      if (!core.labelsOfResource(level, req.params.id).includes(wanted)) throw new HttpError(404, `The ${level.toLowerCase()} has no label "${wanted}"`);
      sendText(res, '');
    });
    router.put(`/${segment}/:id/labels/:label`, (req, res) => {
      core.setLabel(level, req.params.id, checkLabel(req.params.label), true);
      sendText(res, '');
    });
    router.delete(`/${segment}/:id/labels/:label`, (req, res) => {
      core.setLabel(level, req.params.id, checkLabel(req.params.label), false);
      sendText(res, '');
    });
  }

  router.get('/tools/labels', (_req, res) => {
    res.json(core.allLabels());
  });
  return router;
}
