import { Router } from 'express';
import type { GatewayConfig } from '../config/gateway-config';
import type { NativeCore } from '../core/native-model';

export interface DicomWebContext {
  config: GatewayConfig;
  core: NativeCore;
}

/** Every DICOMweb service, mounted at DicomWeb.Root; one file per service (qido-rs, wado-rs, stow-rs, ...). */
export function dicomWebRouter(context: DicomWebContext): Router {
  const router = Router();
  void context;
  return router;
}
