import { Router } from 'express';
import type { EmbeddedCore } from '../embedded-core';
import { uploadInstances } from './instances-upload';
import { resourceRoutes } from './resources';
import { toolRoutes } from './tools';
import { changeRoutes } from './changes';
import { systemRoutes } from './system';
import { instanceTagRoutes } from './instance-tags';
import { instanceContentRoutes } from './instance-content';
import { instanceFrameRoutes } from './instance-frames';
import { instanceImageRoutes } from './instance-images';
import { archiveRoutes } from './archives';
import { instanceNumpyRoutes } from './instance-numpy';
import { modalityRoutes } from './modalities';
import { peerRoutes } from './peers';
import { protectionRoutes } from './protection';
import { resourceMetadataRoutes } from './resource-metadata';
import { resourceLabelRoutes } from './resource-labels';
import { resourceAttachmentRoutes } from './resource-attachments';
import { storageFullErrors } from './storage-full';

/** The Orthanc-compatible native REST API of the embedded core. */
export function nativeRouter(core: EmbeddedCore): Router {
  const router = Router();
  router.post('/instances', (req, res) => uploadInstances(core, req, res));
  router.use(systemRoutes(core));
  router.use(toolRoutes(core));
  router.use(changeRoutes(core));
  router.use(instanceTagRoutes(core));
  router.use(instanceContentRoutes(core));
  router.use(instanceFrameRoutes(core));
  router.use(instanceImageRoutes(core));
  router.use(archiveRoutes(core));
  router.use(instanceNumpyRoutes(core));
  router.use(modalityRoutes(core));
  router.use(peerRoutes(core));
  router.use(protectionRoutes(core));
  router.use(resourceMetadataRoutes(core));
  router.use(resourceLabelRoutes(core));
  router.use(resourceAttachmentRoutes(core));
  router.use(resourceRoutes(core));
  router.use(storageFullErrors);
  return router;
}
