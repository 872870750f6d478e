#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import http, { type Server } from 'node:http';
import https from 'node:https';
import type { GatewayConfig } from '../config/gateway-config';
import { loadConfig, ConfigError } from '../config/load-config';
import { createApp } from './app';
import { logger } from './logger';
import { listenHost } from './listen-host';
import { applyServerLimits, serverOptions } from './request-limits';

/** HTTP, or HTTPS with "SslEnabled" (Orthanc's one PEM file: the certificate, its chain and the private key). */
export function createServer(config: GatewayConfig, app: http.RequestListener): Server {
  const options = serverOptions(config);
  let server: Server;
  if (config.ssl) {
    const pem = readFileSync(config.ssl.certificate);
    const peers = config.ssl.trustedClientCertificates
      ? { requestCert: true, rejectUnauthorized: true, ca: readFileSync(config.ssl.trustedClientCertificates) }
      : {};
    try {
      server = https.createServer({ ...options, cert: pem, key: pem, ...peers }, app);
    } catch (error) {
      throw new ConfigError(
        `Invalid configuration: "SslCertificate" (${config.ssl.certificate}) cannot be used: ${(error as Error).message}`,
        'SslCertificate',
      );
    }
  } else {
    server = http.createServer(options, app);
  }
  applyServerLimits(server, config);
  return server;
}

export async function start(files: string[]): Promise<{ server: Server; close: () => Promise<void> }> {
  const config = loadConfig(files, { warn: (message) => logger.warn(message) });
  const gateway = createApp(config);
  const host = listenHost(config);
  const server = createServer(config, gateway.app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.httpPort, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const scheme = config.ssl ? 'https' : 'http';
  logger.info(
    { port: config.httpPort, host, core: gateway.core.kind, storage: config.storageDirectory, tls: Boolean(config.ssl) },
    `${config.name} listening on ${scheme}://${host === '::' ? 'localhost' : host}:${config.httpPort}/ (DICOMweb at ${config.dicomWeb.root})`,
  );
  const close = async (): Promise<void> => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await gateway.close();
  };
  return { server, close };
}

if (require.main === module) {
  start(process.argv.slice(2))
    .then(({ close }) => {
      const stop = (): void => {
        logger.info('stopping');
        close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    })
    .catch((error: unknown) => {
      if (error instanceof ConfigError) {
        process.stderr.write(`${error.message}\n`);
      } else {
        process.stderr.write(`Cannot start: ${(error as Error).message}\n`);
      }
      process.exit(1);
    });
}
