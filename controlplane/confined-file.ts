import { ProxyMgrError } from '../common/platform/errors';
import { constants, promises as fsp } from 'node:fs';
import * as path from 'node:path';

/** Hosts files hold one short line per host: 4 MiB is some 200,000 hosts, far beyond any real service. */
export const MAX_HOSTS_FILE_BYTES = 4 * 1024 * 1024;
/** A file of service configs (one service, or a mapping of many): each service is limited to 64 KiB on its own. */
export const MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024;

/** Why a file was not read; the message names the file and never anything from inside it. */
export class FileRefusedError extends ProxyMgrError {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super('FILE_REFUSED', `${file}: ${message}`);
  }
}

/** True when `p` lies strictly inside `dir` (both already absolute and normalized, or both real paths). */
export function isInside(p: string, dir: string): boolean {
  const rel = path.relative(dir, p);
  return rel !== '' && rel.split(path.sep)[0] !== '..' && !path.isAbsolute(rel);
}

/** Lexically: does absolute `file` lie under one of `dirs` once `..` and `.` are resolved? (No file system access.) */
export function lexicallyInside(file: string, dirs: readonly string[]): boolean {
  const p = path.resolve(file);
  return dirs.some((d) => isInside(p, path.resolve(d)));
}

/**
 * Reads `file` only if its real path (symlinks and `..` resolved) lies under the real path of one of `dirs`, and
 * only if it is a regular file of at most `maxBytes`. Checked on every call, because the file may be replaced by a
 * symlink at any time; the open does not follow a final symlink and does not block (a FIFO), and on Linux the path
 * of the open descriptor is checked again, which closes the window between the check and the open.
 * Throws FileRefusedError (or the file system's own error for a missing file); messages never quote the content.
 */
export async function readConfinedFile(
  file: string,
  dirs: readonly string[],
  maxBytes: number,
  dirsKey = 'allowed directories',
): Promise<string> {
  const realDirs = (await Promise.all(dirs.map((d) => fsp.realpath(d).catch(() => undefined)))).filter(
    (d): d is string => d !== undefined,
  );
  const outside = () =>
    new FileRefusedError(
      file,
      `refused: it resolves (through a symlink or "..") to a path outside ${dirsKey} (${dirs.join(', ') || 'none listed'})`,
    );
  const real = await fsp.realpath(file);
  if (!realDirs.some((d) => isInside(real, d))) throw outside();
  // O_NONBLOCK: opening a FIFO must not hang discovery; it is refused as not regular right after.
  const fh = await fsp
    .open(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY)
    .catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ELOOP') throw outside(); // the last component became a symlink since realpath
      throw err;
    });
  try {
    const opened = await fsp.readlink(`/proc/self/fd/${fh.fd}`).catch(() => undefined);
    if (opened !== undefined && !realDirs.some((d) => isInside(opened, d))) throw outside();
    const st = await fh.stat();
    if (!st.isFile()) throw new FileRefusedError(file, 'refused: not a regular file');
    if (st.size > maxBytes)
      throw new FileRefusedError(file, `refused: ${st.size} bytes is over the limit of ${maxBytes} bytes`);
    // The size may grow between fstat and the read: stop one byte past the limit, and refuse if that byte came.
    const chunks: Buffer[] = [];
    let total = 0;
    while (total <= maxBytes) {
      const chunk = Buffer.alloc(Math.min(64 * 1024, maxBytes + 1 - total));
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, total);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      total += bytesRead;
    }
    if (total > maxBytes) throw new FileRefusedError(file, `refused: over the limit of ${maxBytes} bytes`);
    return Buffer.concat(chunks, total).toString('utf8');
  } finally {
    await fh.close();
  }
}
