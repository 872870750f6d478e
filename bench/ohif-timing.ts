/**
 * OHIF time to study list and time to first image (issue #9), headless Chromium (playwright-core), for
 * the same OHIF build (the embedded gateway's /ohif/) pointed at each system's /dicom-web. The viewer's
 * data source is window.location.origin + "/dicom-web", so each system gets a loopback reverse proxy
 * that serves /ohif/ from the embedded gateway and everything else from the system: one origin, no CORS,
 * the same hop for every system. Every run uses a fresh browser context (empty cache, as a first visit).
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { DataSets } from './datasets';
import { say } from './log';
import type { Live } from './processes';
import { cellOf, rowFor, type Row } from './report';
import { startReverseProxy, type ReverseProxy } from './reverse-proxy';
import type { BenchSettings, SystemName } from './settings';

const CHROMIUM = '/usr/bin/chromium';
const TIMEOUT_MS = 120_000;
/** A row of the study list (OHIF 3.13 worklist): not the filter row, and showing a study date (15-Jun-2023). */
const STUDY_ROWS = 'table tbody tr:not([data-filter-row])';
const STUDY_DATE = /\d{2}-[A-Z][a-z]{2}-\d{4}/;

/** Milliseconds from navigating to `url` until `ready` resolves. */
async function timeTo(page: Page, url: string, ready: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  await page.goto(url, { waitUntil: 'commit', timeout: TIMEOUT_MS });
  await ready();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

/**
 * Evaluated in the page (a string: this project compiles without the DOM library): true once the biggest
 * 2D canvas (the viewport; thumbnails are smaller) shows more than 1000 non-black pixels.
 */
const VIEWPORT_HAS_IMAGE = `(() => {
  const canvases = Array.from(document.querySelectorAll('canvas')).filter((c) => c.width > 100 && c.height > 100);
  const canvas = canvases.sort((a, b) => b.width * b.height - a.width * a.height)[0];
  const ctx = canvas && canvas.getContext('2d');
  if (!ctx) return false;
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let bright = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i] + data[i + 1] + data[i + 2] > 30 && ++bright > 1000) return true;
  return false;
})()`;

interface RunTimes {
  listMs: number;
  imageMs: number;
}

async function oneRun(browser: Browser, proxy: ReverseProxy, studyUid: string, failures: string[]): Promise<RunTimes> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  try {
    const page = await context.newPage();
    page.on('response', (res) => {
      if (res.status() >= 400) failures.push(`${res.status()} ${res.request().method()} ${new URL(res.url()).pathname}`);
    });
    const listMs = await timeTo(page, `${proxy.url}/ohif/`, () => page.locator(STUDY_ROWS).filter({ hasText: STUDY_DATE }).first().waitFor({ state: 'visible', timeout: TIMEOUT_MS }));
    const imageMs = await timeTo(page, `${proxy.url}/ohif/viewer?StudyInstanceUIDs=${studyUid}`, () =>
      page.waitForFunction(VIEWPORT_HAS_IMAGE, undefined, { polling: 50, timeout: TIMEOUT_MS }),
    );
    return { listMs, imageMs };
  } finally {
    await context.close();
  }
}

export async function measureOhif(live: Map<SystemName, Live>, data: DataSets, settings: BenchSettings, rows: Map<string, Row>, notes: string[]): Promise<void> {
  const runs = settings.ohifRuns;
  const listRow = rowFor(rows, { id: 'ohif-study-list', label: 'OHIF: navigate to the study list until its rows show', unit: 'ms', runs });
  const imageRow = rowFor(rows, { id: 'ohif-first-image', label: `OHIF: open the ${data.ct.files.length}-slice CT until the first image is drawn`, unit: 'ms', runs });
  const viewerHost = live.get('embedded');
  const names = [...live.keys()];
  const skip = (why: string): void => {
    for (const name of names) for (const row of [listRow, imageRow]) cellOf(row, name).na = why;
  };
  if (!viewerHost) return skip('needs the embedded gateway (it serves OHIF)');
  if (!existsSync(CHROMIUM)) return skip(`${CHROMIUM} missing`);
  const proxies = new Map<SystemName, ReverseProxy>();
  let browser: Browser | undefined;
  try {
    for (const name of names) proxies.set(name, await startReverseProxy(viewerHost.system.url, (live.get(name) as Live).system.url));
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const failures = new Map<SystemName, string[]>(names.map((n) => [n, []]));
    for (let run = 0; run < runs; run++) {
      for (const name of names.map((_, i) => names[(i + run) % names.length])) {
        if (cellOf(listRow, name).na !== undefined) continue;
        try {
          const times = await oneRun(browser, proxies.get(name) as ReverseProxy, data.ct.studyUid, failures.get(name) as string[]);
          cellOf(listRow, name).runs.push(times.listMs);
          cellOf(imageRow, name).runs.push(times.imageMs);
        } catch (error) {
          const why = (error as Error).message.split('\n')[0].slice(0, 60);
          cellOf(listRow, name).na = why;
          cellOf(imageRow, name).na = why;
        }
      }
    }
    for (const [name, list] of failures) {
      if (list.length > 0) notes.push(`${name}: OHIF saw ${list.length} error answers, e.g. ${[...new Set(list)].slice(0, 3).join('; ')}`);
    }
    say(`OHIF: ${names.map((n) => `${n} list=${(listRow.cells[n]?.runs ?? []).map((v) => v.toFixed(0)).join('/')} image=${(imageRow.cells[n]?.runs ?? []).map((v) => v.toFixed(0)).join('/')}`).join('  ')}`);
  } finally {
    await browser?.close();
    for (const proxy of proxies.values()) await proxy.close();
  }
}
