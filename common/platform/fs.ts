import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';

/**
 * Writes `content` to `file` atomically (temp file in the same directory, fsync, rename) unless the file already
 * holds exactly that content. Returns true when the file was (re)written. `mode` defaults to owner-only: what the
 * agent writes (haproxy.cfg, the server-state file, the cached desired state) describes the whole fleet's
 * topology to whoever can read it. An unchanged file with looser permissions than `mode` is tightened.
 */
export async function writeFileAtomic(file: string, content: string, mode = 0o600): Promise<boolean> {
  try {
    if ((await fsp.readFile(file, 'utf8')) === content) {
      await tighten(file, mode);
      return false;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
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

/** Removes permission bits of `file` that `mode` does not grant (never adds any). */
async function tighten(file: string, mode: number): Promise<void> {
  const current = (await fsp.stat(file)).mode & 0o7777;
  if ((current & ~mode) !== 0) await fsp.chmod(file, current & mode);
}

/**
 * Creates `dir` (and missing parents) owner-only, or tightens an existing one to 0700: the agent's state dir
 * holds the stats socket, haproxy.cfg and the cached desired state. A shared directory (world-writable or
 * sticky, like /tmp) is refused rather than locked down for everyone else.
 */
export async function ensurePrivateDir(dir: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await fsp.stat(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if ((st.mode & 0o1002) !== 0)
    throw new Error(
      `${dir} is a shared directory (mode ${(st.mode & 0o7777).toString(8)}); give the agent a directory of its own`,
    );
  if ((st.mode & 0o077) !== 0) await fsp.chmod(dir, 0o700);
}

/** Finds `rel` below the nearest ancestor of `from` that has it (works from the sources and from dist/). */
export function findUp(rel: string, from = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, rel);
    if (existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error(`${rel} not found above ${from} (run npm install && npm run build)`);
  }
}
