import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { followDir } from '../follow';
import { parseHostPort } from '../host';
import { Host, Watcher, WatcherListener } from '../types';

export interface FileWatcherOptions {
  /** One `host:port` (optionally `weight=N`) per line; `#` starts a comment. */
  readonly file: string;
  readonly pollMs: number;
}

/** Hosts from a file, followed by fs events with a polling fallback; a missing file keeps the previous hosts. */
export class FileWatcher implements Watcher {
  private stopFollow: (() => void) | undefined;
  private last: string | undefined;
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
    const file = this.options.file;
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (err) {
      const reason = `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
      if (this.last !== reason && !this.stopped) listener.unavailable(reason);
      this.last = reason;
      return;
    }
    if (text === this.last || this.stopped) return;
    this.last = text;
    listener.hosts(parseHostsFile(text, file));
  }
}

/** Parses a hosts file; bad lines are skipped and named `file:line`. Pure. */
export function parseHostsFile(text: string, file: string): { hosts: Host[]; problems: { where: string; message: string }[] } {
  const hosts: Host[] = [];
  const problems: { where: string; message: string }[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    try {
      hosts.push(parseHostPort(line));
    } catch (err) {
      problems.push({ where: `${file}:${i + 1}`, message: `line skipped: ${(err as Error).message}` });
    }
  });
  return { hosts, problems };
}
