/** The security keys of the configuration (load-config.ts): BearerTokens, Ssl*, MetricsEnabled, HttpLimits, STOW-RS caps. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError, loadConfig } from '../../src/config/load-config';
import type { GatewayConfig } from '../../src/config/gateway-config';

let dir: string;
let warnings: string[];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'load-config-security-'));
  warnings = [];
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function loadJson(content: unknown): GatewayConfig {
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify(content));
  return loadConfig([file], { warn: (m) => warnings.push(m), cwd: dir, env: {} });
}

function errorOf(content: unknown): ConfigError {
  try {
    loadJson(content);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('no ConfigError');
}

it('defaults: no tokens, no TLS, metrics on, limits that fit normal use', () => {
  const config = loadJson({});
  expect(config.bearerTokens).toEqual([]);
  expect(config.ssl).toBeUndefined();
  expect(config.metricsEnabled).toBe(true);
  expect(config.httpLimits).toEqual({
    maxRequestBodySize: 4,
    maxHeaderSize: 16,
    headersTimeout: 30,
    requestTimeout: 3600,
    keepAliveTimeout: 65,
    imageWorkConcurrency: os.availableParallelism(),
    imageWorkQueueSize: 64,
  });
  expect(config.dicomWeb).toMatchObject({ stowMaxRequestSize: 4096, stowMaxParts: 10000 });
  expect(warnings).toEqual([]);
});

it('reads every key', () => {
  fs.writeFileSync(path.join(dir, 'both.pem'), '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n');
  fs.writeFileSync(path.join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n');
  const config = loadJson({
    BearerTokens: ['0123456789abcdef'],
    SslEnabled: true,
    SslCertificate: 'both.pem',
    SslVerifyPeers: true,
    SslTrustedClientCertificates: 'ca.pem',
    MetricsEnabled: false,
    HttpLimits: { MaxRequestBodySize: 2, MaxHeaderSize: 32, HeadersTimeout: 5, RequestTimeout: 0, KeepAliveTimeout: 10, ImageWorkConcurrency: 3, ImageWorkQueueSize: 0 },
    DicomWeb: { StowMaxRequestSize: 0, StowMaxParts: 5 },
  });
  expect(config.bearerTokens).toEqual(['0123456789abcdef']);
  expect(config.ssl).toEqual({ certificate: path.join(dir, 'both.pem'), verifyPeers: true, trustedClientCertificates: path.join(dir, 'ca.pem') });
  expect(config.metricsEnabled).toBe(false);
  expect(config.httpLimits).toEqual({
    maxRequestBodySize: 2,
    maxHeaderSize: 32,
    headersTimeout: 5,
    requestTimeout: 0,
    keepAliveTimeout: 10,
    imageWorkConcurrency: 3,
    imageWorkQueueSize: 0,
  });
  expect(config.dicomWeb).toMatchObject({ stowMaxRequestSize: 0, stowMaxParts: 5 });
  expect(warnings).toEqual([]);
});

it('the TLS keys are read but unused while SslEnabled is false', () => {
  expect(loadJson({ SslCertificate: 'nowhere.pem', SslVerifyPeers: true }).ssl).toBeUndefined();
  expect(warnings).toEqual([]);
});

it.each([
  [{ BearerTokens: 'abc' }, 'BearerTokens', 'must be an array of strings'],
  [{ BearerTokens: ['too-short'] }, 'BearerTokens[0]', 'must be at least 16 characters without spaces'],
  [{ BearerTokens: ['0123456789abcdef 0123'] }, 'BearerTokens[0]', 'must be at least 16 characters without spaces'],
  [{ HttpLimits: { MaxHeaderSize: 0 } }, 'HttpLimits.MaxHeaderSize', 'must be an integer from 1 to 1024'],
  [{ HttpLimits: { HeadersTimeout: 0 } }, 'HttpLimits.HeadersTimeout', 'must be an integer from 1'],
  [{ HttpLimits: { HeadersTimeout: 20, RequestTimeout: 10 } }, 'HttpLimits.HeadersTimeout', 'must not exceed "HttpLimits.RequestTimeout" (10)'],
  [{ HttpLimits: { ImageWorkConcurrency: 0 } }, 'HttpLimits.ImageWorkConcurrency', 'must be an integer from 1'],
  [{ DicomWeb: { StowMaxParts: -1 } }, 'DicomWeb.StowMaxParts', 'must be a non-negative integer'],
])('%j is refused, naming the key', (content, key, message) => {
  const error = errorOf(content);
  expect(error.key).toBe(key);
  expect(error.message).toContain(`"${key}" in ${path.join(dir, 'config.json')} ${message}`);
  // token values are secrets: never echoed
  expect(error.message).not.toMatch(/too-short|0123456789abcdef/);
});

it('an unknown key of HttpLimits is reported', () => {
  loadJson({ HttpLimits: { MaxBodySize: 1 } });
  expect(warnings).toEqual([expect.stringContaining('Unknown configuration key "HttpLimits.MaxBodySize"')]);
});
