import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync } from 'node:fs';
import * as path from 'node:path';
import { ensurePrivateDir, writeFileAtomic } from '../../common/platform/fs';
import { tempDir } from '../../testkit/net';

test('writeFileAtomic writes via a temp file, and leaves an unchanged file alone', async () => {
  const tmp = tempDir();
  try {
    const file = path.join(tmp.dir, 'sub', 'haproxy.cfg');
    expect(await writeFileAtomic(file, 'a\n')).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe('a\n');
    const old = new Date(Date.now() - 60_000);
    utimesSync(file, old, old);
    expect(await writeFileAtomic(file, 'a\n')).toBe(false);
    expect(Math.round(statSync(file).mtimeMs)).toBe(old.getTime());
    expect(await writeFileAtomic(file, 'b\n')).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe('b\n');
    expect(readdirSync(path.dirname(file))).toEqual(['haproxy.cfg']); // no temp file left behind
  } finally {
    tmp.cleanup();
  }
});

test('writeFileAtomic writes owner-only by default and tightens an unchanged file with looser modes', async () => {
  const tmp = tempDir();
  try {
    const file = path.join(tmp.dir, 'state', 'desired-state.json');
    await writeFileAtomic(file, '{}');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(path.dirname(file)).mode & 0o777).toBe(0o700); // created by the write
    chmodSync(file, 0o644);
    expect(await writeFileAtomic(file, '{}')).toBe(false);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    chmodSync(file, 0o644);
    expect(await writeFileAtomic(file, '{"a":1}')).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(await writeFileAtomic(file, '{"a":1}', 0o640)).toBe(false); // never loosened
    expect(statSync(file).mode & 0o777).toBe(0o600);
  } finally {
    tmp.cleanup();
  }
});

test('ensurePrivateDir creates 0700, tightens an existing dir, and refuses a shared one', async () => {
  const tmp = tempDir();
  try {
    const fresh = path.join(tmp.dir, 'a', 'b');
    await ensurePrivateDir(fresh);
    expect(statSync(fresh).mode & 0o7777).toBe(0o700);
    const loose = path.join(tmp.dir, 'loose');
    mkdirSync(loose);
    chmodSync(loose, 0o755);
    await ensurePrivateDir(loose);
    expect(statSync(loose).mode & 0o7777).toBe(0o700);
    const shared = path.join(tmp.dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    await expect(ensurePrivateDir(shared)).rejects.toThrow(/shared directory \(mode 1777\)/);
    expect(statSync(shared).mode & 0o7777).toBe(0o1777);
  } finally {
    tmp.cleanup();
  }
});
