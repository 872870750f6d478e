import { Router } from 'express';
import type { GatewayConfig } from '../config/gateway-config';
import type { NativeCore } from '../core/native-model';
import { dicomWebClientRouter } from '../client/dicomweb-client';
import { deleteRsRouter } from './delete-rs';
import { addQidoRoutes } from './qido-rs';
import { stowRsRouter } from './stow-rs';
import { wadoRsRouter } from './wado-rs';
import { wadoRsRenderedRouter } from './wado-rs-rendered';

export interface DicomWebContext {
  config: GatewayConfig;
  core: NativeCore;
}

/** Every DICOMweb service, mounted at DicomWeb.Root; one file per service (qido-rs, wado-rs, stow-rs, ...). */
export function dicomWebRouter(context: DicomWebContext): Router {
  const router = Router();
  addQidoRoutes(router, context); // first: its /studies route leaves POST to STOW-RS
  router.use(stowRsRouter(context));
  router.use(wadoRsRenderedRouter(context)); // before WADO-RS: .../rendered and .../thumbnail
  router.use(deleteRsRouter(context)); // before WADO-RS, which answers 405 to other methods
  router.use(wadoRsRouter(context));
  router.use(dicomWebClientRouter(context)); // /servers/...: client primitives
  return router;
}
