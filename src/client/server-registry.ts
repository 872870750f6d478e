/**
 * The remote DICOMweb servers the client primitives may reach: those of `DicomWeb.Servers`, plus the
 * ones added or replaced at runtime with PUT /dicom-web/servers/{name} (kept in memory, as the plugin
 * does unless "ServersInDatabase" is set, which we do not support).
 */
import type { DicomWebServerConfig } from '../config/gateway-config';
import { HttpError } from '../server/errors';

export interface ServerRegistry {
  names(): string[];
  get(name: string): DicomWebServerConfig | undefined;
  set(name: string, server: DicomWebServerConfig): void;
  remove(name: string): boolean;
}

export function createServerRegistry(initial: Readonly<Record<string, DicomWebServerConfig>>): ServerRegistry {
  const servers = new Map<string, DicomWebServerConfig>(Object.entries(initial));
  return {
    names: () => [...servers.keys()].sort(),
    get: (name) => servers.get(name),
    set: (name, server) => void servers.set(name, server),
    remove: (name) => servers.delete(name),
  };
}

/** The server or a 404: only configured servers are reachable (SSRF guard). */
export function requireServer(registry: ServerRegistry, name: string): DicomWebServerConfig {
  const server = registry.get(name);
  if (!server) throw new HttpError(404, `Unknown DICOMweb server: ${name}`);
  return server;
}

/** What GET /servers/{name} lists, in the plugin's spelling. */
export function serverOperations(server: DicomWebServerConfig): string[] {
  const operations = ['get', 'post', 'qido', 'retrieve', 'stow', 'wado'];
  return server.hasDelete ? ['delete', ...operations] : operations;
}

/** The definition shown by GET /servers?expand: secrets (password, header values, key password) never leave. */
export function publicDefinition(server: DicomWebServerConfig): Record<string, unknown> {
  const hiddenHeaders = Object.fromEntries(Object.keys(server.httpHeaders).map((name) => [name, null]));
  return {
    Url: server.url,
    ...(server.username !== undefined ? { Username: server.username } : {}),
    Password: null,
    HttpHeaders: hiddenHeaders,
    ...(server.certificateFile !== undefined ? { CertificateFile: server.certificateFile } : {}),
    ...(server.certificateKeyFile !== undefined ? { CertificateKeyFile: server.certificateKeyFile } : {}),
    ...(server.certificateKeyPassword !== undefined ? { CertificateKeyPassword: null } : {}),
    Timeout: server.timeout,
    HasDelete: server.hasDelete,
    ChunkedTransfers: server.chunkedTransfers,
    ...server.userProperties,
  };
}

const KNOWN_KEYS = new Set([
  'Url', 'URL', 'Username', 'Password', 'HttpHeaders', 'CertificateFile', 'CertificateKeyFile',
  'CertificateKeyPassword', 'Timeout', 'HasDelete', 'ChunkedTransfers',
]);

function bad(message: string): HttpError {
  return new HttpError(400, `Invalid DICOMweb server definition: ${message}`);
}

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw bad(`"${key}" must be a string`);
  return value;
}

/** Orthanc accepts true/false and the strings "true"/"false"/"1"/"0" for these options. */
function looseBool(body: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const value = body[key];
  if (value === undefined) return fallback;
  if (typeof value === 'boolean') return value;
  if (value === 'true' || value === '1' || value === 1) return true;
  if (value === 'false' || value === '0' || value === 0) return false;
  throw bad(`"${key}" must be a Boolean`);
}

function parseUrl(value: unknown): string {
  if (typeof value !== 'string') throw bad('"Url" is mandatory and must be a string');
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw bad(`"Url" is not a valid URL: ${value}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad('"Url" must be an http:// or https:// URL');
  if (url.username || url.password) throw bad('"Url" must not hold credentials: use "Username" and "Password"');
  // A trailing slash makes every Uri relative to the base path (as load-config does for Servers).
  return url.href.endsWith('/') ? url.href : `${url.href}/`;
}

/** The body of PUT /servers/{name}, or the array form [Url, Username, Password]. */
export function parseServerDefinition(body: unknown): DicomWebServerConfig {
  if (Array.isArray(body)) {
    if (body.length !== 1 && body.length !== 3) throw bad('expected [Url] or [Url, Username, Password]');
    return parseServerDefinition({ Url: body[0], Username: body[1], Password: body[2] });
  }
  if (typeof body !== 'object' || body === null) throw bad('expected a JSON object');
  const b = body as Record<string, unknown>;
  const headers = b.HttpHeaders ?? {};
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) throw bad('"HttpHeaders" must be an object');
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value !== 'string') throw bad(`the value of HTTP header "${name}" must be a string`);
    if (/[\r\n]/.test(value) || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw bad(`invalid HTTP header "${name}"`);
  }
  const timeout = b.Timeout ?? 0;
  if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 0) throw bad('"Timeout" must be a non-negative integer');
  const username = optionalString(b, 'Username');
  const password = optionalString(b, 'Password');
  if (password !== undefined && username === undefined) throw bad('"Password" is given without "Username"');
  const server: DicomWebServerConfig = {
    url: parseUrl(b.Url ?? b.URL),
    httpHeaders: headers as Record<string, string>,
    timeout,
    hasDelete: looseBool(b, 'HasDelete', false),
    chunkedTransfers: looseBool(b, 'ChunkedTransfers', true),
    userProperties: Object.fromEntries(Object.entries(b).filter(([key]) => !KNOWN_KEYS.has(key))),
  };
  const optional = {
    username,
    password,
    certificateFile: optionalString(b, 'CertificateFile'),
    certificateKeyFile: optionalString(b, 'CertificateKeyFile'),
    certificateKeyPassword: optionalString(b, 'CertificateKeyPassword'),
  };
  for (const [key, value] of Object.entries(optional)) if (value !== undefined) Object.assign(server, { [key]: value });
  return server;
}
