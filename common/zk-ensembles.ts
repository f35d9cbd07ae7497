import { describe, expectObject, onlyKeys, optionalString, requiredString, resolvePath } from './config-readers';
import { ConfigError } from './errors';

/**
 * A ZooKeeper ensemble that `zookeeper` watchers of service configs may name (`controlplane.watcher_ensembles`),
 * with the credentials that go to it and nowhere else.
 */
export interface WatcherEnsemble {
  /** "host:port,host:port" as the operator wrote it. */
  readonly servers: string;
  /** `user:password` file sent (digest) to this ensemble only; unset = no credentials. */
  readonly digestFile?: string;
}

const HOST_PORT_RE = /^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/;

/**
 * The servers of a connect string, as compared: chroot dropped, each `host:port` trimmed and lower-cased (host names
 * are case-insensitive), empty entries dropped. "ZK-A:2181, zk-b:2181/x" → ["zk-a:2181", "zk-b:2181"].
 */
export function ensembleServers(connectString: string): string[] {
  const slash = connectString.indexOf('/');
  const hosts = slash < 0 ? connectString : connectString.slice(0, slash);
  return hosts
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h !== '');
}

/** `controlplane.watcher_ensembles`: a list of `{servers, digest_file?}`; every error names the key and the fix. */
export function parseWatcherEnsembles(value: unknown, file: string, base: string): WatcherEnsemble[] {
  const key = 'controlplane.watcher_ensembles';
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value))
    throw new ConfigError(
      `${file}: ${key}: expected a list such as [{servers: "zk-a:2181,zk-b:2181", digest_file: /etc/proxymgr/zk-b.digest}], got ${describe(value)}`,
    );
  const owner = new Map<string, string>();
  return value.map((v, i): WatcherEnsemble => {
    const at = `${key}[${i}]`;
    const o = expectObject(v, file, at);
    onlyKeys(o, file, at, ['servers', 'digest_file']);
    const servers = requiredString(o.servers, file, `${at}.servers`, 'a "host:port,host:port" ZooKeeper ensemble');
    if (servers.includes('/'))
      throw new ConfigError(
        `${file}: ${at}.servers: "${servers}" has a chroot; list the servers only (a watcher's path says where it reads)`,
      );
    for (const hp of servers.split(',')) {
      if (!HOST_PORT_RE.test(hp.trim()))
        throw new ConfigError(`${file}: ${at}.servers: "${hp}" is not host:port (expected e.g. "zk-a:2181,zk-b:2181")`);
    }
    for (const s of ensembleServers(servers)) {
      const other = owner.get(s);
      if (other !== undefined && other !== at)
        throw new ConfigError(
          `${file}: ${at}.servers: ${s} is also in ${other}; a server belongs to one ensemble (one set of credentials)`,
        );
      owner.set(s, at);
    }
    const digest = optionalString(o.digest_file, file, `${at}.digest_file`);
    return { servers, ...(digest !== undefined ? { digestFile: resolvePath(base, digest) } : {}) };
  });
}

/**
 * A watcher ensemble that shares a server with `service_config.servers`, named, or undefined: the service-config
 * ensemble is allowed already, with `controlplane.zk_digest_file`, and one server cannot take two credentials.
 */
export function ensembleOverlapProblem(
  ensembles: readonly WatcherEnsemble[],
  serviceConfigServers: string | undefined,
): string | undefined {
  if (serviceConfigServers === undefined) return undefined;
  const own = new Set(ensembleServers(serviceConfigServers));
  for (const [i, e] of ensembles.entries()) {
    const shared = ensembleServers(e.servers).find((s) => own.has(s));
    if (shared !== undefined)
      return `controlplane.watcher_ensembles[${i}].servers: ${shared} is in service_config.servers already (that ensemble is allowed without listing it, with controlplane.zk_digest_file)`;
  }
  return undefined;
}

export type EnsembleMatch<T> =
  { readonly ok: true; readonly ensemble: T } | { readonly ok: false; readonly server: string; readonly why: string };

/**
 * The one allowed ensemble every server of `connectString` belongs to, or the first server that belongs to none (or
 * to another ensemble than the servers before it). Pure; the watcher factory refuses, the session manager picks
 * credentials with it.
 */
export function ensembleOf<T extends { readonly servers: string }>(
  connectString: string,
  allowed: readonly T[],
): EnsembleMatch<T> {
  const servers = ensembleServers(connectString);
  if (servers.length === 0) return { ok: false, server: connectString, why: 'names no server' };
  let found: T | undefined;
  for (const s of servers) {
    const e = allowed.find((a) => ensembleServers(a.servers).includes(s));
    if (!e) return { ok: false, server: s, why: 'is in no allowed ensemble' };
    if (found && e !== found)
      return {
        ok: false,
        server: s,
        why: `belongs to another ensemble (${found.servers}) than the servers before it`,
      };
    found = e;
  }
  return { ok: true, ensemble: found! };
}
