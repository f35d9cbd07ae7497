import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';

/**
 * Writes `content` to `file` atomically (temp file in the same directory, fsync, rename) unless the file already
 * holds exactly that content. Returns true when the file was (re)written.
 */
export async function writeFileAtomic(file: string, content: string, mode = 0o644): Promise<boolean> {
  try {
    if ((await fsp.readFile(file, 'utf8')) === content) return false;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  const handle = await fsp.open(tmp, 'w', mode);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fsp.rename(tmp, file);
  return true;
}

/** Finds `rel` below the nearest ancestor of `from` that has it (works from the sources and from dist/). */
export function findUp(rel: string, from = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, rel);
    if (existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`${rel} not found above ${from} (run npm install && npm run build)`);
  }
}
