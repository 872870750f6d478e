import { readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

/** Files under a folder, recursively. */
export function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...filesUnder(full));
    else out.push(full);
  }
  return out;
}

/** The files of an embedded core's storage area, minus its SQLite index (and tmp/ unless `withTmp`). */
export function storedFiles(storage: string, options: { withTmp?: boolean } = {}): string[] {
  const tmp = join(storage, 'tmp');
  return filesUnder(storage).filter((f) => !basename(f).startsWith('index.sqlite') && (options.withTmp || !f.startsWith(`${tmp}/`)));
}
