/**
 * The OHIF viewer against a real gateway process: first with dicomweb-client (the library OHIF uses)
 * in Node, then the real viewer in headless Chromium. Screenshots go to test-artifacts/.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { api } from 'dicomweb-client';
import { chromium, type Browser, type Page } from 'playwright-core';
import { makeInstance, newUid, readInstance } from '../helpers/dicom-factory';
import { removeDir, startGatewayProcess, type GatewayProcess } from '../helpers/gateway-process';

// dicomweb-client speaks XMLHttpRequest, which Node lacks
// eslint-disable-next-line @typescript-eslint/no-require-imports
(globalThis as { XMLHttpRequest?: unknown }).XMLHttpRequest = require('xhr2');

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(__dirname, '..', '..', 'test-artifacts');
const SIZE = 256;
const SLICES = 20;
const ALLOWED_ORIGIN = 'http://viewer.example.org';

/** Slice i: a bright disk whose radius grows with i on a dark background, so scrolling changes the picture. */
function slicePixels(i: number): Uint16Array {
  const pixels = new Uint16Array(SIZE * SIZE);
  const radius = 30 + i * 4;
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const d = Math.hypot(x - SIZE / 2, y - SIZE / 2);
      pixels[y * SIZE + x] = d < radius ? 1024 + 100 + ((x + y) % 200) : 24;
    }
  }
  return pixels;
}

function ctSeries(): { study: string; series: string; sops: string[]; files: Buffer[] } {
  const study = newUid();
  const series = newUid();
  const sops: string[] = [];
  const files: Buffer[] = [];
  for (let i = 0; i < SLICES; i++) {
    const sop = newUid();
    sops.push(sop);
    const pixels = slicePixels(i);
    files.push(
      makeInstance({
        PatientID: 'OHIF-E2E',
        PatientName: 'Viewer^Test',
        StudyInstanceUID: study,
        StudyDescription: 'OHIF E2E CT',
        SeriesInstanceUID: series,
        SeriesNumber: 1,
        Modality: 'CT',
        SOPInstanceUID: sop,
        InstanceNumber: i + 1,
        Rows: SIZE,
        Columns: SIZE,
        BitsAllocated: 16,
        BitsStored: 16,
        PixelRepresentation: 0,
        RescaleSlope: 1,
        RescaleIntercept: -1024,
        WindowCenter: 40,
        WindowWidth: 400,
        pixelData: new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength),
      }),
    );
  }
  return { study, series, sops, files };
}

/** A raw HTTP GET (no transparent decompression), for Content-Encoding checks. */
function rawGet(url: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

function toBuffer(data: unknown): Buffer {
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new Error(`not binary: ${typeof data}`);
}

describe('OHIF viewer and dicomweb-client against the gateway', () => {
  let gateway: GatewayProcess;
  let ct: ReturnType<typeof ctSeries>;

  beforeAll(async () => {
    gateway = await startGatewayProcess({ Ohif: { Root: '/ohif/' }, Cors: { AllowedOrigins: [ALLOWED_ORIGIN] } });
    ct = ctSeries();
    for (const file of ct.files) {
      const res = await fetch(`${gateway.url}/instances`, { method: 'POST', body: file });
      expect(res.status).toBe(200);
    }
  }, 60_000);

  afterAll(async () => {
    await gateway?.stop('SIGKILL');
    if (gateway) removeDir(gateway.dir);
  });

  describe('dicomweb-client', () => {
    const client = (): api.DICOMwebClient => new api.DICOMwebClient({ url: `${gateway.url}/dicom-web`, singlepart: false });

    it('searches studies', async () => {
      const studies = (await client().searchForStudies({ queryParams: { PatientID: 'OHIF-E2E', includefield: 'StudyDescription' } })) as Record<string, { Value?: unknown[] }>[];
      expect(studies).toHaveLength(1);
      expect(studies[0]['0020000D'].Value).toEqual([ct.study]);
      expect(studies[0]['00081030'].Value).toEqual(['OHIF E2E CT']);
      expect(studies[0]['00201208'].Value).toEqual([SLICES]);
    });

    it('retrieves series metadata, a frame and the pixel data as bulk data', async () => {
      const metadata = (await client().retrieveSeriesMetadata({ studyInstanceUID: ct.study, seriesInstanceUID: ct.series })) as Record<
        string,
        { Value?: unknown[]; BulkDataURI?: string }
      >[];
      expect(metadata).toHaveLength(SLICES);
      const first = metadata.find((m) => m['00080018'].Value?.[0] === ct.sops[0]);
      expect(first?.['00280010'].Value).toEqual([SIZE]);
      expect(first?.['00281052'].Value).toEqual([-1024]);

      const expected = Buffer.from(slicePixels(0).buffer);
      const frames = await client().retrieveInstanceFrames({
        studyInstanceUID: ct.study,
        seriesInstanceUID: ct.series,
        sopInstanceUID: ct.sops[0],
        frameNumbers: [1],
      });
      expect(frames).toHaveLength(1);
      expect(toBuffer(frames[0]).equals(expected)).toBe(true);

      const uri = first?.['7FE00010'].BulkDataURI;
      expect(uri).toEqual(expect.stringMatching(/^http/));
      const bulk = (await client().retrieveBulkData({ BulkDataURI: uri as string })) as unknown[];
      expect(toBuffer(bulk[0]).equals(expected)).toBe(true);
    });

    it('stores an instance', async () => {
      const sop = newUid();
      const file = makeInstance({ PatientID: 'OHIF-E2E-STOW', SOPInstanceUID: sop });
      const answer = (await client().storeInstances({ datasets: [file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer] })) as unknown;
      expect(answer).toBeDefined();
      const found = (await client().searchForInstances({ queryParams: { SOPInstanceUID: sop } })) as unknown[];
      expect(found).toHaveLength(1);
      expect(readInstance(file).dataset.SOPInstanceUID).toBe(sop);
    });
  });

  describe('HTTP details a browser relies on', () => {
    it('answers CORS preflights for allowed origins only', async () => {
      const preflight = (origin: string): Promise<Response> =>
        fetch(`${gateway.url}/dicom-web/studies`, {
          method: 'OPTIONS',
          headers: { Origin: origin, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'accept' },
        });
      const ok = await preflight(ALLOWED_ORIGIN);
      expect(ok.status).toBe(204);
      expect(ok.headers.get('access-control-allow-origin')).toBe(ALLOWED_ORIGIN);
      expect(ok.headers.get('access-control-allow-headers')).toBe('Accept, Authorization, Content-Type');
      expect(Number(ok.headers.get('access-control-max-age'))).toBeGreaterThan(0);
      const other = await preflight('http://evil.example.org');
      expect(other.headers.get('access-control-allow-origin')).toBeNull();

      const get = await fetch(`${gateway.url}/dicom-web/studies`, { headers: { Origin: ALLOWED_ORIGIN } });
      expect(get.headers.get('access-control-allow-origin')).toBe(ALLOWED_ORIGIN);
      expect(get.headers.get('cross-origin-resource-policy')).toBe('cross-origin');
    });

    it('gzips JSON answers but not multipart frames', async () => {
      const json = await rawGet(`${gateway.url}/dicom-web/studies/${ct.study}/series/${ct.series}/instances`, { 'Accept-Encoding': 'gzip', Accept: 'application/dicom+json' });
      expect(json.status).toBe(200);
      expect(json.headers['content-encoding']).toBe('gzip');
      const plain = await rawGet(`${gateway.url}/dicom-web/studies/${ct.study}/series/${ct.series}/instances`, { Accept: 'application/dicom+json' });
      expect(plain.headers['content-encoding']).toBeUndefined();
      expect(JSON.parse(plain.body.toString())).toHaveLength(SLICES);

      const frames = await rawGet(`${gateway.url}/dicom-web/studies/${ct.study}/series/${ct.series}/instances/${ct.sops[0]}/frames/1`, {
        'Accept-Encoding': 'gzip',
        Accept: 'multipart/related; type="application/octet-stream"',
      });
      expect(frames.status).toBe(200);
      expect(frames.headers['content-encoding']).toBeUndefined();
      expect(frames.body.length).toBeGreaterThan(SIZE * SIZE * 2);
    });

    it('serves the viewer with its config, SPA deep links and cross-origin isolation', async () => {
      const index = await fetch(`${gateway.url}/ohif/`);
      expect(index.status).toBe(200);
      expect(index.headers.get('cross-origin-opener-policy')).toBe('same-origin');
      expect(index.headers.get('cross-origin-embedder-policy')).toBe('credentialless');
      const html = await index.text();
      expect(html).toContain('window.PUBLIC_URL="/ohif/"');
      expect(html).toContain('src="/ohif/app-config.js"');

      const deep = await fetch(`${gateway.url}/ohif/viewer?StudyInstanceUIDs=${ct.study}`);
      expect(deep.status).toBe(200);
      expect(await deep.text()).toBe(html);

      const config = await (await fetch(`${gateway.url}/ohif/app-config.js`)).text();
      expect(config).toContain('qidoRoot: window.location.origin + "/dicom-web"');
      expect(config).toContain('wadoUriRoot: window.location.origin + "/wado"');
      expect(config).toContain('window.config.routerBasename = "/ohif"');

      expect((await fetch(`${gateway.url}/ohif/no-such-file.js`)).status).toBe(404);
      // the native API is not shadowed
      expect((await fetch(`${gateway.url}/studies`)).status).toBe(200);
    });
  });

  describe('in headless Chromium', () => {
    let browser: Browser;
    const failures: string[] = [];

    beforeAll(async () => {
      if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run test/setup/install-system-packages.sh`);
      mkdirSync(ARTIFACTS, { recursive: true });
      browser = await chromium.launch({
        executablePath: CHROMIUM,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      });
    });

    afterAll(async () => {
      await browser?.close();
    });

    async function newPage(): Promise<Page> {
      const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
      page.on('response', (res) => {
        if (res.status() >= 400) failures.push(`${res.status()} ${res.request().method()} ${res.url()}`);
      });
      page.on('requestfailed', (req) => failures.push(`failed ${req.method()} ${req.url()}: ${req.failure()?.errorText}`));
      return page;
    }

    /** Non-black pixel count and a fingerprint of the biggest canvas of the viewport. */
    async function canvasStats(page: Page): Promise<{ bright: number; hash: number }> {
      return page.evaluate(() => {
        const canvases = Array.from(document.querySelectorAll('canvas')).filter((c) => c.width > 100 && c.height > 100);
        let bright = 0;
        let hash = 0;
        for (const canvas of canvases) {
          const ctx = canvas.getContext('2d');
          if (!ctx) continue;
          const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
          for (let i = 0; i < data.length; i += 4) {
            const v = data[i] + data[i + 1] + data[i + 2];
            if (v > 30) bright++;
            hash = (hash * 31 + v) >>> 0;
          }
        }
        return { bright, hash };
      });
    }

    it('lists the study and shows its slices, scrolling with the mouse wheel', async () => {
      const page = await newPage();
      await page.goto(`${gateway.url}/ohif/`);
      await page.getByText('OHIF E2E CT').first().waitFor({ timeout: 60_000 });
      await page.screenshot({ path: join(ARTIFACTS, 'ohif-study-list.png') });

      await page.goto(`${gateway.url}/ohif/viewer?StudyInstanceUIDs=${ct.study}`);
      const deadline = Date.now() + 60_000;
      let stats = { bright: 0, hash: 0 };
      while (Date.now() < deadline) {
        stats = await canvasStats(page);
        if (stats.bright > 1000) break;
        await page.waitForTimeout(500);
      }
      await page.screenshot({ path: join(ARTIFACTS, 'ohif-viewer.png') });
      expect({ bright: stats.bright > 1000, failures }).toEqual({ bright: true, failures: [] });

      // the viewport is the biggest canvas (thumbnails are small ones)
      const box = await page.evaluate(() => {
        const rects = Array.from(document.querySelectorAll('canvas')).map((c) => c.getBoundingClientRect());
        const r = rects.sort((a, b) => b.width * b.height - a.width * a.height)[0];
        return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
      });
      await page.mouse.move(box.x, box.y);
      for (let i = 0; i < 8; i++) await page.mouse.wheel(0, 120);
      let scrolled = stats;
      const scrollDeadline = Date.now() + 15_000;
      while (Date.now() < scrollDeadline) {
        await page.waitForTimeout(300);
        scrolled = await canvasStats(page);
        if (scrolled.hash !== stats.hash && scrolled.bright > 1000) break;
      }
      await page.screenshot({ path: join(ARTIFACTS, 'ohif-viewer-scrolled.png') });
      expect(scrolled.hash).not.toBe(stats.hash);
      expect(scrolled.bright).toBeGreaterThan(1000);
      expect(failures).toEqual([]);
      await page.close();
    }, 180_000);

    it('opens the CT in the MPR layout: three views of the volume', async () => {
      const page = await newPage();
      await page.goto(`${gateway.url}/ohif/viewer?StudyInstanceUIDs=${ct.study}&hangingprotocolId=mpr`);
      const deadline = Date.now() + 90_000;
      let views: number[] = [];
      while (Date.now() < deadline) {
        views = await page.evaluate(() =>
          Array.from(document.querySelectorAll('canvas'))
            .filter((c) => c.width > 100 && c.height > 100)
            .map((canvas) => {
              const ctx = canvas.getContext('2d');
              if (!ctx) return 0;
              const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
              let bright = 0;
              for (let i = 0; i < data.length; i += 4) if (data[i] + data[i + 1] + data[i + 2] > 30) bright++;
              return bright;
            }),
        );
        if (views.filter((bright) => bright > 500).length >= 3) break;
        await page.waitForTimeout(500);
      }
      await page.screenshot({ path: join(ARTIFACTS, 'ohif-mpr.png') });
      expect(views.filter((bright) => bright > 500).length).toBeGreaterThanOrEqual(3);
      expect(failures).toEqual([]);
      await page.close();
    }, 180_000);
  });
});

describe('OHIF disabled', () => {
  it('is not mounted', async () => {
    const gateway = await startGatewayProcess({ Ohif: { Enable: false } });
    try {
      expect((await fetch(`${gateway.url}/ohif/`)).status).toBe(404);
    } finally {
      await gateway.stop('SIGKILL');
      removeDir(gateway.dir);
    }
  });
});
