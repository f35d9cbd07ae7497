import { utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { HostReport } from '../../../controlplane/ports';
import { FileWatcher } from '../../../controlplane/watchers/file';
import { eventually, tempDir } from '../../../testkit/net';

/** The change trace's source time for a hosts file: the file's mtime, as the file system recorded it. */
test("a hosts file's change is timed by its mtime — not its first read, nor an mtime older than the read before", async () => {
  const tmp = tempDir('proxymgr-filetime-');
  const file = path.join(tmp.dir, 'hosts');
  writeFileSync(file, '127.0.0.1:9001\n');
  const written = new Date('2026-01-02T03:04:05.678Z');
  utimesSync(file, written, written);
  const reports: HostReport[] = [];
  const w = new FileWatcher({ file, pollMs: 50, allowedDirs: [tmp.dir] });
  w.start({ hosts: (r) => void reports.push(r), unavailable: () => undefined });
  try {
    expect(await eventually(() => reports.length === 1, 5000)).toBe(true);
    // The first read is no change (a file written long ago would time it so): observed.
    expect(reports[0]!.changedAt!.kind).toBe('observed');
    const next = Date.now() + 5_000;
    writeFileSync(file, '127.0.0.1:9001\n127.0.0.1:9002\n');
    utimesSync(file, new Date(next), new Date(next));
    expect(await eventually(() => reports.length === 2, 5000)).toBe(true);
    expect(reports[1]!.hosts).toHaveLength(2);
    expect(reports[1]!.changedAt).toEqual({ at: next, kind: 'source' }); // ahead: discovery marks it skewed
    // A copy that keeps an old mtime (rsync -t): older than the read that saw the old content, so not believed.
    const sawOld = Date.now();
    writeFileSync(file, '127.0.0.1:9003\n');
    utimesSync(file, written, written);
    expect(await eventually(() => reports.length === 3, 5000)).toBe(true);
    expect(reports[2]!.changedAt!.kind).toBe('observed');
    // Timed when the read that found it began: a poll already under way may have begun a moment before the write.
    expect(reports[2]!.changedAt!.at).toBeGreaterThan(sawOld - 1000);
  } finally {
    await w.stop();
    tmp.cleanup();
  }
});
