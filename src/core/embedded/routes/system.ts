import { Router } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import { VERSION } from '../../../server/version';

export const DICOMWEB_PLUGIN_INFO = {
  ID: 'dicom-web',
  Version: VERSION.gateway,
  Description: 'DICOMweb (QIDO-RS, WADO-RS, STOW-RS, WADO-URI) served by dicomweb-gateway',
};

/** GET /system, /statistics, /plugins, /plugins/dicom-web. */
export function systemRoutes(core: EmbeddedCore): Router {
  const router = Router();
  router.get('/system', async (_req, res) => {
    res.json(await core.getSystem());
  });
  router.get('/statistics', (_req, res) => {
    res.json(core.statistics());
  });
  router.get('/plugins', (_req, res) => {
    res.json([DICOMWEB_PLUGIN_INFO.ID]);
  });
  router.get('/plugins/dicom-web', (_req, res) => {
    res.json(DICOMWEB_PLUGIN_INFO);
  });
  return router;
}
