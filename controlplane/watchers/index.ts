import { realpathSync } from 'node:fs';
import * as path from 'node:path';
import { ControlPlaneConfig } from '../../common/config/config';
import { Logger } from '../../common/platform/log';
import { isInside, lexicallyInside } from '../confined-file';
import { ServiceConfigError } from '../service-config';
import { ServiceConfig } from '../types';
import { Watcher, WatcherFactory } from '../ports';
import { ZkSessionManager } from '../zk/manager';
import { ensembleOf } from '../../common/config/zk-ensembles';
import { DnsWatcher } from './dns';
import { FileWatcher } from './file';
import { StaticWatcher } from './static';
import { ZookeeperWatcher } from './zookeeper';

export interface WatcherContext {
  readonly zk: ZkSessionManager;
  /** The service-config source's ensemble, used when a zookeeper watcher names no `server`. */
  readonly defaultZkServers?: string;
  /**
   * The ensembles zookeeper watchers may name (the service-config ensemble and `controlplane.watcher_ensembles`):
   * every server of a watcher's connect string must belong to one of them.
   */
  readonly zkEnsembles: readonly { readonly servers: string }[];
  readonly controlplane: ControlPlaneConfig;
  readonly log: Logger;
}

/** The real watchers (ZooKeeper, DNS, file, static), made and identified within `ctx`. */
export function watcherFactory(ctx: WatcherContext): WatcherFactory {
  return {
    create: (config, origin) => createWatcher(config, origin, ctx),
    identity: (config) => watcherIdentity(config, ctx),
  };
}

/** The watcher a service config asks for. Throws ServiceConfigError when the config cannot be honoured here. */
export function createWatcher(config: ServiceConfig, origin: string, ctx: WatcherContext): Watcher {
  const spec = config.watcher;
  const log = ctx.log.child({ service: config.name, watcher: spec.type });
  switch (spec.type) {
    case 'zookeeper': {
      const servers = spec.server ?? ctx.defaultZkServers;
      if (!servers)
        throw new ServiceConfigError(
          origin,
          'server: missing; a zookeeper watcher needs "server" when service configs do not come from ZooKeeper',
        );
      const allowed = ensembleOf(servers, ctx.zkEnsembles);
      if (!allowed.ok) {
        const listed = ctx.zkEnsembles.map((e) => e.servers).join('; ') || 'none';
        throw new ServiceConfigError(
          origin,
          `service ${config.name}: zookeeper watcher refused for server ${allowed.server}: it ${allowed.why}; a watcher may name the service-config ensemble or one listed in controlplane.watcher_ensembles (allowed: ${listed})`,
        );
      }
      return new ZookeeperWatcher({ zk: ctx.zk, servers, path: spec.path, log });
    }
    case 'dns':
      return new DnsWatcher({
        backends: spec.backends,
        nameservers: spec.nameservers ?? ctx.controlplane.dnsNameservers,
        minTtlMs: ctx.controlplane.dnsMinTtlMs,
        maxTtlMs: ctx.controlplane.dnsMaxTtlMs,
        log,
      });
    case 'file': {
      const dirs = ctx.controlplane.fileWatcherDirs;
      if (dirs.length === 0) {
        throw new ServiceConfigError(
          origin,
          `service ${config.name}: file watcher refused for ${spec.file}: file watchers may only read under controlplane.file_watcher_dirs (controlplane.file_watcher_dirs: none listed)`,
        );
      }
      if (!lexicallyInside(spec.file, dirs)) {
        throw new ServiceConfigError(
          origin,
          `service ${config.name}: file watcher refused for ${spec.file}: not under controlplane.file_watcher_dirs (${dirs.join(', ')})`,
        );
      }
      // A symlink already in place is refused here, with the service (not served at all), rather than at the first
      // read (which would serve the service without hosts on its port). A symlink put in place later is refused at
      // every read: the service keeps its previous hosts, and the file is never read.
      const real = realPathOrUndefined(spec.file);
      if (real !== undefined && !dirs.some((d) => isInside(real, realPathOrUndefined(d) ?? path.resolve(d)))) {
        throw new ServiceConfigError(
          origin,
          `service ${config.name}: file watcher refused for ${spec.file}: it resolves (through a symlink) to a path outside controlplane.file_watcher_dirs (${dirs.join(', ')})`,
        );
      }
      return new FileWatcher({ file: spec.file, pollMs: ctx.controlplane.filePollMs, allowedDirs: dirs });
    }
    case 'static':
      return new StaticWatcher(spec.hosts);
  }
}

/** What identifies a running watcher: equal keys mean a config change can keep the watcher (and its hosts). */
export function watcherIdentity(config: ServiceConfig, ctx: Pick<WatcherContext, 'defaultZkServers'>): string {
  const spec = config.watcher;
  return JSON.stringify(spec.type === 'zookeeper' ? { ...spec, server: spec.server ?? ctx.defaultZkServers } : spec);
}

/** The real path of `p` (symlinks resolved), or undefined when it does not exist (yet) or cannot be resolved. */
function realPathOrUndefined(p: string): string | undefined {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
}
