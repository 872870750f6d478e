import { existsSync } from 'node:fs';
import path from 'node:path';

/** The folder holding our package.json, whether running from src/ (tests) or dist/src/ (built). */
export function packageRoot(): string {
  let dir = __dirname;
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('package.json not found above ' + __dirname);
    dir = parent;
  }
  return dir;
}
