import { pipeline } from 'node:stream/promises';
import { Router, type Request } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import type { ResourceLevel } from '../../native-model';
import { LEVELS, LEVEL_PATH } from '../../main-dicom-tags';
import { HttpError } from '../../../server/errors';

const LEVEL_OF_PATH: Record<string, ResourceLevel> = { patients: 'Patient', studies: 'Study', series: 'Series', instances: 'Instance' };
/** Singular segment used to reach an ancestor, e.g. /instances/{id}/study. */
const ANCESTOR_SEGMENT: Record<string, ResourceLevel> = { patient: 'Patient', study: 'Study', series: 'Series' };

function unknown(level: ResourceLevel, id: string): HttpError {
  return new HttpError(404, `Unknown ${level.toLowerCase()}: ${id}`);
}

function nonNegativeInteger(req: Request, name: string): number {
  const raw = req.query[name];
  if (raw === undefined) return 0;
  const value = Number(raw);
  if (typeof raw !== 'string' || !Number.isInteger(value) || value < 0) {
    throw new HttpError(400, `The "${name}" argument must be a non-negative integer`);
  }
  return value;
}

/** GET /{level}[?expand&since&limit], GET /{level}/{id}, navigation to children and ancestors, DELETE /{level}/{id}. */
export function resourceRoutes(core: EmbeddedCore): Router {
  const router = Router();

  for (const [segment, level] of Object.entries(LEVEL_OF_PATH)) {
    router.get(`/${segment}`, (req, res) => {
      const rows = core.listRows(level, nonNegativeInteger(req, 'since'), nonNegativeInteger(req, 'limit'));
      res.json(req.query.expand !== undefined ? rows.map((row) => core.toResource(row)) : rows.map((row) => row.public_id));
    });

    router.get(`/${segment}/:id`, async (req, res) => {
      const resource = await core.getResource(level, req.params.id);
      if (!resource) throw unknown(level, req.params.id);
      res.json(resource);
    });

    router.delete(`/${segment}/:id`, async (req, res) => {
      const remaining = await core.deleteWithAncestor(level, req.params.id);
      if (remaining === undefined) throw unknown(level, req.params.id);
      res.json({ RemainingAncestor: remaining });
    });

    for (const childLevel of LEVELS.slice(LEVELS.indexOf(level) + 1)) {
      router.get(`/${segment}/:id/${LEVEL_PATH[childLevel]}`, (req, res) => {
        const rows = core.childRows(level, req.params.id, childLevel);
        if (!rows) throw unknown(level, req.params.id);
        res.json(rows.map((row) => core.toResource(row)));
      });
    }

    for (const [ancestorSegment, ancestorLevel] of Object.entries(ANCESTOR_SEGMENT)) {
      if (LEVELS.indexOf(ancestorLevel) >= LEVELS.indexOf(level)) continue;
      router.get(`/${segment}/:id/${ancestorSegment}`, (req, res) => {
        const row = core.ancestorRow(level, req.params.id, ancestorLevel);
        if (!row) throw unknown(level, req.params.id);
        res.json(core.toResource(row));
      });
    }
  }

  router.get('/instances/:id/file', async (req, res) => {
    // ?transcode=<transfer syntax UID> as in Orthanc 1.12.2 (1.10 ignores it); 415 when not possible
    const transcode = req.query.transcode;
    if (transcode !== undefined && (typeof transcode !== 'string' || !/^\d+(\.\d+)*$/.test(transcode))) {
      throw new HttpError(400, 'The "transcode" argument must be a transfer syntax UID');
    }
    const file = await core.readInstanceFile(req.params.id, { transcode });
    res.setHeader('Content-Type', 'application/dicom');
    if (file.size !== undefined) res.setHeader('Content-Length', String(file.size));
    // pipeline, not pipe: a client gone early must close the file too
    await pipeline(file.stream, res);
  });

  return router;
}
