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
