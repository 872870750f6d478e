import { readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from './package-root';

const packageJson = JSON.parse(readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string };

/**
 * Versions we report. The native API answers as the Orthanc release whose REST API it follows
 * (clients check `ApiVersion` to pick features).
 */
export const VERSION = {
  gateway: packageJson.version,
  orthancApi: '1.12.5',
  apiVersion: 25,
};
