import type { IncomingHttpHeaders } from 'node:http';
import type { GatewayConfig } from '../../src/config/gateway-config';
import { parseForwarded, publicBaseUrl } from '../../src/dicomweb/public-url';

function config(dicomWeb: Partial<GatewayConfig['dicomWeb']> = {}): GatewayConfig {
  return { httpPort: 8042, dicomWeb: { root: '/dicom-web/', ssl: false, ...dicomWeb } } as GatewayConfig;
}

function url(headers: IncomingHttpHeaders, dicomWeb: Partial<GatewayConfig['dicomWeb']> = {}, secure = false): string {
  return publicBaseUrl({ headers, secure }, config(dicomWeb));
}

describe('publicBaseUrl', () => {
  it('uses the Host header and DicomWeb.Root by default', () => {
    expect(url({ host: 'pacs:8042' })).toBe('http://pacs:8042/dicom-web/');
    expect(url({ host: '[::1]:8042' })).toBe('http://[::1]:8042/dicom-web/');
    expect(url({})).toBe('http://localhost:8042/dicom-web/');
    expect(url({ host: 'pacs' }, {}, true)).toBe('https://pacs/dicom-web/');
  });

  it('prefers DicomWeb.Host and Ssl over any header, and PublicRoot over Root', () => {
    const headers = { host: 'inside:8042', 'x-forwarded-host': 'proxy', 'x-forwarded-proto': 'http' };
    expect(url(headers, { host: 'public.example.org', ssl: true })).toBe('https://public.example.org/dicom-web/');
    expect(url(headers, { host: 'public.example.org', publicRoot: '/pacs/web/' })).toBe('http://public.example.org/pacs/web/');
    expect(url({ host: 'inside' }, { publicRoot: '/pacs/' })).toBe('http://inside/pacs/');
  });

  it('follows X-Forwarded-Host/-Proto (first proxy), then Forwarded', () => {
    expect(url({ host: 'in', 'x-forwarded-host': 'a.example, b.internal', 'x-forwarded-proto': 'https, http' })).toBe('https://a.example/dicom-web/');
    expect(url({ host: 'in', 'x-forwarded-host': 'a.example' })).toBe('http://a.example/dicom-web/');
    expect(url({ host: 'in', 'x-forwarded-host': 'a.example' }, { ssl: true })).toBe('https://a.example/dicom-web/');
    expect(url({ host: 'in', forwarded: 'for=1.2.3.4;proto=https;host=b.example:444' })).toBe('https://b.example:444/dicom-web/');
    expect(url({ host: 'in', 'x-forwarded-proto': 'https' })).toBe('https://in/dicom-web/');
  });

  it('ignores hosts that are not host[:port]', () => {
    expect(url({ host: 'in', 'x-forwarded-host': 'evil.example/path' })).toBe('http://in/dicom-web/');
    expect(url({ host: 'in', forwarded: 'host="a b"' })).toBe('http://in/dicom-web/');
    expect(url({ host: 'bad host' })).toBe('http://localhost:8042/dicom-web/');
  });
});

describe('parseForwarded', () => {
  it('reads host and proto of the first element, quoted or not', () => {
    expect(parseForwarded('Host="x.example:8443"; Proto=HTTPS, host=y')).toEqual({ host: 'x.example:8443', https: true });
    expect(parseForwarded('for=1.1.1.1')).toEqual({});
    expect(parseForwarded(undefined)).toEqual({});
  });
});
