import express, { type Express } from 'express';
import type { GatewayConfig } from '../config/gateway-config';
import type { NativeCore } from '../core/native-model';
import { EmbeddedCore } from '../core/embedded/embedded-core';
import { nativeRouter } from '../core/embedded/routes/native-router';
import { attachDicomNetwork, type DicomNetwork } from '../core/embedded/dicom-network/dicom-network';
import { RemoteCore } from '../core/remote/remote-core';
import { coreProxy } from '../core/remote/native-proxy';
import { dicomWebRouter } from '../dicomweb/dicomweb-router';
import { wadoUriRouter } from '../dicomweb/wado-uri';
import { setDefaultEncoding } from '../dicom/charset';
import { authenticate } from './auth';
import { compressText } from './compress';
import { cors, resourcePolicy } from './cors';
import { errorHandler, sendError } from './errors';
import { jobsOf } from './jobs';
import { jobsRouter } from './jobs-routes';
import { logger } from './logger';
import { gatewayMetrics } from './metrics';
import { ohifRouter } from './ohif';
import { readOnlyGuard } from './read-only';
import { requestBodyLimits } from './request-limits';
import { imageWorkLimiter } from './work-limiter';

export interface Gateway {
  app: Express;
  core: NativeCore;
  close(): Promise<void>;
}

/** The core the configuration asks for: a real Orthanc when "Core" is set, else the embedded one. */
export function createCore(config: GatewayConfig): NativeCore {
  return config.core ? new RemoteCore(config) : new EmbeddedCore(config);
}

export function createApp(config: GatewayConfig, core: NativeCore = createCore(config)): Gateway {
  // one process-wide setting (PUT /tools/default-encoding changes it): the index, native routes and DICOMweb decode alike
  setDefaultEncoding(config.defaultEncoding);
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'extended');

  // first: every answer counts, refusals (401, 413, 503) included
  const metrics = gatewayMetrics(config, core, jobsOf(core), imageWorkLimiter(config));
  app.use(metrics.track);

  // one log line per request at info; below that level (LOG_LEVEL=warn) the middleware is not installed at all
  if (logger.isLevelEnabled('info')) {
    app.use((req, res, next) => {
      const started = process.hrtime.bigint();
      res.once('finish', () => {
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        logger.info({ method: req.method, path: req.path, status: res.statusCode, ms: Math.round(ms * 10) / 10 }, 'request');
      });
      next();
    });
  }

  app.use(compressText());
  app.use(cors(config.corsAllowedOrigins)); // before auth: preflights carry no credentials
  if (config.authenticationEnabled) app.use(authenticate({ users: config.registeredUsers, tokens: config.bearerTokens }, config.name));
  // bodies that declare too much are refused before anything reads them
  app.use(requestBodyLimits(config));
  // after auth (an anonymous caller learns nothing), before every router that could write
  if (config.readOnly) app.use(readOnlyGuard(config.dicomWeb.root));

  const corp = resourcePolicy(config.corsAllowedOrigins);
  if (config.dicomWeb.enable) app.use(config.dicomWeb.root.replace(/\/$/, ''), corp, dicomWebRouter({ config, core }));
  if (config.dicomWeb.enableWado) app.use(config.dicomWeb.wadoRoot, corp, wadoUriRouter({ config, core }));
  if (config.ohifRoot) app.use(config.ohifRoot.replace(/\/$/, ''), ohifRouter(config, config.ohifRoot));
  // ours, also in front of a remote Orthanc (whose own metrics stay at its port)
  app.use(metrics.routes);
  let closeProxy = (): void => undefined;
  // before the native router and the proxy: our job ids are answered here, any other falls through to Orthanc
  const jobs = jobsOf(core);
  const remoteJobs =
    core instanceof RemoteCore ? (expand: boolean) => core.http.json<unknown[]>('GET', expand ? '/jobs?expand' : '/jobs') : undefined;
  app.use(jobsRouter(jobs, { remoteJobs }));
  // the DICOM server (DicomServerEnabled) and /modalities belong to the embedded core; a remote Orthanc has its own
  let dicomNetwork: DicomNetwork | undefined;
  if (core instanceof EmbeddedCore) {
    dicomNetwork = attachDicomNetwork(core, config);
    app.use(nativeRouter(core));
  }
  if (core instanceof RemoteCore) {
    // a core that is down is logged, not fatal: DICOMweb calls answer 503 until it is back
    void core.checkConnection();
    const proxy = coreProxy(config, core.http.target);
    app.use(proxy);
    closeProxy = proxy.close;
  }

  app.use((req, res) => sendError(req, res, 404, 'Unknown resource', `No route for ${req.method} ${req.path}`));
  app.use(errorHandler);

  return {
    app,
    core,
    close: async () => {
      closeProxy();
      await jobs.close();
      await dicomNetwork?.close();
      await core.close();
    },
  };
}
