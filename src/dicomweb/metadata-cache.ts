/**
 * The series metadata cache: gzip'ed DICOM JSON on local disk, one folder per series.
 *
 *   <dir>/<seriesId>/<key>.json.gz            as built, with the placeholder base
 *   <dir>/<seriesId>/<key>.<host>.json.gz     the same for one public base URL, sent as-is to gzip clients
 *
 * The key (see `seriesMetadataKey`) changes with the series' content, so a stale entry is never read;
 * entries of older keys are removed when a new one is written. Files are written under a temporary
 * name and renamed: a reader sees a whole file or none. Several gateways may share one folder.
 */
import { createHash, randomUUID } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { gunzip, gzip } from 'node:zlib';
import { logger } from '../server/logger';
import { withBase } from './metadata';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);
const GZIP_LEVEL = 6;

export function baseHash(baseUrl: string): string {
  return createHash('sha1').update(baseUrl).digest('hex').slice(0, 16);
}

export class MetadataCache {
  /** Builds in progress (until stored), by key: concurrent cold requests for one series build it once. */
  private readonly building = new Map<string, Promise<string>>();

  /** `dir` undefined: caching is off, every request builds. */
  constructor(private readonly dir: string | undefined) {}

  get enabled(): boolean {
    return this.dir !== undefined;
  }

  private folderOf(seriesId: string): string {
    return path.join(this.dir as string, seriesId);
  }

  private placeholderFile(seriesId: string, key: string): string {
    return path.join(this.folderOf(seriesId), `${key}.json.gz`);
  }

  private baseFile(seriesId: string, key: string, baseUrl: string): string {
    return path.join(this.folderOf(seriesId), `${key}.${baseHash(baseUrl)}.json.gz`);
  }

  /** The JSON with its placeholder base, from disk or built now (and stored in the background). */
  async placeholderJson(seriesId: string, key: string, build: () => Promise<string>): Promise<string> {
    if (!this.dir) return build();
    const cached = await readGzip(this.placeholderFile(seriesId, key));
    if (cached !== undefined) return cached;
    let pending = this.building.get(key);
    if (!pending) {
      pending = build();
      this.building.set(key, pending);
      // Written after the answer: a cold request does not wait for the disk. Until the file is there,
      // requests for the same content share this build.
      pending
        .then((json) => this.store(seriesId, key, json))
        .catch(() => undefined)
        .finally(() => this.building.delete(key));
    }
    return pending;
  }

  /** The JSON for one base URL. */
  async json(seriesId: string, key: string, baseUrl: string, build: () => Promise<string>): Promise<string> {
    return withBase(await this.placeholderJson(seriesId, key, build), baseUrl);
  }

  /** The gzip file of the JSON for one base URL when it was made before, else undefined. */
  async existingGzipFile(seriesId: string, key: string, baseUrl: string): Promise<string | undefined> {
    if (!this.dir) return undefined;
    const file = this.baseFile(seriesId, key, baseUrl);
    return (await exists(file)) ? file : undefined;
  }

  /** Makes the gzip file for one base URL in the background, for the next requests. */
  prepareGzipFile(seriesId: string, key: string, baseUrl: string, json: string): void {
    if (!this.dir) return;
    const file = this.baseFile(seriesId, key, baseUrl);
    void (async () => {
      try {
        await writeAtomically(file, await gzipAsync(json, { level: GZIP_LEVEL }));
      } catch (error) {
        logger.warn({ err: error, file }, 'cannot write the metadata cache');
      }
    })();
  }

  private async store(seriesId: string, key: string, json: string): Promise<void> {
    const folder = this.folderOf(seriesId);
    try {
      await fsp.mkdir(folder, { recursive: true });
      await writeAtomically(this.placeholderFile(seriesId, key), await gzipAsync(json, { level: GZIP_LEVEL }));
      // Entries of the series' earlier content can never be read again.
      for (const name of await fsp.readdir(folder)) {
        if (!name.startsWith(key) && !name.startsWith('.tmp-')) await fsp.rm(path.join(folder, name), { force: true });
      }
    } catch (error) {
      // A cache that cannot be written only costs speed.
      logger.warn({ err: error, folder }, 'cannot write the metadata cache');
    }
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await fsp.access(file);
    return true;
  } catch {
    return false;
  }
}

async function readGzip(file: string): Promise<string | undefined> {
  let compressed: Buffer;
  try {
    compressed = await fsp.readFile(file);
  } catch {
    return undefined;
  }
  try {
    return (await gunzipAsync(compressed)).toString('utf8');
  } catch {
    // A damaged entry is rebuilt.
    await fsp.rm(file, { force: true });
    return undefined;
  }
}

async function writeAtomically(file: string, bytes: Buffer): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const temporary = path.join(path.dirname(file), `.tmp-${randomUUID()}`);
  await fsp.writeFile(temporary, bytes);
  await fsp.rename(temporary, file);
}
