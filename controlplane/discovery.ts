import { ServiceEntry } from './service-entry';
import {
  ControlPlaneConfig,
  DEFAULT_CONTROLPLANE_CONFIG,
  DEFAULT_SERVICE_OPTIONS,
  ProxyMgrConfig,
  ServiceOptionsPolicy,
} from '../common/config/config';
import { ErrorCode, errorMessage } from '../common/platform/errors';
import { Logger, silentLogger } from '../common/platform/log';
import { DesiredState, HaproxyGlobals, Server } from '../common/protocol/types';
import { serversOf } from './builder';
import { Clock, systemClock } from '../common/platform/clock';
import { Lifecycle } from '../common/platform/lifecycle';
import { Coalescer } from './coalescer';
import { parseServiceConfig, ServiceConfigError } from './service-config';
import { Problem, RawServiceConfig, ServiceConfig } from './types';
import { ServiceConfigSource, Watcher, WatcherFactory } from './ports';
import { KnownHostsStore } from './known-hosts';
import { LastKnownHosts } from './last-known-hosts';
import { persistedRemovalStep, RemovalStep, serviceRemovals } from './service-removal';
import { hostsUnknown, HostsContext, settleHosts, startWatcher, stopWatcher } from './service-hosts';
import { composeSnapshot } from './snapshot-compose';
import { SnapshotFeed, SnapshotListener } from './snapshot-feed';
import { changesBetween, SourceChange } from './trace/source-changes';

export interface DiscoveryOptions {
  /** proxymgr.yml: `haproxy.global/defaults` go into every snapshot; `controlplane` and `service_options` apply. */
  readonly config: Pick<ProxyMgrConfig, 'haproxy'> & {
    readonly controlplane?: ControlPlaneConfig;
    readonly serviceOptions?: ServiceOptionsPolicy;
  };
  readonly log?: Logger;
  /** Where the service configs come from (wiring.ts makes the one `service_config` names). */
  readonly source: ServiceConfigSource;
  /** Makes each service's watcher (wiring.ts: the real ones of watchers/index.ts). */
  readonly watchers: WatcherFactory;
  /** Where the last known hosts of every service are kept for a restarted replica; undefined: nowhere. */
  readonly knownHosts: KnownHostsStore | undefined;
  /** Called last when discovery stops, after the source, the watchers and the store closed (their ZooKeeper sessions). */
  readonly release?: () => Promise<void>;
  readonly clock?: Clock;
}

/** Everything that is wrong right now: the source's trouble and, per service, its problems. */
export interface DiscoveryErrors {
  readonly source: readonly Problem[];
  readonly services: Readonly<Record<string, readonly Problem[]>>;
}

/** idle → running (start) → stopping → stopped (source, watchers and owned ZooKeeper sessions closed). */
export type DiscoveryState = 'idle' | 'running' | 'stopping' | 'stopped';

/**
 * Discovery: follows the service-config source, runs one watcher per service, applies fail static and publishes a
 * new DesiredState whenever the result changes (bursts coalesced, bounded by `coalesce_max_ms`). Its adapters (the
 * source, the watchers, the known-hosts store) are given; controlplane/wiring.ts makes the real ones.
 *
 *   const d = discoveryFromConfig({ config: loadConfig('proxymgr.yml'), log });
 *   d.onSnapshot((state) => push(state));   // or: for await (const s of d.snapshots(signal)) …
 *   d.start();
 *   d.errors();                             // per service: bad config, skipped host nodes, fail-static warnings
 *   await d.stop();
 */
export class Discovery {
  private readonly entries = new Map<string, ServiceEntry>();
  private readonly cp: ControlPlaneConfig;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly source: ServiceConfigSource;
  private readonly watchers: WatcherFactory;
  private readonly release: (() => Promise<void>) | undefined;
  private readonly coalescer: Coalescer;
  private readonly haproxy: HaproxyGlobals;
  /** `service_options`: what service configs may put into HAProxy (checked at parse time and by the builder). */
  private readonly policy: ServiceOptionsPolicy;
  private readonly feed: SnapshotFeed;
  private readonly known: LastKnownHosts;
  private readonly hostsCtx: HostsContext;
  private sourceSynced = false;
  private sourceProblem: Problem | undefined;
  private selectors = '[]';
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
  private readonly changeListeners = new Set<(changes: readonly SourceChange[]) => void>();

  constructor(options: DiscoveryOptions) {
    this.cp = options.config.controlplane ?? DEFAULT_CONTROLPLANE_CONFIG;
    this.log = (options.log ?? silentLogger).child({ component: 'discovery' });
    this.clock = options.clock ?? systemClock;
    this.haproxy = { global: options.config.haproxy.global, defaults: options.config.haproxy.defaults };
    this.policy = options.config.serviceOptions ?? DEFAULT_SERVICE_OPTIONS;
    this.source = options.source;
    this.watchers = options.watchers;
    this.release = options.release;
    this.coalescer = new Coalescer(() => this.publish(), this.cp.coalesceMs, this.cp.coalesceMaxMs, this.clock);
    this.feed = new SnapshotFeed(this.log, () => this.stopped);
    const problem = this.problem.bind(this);
    this.known = new LastKnownHosts(options.knownHosts, {
      clock: this.clock,
      log: this.log,
      problem,
      stopped: () => this.stopped,
      beforeFirstSnapshot: () => this.feed.current() === undefined,
    });
    this.hostsCtx = {
      cp: this.cp,
      clock: this.clock,
      log: this.log,
      known: this.known,
      problem,
      stopped: () => this.stopped,
      changed: () => this.coalescer.poke(),
    };
  }

  /**
   * Calls `fn` with what changed, service by service, just before each new state is published (the change trace: the
   * pushes that publishing sends name the changes); returns an unsubscribe.
   */
  onChanges(fn: (changes: readonly SourceChange[]) => void): () => void {
    this.changeListeners.add(fn);
    return () => this.changeListeners.delete(fn);
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
    if (this.known.store) void this.loadKnown(this.known.store);
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
      this.known.cancelRetry();
      await this.source.stop();
      for (const e of this.entries.values()) await stopWatcher(this.hostsCtx, e);
      await this.known.store?.close();
      await this.release?.();
      this.feed.clear();
    } finally {
      this.lifecycle.to('stopped');
    }
  }

  /** The latest snapshot, if one was published. */
  current(): DesiredState | undefined {
    return this.feed.current();
  }

  /**
   * The last known servers of a service (persisted by an earlier replica or reported in this one), for a service
   * discovery no longer follows but an agent's revision still has. `zoneLabel` as in the revision.
   */
  knownServers(name: string, zoneLabel?: string): Server[] | undefined {
    const hosts = this.entries.get(name)?.hosts ?? this.known.hosts.get(name);
    return hosts && serversOf(hosts, zoneLabel);
  }

  /** The accepted config of one service (e.g. its `agents` selector), as of the latest snapshot's build. */
  configOf(name: string): ServiceConfig | undefined {
    return this.entries.get(name)?.config;
  }

  /** Calls `listener` with every new snapshot (not with the current one). Returns the unsubscribe. */
  onSnapshot(listener: SnapshotListener): () => void {
    return this.feed.onSnapshot(listener);
  }

  /** The current snapshot (if any), then every new one; a slow reader skips to the latest. Ends on `signal`. */
  snapshots(signal?: AbortSignal): AsyncGenerator<DesiredState> {
    return this.feed.snapshots(signal);
  }

  /** Resolves with the first snapshot (current or future) that satisfies `predicate`. */
  waitFor(predicate: (s: DesiredState) => boolean = () => true, timeoutMs = 10_000): Promise<DesiredState> {
    return this.feed.waitFor(predicate, timeoutMs);
  }

  /** What is wrong now, for logs and the admin API. */
  errors(): DiscoveryErrors {
    const services: Record<string, Problem[]> = {};
    for (const e of [...this.entries.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const list = e.problems();
      if (list.length > 0) services[e.name] = list;
    }
    const source = [this.sourceProblem, this.heldProblem, this.known.problem].filter(
      (p): p is Problem => p !== undefined,
    );
    return { source, services };
  }

  private onConfigs(configs: ReadonlyMap<string, RawServiceConfig>): void {
    if (this.stopped) return;
    if (this.sourceProblem) this.log.info({}, 'service configs available again');
    this.sourceProblem = undefined;
    this.lastConfigs = configs;
    if (this.known.store && this.known.failed && !this.known.loading && this.feed.current() === undefined) {
      // The source just answered from the ensemble the known hosts live on: read them now, and hold the first
      // snapshot for that read (bounded by its timeout) — without them it would have no "previous" and no record of
      // what an earlier replica served.
      this.known.cancelRetry();
      this.known.loaded = false;
      void this.loadKnown(this.known.store);
    }
    if (this.known.loaded && this.known.persistedConfigs !== undefined && !this.known.persistedRestored) {
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
        void stopWatcher(this.hostsCtx, e); // never served: nothing to hold
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
      void stopWatcher(this.hostsCtx, e);
      this.entries.delete(name);
      // Its last hosts stay known (and its record, marked removed): a config restored while the watcher cannot read
      // comes back with them, as unknown, not empty.
      if (e.hosts && e.hosts.length > 0) this.known.hosts.set(name, e.hosts);
      this.known.store?.remove(name);
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
    e.notePending({ source: 'config', time: { at: this.clock.now(), kind: 'observed' } });
    e.origin = raw.origin;
    let config: ServiceConfig;
    let watcher: Watcher | undefined;
    let id: string;
    try {
      config = parseServiceConfig(raw, this.policy);
      id = this.watchers.identity(config);
      if (id !== e.watcherId) watcher = this.watchers.create(config, raw.origin);
    } catch (err) {
      const persisted =
        e.config || this.feed.current() !== undefined ? undefined : this.known.persistedConfigs?.get(raw.name);
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
    const known = this.known.hosts.get(raw.name);
    if (known) this.known.store?.save(raw.name, known, raw);
    if (watcher) {
      void stopWatcher(this.hostsCtx, e);
      startWatcher(this.hostsCtx, e, watcher, id);
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
      const id = this.watchers.identity(config);
      this.accept(e, raw, config, this.watchers.create(config, raw.origin), id);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Loads the hosts persisted by earlier replicas before the first snapshot (bounded by the store's own timeout). A
   * load that fails does not hold the snapshot back; it is tried again with backoff (LastKnownHosts) until it
   * succeeds — at once, holding the first snapshot for that one read, when the source answers from the same ensemble
   * (onConfigs) — and a service whose hosts are unknown then runs the hosts it brings.
   */
  private async loadKnown(store: KnownHostsStore): Promise<void> {
    const loaded = await this.known.load(store, () => void this.loadKnown(store));
    if (loaded === undefined) return;
    const early = this.feed.current() === undefined;
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
        settleHosts(this.hostsCtx, e);
      } else if (e.status === 'unknown' && e.unknownReason !== undefined)
        hostsUnknown(this.hostsCtx, e, e.unavailable?.code ?? 'WATCHER_FAILED', e.unknownReason);
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
    const known = this.known;
    if (known.persistedRestored || known.persistedConfigs === undefined || this.feed.current() !== undefined) return;
    known.persistedRestored = true;
    const restored: string[] = [];
    for (const [name, raw] of known.persistedConfigs) {
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
    if (this.serviceRemovalStep !== undefined) return;
    let served = 0;
    for (const e of this.entries.values()) if (e.config) served++;
    const { serviceRemovalStepMs: stepMs, maxServiceRemovalShare: share } = this.cp;
    this.serviceRemovalStep = persistedRemovalStep(known.persistedRemovals, served, this.clock.now(), share, stepMs);
    if (this.serviceRemovalStep)
      this.log.info(
        { removed: this.serviceRemovalStep.removed, since: new Date(this.serviceRemovalStep.start).toISOString() },
        'service removals of earlier control planes count in this step',
      );
  }

  private publish(): void {
    if (this.stopped || !this.sourceSynced || !this.known.loaded) return;
    const previous = this.feed.current();
    const started = Date.now();
    const composed = composeSnapshot(this.entries.values(), previous, this.haproxy, this.policy);
    if (!composed) return; // the first snapshot waits for every watcher (bounded by its timer)
    const { state, problems, selectors } = composed;
    const changes =
      this.changeListeners.size > 0
        ? changesBetween(previous, state, (s) => this.entries.get(s)?.pending, this.clock.now())
        : [];
    for (const e of this.entries.values()) e.pending = undefined;
    for (const e of this.entries.values()) e.buildProblems = [];
    for (const p of problems) {
      const e = p.service ? this.entries.get(p.service) : undefined;
      if (e) e.buildProblems.push(this.problem('STATE_INVALID', p.where, p.message));
      this.log.error({ service: p.service, where: p.where }, `rejected: ${p.message}`);
    }
    // A change of an `agents` selector alone leaves the version as it is but is news for the rollout engine.
    if (state.version === previous?.version && selectors === this.selectors) return;
    this.selectors = selectors;
    if (state.version === previous?.version) return this.feed.notify(previous);
    this.known.persistedConfigs = undefined; // from now on, what this replica published is the previous version
    this.log.info(
      {
        version: state.version,
        services: state.services.length,
        servers: state.services.reduce((n, s) => n + s.servers.length, 0),
        buildMs: Date.now() - started,
      },
      'new desired state',
    );
    // The trace learns of the changes first: the pushes that publishing sends at once name them.
    if (changes.length > 0) for (const fn of this.changeListeners) fn(changes);
    this.feed.publish(state);
  }

  private problem(code: ErrorCode, where: string, message: string, previous?: Problem): Problem {
    if (previous && previous.message === message && previous.where === where && previous.code === code) return previous;
    return { code, where, message, since: this.clock.now() };
  }
}
