import { ProxyMgrError } from '../../common/platform/errors';
import { Clock, systemClock, Timer } from '../../common/platform/clock';
import { RolloutConfig } from '../../common/config/config';
import { errorMessage } from '../../common/platform/errors';
import { Lifecycle, settleWithin } from '../../common/platform/lifecycle';
import { Logger } from '../../common/platform/log';
import { DesiredState, Server } from '../../common/protocol/types';
import { Discovery } from '../discovery';
import {
  command,
  Command,
  FleetAgent,
  FleetDoc,
  isActive,
  onRevision,
  policyDoc,
  PolicyDoc,
  releasedRevision,
  RolloutDoc,
  setPolicy,
  step,
} from './engine';
import { DEFAULT_GATE_POLICY, TrafficView } from './gate';
import { TrafficPublisher } from './traffic-publisher';
import { AgentReports } from './agent-reports';
import { AgentRecord, DesiredStateSource, PreflightAsker, RegistryEvents } from '../ports';
import { RolloutPlan } from '../../common/gen/proxymgr/v1/rollout';
import { rolloutPlan } from './plan';
import {
  changedServices,
  composeState,
  describeChanges,
  serviceRemovalsOf,
  Revision,
  revisionOf,
  revisionProblem,
  selectorMatches,
} from './revision';
import { RolloutStore, RolloutStoreListener } from './store';
import { ServiceOptionsPolicy } from '../../common/config/config';

/** What the coordinator uses of discovery. */
export type RolloutDiscovery = Pick<Discovery, 'current' | 'configOf' | 'onSnapshot'> &
  Partial<Pick<Discovery, 'knownServers'>>;

export interface RolloutCoordinatorOptions {
  readonly config: RolloutConfig;
  readonly discovery: RolloutDiscovery;
  readonly log: Logger;
  /** proxymgr.yml's service_options: revisions read back from ZooKeeper are checked against them. */
  readonly serviceOptions?: ServiceOptionsPolicy;
  /** The time rollouts are stamped with (default: the clock's). */
  readonly now?: () => number;
  /** Timers: bake ends, step retries (default: the real clock). */
  readonly clock?: Clock;
  /**
   * Makes the shared store, which must report to `listener` (wiring.ts: a HaStore in ZooKeeper at
   * `config.zookeeper`, `config.zkPath`; tests pass a MemoryRolloutStore).
   */
  readonly store: (listener: RolloutStoreListener) => RolloutStore;
  /** Preflight questions to this replica's agents (carried by the agent stream); without it no agent is asked. */
  readonly preflights?: PreflightAsker;
}

/** idle → running (start) → stopping → stopped (store closed, no step running). */

/** How long stop() waits for a running step to end (the store is closed under it, so it fails fast). */
const STOP_WAIT_MS = 5000;
export type RolloutCoordinatorState = 'idle' | 'running' | 'stopping' | 'stopped';

/**
 * One replica's part in rollouts, assembled from three roles. As a DesiredStateSource it serves every connected
 * agent the revision the rollout released to it (read from ZooKeeper) × the current hosts from discovery. Its
 * agents' reports go to ZooKeeper through AgentReports (statuses, preflight answers) and TrafficPublisher (the
 * traffic sums). While it is the leader it drives the engine (kick/tick below): a new revision from discovery starts
 * a rollout, agent reports advance its waves. Operator commands work on any replica.
 */
export class RolloutCoordinator implements DesiredStateSource {
  readonly store: RolloutStore;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly now: () => number;
  private readonly subscribers = new Set<() => void>();
  private readonly lastHosts = new Map<string, readonly Server[]>();
  private readonly composed = new Map<string, DesiredState>();
  private readonly loading = new Set<string>();
  private readonly policy: PolicyDoc;
  private offSnapshot: (() => void) | undefined;
  private ticking = false;
  private dirty = false;
  private wakeTimer: Timer | undefined;
  private retryTimer: Timer | undefined;
  /** The leader's step loop while one runs (stop waits for it). */
  private ticks: Promise<void> | undefined;
  private readonly lifecycle = new Lifecycle<RolloutCoordinatorState>('rollout coordinator', 'idle', {
    idle: ['running', 'stopping'],
    running: ['stopping'],
    stopping: ['stopped'],
    stopped: [],
  });
  private stopping: Promise<void> | undefined;
  /** This replica's traffic sums for the gates, published while a rollout is active. */
  private readonly traffic: TrafficPublisher;
  /** This replica's agents: their statuses in ZooKeeper, preflight questions, counters (AgentReports). */
  private readonly reports: AgentReports;

  constructor(private readonly opts: RolloutCoordinatorOptions) {
    this.log = opts.log.child({ component: 'rollout' });
    const clock = (this.clock = opts.clock ?? systemClock);
    this.now = opts.now ?? (() => clock.now());
    this.policy = policyDoc(opts.config);
    this.reports = new AgentReports({
      store: () => this.store,
      replicaId: opts.config.replicaId,
      log: this.log,
      now: this.now,
      traffic: () => this.traffic,
      ...(opts.preflights ? { preflights: opts.preflights } : {}),
      stateOf: (id, labels) => this.stateOf(id, labels),
      changedBy: (r) => this.changedBy(r),
      rolloutChanged: (revision) => this.rolloutChanged(revision),
    });
    this.traffic = new TrafficPublisher((opts.config.gate ?? DEFAULT_GATE_POLICY).baselineMs, clock, this.now, (t) =>
      this.store.putTraffic(t),
    );
    const listener: RolloutStoreListener = {
      doc: (doc) => {
        this.followRollout(doc);
        this.notify();
        this.kick();
      },
      agents: () => this.kick(),
      leadership: (leader) => leader && this.kick(),
    };
    this.store = opts.store(listener);
  }

  get replicaId(): string {
    return this.opts.config.replicaId;
  }

  get defaultPolicy(): PolicyDoc {
    return this.policy;
  }

  get state(): RolloutCoordinatorState {
    return this.lifecycle.state;
  }

  private get stopped(): boolean {
    return this.lifecycle.is('stopping', 'stopped');
  }

  /** Follows discovery and the store; throws LifecycleError when started twice or after stop. */
  start(): void {
    this.lifecycle.to('running', 'start');
    this.offSnapshot = this.opts.discovery.onSnapshot((s) => {
      for (const svc of s.services) this.lastHosts.set(svc.name, svc.servers);
      this.notify();
      this.kick();
    });
    this.store.start();
  }

  /**
   * Stops following discovery, closes the store and resolves once a step that was running has ended. Every later
   * call returns the same promise.
   */
  stop(): Promise<void> {
    return (this.stopping ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    this.lifecycle.to('stopping', 'stop');
    this.offSnapshot?.();
    this.clock.clearTimeout(this.wakeTimer);
    this.traffic.close();
    this.clock.clearTimeout(this.retryTimer);
    await this.store.close();
    if (this.ticks && !(await settleWithin(this.ticks, STOP_WAIT_MS, this.clock)))
      this.log.warn({}, `a rollout step still runs ${STOP_WAIT_MS} ms after stop; not waiting for it`);
    this.lifecycle.to('stopped');
  }

  // ------------------------------------------------------------------ DesiredStateSource

  desiredFor(agent: AgentRecord): DesiredState | undefined {
    const doc = this.store.doc;
    if (!doc) return undefined; // keep what the agent runs until both are known
    return this.stateOf(releasedRevision(doc, agent.nodeId), agent.labels);
  }

  /**
   * While a rollout is active the agents report their counters every gate.sample_ms (the gates judge from them),
   * otherwise at the agent's own default (0).
   */
  agentSettings(): { statsIntervalMs: number } {
    const r = this.store.doc?.current;
    return { statsIntervalMs: isActive(r) && r.policy.gate?.enabled ? r.policy.gate.sampleMs : 0 };
  }

  /** The state of revision `id` for an agent with `labels`, with the current hosts (undefined while not known). */
  private stateOf(id: string, labels: Readonly<Record<string, string>>): DesiredState | undefined {
    const snap = this.opts.discovery.current();
    if (!snap || !id) return undefined;
    const rev = this.store.cachedRevision(id);
    if (!rev) {
      this.load(id);
      return undefined;
    }
    if (this.refused(rev)) return undefined; // the agent keeps what it runs
    const matched = rev.services.filter((s) => selectorMatches(s.agents, labels)).map((s) => s.name);
    const key = `${rev.id}|${snap.version}|${matched.join(',')}`;
    let state = this.composed.get(key);
    if (!state) {
      if (this.composed.size > 256) this.composed.clear();
      const current = new Map(snap.services.map((s) => [s.name, s]));
      // A service the revision has but discovery no longer follows keeps the hosts it last had (in this process, or
      // persisted by an earlier replica), marked unknown: never an affirmative "no hosts".
      state = composeState(rev, labels, (name, shape) => {
        const s = current.get(name);
        if (s) return { servers: s.servers, status: s.hosts ?? 'reported' };
        const last = this.lastHosts.get(name) ?? this.opts.discovery.knownServers?.(name, shape.zoneLabel) ?? [];
        return { servers: last, status: 'unknown' };
      });
      this.composed.set(key, state);
    }
    return state;
  }

  subscribe(fn: () => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  private notify(): void {
    for (const fn of [...this.subscribers]) fn();
  }

  /** The services the current rollout changes, when `revision` is its target and both revisions are known. */
  private rolloutChanged(revision: string): Set<string> | undefined {
    const r = this.store.doc?.current;
    if (!r || r.to !== revision) return undefined;
    const to = this.store.cachedRevision(r.to);
    if (!to) return undefined;
    return changedServices(r.from ? this.store.cachedRevision(r.from) : undefined, to);
  }

  /** Revisions checked so far: id → problem ("" = fine). A refused revision is logged once and never served. */
  private readonly checked = new Map<string, string>();

  private refused(rev: Revision): boolean {
    let problem = this.checked.get(rev.id);
    if (problem === undefined) {
      problem = revisionProblem(rev, this.opts.serviceOptions) ?? '';
      if (this.checked.size > 1024) this.checked.clear();
      this.checked.set(rev.id, problem);
      if (problem)
        this.log.error(
          { revision: rev.id, problem },
          'revision in ZooKeeper refused: it does not pass the checks a snapshot must pass; agents keep what they run',
        );
    }
    return problem !== '';
  }

  private load(id: string): void {
    if (this.loading.has(id)) return;
    this.loading.add(id);
    this.store
      .getRevision(id)
      .then((rev) => {
        if (!rev) this.log.error({ revision: id }, 'revision not found in ZooKeeper');
        else {
          if (this.store.doc && !this.stopped) this.followRollout(this.store.doc);
          this.notify();
        }
      })
      .catch((err) => this.log.warn({ revision: id, err: errorMessage(err) }, 'cannot read revision'))
      .finally(() => this.clock.setTimeout(() => this.loading.delete(id), 500));
  }

  // ------------------------------------------------------------------ preflight and traffic (every replica)

  /** The services a rollout changes (cached per rollout; undefined while its revisions are not both known). */
  private changedBy(r: RolloutDoc): Set<string> | undefined {
    if (this.changedCache?.id === r.id) return this.changedCache.changed;
    const to = this.store.cachedRevision(r.to);
    const from = r.from ? this.store.cachedRevision(r.from) : undefined;
    if (!to || (r.from && !from)) {
      if (!to) this.load(r.to);
      if (r.from && !from) this.load(r.from);
      return undefined;
    }
    const changed = changedServices(from, to);
    this.changedCache = { id: r.id, changed };
    return changed;
  }

  private changedCache: { id: string; changed: Set<string> } | undefined;

  /** On every document: preflights to ask, and the traffic sums of the current rollout (TrafficPublisher). */
  private followRollout(doc: FleetDoc): void {
    const r = doc.current;
    this.reports.follow(r);
    this.traffic.follow(r, isActive(r) ? this.changedBy(r) : undefined);
  }

  /** Registry events that report this replica's agents to ZooKeeper (see AgentReports). */
  registryEvents(): Required<Pick<RegistryEvents, 'onConnect' | 'onDisconnect' | 'onAck' | 'onNack' | 'onCounters'>> {
    return this.reports.events();
  }

  // ------------------------------------------------------------------ leader

  private kick(): void {
    if (this.stopped || !this.store.isLeader) return;
    if (this.ticking) {
      this.dirty = true;
      return;
    }
    this.ticking = true;
    this.ticks = (async () => {
      try {
        do {
          this.dirty = false;
          await this.tick();
        } while (this.dirty && !this.stopped);
      } catch (err) {
        if (this.stopped) return; // the store was closed under it
        this.log.warn({ err: errorMessage(err) }, 'rollout step failed; retrying');
        this.retryTimer = this.clock.setTimeout(() => this.kick(), 500);
      } finally {
        this.ticking = false;
      }
    })();
  }

  private async tick(): Promise<void> {
    if (!this.store.isLeader || !this.store.doc) return;
    const snap = this.opts.discovery.current();
    let rev: Revision | undefined;
    let changes: string[] = [];
    let removes: string[] = [];
    if (snap) {
      rev = revisionOf(snap, (name) => this.opts.discovery.configOf(name)?.agents);
      await this.store.putRevision(rev);
      const doc = this.store.doc;
      if (doc.stable && rev.id !== doc.stable && doc.current?.to !== rev.id) {
        const stable = await this.store.getRevision(doc.stable);
        changes = describeChanges(stable, rev);
        // Without the stable revision's content nobody can tell what the change removes: it waits as if it did.
        const labels = [...this.store.agents.values()].map((a) => a.labels);
        removes = stable
          ? serviceRemovalsOf(stable, rev, labels)
          : [`not known: the stable revision ${doc.stable} cannot be read`];
      }
    }
    const fleet = new Map<string, FleetAgent>();
    for (const [id, a] of this.store.agents) {
      fleet.set(id, {
        nodeId: id,
        runningRevision: a.runningRevision,
        labels: a.labels,
        ...(a.lastNack ? { lastNack: a.lastNack } : {}),
        ...(a.canPreflight ? { canPreflight: true } : {}),
        ...(a.preflight ? { preflight: a.preflight } : {}),
      });
    }
    // The replicas' traffic sums, while a wave of an active rollout may be judged.
    const cur = this.store.doc.current;
    const traffic: TrafficView | undefined =
      isActive(cur) && cur.policy.gate?.enabled && cur.waves.length > 0 ? await this.store.readTraffic() : undefined;
    const now = this.now();
    let wakeAt: number | undefined;
    let before: FleetDoc | undefined;
    const after = await this.store.update((d) => {
      before = d;
      const withRev = rev ? onRevision(d, rev.id, this.policy, now, changes, removes) : d;
      const r = step(withRev, fleet, now, traffic);
      wakeAt = r.wakeAt;
      return r.doc;
    });
    if (before) this.logTransition(before, after);
    this.clock.clearTimeout(this.wakeTimer);
    if (wakeAt !== undefined)
      this.wakeTimer = this.clock.setTimeout(() => this.kick(), Math.max(0, wakeAt - this.now()) + 1);
  }

  private logTransition(a: FleetDoc, b: FleetDoc): void {
    if (a.stable === '' && b.stable !== '')
      this.log.info({ revision: b.stable }, 'first revision released to every agent');
    const r = b.current;
    if (!r) return;
    const prev = a.current?.id === r.id ? a.current : undefined;
    if (!prev)
      this.log.info({ rollout: r.id, from: r.from, to: r.to, changes: r.changes, policy: r.policy }, 'rollout started');
    for (const w of r.waves) {
      const pw = prev?.waves.find((x) => x.index === w.index);
      if (!pw)
        this.log.info({ rollout: r.id, wave: w.index, spec: w.spec, agents: w.agents }, `wave ${w.index} started`);
      else if (pw.ackedAt === undefined && w.ackedAt !== undefined)
        this.log.info({ rollout: r.id, wave: w.index }, `wave ${w.index} ACKed; baking ${r.policy.bakeMs} ms`);
    }
    if (prev?.state !== r.state || !prev)
      this.log.info({ rollout: r.id, state: r.state, reason: r.reason }, `rollout ${r.state}`);
  }

  // ------------------------------------------------------------------ operations (any replica)

  async command(cmd: Command, rolloutId: string): Promise<FleetDoc> {
    const doc = await this.store.update((d) => command(d, cmd, this.now(), rolloutId));
    this.log.info({ command: cmd, rollout: doc.current?.id, state: doc.current?.state }, `rollout ${cmd} by operator`);
    return doc;
  }

  async setPolicy(change: Partial<PolicyDoc>, next: boolean): Promise<FleetDoc> {
    return this.store.update((d) => setPolicy(d, change, next, this.policy, this.now()));
  }

  /**
   * What the pending revision changes: the active rollout's target, or else the revision of discovery's current
   * snapshot when it is not the stable one (a rollout about to start).
   */
  async plan(): Promise<RolloutPlan> {
    const doc = this.store.doc;
    const r = doc?.current;
    let pending: { from: string; to: string } | undefined;
    let toRev: Revision | undefined;
    if (isActive(r)) pending = { from: r.from, to: r.to };
    else {
      const snap = this.opts.discovery.current();
      if (snap && doc) {
        toRev = revisionOf(snap, (name) => this.opts.discovery.configOf(name)?.agents);
        if (toRev.id !== doc.stable) pending = { from: doc.stable, to: toRev.id };
      }
    }
    if (!pending) return rolloutPlan(this.store.agents, doc, undefined, undefined);
    const to = toRev ?? (await this.store.getRevision(pending.to));
    const from = pending.from ? await this.store.getRevision(pending.from) : undefined;
    if (!to) throw new ProxyMgrError('UNAVAILABLE', `revision ${pending.to} is not in ZooKeeper yet; try again`);
    const before = new Set(from?.services.map((x) => x.name) ?? []);
    const after = new Set(to.services.map((x) => x.name));
    const changedSet = changedServices(from, to);
    const added = [...after].filter((n) => !before.has(n)).sort();
    const removed = [...before].filter((n) => !after.has(n)).sort();
    const changed = [...changedSet].filter((n) => before.has(n)).sort();
    const touched = to.services.filter((x) => changedSet.has(x.name));
    return rolloutPlan(this.store.agents, doc, pending, {
      added,
      removed,
      changed,
      changes: describeChanges(from, to),
      servicesFor: (labels) => [
        ...touched.filter((x) => selectorMatches(x.agents, labels)).map((x) => x.name),
        ...removed.filter((n) => selectorMatches(from?.services.find((x) => x.name === n)?.agents, labels)),
      ],
    });
  }

  /** Whether any rollout is in progress (for metrics and tests). */
  get active(): boolean {
    return isActive(this.store.doc?.current);
  }
}
