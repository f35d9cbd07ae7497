import { Clock, Timer, unrefTimer } from '../common/platform/clock';
import type { ProxyMgrConfig } from '../common/config/config';
import { errorMessage, StateProblem } from '../common/platform/errors';
import { Lifecycle } from '../common/platform/lifecycle';
import { Logger } from '../common/platform/log';
import { DesiredState } from '../common/protocol/types';
import { ActionLog } from './apply/action-log';
import { Binder } from './apply/bind';
import { Checker } from './apply/check';
import { ConfigFiles } from './apply/config-files';
import type { ApplyContext } from './apply/context';
import { DrainJournal } from './apply/drain-journal';
import { DrainSweeper } from './apply/drain-sweep';
import { Execute } from './apply/execute';
import { Executor } from './apply/executor';
import { LiveState } from './apply/live-state';
import { ApplyPipeline, asProxyMgrError } from './apply/pipeline';
import { Sanitizer } from './apply/sanitize';
import { takeOver } from './apply/takeover';
import { drainId, Drains } from './drains';
import { OverrideTracker } from './overrides';
import type { OverrideState } from './runtime-plan';
import type {
  AdminChannelSet,
  ConfigCheck,
  FileWriter,
  HaproxyIdentity,
  PreviousHaproxy,
  RuntimeApi,
  SocketPool,
  Supervisor,
} from './ports';
import { RejectedServices } from './rejected-services';
import type { ActionRecord, AgentCounters, ApplyResult, PreflightResult, Trigger } from './results';
import { RETRY_BASE_MS, RETRY_MAX_ATTEMPTS, RETRY_MAX_MS, Retrier, RetryStatus, transientFailure } from './retry';
import { SerialQueue } from './serial-queue';

/** The adapters an Agent runs on (agent/wiring.ts builds the real ones; tests and the simulator pass fakes). */
export interface AgentAdapters {
  /** HAProxy's runtime API: what the agent sends its commands to. */
  readonly runtime: RuntimeApi;
  /** The admin channels of the HAProxy processes the supervisor starts (closed on stop, released on hand-over). */
  readonly channels: AdminChannelSet | undefined;
  /** Drift-repair interval, retries, drain deadlines, the wait for a freed port, durations and timestamps. */
  readonly clock: Clock;
  /**
   * Makes the HAProxy supervisor, given the agent's crash-restart hook (a crash restart starts from the config the
   * agent committed, see ConfigFiles.restoreCommitted).
   */
  readonly makeSupervisor: (hooks: { beforeRestart: () => Promise<void> }) => Supervisor;
  /** The listening sockets. */
  readonly sockets: SocketPool;
  /** `haproxy -c` on a candidate. */
  readonly checkConfig: ConfigCheck;
  /** Writes haproxy.cfg, its candidate, the server-state file and the drain journal. */
  readonly writeFile: FileWriter;
  /** Finds, reads and stops the HAProxy a previous agent left running. */
  readonly previous: PreviousHaproxy;
  /** The user and group HAProxy drops to. */
  readonly identity: HaproxyIdentity;
}

export interface AgentOptions extends AgentAdapters {
  readonly config: ProxyMgrConfig;
  readonly log: Logger;
  /** Awaited before each write of haproxy.cfg (the agent process writes its state cache first). */
  readonly beforeConfigWrite?: () => Promise<void>;
  /** In [0, 1): the jitter of retries after transient failures (default Math.random). */
  readonly random?: () => number;
}

/**
 * idle → running (the first apply or startDriftRepair) → stopping → stopped; or → handed-over (HAProxy keeps
 * serving for the next agent). Once stopping, stopped or handed over, applies are refused.
 */
export type AgentState = 'idle' | 'running' | 'stopping' | 'stopped' | 'handed-over';

/**
 * The agent's core: takes desired states, runs them on the local HAProxy — runtime API first, a seamless reload
 * only when the shape changes — and repairs drift. It keeps serialization, lifecycle, retries and the public API;
 * each desired state walks the apply pipeline (agent/apply/pipeline.ts) once. The last good state keeps running
 * whenever a new one is rejected.
 */
export class Agent {
  readonly supervisor: Supervisor;
  readonly runtime: RuntimeApi;
  readonly channels: AdminChannelSet | undefined;
  readonly counters: AgentCounters = { reloads: 0, runtimeCommands: 0, rejected: 0, driftRepairs: 0, errors: 0 };
  private readonly lifecycle = new Lifecycle<AgentState>('agent', 'idle', {
    idle: ['running', 'stopping', 'handed-over'],
    running: ['stopping', 'handed-over'],
    stopping: ['stopped'],
    stopped: [],
    'handed-over': [],
  });
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly ctx: ApplyContext;
  private readonly pipeline: ApplyPipeline;
  private readonly binder: Binder;
  private readonly files: ConfigFiles;
  private readonly live: LiveState;
  private readonly sanitizer: Sanitizer;
  private readonly sweeper: DrainSweeper;
  private readonly journal: DrainJournal;
  private readonly queue = new SerialQueue();
  private readonly retrier: Retrier;
  private readonly retryListeners = new Set<(result: ApplyResult) => void>();
  private stopping: Promise<void> | undefined;
  private handingOver: Promise<void> | undefined;
  /** The last state given to apply (what a retry applies again). */
  private held: DesiredState | undefined;
  /** A drift check queued behind an apply and not started yet (see repairDrift). */
  private driftWaiting: Promise<ApplyResult | undefined> | undefined;
  private driftTimer: Timer | undefined;

  constructor(private readonly opts: AgentOptions) {
    this.log = opts.log.child({ component: 'agent' });
    this.clock = opts.clock;
    this.runtime = opts.runtime;
    this.channels = opts.channels;
    // (The hook runs only on a crash restart, long after the files exist.)
    this.supervisor = opts.makeSupervisor({ beforeRestart: () => this.files.restoreCommitted() });
    const ctx: ApplyContext = {
      config: opts.config,
      log: this.log,
      clock: opts.clock,
      runtime: opts.runtime,
      supervisor: this.supervisor,
      counters: this.counters,
      actions: new ActionLog(opts.clock),
      drains: new Drains(opts.config.agent.drainTimeoutMs),
      overrides: new OverrideTracker(),
      running: undefined,
      lastGood: undefined,
    };
    this.ctx = ctx;
    this.files = new ConfigFiles(ctx, opts.writeFile, opts.identity, opts.beforeConfigWrite);
    this.binder = new Binder(ctx, opts.sockets);
    this.live = new LiveState(ctx);
    this.journal = new DrainJournal(ctx, opts.writeFile);
    const executor = new Executor(ctx);
    this.sweeper = new DrainSweeper(ctx, {
      executor,
      live: this.live,
      files: this.files,
      journal: this.journal,
      runFirst: (fn) => void this.queue.pushFront(fn),
      active: () => this.lifecycle.is('running'),
    });
    const rejected = new RejectedServices();
    const checker = new Checker(ctx, this.binder, this.files, opts.checkConfig, rejected);
    this.sanitizer = new Sanitizer(ctx, opts.previous, this.live);
    this.pipeline = new ApplyPipeline(ctx, {
      sanitizer: this.sanitizer,
      takeOver: (state) =>
        takeOver(
          ctx,
          {
            binder: this.binder,
            files: this.files,
            previous: opts.previous,
            channels: opts.channels,
            journalFile: this.journal.file,
            armDrains: () => this.sweeper.arm(),
          },
          state,
        ),
      binder: this.binder,
      rejected,
      live: this.live,
      checker,
      execute: new Execute(ctx, {
        binder: this.binder,
        files: this.files,
        checker,
        executor,
        live: this.live,
        sweeper: this.sweeper,
        journal: this.journal,
      }),
      drainsChanged: () => this.sweeper.arm(),
    });
    this.retrier = new Retrier({
      clock: this.clock,
      baseMs: RETRY_BASE_MS,
      maxMs: RETRY_MAX_MS,
      ...(opts.random ? { random: opts.random } : {}),
    });
    this.supervisor.on('restarted', () => {
      this.live.forget();
      ctx.overrides.restarted();
      // The restarted HAProxy runs the committed config: a state held for a retry goes on it now, not at its backoff.
      this.retrier.runNow();
      void this.repairDrift(); // never rejects
    });
  }

  get state(): AgentState {
    return this.lifecycle.state;
  }

  /** The state applied last (what runs), if any. */
  get current(): DesiredState | undefined {
    return this.ctx.lastGood;
  }

  /** What the last apply that was not rejected left out or kept (the status's warnings). */
  get lastProblems(): readonly StateProblem[] {
    return this.pipeline.problemsOfCurrent;
  }

  /**
   * Per service: servers HAProxy has (maint excluded) and how many of them are DOWN, from the `show servers state`
   * the agent read last (after its own changes, and on every drift check); empty before HAProxy runs. Servers on
   * their way out are not the service's servers any more: a host that is gone fails its checks while it drains, and
   * must not read as a server DOWN (the traffic gates judge it).
   */
  serverCounts(): Map<string, { total: number; down: number }> {
    return this.live.serverCounts(new Set(this.ctx.drains.ids()));
  }

  /** Recent reloads and runtime commands with their reasons, newest last. */
  recentActions(): readonly ActionRecord[] {
    return this.ctx.actions.list();
  }

  /**
   * Operator overrides: desired servers someone other than the agent put in drain or maint (`set server … state`
   * on the stats socket, or an agent-check) after the agent had them ready. Drift repair leaves them alone until
   * they are ready again or leave the desired state; a HAProxy crash restart gets them re-applied.
   */
  overrides(): { server: string; state: OverrideState }[] {
    return this.ctx.overrides.list();
  }

  /** Servers draining now: the ones on their way out (with their deadline), and those at weight 0 (no deadline). */
  draining(): { server: string; since?: number; deadline?: number }[] {
    const out: { server: string; since?: number; deadline?: number }[] = this.ctx.drains
      .list()
      .map((d) => ({ server: drainId(d), since: d.since, deadline: d.deadline }));
    for (const s of this.ctx.lastGood?.services ?? [])
      for (const v of s.servers) if (v.weight === 0) out.push({ server: `${s.name}/${v.name}` });
    return out;
  }

  /**
   * Applies a desired state (serialized with every other apply and drift repair); never rejects. Once the agent is
   * stopping, stopped or handed over, the state is refused (outcome 'rejected', a LIFECYCLE_INVALID error).
   */
  apply(desired: DesiredState): Promise<ApplyResult> {
    if (!this.lifecycle.is('idle', 'running')) return Promise.resolve(this.refused(desired.version));
    if (this.lifecycle.is('idle')) this.lifecycle.to('running', 'apply a desired state');
    this.retrier.reset();
    this.held = desired;
    return this.serialize(() => this.guarded(desired, 'update')).then((r) => this.retryIfTransient(desired, r));
  }

  /** A retry of the held state after a transient failure, pending (see Retrier). */
  get retry(): RetryStatus | undefined {
    return this.retrier.status;
  }

  /** Retries of the held state run so far. */
  get retries(): number {
    return this.retrier.total;
  }

  /**
   * The config file HAProxy last ran is too old to keep servers from (the agent process refused its state cache as
   * older than agent.cache_max_age_ms: a host that was down for days).
   */
  distrustLastRun(): void {
    this.sanitizer.distrust();
  }

  /** Calls `fn` with the result of every retry (the gRPC source answers its push again). */
  onRetried(fn: (result: ApplyResult) => void): () => void {
    this.retryListeners.add(fn);
    return () => this.retryListeners.delete(fn);
  }

  /**
   * Whether `desired` would apply whole, without applying it (a rollout asks every agent before its first wave):
   * the checks an apply makes — sanitizing, binding every new socket, the plan, `haproxy -c` of the config it would
   * run with the real fds — and nothing else. Sockets opened for it are closed again; HAProxy is not touched.
   * Serialized with applies; never rejects.
   */
  preflight(desired: DesiredState): Promise<PreflightResult> {
    const refused = (error: string, wholeConfig?: true): PreflightResult => ({
      ok: false,
      error,
      method: 'nothing',
      reasons: [],
      problems: [],
      ...(wholeConfig ? { wholeConfig } : {}),
    });
    if (!this.lifecycle.is('idle', 'running'))
      return Promise.resolve(refused(this.lifecycle.refuse('preflight a desired state').message));
    return this.serialize(async () => {
      try {
        return await this.pipeline.preflight(desired);
      } catch (err) {
        return refused(errorMessage(err), true);
      } finally {
        this.binder.clearAwaiting();
        this.binder.releaseUnused();
      }
    });
  }

  /**
   * Starts periodic drift repair (on the clock): compares `show servers state` with the desired state and fixes
   * differences. Throws LifecycleError once the agent is stopping, stopped or handed over.
   */
  startDriftRepair(): void {
    if (this.lifecycle.is('idle')) this.lifecycle.to('running', 'start drift repair');
    else if (!this.lifecycle.is('running')) throw this.lifecycle.refuse('start drift repair');
    const every = this.opts.config.agent.driftCheckIntervalMs;
    const arm = (): void => {
      // The drift timer alone must not keep the process alive.
      this.driftTimer = this.clock.setTimeout(() => {
        if (!this.lifecycle.is('running')) return;
        arm();
        void this.repairDrift();
      }, every);
      unrefTimer(this.driftTimer);
    };
    this.clock.clearTimeout(this.driftTimer);
    arm();
  }

  /**
   * One drift check now; resolves with what it did (never rejects: it runs from a timer and the restart handler).
   * Nothing once the agent is stopping, stopped or handed over.
   */
  repairDrift(): Promise<ApplyResult | undefined> {
    if (!this.lifecycle.is('idle', 'running')) return Promise.resolve(undefined);
    // One waits at most: ticks during a long apply (or a HAProxy that does not answer) would pile up otherwise.
    return (this.driftWaiting ??= this.serialize(async () => {
      this.driftWaiting = undefined;
      return this.ctx.lastGood ? this.guarded(this.ctx.lastGood, 'drift') : undefined;
    }));
  }

  /** Writes what is pending of haproxy.cfg now (tests, stop, hand-over); resolves once written or failed. */
  flushFiles(): Promise<void> {
    return this.files.flush();
  }

  /**
   * Stops: HAProxy ends and the ports close. Resolves once HAProxy has exited; every later call returns the same
   * promise. After a hand-over there is nothing of this agent's left to stop: resolves with the hand-over.
   */
  stop(): Promise<void> {
    if (this.handingOver) return this.handingOver;
    return (this.stopping ??= this.shutdown());
  }

  /**
   * Hands HAProxy and its sockets over to the next agent (see HaproxySupervisor.handOver): nothing stops. Every
   * later call returns the same promise; refused (LifecycleError) once the agent is stopping or stopped.
   */
  handOver(): Promise<void> {
    if (this.handingOver) return this.handingOver;
    if (!this.lifecycle.is('idle', 'running')) return Promise.reject(this.lifecycle.refuse('hand over'));
    this.lifecycle.to('handed-over', 'hand over');
    this.clock.clearTimeout(this.driftTimer);
    this.retrier.cancel();
    this.handingOver = (async () => {
      await this.queue.idle();
      // The next agent compares haproxy.cfg with its state to take HAProxy over without a reload: it must be current.
      await this.files.flush();
      this.supervisor.handOver();
      this.channels?.release(); // its keeper stays, for the next agent
    })();
    return this.handingOver;
  }

  private async shutdown(): Promise<void> {
    this.lifecycle.to('stopping', 'stop');
    this.retrier.cancel();
    this.clock.clearTimeout(this.driftTimer);
    this.sweeper.cancel();
    try {
      await this.queue.idle();
      this.files.cancel(); // HAProxy stops: the next start writes the config first
      await this.files.flush();
      await this.supervisor.stop();
      this.channels?.close();
      this.binder.sockets.closeAll();
    } finally {
      this.lifecycle.to('stopped');
    }
  }

  /**
   * A transient failure (see retry.ts) is not the last word on a state: it is applied again with backoff and jitter
   * while it is the state held — a NACK for a `haproxy -c` killed by the OOM killer, or a service left out because
   * its port was taken for a moment, would otherwise last until the next version.
   */
  private retryIfTransient(desired: DesiredState, result: ApplyResult): ApplyResult {
    if (this.held !== desired || !this.lifecycle.is('running')) return result;
    const why = transientFailure(result);
    if (why === undefined) {
      this.retrier.reset();
      return result;
    }
    const armed = this.retrier.schedule(why, () => {
      if (this.held !== desired || !this.lifecycle.is('running')) return;
      void this.serialize(() => this.guarded(desired, 'update')).then((again) => {
        this.retryIfTransient(desired, again);
        for (const fn of [...this.retryListeners]) fn(again);
      });
    });
    if (!armed) {
      this.log.error(
        { version: desired.version, attempts: RETRY_MAX_ATTEMPTS, reason: why },
        'the state still fails after every retry; it waits for the next version',
      );
      return result;
    }
    const next = this.retrier.status!;
    this.log.warn(
      { version: desired.version, attempt: next.attempt, retry_in_ms: next.at - this.clock.now(), reason: why },
      'transient failure; the state is applied again after a backoff',
    );
    return result;
  }

  /** A state offered after stop or hand-over: refused (apply never rejects), nothing changes. */
  private refused(version: string): ApplyResult {
    const error = this.lifecycle.refuse('apply a desired state');
    this.log.warn({ version, state: this.lifecycle.state }, error.message);
    return { version, outcome: 'rejected', reasons: [], commands: [], problems: [], error, durationMs: 0 };
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    return this.queue.push(fn);
  }

  /**
   * The pipeline, with nothing escaping: an exception would be an unhandled rejection from the drift timer or the
   * restart handler and end the agent. What runs keeps running; the next push or drift round retries.
   */
  private async guarded(desired: DesiredState, trigger: Trigger): Promise<ApplyResult> {
    const started = this.clock.now();
    try {
      return await this.pipeline.apply(desired, trigger);
    } catch (err) {
      const error = asProxyMgrError(this.ctx, err);
      this.counters.rejected++;
      this.ctx.actions.record(trigger, 'rejected', error.message, 'failed');
      this.log.error(
        { version: desired.version, trigger, code: error.code, err: error.message },
        `${trigger}: failed; HAProxy keeps running what it runs`,
      );
      const durationMs = this.clock.now() - started;
      return {
        version: desired.version,
        outcome: 'rejected',
        reasons: [],
        commands: [],
        problems: [],
        error,
        durationMs,
      };
    } finally {
      // The drain journal follows every apply (drains end by deadline, by return, by a service leaving, or after a
      // takeover; the first apply also replaces a predecessor's journal). Written only when it changed.
      await this.journal.save();
    }
  }
}

export type { ActionRecord, ApplyResult, Outcome, PreflightResult } from './results';
