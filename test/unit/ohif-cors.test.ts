import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import express from 'express';
import request from 'supertest';
import { ConfigError, loadConfig } from '../../src/config/load-config';
import { isCompressible } from '../../src/server/compress';
import { cors } from '../../src/server/cors';
import { appConfigScript, ohifRouter, rewriteIndexHtml, routerBasename } from '../../src/server/ohif';

let dir: string;
beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ohif-cors-'))));
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function loadJson(content: unknown, warnings: string[] = []): ReturnType<typeof loadConfig> {
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify(content));
  return loadConfig([file], { warn: (m) => warnings.push(m), cwd: dir, env: {} });
}

describe('Cors configuration', () => {
  it('defaults to no allowed origin and reads exact origins or "*"', () => {
    expect(loadJson({}).corsAllowedOrigins).toEqual([]);
    expect(loadJson({ Cors: { AllowedOrigins: ['https://viewer.example.org', 'http://localhost:3000', '*'] } }).corsAllowedOrigins).toEqual([
      'https://viewer.example.org',
      'http://localhost:3000',
      '*',
    ]);
  });

  it.each([
    [{ Cors: [] }, 'Cors'],
    [{ Cors: { AllowedOrigins: 'https://a.org' } }, 'Cors.AllowedOrigins'],
    [{ Cors: { AllowedOrigins: ['https://a.org/'] } }, 'Cors.AllowedOrigins[0]'],
    [{ Cors: { AllowedOrigins: ['https://a.org', 'ftp://b.org'] } }, 'Cors.AllowedOrigins[1]'],
    [{ Cors: { AllowedOrigins: [3] } }, 'Cors.AllowedOrigins[0]'],
  ])('refuses %j naming %s', (content, key) => {
    let error: unknown;
    try {
      loadJson(content);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).key).toBe(key);
    expect((error as ConfigError).message).toContain(path.join(dir, 'config.json'));
  });

  it('warns about unknown keys of the section', () => {
    const warnings: string[] = [];
    loadJson({ Cors: { AllowedOrigin: [] } }, warnings);
    expect(warnings.join('\n')).toContain('"Cors.AllowedOrigin"');
  });
});

describe('cors middleware', () => {
  const app = express();
  app.use(cors(['https://viewer.example.org']));
  app.get('/x', (_req, res) => res.json({ ok: true }));

  it('answers preflights of allowed origins with 204 and a cache lifetime', async () => {
    const res = await request(app).options('/x').set('Origin', 'https://viewer.example.org').set('Access-Control-Request-Method', 'POST');
    expect(res.status).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe('https://viewer.example.org');
    expect(res.headers['access-control-allow-headers']).toBe('Accept, Authorization, Content-Type');
    expect(res.headers['access-control-allow-methods']).toContain('POST');
    expect(res.headers['access-control-max-age']).toBe('86400');
    expect(res.headers.vary).toContain('Origin');
  });

  it('adds nothing for other origins', async () => {
    const res = await request(app).get('/x').set('Origin', 'https://other.example.org');
    expect(res.status).toBe(200);
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });
});

describe('compressible types', () => {
  it.each([
    ['application/dicom+json', true],
    ['application/json; charset=utf-8', true],
    ['application/dicom+xml', true],
    ['text/javascript; charset=utf-8', true],
    ['multipart/related; type="application/dicom+json"; boundary=x', false],
    ['multipart/related; type="application/octet-stream"', false],
    ['image/jpeg', false],
    ['application/dicom', false],
    ['application/octet-stream', false],
  ])('%s -> %s', (type, expected) => expect(isCompressible(type)).toBe(expected));
});

describe('OHIF build rewriting', () => {
  it('moves the public path of index.html to the viewer root', () => {
    const html = '<script>window.PUBLIC_URL="/"</script><link href="/app.css"><script src="/app-config.js"></script><a href="//cdn.x/y">';
    expect(rewriteIndexHtml(html, '/ohif/')).toBe(
      '<script>window.PUBLIC_URL="/ohif/"</script><link href="/ohif/app.css"><script src="/ohif/app-config.js"></script><a href="//cdn.x/y">',
    );
    expect(routerBasename('/ohif/')).toBe('/ohif');
    expect(routerBasename('/')).toBe('/');
  });

  it('serves bundles and stylesheets with their public paths moved, byte for byte, and the rest as they are', async () => {
    const dist = path.join(dir, 'dist');
    fs.mkdirSync(dist);
    fs.writeFileSync(path.join(dist, 'index.html'), '<script>window.PUBLIC_URL="/"</script>');
    fs.writeFileSync(path.join(dist, 'app-config.js'), 'window.config = {};');
    // a chunk path at the very start, one in the middle after non-ASCII text, and one at the very end
    const publicPath = '__webpack_require__.p = "/";';
    const bundle = `${publicPath}const name = "Ünïcødé 名前";${'x'.repeat(200_000)}${publicPath}tail;${publicPath}`;
    fs.writeFileSync(path.join(dist, 'app.bundle.0123456789abcdef.js'), bundle);
    fs.writeFileSync(path.join(dist, 'plain.js'), 'console.log("/");');
    fs.writeFileSync(path.join(dist, 'app.bundle.css'), 'src:url(/f.woff2) url(//cdn/x) url("/g.png") url(\'/h.svg\') url(i.png)');
    const app = express();
    app.use('/ohif', ohifRouter(loadJson({}), '/ohif/', dist));

    const js = await request(app).get('/ohif/app.bundle.0123456789abcdef.js').buffer(true).parse((res, done) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => done(null, Buffer.concat(chunks)));
    });
    const moved = bundle.split(publicPath).join('__webpack_require__.p = "/ohif/";');
    expect(js.status).toBe(200);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    expect(Number(js.headers['content-length'])).toBe(Buffer.byteLength(moved));
    expect((js.body as Buffer).equals(Buffer.from(moved))).toBe(true);

    const css = await request(app).get('/ohif/app.bundle.css');
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    expect(css.text).toBe('src:url(/ohif/f.woff2) url(//cdn/x) url("/ohif/g.png") url(\'/ohif/h.svg\') url(i.png)');
    expect(Number(css.headers['content-length'])).toBe(Buffer.byteLength(css.text));

    const plain = await request(app).get('/ohif/plain.js');
    expect(plain.status).toBe(200);
    expect(plain.text).toBe('console.log("/");');
    // asked twice: the edits found the first time give the same bytes
    const again = await request(app).get('/ohif/app.bundle.css');
    expect(again.text).toBe(css.text);
  });

  it('generates an app-config.js whose only data source is this gateway, from the browser origin', () => {
    const config = loadJson({ DicomWeb: { Root: '/dw/', WadoRoot: '/wado-uri' } });
    const script = appConfigScript('window.config = { name: "pkg", showStudyList: false, dataSources: [{ sourceName: "aws" }] };', config, '/ohif/');
    const window = { location: { origin: 'http://gw.example:8042' } } as { location: { origin: string }; config?: Record<string, unknown> };
    new Function('window', script)(window);
    expect(window.config).toMatchObject({ name: 'pkg', routerBasename: '/ohif', showStudyList: true, defaultDataSourceName: 'dicomweb' });
    const sources = window.config?.dataSources as { sourceName: string; configuration: Record<string, unknown> }[];
    expect(sources).toHaveLength(1);
    expect(sources[0].configuration).toMatchObject({
      qidoRoot: 'http://gw.example:8042/dw',
      wadoRoot: 'http://gw.example:8042/dw',
      wadoUriRoot: 'http://gw.example:8042/wado-uri',
      qidoSupportsIncludeField: true,
      supportsWildcard: true,
      imageRendering: 'wadors',
      thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true,
      supportsFuzzyMatching: false,
      bulkDataURI: { enabled: true },
      dicomUploadEnabled: true,
    });
  });
});
