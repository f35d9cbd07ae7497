import { promises as fsp, watch, FSWatcher } from 'node:fs';
import * as path from 'node:path';
import yaml from 'js-yaml';
import { ProxyMgrError, errorMessage } from '../../common/platform/errors';
import { Logger } from '../../common/platform/log';
import { fromJson } from '../../common/protocol/state-codec';
import { DesiredState } from '../../common/protocol/types';
import { stateVersion } from '../../common/protocol/state-hash';
import { ApplyFn, StateSource } from '../ports';

/** Applies a state and says how it went (the gRPC source turns that into ACK/NACK). */

/** Reads a desired state (proto3 JSON form, as JSON or YAML). A missing version is filled with a content hash. */

export async function readStateFile(file: string): Promise<DesiredState> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    throw new ProxyMgrError('STATE_INVALID', `${file}: cannot read: ${errorMessage(err)}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = yaml.load(text, { filename: file });
  } catch (err) {
    throw new ProxyMgrError('STATE_INVALID', `${file}: not valid JSON/YAML: ${errorMessage(err)}`, { cause: err });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new ProxyMgrError(
      'STATE_INVALID',
      `${file}: expected a mapping with "services" (and optionally "haproxy", "version")`,
    );
  }
  // A document without a list of services must not read as "no services": that would drop every listener.
  const services = (doc as Record<string, unknown>).services;
  if (!Array.isArray(services)) {
    throw new ProxyMgrError(
      'STATE_INVALID',
      `${file}: services: expected a list of services (an empty list [] removes every service), got ${services === undefined ? 'nothing' : typeof services}`,
    );
  }
  const parsed = fromJson(doc);
  // The file is the operator's own list: a service in it without servers is affirmatively empty, unless it says
  // its hosts are unknown (HOSTS_STATUS_UNKNOWN).
  const state = {
    ...parsed,
    services: parsed.services.map((s) => (s.hosts ? s : { ...s, hosts: 'reported' as const })),
  };
  return state.version ? state : { ...state, version: stateVersion(state.haproxy, state.services) };
}

/**
 * Follows a state file: fs.watch on its directory (editors and atomic writers replace the file) plus a polling
 * fallback. A file that cannot be read or parsed is logged and ignored: the last good state keeps running.
 */
export class FileStateSource implements StateSource {
  private watcher: FSWatcher | undefined;
  private poll: NodeJS.Timeout | undefined;
  private lastText: string | undefined;
  private debounce: NodeJS.Timeout | undefined;

  constructor(
    private readonly file: string,
    private readonly log: Logger,
    private readonly pollMs = 1000,
  ) {}

  async start(apply: ApplyFn): Promise<void> {
    const check = async () => {
      let text: string;
      try {
        text = await fsp.readFile(this.file, 'utf8');
      } catch (err) {
        this.log.error({ file: this.file, err: errorMessage(err) }, 'cannot read state file; keeping the last state');
        return;
      }
      if (text === this.lastText) return;
      this.lastText = text;
      try {
        await apply(await readStateFile(this.file));
      } catch (err) {
        this.log.error({ file: this.file, err: errorMessage(err) }, 'state file rejected; keeping the last state');
      }
    };
    await check();
    this.watcher = watch(path.dirname(this.file), (_event, name) => {
      if (name && name !== path.basename(this.file)) return;
      clearTimeout(this.debounce);
      this.debounce = setTimeout(() => void check(), 20);
    });
    this.poll = setInterval(() => void check(), this.pollMs);
    this.poll.unref();
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    clearInterval(this.poll);
    clearTimeout(this.debounce);
  }
}
