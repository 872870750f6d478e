/**
 * The public base URL of the DICOMweb service, as clients must see it in RetrieveURL, BulkDataURI,
 * STOW answers and Content-Location headers, e.g. "http://host:8042/dicom-web/".
 *
 * Same precedence as the reference plugin: DicomWeb.Host (+ Ssl) from the configuration, then
 * X-Forwarded-Host (+ X-Forwarded-Proto), then the RFC 7239 Forwarded header, then Host. The path is
 * DicomWeb.PublicRoot when set (a reverse proxy rewrites paths), else DicomWeb.Root.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayConfig } from '../config/gateway-config';

/** The part of a request this module reads (an Express Request satisfies it). */
export interface RequestLike {
  headers: IncomingHttpHeaders;
  /** Express's own reading of the connection (true behind TLS). */
  secure?: boolean;
}

/** A host[:port] we are willing to put in a URL: DNS names, IPv4, bracketed IPv6; no path, no spaces. */
const HOST_PATTERN = /^(?:[A-Za-z0-9._~%-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

interface Origin {
  host?: string;
  https?: boolean;
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  const text = Array.isArray(value) ? value.join(',') : value;
  return text === undefined || text.trim() === '' ? undefined : text;
}

function validHost(value: string | undefined): string | undefined {
  const host = value?.trim().replace(/^"(.*)"$/, '$1');
  return host !== undefined && HOST_PATTERN.test(host) ? host : undefined;
}

function httpsOf(proto: string | undefined): boolean | undefined {
  const value = proto?.trim().replace(/^"(.*)"$/, '$1').toLowerCase();
  if (value === 'https') return true;
  if (value === 'http') return false;
  return undefined;
}

/** X-Forwarded-Host / X-Forwarded-Proto; only the first (client-side) proxy counts. */
function xForwarded(headers: IncomingHttpHeaders): Origin {
  const host = validHost(headerValue(headers, 'x-forwarded-host')?.split(',')[0]);
  const https = httpsOf(headerValue(headers, 'x-forwarded-proto')?.split(',')[0]);
  return { host, https };
}

/** RFC 7239: `Forwarded: for=1.2.3.4;host=example.org;proto=https, for=...`: the first element counts. */
export function parseForwarded(header: string | undefined): Origin {
  if (header === undefined) return {};
  const first = header.split(',')[0];
  const origin: Origin = {};
  for (const pair of first.split(';')) {
    const at = pair.indexOf('=');
    if (at < 0) continue;
    const key = pair.slice(0, at).trim().toLowerCase();
    const value = pair.slice(at + 1);
    if (key === 'host') origin.host = validHost(value);
    else if (key === 'proto') origin.https = httpsOf(value);
  }
  return origin;
}

/** e.g. "https://pacs.example.org/dicom-web/"; always ends with '/'. */
export function publicBaseUrl(req: RequestLike, config: GatewayConfig): string {
  const root = config.dicomWeb.publicRoot ?? config.dicomWeb.root;
  const configured = config.dicomWeb.host;
  if (configured !== undefined) return `${config.dicomWeb.ssl ? 'https' : 'http'}://${configured}${root}`;

  const defaultHttps = config.dicomWeb.ssl || req.secure === true;
  const candidates: Origin[] = [xForwarded(req.headers), parseForwarded(headerValue(req.headers, 'forwarded'))];
  for (const origin of candidates) {
    if (origin.host !== undefined) return `${(origin.https ?? defaultHttps) ? 'https' : 'http'}://${origin.host}${root}`;
  }
  // a proxy may tell only the scheme (TLS terminated in front of us, Host passed through)
  const proto = candidates.map((o) => o.https).find((h) => h !== undefined);
  const host = validHost(headerValue(req.headers, 'host')) ?? `localhost:${config.httpPort}`;
  return `${(proto ?? defaultHttps) ? 'https' : 'http'}://${host}${root}`;
}
