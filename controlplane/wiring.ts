/**
 * The control plane's composition root: the real adapters — ZooKeeper sessions, the service-config source (ZooKeeper
 * or a file), the watchers, the known-hosts store and the rollout store in ZooKeeper — made from proxymgr.yml and
 * handed to the cores (Discovery, RolloutCoordinator, ControlPlaneProcess), which import none of them.
 * `proxymgr controlplane`, `proxymgr check` and `proxymgr standalone` assemble their processes here.
 */
import { Clock, systemClock } from '../common/platform/clock';
import {
  ControlPlaneConfig,
  DEFAULT_CONTROLPLANE_CONFIG,
  ProxyMgrConfig,
  RolloutConfig,
  ServiceOptionsPolicy,
} from '../common/config/config';
import { ProxyMgrError } from '../common/platform/errors';
import { Logger, silentLogger } from '../common/platform/log';
import { ControlPlaneProcess } from './control-plane-process';
import { Discovery } from './discovery';
import { AgentPreflights } from './grpc/agent-questions';
import { HaStore } from './ha/ha-store';
import { RolloutCoordinator } from './rollout/coordinator';
import { RolloutStore, RolloutStoreListener } from './rollout/store';
import { FileSource } from './sources/file';
import { ZookeeperSource } from './sources/zookeeper';
import { ServiceConfigSource } from './ports';
import { watcherFactory } from './watchers';
import { loadZkDigest, ZkDigest } from './zk/digest';
import { ZkKnownHostsStore } from './zk/known-hosts-store';
import { ZkSessionManager } from './zk/manager';

/** Default root of the control plane's nodes in ZooKeeper (the schema's rollout.zk_path). */
const DEFAULT_ZK_ROOT = '/proxymgr';

export interface DiscoveryWiringOptions {
  /** proxymgr.yml: `service_config` picks the source; `haproxy.global/defaults` go into every snapshot. */
  readonly config: Pick<ProxyMgrConfig, 'haproxy' | 'serviceConfig'> & {
    readonly controlplane?: ControlPlaneConfig;
    readonly serviceOptions?: ServiceOptionsPolicy;
    /** Its `zk_path` roots the known-hosts records (default /proxymgr). */
    readonly rollout?: { readonly zkPath: string };
  };
  readonly log?: Logger;
  /** A shared session manager; by default one is made, and closed when discovery stops. */
  readonly zk?: ZkSessionManager;
  /** ZooKeeper credentials; by default read from `controlplane.zk_digest_file` when that is set. */
  readonly zkDigest?: ZkDigest;
  readonly clock?: Clock;
}

/** A Discovery on its real adapters, and the control plane's ZooKeeper credentials (read once, for the rollout store too). */
export interface WiredDiscovery {
  readonly discovery: Discovery;
  readonly zkDigest: ZkDigest | undefined;
}

/**
 * Discovery as proxymgr.yml describes it: the source `service_config` names, the real watchers, and — when service
 * configs come from ZooKeeper — the last known hosts at `<rollout.zk_path>/known_hosts` on that ensemble. Each
 * ensemble gets only its own credentials. Throws ProxyMgrError (CONFIG_INVALID) without a `service_config` section.
 */
export function wireDiscovery(options: DiscoveryWiringOptions): WiredDiscovery {
  const cp = options.config.controlplane ?? DEFAULT_CONTROLPLANE_CONFIG;
  const log = (options.log ?? silentLogger).child({ component: 'discovery' });
  const clock = options.clock ?? systemClock;
  const zkDigest = options.zkDigest ?? (cp.zkDigestFile ? loadZkDigest(cp.zkDigestFile, log) : undefined);
  const sc = options.config.serviceConfig;
  // Each ensemble with its own credentials: the service-config ensemble with zk_digest_file, each listed watcher
  // ensemble with its digest_file. A session gets only the credentials of the ensemble it connects to.
  const ensembles = [
    ...(sc?.type === 'zookeeper' ? [{ servers: sc.servers, digest: zkDigest }] : []),
    ...cp.watcherEnsembles.map((e, i) => ({
      servers: e.servers,
      digest: e.digestFile
        ? loadZkDigest(e.digestFile, log, `controlplane.watcher_ensembles[${i}].digest_file`)
        : undefined,
    })),
  ];
  const zk =
    options.zk ??
    new ZkSessionManager({
      sessionTimeoutMs: cp.zkSessionTimeoutMs,
      log,
      credentials: ensembles.flatMap((e) => (e.digest ? [{ servers: e.servers, digest: e.digest }] : [])),
    });
  let source: ServiceConfigSource;
  if (sc?.type === 'zookeeper') source = new ZookeeperSource({ zk, servers: sc.servers, path: sc.path, log });
  else if (sc?.type === 'file') source = new FileSource({ path: sc.path, pollMs: cp.filePollMs, log });
  else
    throw new ProxyMgrError(
      'CONFIG_INVALID',
      'discovery needs a service_config section (type zookeeper or file) in proxymgr.yml',
    );
  const watchers = watcherFactory({
    zk,
    defaultZkServers: sc.type === 'zookeeper' ? sc.servers : undefined,
    zkEnsembles: ensembles,
    controlplane: cp,
    log,
  });
  const knownHosts =
    sc.type === 'zookeeper'
      ? new ZkKnownHostsStore({
          zk,
          servers: sc.servers,
          path: `${options.config.rollout?.zkPath ?? DEFAULT_ZK_ROOT}/known_hosts`,
          ...(zkDigest ? { digest: zkDigest } : {}),
          log,
          clock,
          loadTimeoutMs: cp.initialSyncTimeoutMs,
        })
      : undefined;
  const discovery = new Discovery({
    config: options.config,
    ...(options.log ? { log: options.log } : {}),
    clock,
    source,
    watchers,
    knownHosts,
    // Sessions it made are its own to close; a shared manager is its owner's.
    ...(options.zk ? {} : { release: () => zk.closeAll() }),
  });
  return { discovery, zkDigest };
}

/** The Discovery of wireDiscovery. */
export function discoveryFromConfig(options: DiscoveryWiringOptions): Discovery {
  return wireDiscovery(options).discovery;
}

/** The rollout store in ZooKeeper (`rollout.zookeeper`, under `rollout.zk_path`), as the coordinator makes it. */
export function haRolloutStore(
  rc: Pick<RolloutConfig, 'zookeeper' | 'zkPath' | 'replicaId'>,
  options: { readonly sessionTimeoutMs: number; readonly log: Logger; readonly zkDigest?: ZkDigest | undefined },
): (listener: RolloutStoreListener) => RolloutStore {
  const { sessionTimeoutMs, log, zkDigest } = options;
  return (listener) =>
    new HaStore(
      {
        servers: rc.zookeeper,
        root: rc.zkPath,
        replicaId: rc.replicaId,
        sessionTimeoutMs,
        log,
        ...(zkDigest ? { digest: zkDigest } : {}),
      },
      listener,
    );
}

/**
 * A control-plane process on its real adapters: discovery, and with a `rollout:` section the rollout coordinator on
 * a HaStore in ZooKeeper (with the same credentials as discovery's sessions).
 */
export function controlPlaneFromConfig(options: {
  readonly config: ProxyMgrConfig;
  readonly log: Logger;
}): ControlPlaneProcess {
  const { config, log } = options;
  const { discovery, zkDigest } = wireDiscovery({ config, log });
  const preflights = new AgentPreflights();
  const rc = config.rollout;
  const rollout = rc
    ? new RolloutCoordinator({
        config: rc,
        discovery,
        log,
        serviceOptions: config.serviceOptions,
        preflights,
        store: haRolloutStore(rc, { sessionTimeoutMs: config.controlplane.zkSessionTimeoutMs, log, zkDigest }),
      })
    : undefined;
  return new ControlPlaneProcess({ config, log, discovery, rollout, preflights });
}
