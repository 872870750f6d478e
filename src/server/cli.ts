#!/usr/bin/env node
import type { Server } from 'node:http';
import { loadConfig, ConfigError } from '../config/load-config';
import { createApp } from './app';
import { logger } from './logger';
import { listenHost } from './listen-host';

export async function start(files: string[]): Promise<{ server: Server; close: () => Promise<void> }> {
  const config = loadConfig(files, { warn: (message) => logger.warn(message) });
  const gateway = createApp(config);
  const host = listenHost(config);
  const server = await new Promise<Server>((resolve, reject) => {
    const s = gateway.app.listen(config.httpPort, host, () => resolve(s));
    s.once('error', reject);
  });
  // long STOW uploads and big retrieves must not be cut by Node's default 5-minute request timeout
  server.requestTimeout = 0;
  server.keepAliveTimeout = 65_000;
  logger.info(
    { port: config.httpPort, host, core: gateway.core.kind, storage: config.storageDirectory },
    `${config.name} listening on http://${host === '::' ? 'localhost' : host}:${config.httpPort}/ (DICOMweb at ${config.dicomWeb.root})`,
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
