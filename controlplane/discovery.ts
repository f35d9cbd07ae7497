import { ServiceEntry } from './service-entry';
import { ProxyMgrError } from '../common/errors';
import {
  ControlPlaneConfig,
  DEFAULT_CONTROLPLANE_CONFIG,
  DEFAULT_SERVICE_OPTIONS,
  ProxyMgrConfig,
  ServiceOptionsPolicy,
} from '../common/config';
import { ErrorCode, errorMessage } from '../common/errors';
import { Logger, silentLogger } from '../common/log';
import { DesiredState, HaproxyGlobals, Server } from '../common/types';
import { listenKey } from '../common/validate-state';
import { buildDesiredStateChecked, serversOf, ServiceView } from './builder';
import { Clock, systemClock } from '../common/clock';
import { Lifecycle } from '../common/lifecycle';
import { Coalescer } from './coalescer';
import { applyFailStatic, removalBudget } from './fail-static';
import { parseServiceConfig, ServiceConfigError } from './service-config';
import { FileSource } from './sources/file';
import { ZookeeperSource } from './sources/zookeeper';
import { Host, HostReport, Problem, RawServiceConfig, ServiceConfig, ServiceConfigSource, Watcher } from './types';
import { KnownHostsStore } from './known-hosts';
import { RemovalStep, serviceRemovals } from './service-removal';
import { ZkKnownHostsStore } from './zk/known-hosts-store';
import { createWatcher, watcherIdentity, WatcherContext } from './watchers';
import { loadZkDigest, ZkDigest } from './zk/digest';
import { ZkSessionManager } from './zk/manager';

export interface DiscoveryOptions {
  /** proxymgr.yml: `haproxy.global/defaults` go into every snapshot, `service_config` picks the source. */
  readonly config: Pick<ProxyMgrConfig, 'haproxy' | 'serviceConfig'> & {
    readonly controlplane?: ControlPlaneConfig;
    readonly serviceOptions?: ServiceOptionsPolicy;
    /** Its `zk_path` roots the known-hosts records (default /proxymgr). */
    readonly rollout?: { readonly zkPath: string };
  };
  readonly log?: Logger;
  /** Replaces the source named by `config.serviceConfig` (tests, embedding). */
  readonly source?: ServiceConfigSource;
  /** A shared session manager; by default Discovery makes (and closes) its own. */
  readonly zk?: ZkSessionManager;
  /** ZooKeeper credentials; by default read from `controlplane.zk_digest_file` when that is set. */
  readonly zkDigest?: ZkDigest;
  readonly clock?: Clock;
  /**
   * Where the last known hosts of every service are kept for a restarted replica. Default: ZooKeeper
   * (`<rollout.zk_path>/known_hosts` on the service-config ensemble) when service configs come from ZooKeeper and no
   * `source` replaces it; null: none.
   */
  readonly knownHosts?: KnownHostsStore | null;
  /** Makes each service's watcher (default: watchers/index.ts; tests and the simulator pass fakes). */
  readonly createWatcher?: typeof createWatcher;
}

/** Default root of the control plane's nodes in ZooKeeper (the schema's rollout.zk_path). */
const DEFAULT_ZK_ROOT = '/proxymgr';
/** A failed load of the known hosts is tried again after min, doubling up to max (ms). */
const KNOWN_RETRY_MS = { min: 5000, max: 60_000 };

/** Everything that is wrong right now: the source's trouble and, per service, its problems. */
export interface DiscoveryErrors {
  readonly source: readonly Problem[];
  readonly services: Readonly<Record<string, readonly Problem[]>>;
}

type SnapshotListener = (state: DesiredState) => void;

/** idle → running (start) → stopping → stopped (source, watchers and owned ZooKeeper sessions closed). */
export type DiscoveryState = 'idle' | 'running' | 'stopping' | 'stopped';

/**
 * Discovery: follows the service-config source, runs one watcher per service, applies fail static and publishes a
 * new DesiredState whenever the result changes (bursts coalesced, bounded by `coalesce_max_ms`).
 *
 *   const d = new Discovery({ config: loadConfig('proxymgr.yml'), log });
 *   d.onSnapshot((state) => push(state));   // or: for await (const s of d.snapshots(signal)) …
 *   d.start();
 *   d.errors();                             // per service: bad config, skipped host nodes, fail-static warnings
 *   await d.stop();
 */
export class Discovery {
  private readonly entries = new Map<string, ServiceEntry>();
  private readonly listeners = new Set<SnapshotListener>();
  private readonly cp: ControlPlaneConfig;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly zk: ZkSessionManager;
  private readonly ownsZk: boolean;
  /** The control plane's ZooKeeper credentials (read once here; the rollout store uses the same). */
  readonly zkDigest: ZkDigest | undefined;
  private readonly source: ServiceConfigSource;
  private readonly coalescer: Coalescer;
  private readonly watcherCtx: WatcherContext;
  private readonly createWatcher: typeof createWatcher;
  private readonly haproxy: HaproxyGlobals;
  /** `service_options`: what service configs may put into HAProxy (checked at parse time and by the builder). */
  private readonly policy: ServiceOptionsPolicy;
  private sourceSynced = false;
  private sourceProblem: Problem | undefined;
  /** The latest snapshot published. */
  private snapshot: DesiredState | undefined;
  private selectors = '[]';
  private readonly knownStore: KnownHostsStore | undefined;
  /** The last known hosts per service: loaded at start, then what each service last ran as reported. */
  private readonly known = new Map<string, readonly Host[]>();
  /** Until the known hosts are loaded (or could not be), fail static has no "previous" and nothing is published. */
  private knownLoaded = false;
  /** A load is in flight; the last one failed (and none succeeded since). */
  private knownLoading = false;
  private knownFailed = false;
  private knownProblem: Problem | undefined;
  /** A failed load is tried again (a replica started during a ZooKeeper outage would otherwise never have them). */
  private knownRetry: { timer: unknown; delayMs: number } | undefined;
  /**
   * The configs earlier replicas served, from the known-hosts records (until the first snapshot): a service whose
   * config vanished while no replica ran is restored from them once, so that its removal is capped as if seen; one
   * whose config no longer parses is served with it, as a running replica keeps a config's previous version.
   */
  private persistedConfigs: ReadonlyMap<string, RawServiceConfig> | undefined;
  private persistedRestored = false;
  /** When services were removed, as their records say: removals of earlier replicas count in the first step. */
  private persistedRemovals: number[] = [];
  /** The service configs last delivered: held-back removals are decided again against them. */
  private lastConfigs: ReadonlyMap<string, RawServiceConfig> = new Map();
  private serviceRemovalStep: RemovalStep | undefined;
  private removalTimer: unknown;
  private heldProblem: Problem | undefined;
  private readonly lifecycle = new Lifecycle<DiscoveryState>('discovery', 'idle', {
    idle: ['running', 'stopping'],
    running: ['stopping'],
    stopping: ['stopped'],
    stopped: [],
  });
  private stopping: Promise<void> | undefined;

  constructor(options: DiscoveryOptions) {
    this.cp = options.config.controlplane ?? DEFAULT_CONTROLPLANE_CONFIG;
    this.log = (options.log ?? silentLogger).child({ component: 'discovery' });
    this.clock = options.clock ?? systemClock;
    this.ownsZk = options.zk === undefined;
    this.zkDigest =
      options.zkDigest ?? (this.cp.zkDigestFile ? loadZkDigest(this.cp.zkDigestFile, this.log) : undefined);
    const sc = options.config.serviceConfig;
    // Each ensemble with its own credentials: the service-config ensemble with zk_digest_file, each listed watcher
    // ensemble with its digest_file. A session gets only the credentials of the ensemble it connects to.
    const ensembles = [
      ...(sc?.type === 'zookeeper' ? [{ servers: sc.servers, digest: this.zkDigest }] : []),
      ...this.cp.watcherEnsembles.map((e, i) => ({
        servers: e.servers,
        digest: e.digestFile
          ? loadZkDigest(e.digestFile, this.log, `controlplane.watcher_ensembles[${i}].digest_file`)
          : undefined,
      })),
    ];
    this.zk =
      options.zk ??
      new ZkSessionManager({
        sessionTimeoutMs: this.cp.zkSessionTimeoutMs,
        log: this.log,
        credentials: ensembles.flatMap((e) => (e.digest ? [{ servers: e.servers, digest: e.digest }] : [])),
      });
    this.haproxy = { global: options.config.haproxy.global, defaults: options.config.haproxy.defaults };
    this.policy = options.config.serviceOptions ?? DEFAULT_SERVICE_OPTIONS;
    this.watcherCtx = {
      zk: this.zk,
      defaultZkServers: sc?.type === 'zookeeper' ? sc.servers : undefined,
      zkEnsembles: ensembles,
      controlplane: this.cp,
      log: this.log,
    };
    if (options.source) this.source = options.source;
    else if (sc?.type === 'zookeeper')
      this.source = new ZookeeperSource({ zk: this.zk, servers: sc.servers, path: sc.path, log: this.log });
    else if (sc?.type === 'file')
      this.source = new FileSource({ path: sc.path, pollMs: this.cp.filePollMs, log: this.log });
    else
      throw new ProxyMgrError(
        'CONFIG_INVALID',
        'discovery needs a service_config section (type zookeeper or file) in proxymgr.yml',
      );
    this.createWatcher = options.createWatcher ?? createWatcher;
    this.coalescer = new Coalescer(() => this.publish(), this.cp.coalesceMs, this.cp.coalesceMaxMs, this.clock);
    this.knownStore =
      options.knownHosts === null
        ? undefined
        : (options.knownHosts ??
          (!options.source && sc?.type === 'zookeeper'
            ? new ZkKnownHostsStore({
                zk: this.zk,
                servers: sc.servers,
                path: `${options.config.rollout?.zkPath ?? DEFAULT_ZK_ROOT}/known_hosts`,
                ...(this.zkDigest ? { digest: this.zkDigest } : {}),
                log: this.log,
                clock: this.clock,
                loadTimeoutMs: this.cp.initialSyncTimeoutMs,
              })
            : undefined));
    if (!this.knownStore) this.knownLoaded = true;
  }

  get state(): DiscoveryState {
    return this.lifecycle.state;
  }

  private get stopped(): boolean {
    return this.lifecycle.is('stopping', 'stopped');
  }

  /** Follows the source; throws LifecycleError when started twice or after stop. */
  start(): void {
    this.lifecycle.to('running', 'start');
    if (this.knownStore) void this.loadKnown(this.knownStore);
    this.source.start({
      configs: (configs) => this.onConfigs(configs),
      unavailable: (reason) => {
        if (this.sourceProblem?.message !== reason)
          this.log.warn({ reason }, 'service configs unavailable; keeping every service as it is');
        this.sourceProblem = this.problem('WATCHER_FAILED', 'service_config', reason, this.sourceProblem);
      },
    });
  }

  /** Stops the source and every watcher; resolves once they are closed. Every later call returns the same promise. */
  stop(): Promise<void> {
    return (this.stopping ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    this.lifecycle.to('stopping', 'stop');
    try {
      this.coalescer.cancel();
      this.clock.clearTimeout(this.removalTimer);
      this.clock.clearTimeout(this.knownRetry?.timer);
      await this.source.stop();
      for (const e of this.entries.values()) await this.stopWatcher(e);
      await this.knownStore?.close();
      if (this.ownsZk) await this.zk.closeAll();
      this.listeners.clear();
    } finally {
      this.lifecycle.to('stopped');
    }
  }

  /** The latest snapshot, if one was published. */
  current(): DesiredState | undefined {
    return this.snapshot;
  }

  /**
   * The last known servers of a service (persisted by an earlier replica or reported in this one), for a service
   * discovery no longer follows but an agent's revision still has. `zoneLabel` as in the revision.
   */
  knownServers(name: string, zoneLabel?: string): Server[] | undefined {
    const hosts = this.entries.get(name)?.hosts ?? this.known.get(name);
    return hosts && serversOf(hosts, zoneLabel);
  }

  /** The accepted config of one service (e.g. its `agents` selector), as of the latest snapshot's build. */
  configOf(name: string): ServiceConfig | undefined {
    return this.entries.get(name)?.config;
  }

  /** Calls `listener` with every new snapshot (not with the current one). Returns the unsubscribe. */
  onSnapshot(listener: SnapshotListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The current snapshot (if any), then every new one; a slow reader skips to the latest. Ends on `signal`. */
  async *snapshots(signal?: AbortSignal): AsyncGenerator<DesiredState> {
    let latest = this.snapshot;
    let wake: (() => void) | undefined;
    const off = this.onSnapshot((s) => {
      latest = s;
      wake?.();
    });
    const onAbort = () => wake?.();
    signal?.addEventListener('abort', onAbort);
    try {
      let sent: DesiredState | undefined;
      while (!signal?.aborted && !this.stopped) {
        if (latest && latest !== sent) {
          sent = latest;
          yield latest;
          continue;
        }
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    } finally {
      off();
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Resolves with the first snapshot (current or future) that satisfies `predicate`. */
  waitFor(predicate: (s: DesiredState) => boolean = () => true, timeoutMs = 10_000): Promise<DesiredState> {
    if (this.snapshot && predicate(this.snapshot)) return Promise.resolve(this.snapshot);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(
          new Error(
            `no matching snapshot within ${timeoutMs} ms (current version ${this.snapshot?.version ?? 'none'})`,
          ),
        );
      }, timeoutMs);
      const off = this.onSnapshot((s) => {
        if (!predicate(s)) return;
        clearTimeout(timer);
        off();
        resolve(s);
      });
    });
  }

  /** What is wrong now, for logs and the admin API. */
  errors(): DiscoveryErrors {
    const services: Record<string, Problem[]> = {};
    for (const e of [...this.entries.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const list = e.problems();
      if (list.length > 0) services[e.name] = list;
    }
    const source = [this.sourceProblem, this.heldProblem, this.knownProblem].filter(
      (p): p is Problem => p !== undefined,
    );
    return { source, services };
  }

  private onConfigs(configs: ReadonlyMap<string, RawServiceConfig>): void {
    if (this.stopped) return;
    if (this.sourceProblem) this.log.info({}, 'service configs available again');
    this.sourceProblem = undefined;
    this.lastConfigs = configs;
    if (this.knownStore && this.knownFailed && !this.knownLoading && this.snapshot === undefined) {
      // The source just answered from the ensemble the known hosts live on: read them now, and hold the first
      // snapshot for that read (bounded by its timeout) — without them it would have no "previous" and no record of
      // what an earlier replica served.
      this.clock.clearTimeout(this.knownRetry?.timer);
      this.knownLoaded = false;
      void this.loadKnown(this.knownStore);
    }
    if (this.knownLoaded && this.persistedConfigs !== undefined && !this.persistedRestored) {
      // The services restored count among those served before, with the ones whose configs are here: entries first.
      for (const raw of configs.values()) this.onConfig(raw);
      this.restorePersisted();
    }
    this.removeGone();
    for (const raw of configs.values()) this.onConfig(raw);
    this.sourceSynced = true;
    this.coalescer.poke();
  }

  /**
   * Removes the services whose configs are gone, at most `max_service_removal_share` of them per step; the others
   * stay served with their last config and hosts, named in a problem, and are decided again at the next step.
   */
  private removeGone(): void {
    const gone: string[] = [];
    let served = 0;
    for (const [name, e] of this.entries) {
      if (e.config) served++;
      if (this.lastConfigs.has(name)) {
        e.removalHeld = undefined;
        continue;
      }
      if (e.config) gone.push(name);
      else {
        void this.stopWatcher(e); // never served: nothing to hold
        this.entries.delete(name);
      }
    }
    const now = this.clock.now();
    const { maxServiceRemovalShare: share, serviceRemovalStepMs: stepMs } = this.cp;
    const d = serviceRemovals(gone, served, this.serviceRemovalStep, now, share, stepMs);
    this.serviceRemovalStep = d.step;
    for (const name of d.remove) {
      const e = this.entries.get(name)!;
      this.log.info({ service: name }, 'service config removed; service removed');
      void this.stopWatcher(e);
      this.entries.delete(name);
      // Its last hosts stay known (and its record, marked removed): a config restored while the watcher cannot read
      // comes back with them, as unknown, not empty.
      if (e.hosts && e.hosts.length > 0) this.known.set(name, e.hosts);
      this.knownStore?.remove(name);
    }
    this.clock.clearTimeout(this.removalTimer);
    if (d.held.length === 0) {
      if (this.heldProblem) this.log.info({}, 'no service removal held back any more');
      this.heldProblem = undefined;
      return;
    }
    const names = d.held.slice(0, 10).join(', ') + (d.held.length > 10 ? ', ...' : '');
    const message =
      `the configs of ${gone.length} service(s) are gone, more than max_service_removal_share ${share} of ${served} ` +
      `allows per step of ${stepMs} ms; holding back ${d.held.length} (${names}): served with their last config and ` +
      `hosts until a later step (restore the configs if this was not meant)`;
    if (this.heldProblem?.message !== message) this.log.warn({ held: d.held.length }, message);
    this.heldProblem = this.problem('FAIL_STATIC', 'service_config', message, this.heldProblem);
    for (const name of d.held) {
      const e = this.entries.get(name)!;
      const why = `service config removed; removal held back by max_service_removal_share ${share} (served with its last config and hosts)`;
      e.removalHeld = this.problem('FAIL_STATIC', e.origin, why, e.removalHeld);
    }
    this.removalTimer = this.clock.setTimeout(
      () => {
        if (this.stopped) return;
        this.removeGone();
        this.coalescer.poke();
      },
      Math.max(1, (d.retryAt ?? now) - now),
    );
  }

  private onConfig(raw: RawServiceConfig): void {
    let e = this.entries.get(raw.name);
    if (!e) {
      e = new ServiceEntry(raw.name, raw.origin);
      this.entries.set(raw.name, e);
    }
    if (e.raw === raw.text) return;
    e.raw = raw.text;
    e.origin = raw.origin;
    let config: ServiceConfig;
    let watcher: Watcher | undefined;
    let id: string;
    try {
      config = parseServiceConfig(raw, this.policy);
      id = watcherIdentity(config, this.watcherCtx);
      if (id !== e.watcherId) watcher = this.createWatcher(config, raw.origin, this.watcherCtx);
    } catch (err) {
      const persisted = e.config || this.snapshot !== undefined ? undefined : this.persistedConfigs?.get(raw.name);
      const kept = persisted !== undefined && this.acceptPersisted(e, persisted);
      const keeping = e.config
        ? kept
          ? 'keeping the version an earlier control plane served (from its known-hosts record)'
          : 'keeping its previous version'
        : 'the service is not served until this is fixed';
      this.log.error(
        { service: raw.name, origin: raw.origin, err: errorMessage(err) },
        `invalid service config; ${keeping}`,
      );
      // The problem names the origin as its place: the message does not say it again.
      const message = err instanceof ServiceConfigError && err.where === raw.origin ? err.detail : errorMessage(err);
      e.configProblem = this.problem('SERVICE_CONFIG_INVALID', raw.origin, `${message}; ${keeping}`, e.configProblem);
      return;
    }
    if (e.configProblem) this.log.info({ service: raw.name }, 'service config valid again');
    e.configProblem = undefined;
    this.accept(e, raw, config, watcher, id);
    this.log.info({ service: raw.name, type: config.watcher.type, port: config.port }, 'service config accepted');
  }

  /** Serves `config` (parsed from `raw`) for the service; `watcher` replaces the running one when given. */
  private accept(
    e: ServiceEntry,
    raw: RawServiceConfig,
    config: ServiceConfig,
    watcher: Watcher | undefined,
    id: string,
  ) {
    e.config = config;
    e.source = raw;
    const known = this.known.get(raw.name);
    if (known) this.knownStore?.save(raw.name, known, raw);
    if (watcher) {
      void this.stopWatcher(e);
      this.startWatcher(e, watcher, id);
    }
  }

  /**
   * Serves the config an earlier replica persisted for a service whose config does not parse now and that has no
   * previous version in this replica (it just started): what a running replica does with a config's previous
   * version. Parsed again under today's policy; false when that fails too.
   */
  private acceptPersisted(e: ServiceEntry, raw: RawServiceConfig): boolean {
    try {
      const config = parseServiceConfig(raw, this.policy);
      const id = watcherIdentity(config, this.watcherCtx);
      this.accept(e, raw, config, this.createWatcher(config, raw.origin, this.watcherCtx), id);
      return true;
    } catch {
      return false;
    }
  }

  private startWatcher(e: ServiceEntry, watcher: Watcher, id: string): void {
    const generation = ++e.generation;
    e.watcher = watcher;
    e.watcherId = id;
    // A watcher that stays silent must not hold the service (or the first snapshot) back forever; its hosts are
    // then unknown, not empty.
    e.timer = this.clock.setTimeout(() => {
      if (e.generation !== generation || e.hosts !== undefined || e.reported !== undefined) return;
      this.hostsUnknown(e, 'WATCHER_FAILED', `watcher did not report within ${this.cp.initialSyncTimeoutMs} ms`);
    }, this.cp.initialSyncTimeoutMs);
    watcher.start({
      hosts: (report) => {
        if (e.generation === generation && !this.stopped) this.onHosts(e, report);
      },
      unavailable: (reason) => {
        if (e.generation === generation && !this.stopped) this.onUnavailable(e, reason);
      },
    });
  }

  private async stopWatcher(e: ServiceEntry): Promise<void> {
    e.generation++;
    if (e.timer !== undefined) this.clock.clearTimeout(e.timer);
    e.timer = undefined;
    const w = e.watcher;
    e.watcher = undefined;
    e.watcherId = undefined;
    if (w)
      await w
        .stop()
        .catch((err) => this.log.warn({ service: e.name, err: errorMessage(err) }, 'stopping a watcher failed'));
  }

  private onHosts(e: ServiceEntry, report: HostReport): void {
    if (e.unavailable) this.log.info({ service: e.name }, 'watcher available again');
    e.unavailable = undefined;
    const before = new Map(e.hostProblems.map((p) => [p.where + '\n' + p.message, p]));
    e.hostProblems = report.problems.map((p) => {
      const old = before.get(p.where + '\n' + p.message);
      if (!old) this.log.error({ service: e.name, where: p.where }, p.message);
      return old ?? this.problem('HOST_INVALID', p.where, p.message);
    });
    e.reported = report.hosts;
    e.unknownReason = undefined;
    if (this.knownLoaded) this.settleHosts(e); // else once they are: fail static needs them as "previous"
  }

  /** Applies fail static and the removal cap to the last report; re-runs itself while removals are held back. */
  private settleHosts(e: ServiceEntry): void {
    if (!e.reported) return;
    // After a restart the hosts persisted by the last replica are "previous": an empty or collapsed first report
    // does not empty the service.
    const previous = e.hosts ?? this.known.get(e.name);
    // The cap holds per step of removal_step_ms, counted from the hosts at the step's start: deletions that
    // arrive one by one (a registry collapsing node after node) are capped like one big deletion.
    const now = this.clock.now();
    let step = e.removalStep;
    if (!step || now - step.start >= this.cp.removalStepMs)
      step = e.removalStep = {
        start: now,
        budget: removalBudget(previous?.length ?? 0, this.cp.maxRemovalShare),
        removed: 0,
      };
    const r = applyFailStatic(
      previous,
      e.reported,
      this.cp.maxRemovalShare,
      this.cp.maxRemovalShare >= 1 ? undefined : Math.max(0, step.budget - step.removed),
    );
    if (previous) {
      const kept = new Set(r.hosts.map((h) => h.name));
      step.removed += previous.filter((h) => !kept.has(h.name)).length;
    }
    if (r.warning) {
      const detail =
        e.hostProblems.length > 0
          ? ` (${e.hostProblems
              .map((p) => `${p.where}: ${p.message}`)
              .slice(0, 3)
              .join('; ')})`
          : '';
      const message = r.warning + detail;
      if (e.warning?.message !== message) this.log.warn({ service: e.name }, message);
      e.warning = this.problem('FAIL_STATIC', `service ${e.name}`, message, e.warning);
    } else {
      if (e.warning)
        this.log.info({ service: e.name, hosts: r.hosts.length }, 'hosts reported again; fail static lifted');
      e.warning = undefined;
    }
    if (r.hosts !== e.hosts || e.status !== 'reported') {
      e.hosts = r.hosts;
      e.status = 'reported';
      this.known.set(e.name, r.hosts);
      this.knownStore?.save(e.name, r.hosts, e.source);
      this.coalescer.poke();
    }
    if (r.heldBack > 0) {
      const generation = e.generation;
      this.clock.setTimeout(
        () => {
          if (e.generation === generation && !this.stopped) this.settleHosts(e);
        },
        Math.max(1, step.start + this.cp.removalStepMs - now),
      );
    }
  }

  private onUnavailable(e: ServiceEntry, reason: string): void {
    const code = reason.includes('zookeeper') ? 'ZK_DISCONNECTED' : 'WATCHER_FAILED';
    if (e.status !== 'reported') return this.hostsUnknown(e, code, reason);
    // Hosts this replica had reported stay 'reported' (the last report, kept by fail static): marking them unknown
    // would push every service of a lost ensemble to every agent and back without changing what runs.
    const message = `${reason}; keeping the ${e.hosts?.length ?? 0} previous host(s) (fail static)`;
    if (e.unavailable?.message !== message) this.log.warn({ service: e.name }, message);
    e.unavailable = this.problem(code, `service ${e.name}`, message, e.unavailable);
  }

  /**
   * The watcher cannot tell the hosts (it cannot read, or stayed silent): the service runs its last known hosts —
   * those it ran, else those persisted by an earlier replica, else none — marked 'unknown', so that no agent takes
   * it for an affirmative "no hosts".
   */
  private hostsUnknown(e: ServiceEntry, code: ErrorCode, reason: string): void {
    e.unknownReason = reason;
    const last = e.hosts !== undefined && e.hosts.length > 0 ? e.hosts : (this.known.get(e.name) ?? e.hosts ?? []);
    const from = !this.knownLoaded
      ? ' (the persisted hosts are not loaded yet)'
      : e.hosts === undefined || e.hosts.length === 0
        ? ' (persisted by an earlier control plane)'
        : '';
    const message = `hosts unknown: ${reason}; keeping the ${last.length} previous host(s)${last.length > 0 || !this.knownLoaded ? from : ''} (fail static)`;
    if (e.unavailable?.message !== message) this.log.warn({ service: e.name }, message);
    e.unavailable = this.problem(code, `service ${e.name}`, message, e.unavailable);
    if (e.hosts !== last || e.status !== 'unknown') {
      e.hosts = last;
      e.status = 'unknown';
      this.coalescer.poke();
    }
  }

  /**
   * Loads the hosts persisted by earlier replicas before the first snapshot (bounded by the store's own timeout). A
   * load that fails does not hold the snapshot back; it is tried again with backoff (KNOWN_RETRY_MS) until it
   * succeeds — at once, holding the first snapshot for that one read, when the source answers from the same ensemble
   * (onConfigs) — and a service whose hosts are unknown then runs the hosts it brings.
   */
  private async loadKnown(store: KnownHostsStore): Promise<void> {
    this.knownLoading = true;
    let loaded = false;
    try {
      const r = await store.load();
      loaded = true;
      for (const [name, hosts] of r.hosts) if (!this.known.has(name)) this.known.set(name, hosts);
      // Configs only before anything was published: a service a published snapshot left out is gone for agents.
      if (this.snapshot === undefined) {
        this.persistedConfigs = r.configs;
        this.persistedRemovals = [...(r.removed?.values() ?? [])];
      }
      const first = r.problems.slice(0, 3).map((p) => `${p.where}: ${p.message}`);
      this.knownProblem =
        r.problems.length > 0
          ? this.problem('HOST_INVALID', 'known hosts', `${r.problems.length} refused: ${first.join('; ')}`)
          : undefined;
      this.log.info({ services: r.hosts.size, refused: r.problems.length }, 'last known hosts loaded');
    } catch (err) {
      const delayMs = Math.min(KNOWN_RETRY_MS.max, this.knownRetry ? this.knownRetry.delayMs * 2 : KNOWN_RETRY_MS.min);
      const message =
        `cannot read the last known hosts (${errorMessage(err)}); a service whose watcher cannot read runs without ` +
        `them until they are read (trying again in ${Math.round(delayMs / 1000)} s)`;
      if (this.knownProblem?.message.split('(trying')[0] !== message.split('(trying')[0]) this.log.warn({}, message);
      this.knownProblem = this.problem('ZK_DISCONNECTED', 'known hosts', message, this.knownProblem);
      if (!this.stopped)
        this.knownRetry = { delayMs, timer: this.clock.setTimeout(() => void this.loadKnown(store), delayMs) };
    }
    if (this.stopped) return;
    this.knownLoading = false;
    this.knownFailed = !loaded;
    this.knownLoaded = true;
    if (loaded) this.knownRetry = undefined;
    const early = this.snapshot === undefined;
    if (early && this.sourceSynced) {
      this.restorePersisted();
      this.removeGone();
    }
    for (const e of this.entries.values()) {
      if (early && e.reported) {
        // Before the first snapshot the loaded hosts are "previous" for fail static: the report is settled again
        // from them (nothing was published from an earlier settling).
        if (loaded) {
          e.hosts = undefined;
          e.removalStep = undefined;
        }
        this.settleHosts(e);
      } else if (e.status === 'unknown' && e.unknownReason !== undefined)
        this.hostsUnknown(e, e.unavailable?.code ?? 'WATCHER_FAILED', e.unknownReason);
    }
    this.coalescer.poke();
  }

  /**
   * Services an earlier replica served whose configs are gone from the source now: restored once, from their
   * persisted configs (parsed under today's policy), as services whose configs are gone, so that removeGone holds
   * them to the service-removal cap like a removal this replica saw. Only before the first snapshot, and only once
   * both the source and the known hosts are read.
   */
  private restorePersisted(): void {
    if (this.persistedRestored || this.persistedConfigs === undefined || this.snapshot !== undefined) return;
    this.persistedRestored = true;
    const restored: string[] = [];
    for (const [name, raw] of this.persistedConfigs) {
      const e = this.entries.get(name);
      const current = this.lastConfigs.get(name);
      if (e && !e.config && current) {
        // Its config did not parse before the records were read: decided again, now with the persisted version.
        e.raw = undefined;
        this.onConfig(current);
      }
      if (this.lastConfigs.has(name) || this.entries.has(name)) continue;
      this.onConfig(raw);
      if (this.entries.get(name)?.config) restored.push(name);
      else this.entries.delete(name); // its persisted config no longer parses: nothing to hold
    }
    if (restored.length > 0)
      this.log.warn(
        { services: restored.length, names: restored.slice(0, 10) },
        'service configs gone since an earlier control plane served them; their removal is capped as if seen here',
      );
    // Removals earlier replicas made within the last step count against this one's first step: restarts must not
    // speed the pace up (a control plane crash-looping through a bad restore would empty the fleet).
    const now = this.clock.now();
    const recent = this.persistedRemovals.filter((t) => t <= now && now - t < this.cp.serviceRemovalStepMs);
    if (recent.length > 0 && this.serviceRemovalStep === undefined) {
      let served = 0;
      for (const e of this.entries.values()) if (e.config) served++;
      this.serviceRemovalStep = {
        start: Math.min(...recent),
        budget: removalBudget(served + recent.length, this.cp.maxServiceRemovalShare),
        removed: recent.length,
      };
      this.log.info(
        { removed: recent.length, since: new Date(this.serviceRemovalStep.start).toISOString() },
        'service removals of earlier control planes count in this step',
      );
    }
  }

  private publish(): void {
    if (this.stopped || !this.sourceSynced || !this.knownLoaded) return;
    const views: ServiceView[] = [];
    // A service whose removal is held back yields its port to a service whose config is here (a config moved onto
    // the port of a deleted one): the cap protects what is served, not a port from its new owner.
    const claimed = new Set<string>();
    for (const e of this.entries.values()) if (e.config && !e.removalHeld) claimed.add(listenKey(e.config));
    for (const e of this.entries.values()) {
      if (!e.config) continue;
      if (e.removalHeld && claimed.has(listenKey(e.config))) continue;
      if (e.hosts === undefined) {
        if (this.snapshot === undefined) return; // first snapshot waits for every watcher (bounded by its timer)
        continue; // a new service appears once its watcher reported, in one revision with its hosts
      }
      views.push({ config: e.config, hosts: e.hosts, status: e.status ?? 'reported' });
    }
    const started = Date.now();
    const { state, problems } = buildDesiredStateChecked({
      haproxy: this.haproxy,
      services: views,
      previous: this.snapshot,
      policy: this.policy,
    });
    for (const e of this.entries.values()) e.buildProblems = [];
    for (const p of problems) {
      const e = p.service ? this.entries.get(p.service) : undefined;
      if (e) e.buildProblems.push(this.problem('STATE_INVALID', p.where, p.message));
      this.log.error({ service: p.service, where: p.where }, `rejected: ${p.message}`);
    }
    // A change of an `agents` selector alone leaves the version as it is but is news for the rollout engine.
    const selectors = JSON.stringify(views.filter((v) => v.config.agents).map((v) => [v.config.name, v.config.agents]));
    if (state.version === this.snapshot?.version && selectors === this.selectors) return;
    this.selectors = selectors;
    if (state.version === this.snapshot?.version) return this.notify(this.snapshot);
    this.snapshot = state;
    this.persistedConfigs = undefined; // from now on, what this replica published is the previous version
    this.log.info(
      {
        version: state.version,
        services: state.services.length,
        servers: state.services.reduce((n, s) => n + s.servers.length, 0),
        buildMs: Date.now() - started,
      },
      'new desired state',
    );
    this.notify(state);
  }

  private notify(state: DesiredState): void {
    for (const l of [...this.listeners]) {
      try {
        l(state);
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'snapshot listener failed');
      }
    }
  }

  private problem(code: ErrorCode, where: string, message: string, previous?: Problem): Problem {
    if (previous && previous.message === message && previous.where === where && previous.code === code) return previous;
    return { code, where, message, since: this.clock.now() };
  }
}
