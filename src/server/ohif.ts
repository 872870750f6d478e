/**
 * Serves the prebuilt OHIF viewer (dist/ of the npm package @ohif/app) at Ohif.Root, with an
 * app-config.js generated so that its DICOMweb data source is this gateway.
 *
 * The build assumes it lives at "/": index.html links "/app.bundle...js" and sets PUBLIC_URL to "/",
 * webpack's runtime (main bundle and workers) loads chunks from `__webpack_require__.p = "/"`, and the
 * main stylesheet loads its font from url(/...).
 * We rewrite those few strings on the fly instead of also serving the assets at "/", which would
 * shadow (or be shadowed by) the native REST API.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import express, { Router, type Request, type Response } from 'express';
import type { GatewayConfig } from '../config/gateway-config';
import { crossOriginIsolation } from './cors';
import { sendError } from './errors';

const WEBPACK_PUBLIC_PATH = '__webpack_require__.p = "/";';
/** Content-hashed file names (bundles, wasm) never change: let browsers keep them. */
const HASHED_NAME = /(^|\.)[0-9a-f]{16,}\.(js|wasm|css)$/;

function cacheControlOf(name: string): string {
  return HASHED_NAME.test(name) ? 'public, max-age=31536000, immutable' : 'no-cache';
}

/** dist/ of the viewer: node_modules/.ohif-app (see install-ohif.sh), or a regular @ohif/app install. */
export function findOhifDist(start: string = __dirname): string | undefined {
  for (let dir = start; ; dir = path.dirname(dir)) {
    for (const candidate of [path.join(dir, 'node_modules', '.ohif-app', 'dist'), path.join(dir, 'node_modules', '@ohif', 'app', 'dist')]) {
      if (fs.existsSync(path.join(candidate, 'index.html'))) return candidate;
    }
    if (path.dirname(dir) === dir) return undefined;
  }
}

/** "/ohif/" -> "/ohif" (React Router's basename); "/" stays "/". */
export function routerBasename(root: string): string {
  return root === '/' ? '/' : root.replace(/\/+$/, '');
}

/**
 * The data source OHIF uses, as a JavaScript expression. URLs are built in the browser from
 * window.location.origin, so they follow whatever host name and scheme the user (or a proxy) used.
 */
export function dataSourceScript(config: GatewayConfig): string {
  const dicomWebPath = (config.dicomWeb.publicRoot ?? config.dicomWeb.root).replace(/\/+$/, '');
  const configuration = {
    friendlyName: config.name,
    name: 'dicomweb-gateway',
    qidoSupportsIncludeField: true,
    supportsReject: false,
    imageRendering: 'wadors',
    thumbnailRendering: 'wadors',
    enableStudyLazyLoad: true,
    supportsFuzzyMatching: false,
    supportsWildcard: true,
    staticWado: false,
    bulkDataURI: { enabled: true },
    dicomUploadEnabled: true,
    omitQuotationForMultipartRequest: true,
  };
  const json = JSON.stringify(configuration, null, 2).replace(/\n}$/, '');
  return `{
  namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
  sourceName: 'dicomweb',
  configuration: ${json},
    qidoRoot: window.location.origin + ${JSON.stringify(dicomWebPath)},
    wadoRoot: window.location.origin + ${JSON.stringify(dicomWebPath)},
    wadoUriRoot: window.location.origin + ${JSON.stringify(config.dicomWeb.wadoRoot)}
  }
}`;
}

/**
 * The package's own app-config.js (all of OHIF's defaults for this version), then our overrides:
 * the router basename and a single data source, this gateway.
 */
export function appConfigScript(packageConfig: string, config: GatewayConfig, root: string): string {
  return `${packageConfig}
;// dicomweb-gateway: the data source is this gateway, the viewer lives at ${root}
window.config.routerBasename = ${JSON.stringify(routerBasename(root))};
window.config.showStudyList = true;
window.config.defaultDataSourceName = 'dicomweb';
window.config.dataSources = [${dataSourceScript(config)}];
`;
}

/** index.html with the public path moved from "/" to the viewer's root. */
export function rewriteIndexHtml(html: string, root: string): string {
  return html
    .replace(/window\.PUBLIC_URL\s*=\s*"\/"/g, `window.PUBLIC_URL=${JSON.stringify(root)}`)
    .replace(/(\s(?:src|href)=")\/(?!\/)/g, `$1${root}`);
}

/** One change to a served file: bytes [start, end) of the original replaced by `text`. */
interface FileEdit {
  start: number;
  end: number;
  text: Buffer;
}

/** Where a bundle sets webpack's chunk path to "/": each one moved to the viewer's root. */
function bundleEdits(content: Buffer, root: string): FileEdit[] {
  const pattern = Buffer.from(WEBPACK_PUBLIC_PATH);
  const text = Buffer.from(`__webpack_require__.p = ${JSON.stringify(root)};`);
  const edits: FileEdit[] = [];
  for (let at = content.indexOf(pattern); at >= 0; at = content.indexOf(pattern, at + pattern.length)) {
    edits.push({ start: at, end: at + pattern.length, text });
  }
  return edits;
}

const SLASH = 0x2f;
const QUOTES = new Set([0x22, 0x27]);

/** Root-absolute url(/...) of a stylesheet (the fonts) moved to the viewer's root; url(//host/...) stays. */
function stylesheetEdits(content: Buffer, root: string): FileEdit[] {
  const opener = Buffer.from('url(');
  const text = Buffer.from(root);
  const edits: FileEdit[] = [];
  for (let at = content.indexOf(opener); at >= 0; at = content.indexOf(opener, at + opener.length)) {
    let slash = at + opener.length;
    if (QUOTES.has(content[slash])) slash += 1;
    if (content[slash] === SLASH && content[slash + 1] !== SLASH) edits.push({ start: slash, end: slash + 1, text });
  }
  return edits;
}

/** A file with its edits applied, read from disk piece by piece as the client takes it. */
async function* editedFile(file: string, edits: readonly FileEdit[]): AsyncGenerator<Buffer> {
  let from = 0;
  for (const edit of edits) {
    if (edit.start > from) yield* fs.createReadStream(file, { start: from, end: edit.start - 1 });
    yield edit.text;
    from = edit.end;
  }
  yield* fs.createReadStream(file, { start: from });
}

function sendText(res: Response, type: string, body: string | Buffer, cache: string): void {
  res.setHeader('Content-Type', type);
  res.setHeader('Cache-Control', cache);
  res.send(body);
}

/** The viewer, to mount at `root` without its trailing slash (e.g. app.use('/ohif', ohifRouter(...))). */
export function ohifRouter(config: GatewayConfig, root: string, dist: string | undefined = findOhifDist()): Router {
  const router = Router();
  router.use(crossOriginIsolation());
  if (dist === undefined) {
    router.use((req, res) => sendError(req, res, 503, 'OHIF viewer not installed', 'Run "npm install": it installs @ohif/app'));
    return router;
  }

  const indexHtml = rewriteIndexHtml(fs.readFileSync(path.join(dist, 'index.html'), 'utf8'), root);
  const appConfig = appConfigScript(fs.readFileSync(path.join(dist, 'app-config.js'), 'utf8'), config, root);
  const rewritable = new Set(fs.readdirSync(dist).filter((name) => /\.(js|css)$/.test(name)));
  // per script and stylesheet: the edits it needs (none: served as it is by express.static) and its edited length
  const fileEdits = new Map<string, { list: FileEdit[]; length: number }>();

  const sendIndex = (_req: Request, res: Response): void => sendText(res, 'text/html; charset=utf-8', indexHtml, 'no-cache');

  router.get('/', (req, res) => {
    // "/ohif" -> "/ohif/": the viewer's relative links assume the trailing slash
    if (!req.originalUrl.split('?')[0].endsWith('/')) return res.redirect(301, `${root}${req.url.replace(/^\//, '')}`);
    sendIndex(req, res);
  });
  router.get('/index.html', sendIndex);
  router.get('/app-config.js', (_req, res) => sendText(res, 'text/javascript; charset=utf-8', appConfig, 'no-cache'));

  router.get('/:file', (req, res, next) => {
    const name = req.params.file;
    if (!rewritable.has(name)) return next();
    const file = path.join(dist, name);
    const css = name.endsWith('.css');
    let edits = fileEdits.get(name);
    if (edits === undefined) {
      // read once to find the edits, then dropped: the 17 MB main bundle is not kept in memory
      const content = fs.readFileSync(file);
      const list = css ? stylesheetEdits(content, root) : bundleEdits(content, root);
      const length = list.reduce((total, edit) => total + edit.text.length - (edit.end - edit.start), content.length);
      edits = { list, length };
      fileEdits.set(name, edits);
    }
    if (edits.list.length === 0) return next();
    res.setHeader('Content-Type', css ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8');
    res.setHeader('Cache-Control', cacheControlOf(name));
    res.setHeader('Content-Length', edits.length);
    pipeline(Readable.from(editedFile(file, edits.list)), res).catch(next);
  });

  router.use(
    express.static(dist, {
      index: false,
      redirect: false,
      setHeaders: (res, file) => {
        res.setHeader('Cache-Control', cacheControlOf(path.basename(file)));
      },
    }),
  );

  // SPA routes (/ohif/viewer?StudyInstanceUIDs=...) get index.html; a missing file stays a 404
  router.get(/^\/[^.]*$/, sendIndex);
  return router;
}
