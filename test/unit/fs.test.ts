import { readdirSync, readFileSync, statSync, utimesSync } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../../common/fs';
import { tempDir } from '../helpers/net';

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
