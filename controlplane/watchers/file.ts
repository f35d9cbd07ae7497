import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { MAX_HOSTS_FILE_BYTES, readConfinedFile } from '../confined-file';
import { followDir } from '../follow';
import { parseHostPort } from '../host';
import { Host } from '../types';
import { Watcher, WatcherListener } from '../ports';

export interface FileWatcherOptions {
  /** One `host:port` (optionally `weight=N`) per line; `#` starts a comment. */
  readonly file: string;
  readonly pollMs: number;
  /** `controlplane.file_watcher_dirs`: the file is read only while its real path lies under one of these. */
  readonly allowedDirs: readonly string[];
  readonly maxBytes?: number;
}

/**
 * Hosts from a file, followed by fs events with a polling fallback; a missing, refused or unreadable file keeps the
 * previous hosts. Every read checks the file's real path against the allowed directories again (the file may be
 * replaced by a symlink at any time) and its size and type (no device, no FIFO, nothing huge).
 */
export class FileWatcher implements Watcher {
  private stopFollow: (() => void) | undefined;
  private last: string | undefined;
  /** When the read of the content last read began (the one before a change): a change cannot be older than that. */
  private lastReadAt: number | undefined;
  private reading = false;
  private again = false;
  private stopped = false;

  constructor(private readonly options: FileWatcherOptions) {}

  start(listener: WatcherListener): void {
    const read = async (): Promise<void> => {
      if (this.stopped) return;
      if (this.reading) {
        this.again = true;
        return;
      }
      this.reading = true;
      try {
        await this.read(listener);
      } finally {
        this.reading = false;
        if (this.again) {
          this.again = false;
          void read();
        }
      }
    };
    this.stopFollow = followDir(path.dirname(this.options.file), () => void read(), this.options.pollMs);
    void read();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopFollow?.();
  }

  private async read(listener: WatcherListener): Promise<void> {
    const { file, allowedDirs } = this.options;
    const readAt = Date.now(); // before the read: a write during it is newer than this
    let text: string;
    try {
      text = await readConfinedFile(
        file,
        allowedDirs,
        this.options.maxBytes ?? MAX_HOSTS_FILE_BYTES,
        'controlplane.file_watcher_dirs',
      );
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const reason = e.name === 'FileRefusedError' ? e.message : `cannot read ${file}: ${e.code ?? e.message}`;
      if (this.last !== reason && !this.stopped) listener.unavailable(reason);
      this.last = reason;
      return;
    }
    const previousReadAt = this.lastReadAt;
    this.lastReadAt = readAt;
    if (text === this.last || this.stopped) return;
    this.last = text;
    // The file's mtime is the change's source time (a file replaced by rename keeps the time it was written) — unless
    // it is older than the read that still saw the old content (a copy that keeps times, `cp -p`, `rsync -t`, or
    // whoever writes the file says so) or this is the first read: then the change is timed when it was seen.
    const mtime = await stat(file).then(
      (s) => Math.round(s.mtimeMs),
      () => undefined,
    );
    if (this.stopped) return;
    const report = parseHostsFile(text, file);
    // The first content read is no change of the file (a new service, a new watch): observed, as an old mtime would
    // time it days long.
    const believable = mtime !== undefined && previousReadAt !== undefined && mtime >= previousReadAt;
    listener.hosts({
      ...report,
      changedAt: believable ? { at: mtime, kind: 'source' } : { at: readAt, kind: 'observed' },
    });
  }
}

/** A file that is not a hosts file (a key, a binary) would otherwise log one problem per line. */
export const MAX_LINE_PROBLEMS = 20;

/**
 * Parses a hosts file; bad lines are skipped and named `file:line` with what was expected — never with the line's
 * text, since the file may be something else entirely (a key) and problems go to logs and the admin API. After
 * MAX_LINE_PROBLEMS bad lines, one more problem counts the rest. Pure.
 */
export function parseHostsFile(
  text: string,
  file: string,
): { hosts: Host[]; problems: { where: string; message: string }[] } {
  const hosts: Host[] = [];
  const problems: { where: string; message: string }[] = [];
  let more = 0;
  let firstMore = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    try {
      hosts.push(parseHostPort(line));
    } catch (err) {
      if (problems.length >= MAX_LINE_PROBLEMS) {
        if (more++ === 0) firstMore = i + 1;
        return;
      }
      problems.push({
        where: `${file}:${i + 1}`,
        message: `line skipped: ${contentFree((err as Error).message, line)}`,
      });
    }
  });
  if (more > 0)
    problems.push({
      where: `${file}:${firstMore}`,
      message: `${more} more line(s) skipped from here on (not host:port)`,
    });
  return { hosts, problems };
}

/** The parser's message, unless some piece of the line shows up in it (then a generic one): a second safety net. */
function contentFree(message: string, line: string): string {
  const pieces = line.split(/[\s:[\]=,"']+/).filter((p) => p.length >= 3);
  if (pieces.some((p) => message.includes(p)))
    return 'expected host:port (e.g. "10.0.0.1:8080" or "[::1]:8080"), optionally followed by weight=N';
  return message;
}
