import { Router } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import { uploadInstances } from './instances-upload';
import { resourceRoutes } from './resources';
import { toolRoutes } from './tools';
import { changeRoutes } from './changes';
import { systemRoutes } from './system';
import { instanceTagRoutes } from './instance-tags';
import { instanceContentRoutes } from './instance-content';
import { archiveRoutes } from './archives';
import { modalityRoutes } from './modalities';

/** The Orthanc-compatible native REST API of the embedded core. */
export function nativeRouter(core: EmbeddedCore): Router {
  const router = Router();
  router.post('/instances', (req, res) => uploadInstances(core, req, res));
  router.use(systemRoutes(core));
  router.use(toolRoutes(core));
  router.use(changeRoutes(core));
  router.use(instanceTagRoutes(core));
  router.use(instanceContentRoutes(core));
  router.use(archiveRoutes(core));
  router.use(modalityRoutes(core));
  router.use(resourceRoutes(core));
  return router;
}
