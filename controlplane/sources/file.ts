import { ProxyMgrError } from '../../common/platform/errors';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import yaml from 'js-yaml';
import { Logger } from '../../common/platform/log';
import { MAX_CONFIG_FILE_BYTES, readConfinedFile } from '../confined-file';
import { followDir } from '../follow';
import { syntaxErrorMessage } from '../syntax-error';
import { RawServiceConfig } from '../types';
import { ServiceConfigSource, SourceListener } from '../ports';

export interface FileSourceOptions {
  /** A directory with one `<service>.json|.yml|.yaml` per service, or one YAML/JSON file mapping name → config. */
  readonly path: string;
  readonly pollMs: number;
  readonly log: Logger;
}

const EXT_RE = /^(.+)\.(json|ya?ml)$/;

/**
 * Service configs from disk, for a ZooKeeper-less start: the same documents as the ZooKeeper nodes, followed by
 * fs events with a polling fallback. A file that cannot be read or parsed as a whole leaves everything as it was.
 * Nothing outside the directory is read: an entry whose real path (symlinks, `..`) leaves the directory, a device,
 * a FIFO or a file over MAX_CONFIG_FILE_BYTES is refused and logged, and the service keeps its last good config.
 * Kubernetes ConfigMap mounts (symlinks into `..data/` inside the directory) stay inside and work.
 */
export class FileSource implements ServiceConfigSource {
  private stopFollow: (() => void) | undefined;
  private last = '';
  private scanning: Promise<void> | undefined;
  /** The last configs delivered: a refused entry keeps its previous one. */
  private previous = new Map<string, RawServiceConfig>();
  private readonly refused = new Map<string, string>();
  private again = false;
  private stopped = false;

  constructor(private readonly options: FileSourceOptions) {}

  start(listener: SourceListener): void {
    const target = this.options.path;
    const scan = () => {
      if (this.stopped) return;
      if (this.scanning) {
        this.again = true;
        return;
      }
      this.scanning = this.scan(listener).finally(() => {
        this.scanning = undefined;
        if (this.again) {
          this.again = false;
          scan();
        }
      });
    };
    void fsp
      .stat(target)
      .then((st) => (st.isDirectory() ? target : path.dirname(target)))
      .catch(() => path.dirname(target))
      .then((dir) => {
        if (this.stopped) return;
        this.stopFollow = followDir(dir, scan, this.options.pollMs);
        scan();
      });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopFollow?.();
    await this.scanning;
  }

  private async scan(listener: SourceListener): Promise<void> {
    const target = this.options.path;
    let configs: Map<string, RawServiceConfig>;
    try {
      const st = await fsp.stat(target);
      configs = st.isDirectory() ? await this.readDir(target) : await readOne(target);
    } catch (err) {
      const reason = `service configs at ${target} cannot be read: ${(err as Error).message}`;
      if (this.last !== reason) listener.unavailable(reason);
      this.last = reason;
      return;
    }
    const key = JSON.stringify([...configs.values()].map((c) => [c.name, c.text]));
    this.previous = configs;
    if (key === this.last) return;
    this.last = key;
    listener.configs(configs);
  }

  private async readDir(dir: string): Promise<Map<string, RawServiceConfig>> {
    const out = new Map<string, RawServiceConfig>();
    const refusedNow = new Set<string>();
    for (const entry of (await fsp.readdir(dir)).sort()) {
      const m = EXT_RE.exec(entry);
      if (!m || entry.startsWith('.')) continue;
      const file = path.join(dir, entry);
      let text: string;
      try {
        text = await readConfinedFile(file, [dir], MAX_CONFIG_FILE_BYTES, `the service_config directory`);
      } catch (err) {
        if ((err as Error).name !== 'FileRefusedError') continue; // removed between readdir and read
        refusedNow.add(file);
        const kept = this.previous.get(m[1]!);
        const reason = `${(err as Error).message}; ${kept ? 'keeping its previous config' : 'the service is not served'}`;
        if (this.refused.get(file) !== reason) this.options.log.error({ file }, reason);
        this.refused.set(file, reason);
        if (kept) out.set(m[1]!, kept);
        continue;
      }
      out.set(m[1]!, { name: m[1]!, text, origin: file, format: m[2] === 'json' ? 'json' : 'yaml' });
    }
    for (const file of this.refused.keys()) if (!refusedNow.has(file)) this.refused.delete(file);
    return out;
  }
}

/** One file mapping name → config; it must not lead (by symlink) out of its own directory. */
async function readOne(file: string): Promise<Map<string, RawServiceConfig>> {
  const dir = path.dirname(path.resolve(file));
  const text = await readConfinedFile(file, [dir], MAX_CONFIG_FILE_BYTES, `its directory`);
  let doc: unknown;
  try {
    doc = yaml.load(text, { filename: file });
  } catch (err) {
    throw new ProxyMgrError('SERVICE_CONFIG_INVALID', `${file}: ${syntaxErrorMessage(err, text, 'yaml')}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw new ProxyMgrError('SERVICE_CONFIG_INVALID', 'expected a mapping of service name to service config');
  const out = new Map<string, RawServiceConfig>();
  for (const [name, value] of Object.entries(doc as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1))) {
    out.set(name, { name, text: JSON.stringify(value), origin: `${file}: ${name}`, format: 'json' });
  }
  return out;
}
