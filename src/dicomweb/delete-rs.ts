/**
 * DELETE of a study, series or instance by its UIDs (as Google's and dcm4chee's DICOMweb stores offer, and as the
 * client primitive "delete" of the Orthanc plugin sends when a server has "HasDelete"). Not part of PS3.18:
 * answered 204 once every matching resource of the core is gone. ReadOnly refuses it before it gets here.
 */
import { Router, type Request, type Response } from 'express';
import type { ResourceLevel } from '../core/native-model';
import type { DicomWebContext } from './dicomweb-router';
import { resolveInstance, resolveSeries, resolveStudies } from './wado-resources';

async function targets(context: DicomWebContext, req: Request): Promise<Array<[ResourceLevel, string]>> {
  const { study, series, instance } = req.params as Record<string, string | undefined>;
  const { core } = context;
  if (instance !== undefined && series !== undefined) return [['Instance', (await resolveInstance(core, String(study), series, instance)).id]];
  if (series !== undefined) return [['Series', (await resolveSeries(core, String(study), series)).ID]];
  return (await resolveStudies(core, String(study))).map((resource) => ['Study', resource.ID]);
}

export function deleteRsRouter(context: DicomWebContext): Router {
  const router = Router();
  const remove = async (req: Request, res: Response): Promise<void> => {
    for (const [level, id] of await targets(context, req)) await context.core.deleteResource(level, id);
    res.status(204).end();
  };
  router.delete('/studies/:study', remove);
  router.delete('/studies/:study/series/:series', remove);
  router.delete('/studies/:study/series/:series/instances/:instance', remove);
  return router;
}
