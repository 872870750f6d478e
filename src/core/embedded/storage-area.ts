import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';

/**
 * DICOM files on disk, laid out as Orthanc does: <root>/<uuid[0:2]>/<uuid[2:4]>/<uuid>.
 * New files are first written under <root>/tmp and renamed into place, so a reader never sees half a file.
 */
export class StorageArea {
  readonly tmpDirectory: string;
  /** Storage folders known to exist. */
  private readonly directories = new Set<string>();

  constructor(readonly root: string) {
    this.tmpDirectory = path.join(root, 'tmp');
    fs.mkdirSync(this.tmpDirectory, { recursive: true });
  }

  pathOf(uuid: string): string {
    return path.join(this.root, uuid.slice(0, 2), uuid.slice(2, 4), uuid);
  }

  /** A fresh path under tmp/ for a caller that streams a file before storing it. */
  newTemporaryPath(): string {
    return path.join(this.tmpDirectory, randomUUID());
  }

  /** The final path of `uuid`, its folder made if needed. */
  private async placeFor(uuid: string): Promise<string> {
    const target = this.pathOf(uuid);
    const directory = path.dirname(target);
    // 65536 folders at most, made once each: a file into a known folder needs no mkdir first
    if (!this.directories.has(directory)) {
      await fsp.mkdir(directory, { recursive: true });
      this.directories.add(directory);
    }
    return target;
  }

  /**
   * Writes bytes straight to their final place under `uuid`: no temporary file, no rename. Only for a caller whose
   * journal (pending_files) lists `uuid` and whose index does not name it yet: no reader looks for the file before
   * it is complete, and what a failure or a crash leaves is removed with the journal entry.
   */
  async writeInPlace(uuid: string, buffer: Buffer): Promise<void> {
    const target = await this.placeFor(uuid);
    try {
      await fsp.writeFile(target, buffer);
    } catch (error) {
      // the folder was removed meanwhile (by hand): make it again
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      await fsp.mkdir(path.dirname(target), { recursive: true });
      await fsp.writeFile(target, buffer);
    }
  }

  /** Moves a complete temporary file into place under `uuid`. */
  async moveIntoPlace(temporaryPath: string, uuid: string): Promise<void> {
    const target = await this.placeFor(uuid);
    const directory = path.dirname(target);
    try {
      await fsp.rename(temporaryPath, target);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EXDEV') {
        // a file received on another file system (the OS temporary folder): copied to tmp/ first, so that the
        // final name still appears at once, complete
        const local = this.newTemporaryPath();
        try {
          await fsp.copyFile(temporaryPath, local);
          await fsp.rename(local, target);
        } catch (copyError) {
          await fsp.rm(local, { force: true });
          throw copyError;
        }
        await fsp.rm(temporaryPath, { force: true });
        return;
      }
      // the folder was removed meanwhile (by hand): make it again
      if (code !== 'ENOENT' || !fs.existsSync(temporaryPath)) throw error;
      await fsp.mkdir(directory, { recursive: true });
      await fsp.rename(temporaryPath, target);
    }
  }

  async remove(uuid: string): Promise<void> {
    await fsp.rm(this.pathOf(uuid), { force: true });
  }

  removeSync(uuid: string): void {
    fs.rmSync(this.pathOf(uuid), { force: true });
  }

  /** Leftovers of writes interrupted by a crash. */
  clearTemporary(): void {
    for (const name of fs.readdirSync(this.tmpDirectory)) fs.rmSync(path.join(this.tmpDirectory, name), { force: true });
  }

  createReadStream(uuid: string, range?: { start: number; end: number }): fs.ReadStream {
    return fs.createReadStream(this.pathOf(uuid), range ? { start: range.start, end: range.end, highWaterMark: 1 << 20 } : { highWaterMark: 1 << 20 });
  }

  async read(uuid: string): Promise<Buffer> {
    return fsp.readFile(this.pathOf(uuid));
  }

  /** Reads at most `length` bytes from the start of a file. */
  async readHead(uuid: string, length: number): Promise<Buffer> {
    return readFileHead(this.pathOf(uuid), length);
  }
}

/** A write refused for lack of space: a full disk or quota (errno), or a full SQLite index. */
export function isOutOfSpace(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}

export async function readFileHead(filePath: string, length: number): Promise<Buffer> {
  const handle = await fsp.open(filePath, 'r');
  try {
    const { size } = await handle.stat();
    const buffer = Buffer.allocUnsafe(Math.min(size, length));
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
