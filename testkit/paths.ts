import { existsSync } from 'node:fs';
import * as path from 'node:path';

/**
 * The repository's root: the nearest directory above this file with a package.json. The kit runs from source
 * under jest (testkit/) and compiled under dist/ for benchmarks and the demo (dist/testkit/), so a fixed number
 * of '..' would be right for one of them only.
 */
function findRepo(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${__dirname}`);
  }
}

export const REPO = findRepo();
