import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Clock, systemClock, Timer, unrefTimer } from '../common/clock';
import { ProxyMgrConfig } from '../common/config';
import { errorMessage, HaproxyConfigError, ProxyMgrError, StateError, StateProblem } from '../common/errors';
import { CoalescedFile } from '../common/coalesced-file';
import { writeFileAtomic } from '../common/fs';
import { Lifecycle } from '../common/lifecycle';
import { Logger } from '../common/log';
import { DesiredState, Service } from '../common/types';
import { sanitizeState } from '../common/validate-state';
import { checkConfig } from './haproxy/check';
import { findHaproxies, stopOrphan } from './haproxy/orphan';
import { HaproxyIdentity, resolveHaproxyIdentity } from './haproxy/privileges';
import { HaproxySupervisor } from './haproxy/process';
import { FIRST_LISTEN_FD, listenerAddress, listenOrder, parseListeners, renderHaproxyConfig } from './haproxy/render';
import { AdminChannels } from './haproxy/admin-channel';
import { RuntimeApi, StatsSocketClient } from './haproxy/runtime';
import { inMaint, RuntimeServer, RuntimeState } from './haproxy/servers-state';
import { saveServerState } from './haproxy/server-state-file';
import { SocketPool as NativeSocketPool, socketKey } from './haproxy/sockets';
import { OverrideTracker } from './overrides';
import { RejectedServices } from './rejected-services';
import { OverrideState, Overrides, plan, Plan, reason, Reason, Running, RuntimeAction } from './plan';
import { drainId, Drains } from './drains';
import { SerialQueue } from './serial-queue';
import {
  keepUnknownHosts,
  RunningServers,
  runningServersFromActual,
  runningServersFromConfig,
  runningServersOf,
  serverFromRuntime,
} from './unknown-hosts';
import { RETRY_BASE_MS, RETRY_MAX_ATTEMPTS, RETRY_MAX_MS, Retrier, RetryStatus, transientFailure } from './retry';
import { AdoptedSocket, ConfigCheck, FileWriter, PreviousHaproxy, SocketPool, Supervisor } from './ports';
import type { ActionRecord, ApplyResult, Outcome, PreflightResult } from './results';

export type { ActionRecord, ApplyResult, Outcome, PreflightResult } from './results';

export interface AgentOptions {
  readonly config: ProxyMgrConfig;
  readonly log: Logger;
  readonly runtime?: RuntimeApi;
  /**
   * The drift-repair interval, the wait for a freed port, durations and timestamps, and the default supervisor's
   * crash-restart timers (default: the real clock).
   */
  readonly clock?: Clock;
  /** The HAProxy processes (default: a HaproxySupervisor on `config.haproxy`, with `runtime` and `clock`). */
  readonly supervisor?: Supervisor;
  /** The listening sockets (default: the native pool, with `agent.backlog`). */
  readonly sockets?: SocketPool;
  /** `haproxy -c` on a candidate (default: checkConfig). */
  readonly checkConfig?: ConfigCheck;
  /** Writes haproxy.cfg, its candidate and the server-state file (default: writeFileAtomic). */
  readonly writeFile?: FileWriter;
  /** Finds, reads and stops the HAProxy a previous agent left running (default: /proc and the file system). */
  readonly previous?: PreviousHaproxy;
  /**
   * Makes the supervisor, given the agent's crash-restart hook (the simulator: a HaproxySupervisor on fake
   * processes, so that a crash restart takes the agent's own path); with it, `runtime` is required, as with
   * `supervisor`.
   */
  readonly makeSupervisor?: (hooks: { beforeRestart: () => Promise<void> }) => Supervisor;
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
 * only when the shape changes — and repairs drift. Applies are serialized; the last good state keeps running
 * whenever a new one is rejected.
 */
export class Agent {
  readonly supervisor: Supervisor;
  /** HAProxy's runtime API: the admin channel of the current process (AdminChannels), or what the caller gave. */
  readonly runtime: RuntimeApi;
  /** The admin channels of the HAProxy processes the default supervisor starts. */
  readonly channels: AdminChannels | undefined;
  private readonly sockets: SocketPool;
  private readonly clock: Clock;
  private readonly checkConfig: ConfigCheck;
  private readonly writeFile: FileWriter;
  private readonly previous: PreviousHaproxy;
  private readonly lifecycle = new Lifecycle<AgentState>('agent', 'idle', {
    idle: ['running', 'stopping', 'handed-over'],
    running: ['stopping', 'handed-over'],
    stopping: ['stopped'],
    stopped: [],
    'handed-over': [],
  });
  private stopping: Promise<void> | undefined;
  private handingOver: Promise<void> | undefined;
  private readonly log: Logger;
  private readonly serverStateFile: string;
  private readonly pidFile: string;
  /** The servers this agent drains (see saveDrainIds); the last text written there. */
  private readonly drainIdsFile: string;
  private drainIdsWritten = '';
  private readonly identity: HaproxyIdentity;
  private orphanChecked = false;
  private running: Running | undefined;
  private lastGood: DesiredState | undefined;
  private problemsOfCurrent: readonly StateProblem[] = [];
  /** The last state given to apply (what a retry applies again). */
  private held: DesiredState | undefined;
  private readonly retrier: Retrier;
  /** See distrustLastRun. */
  private lastRunTrusted = true;
  /** A drift check queued behind an apply and not started yet (see repairDrift). */
  private driftWaiting: Promise<ApplyResult | undefined> | undefined;
  private readonly retryListeners = new Set<(result: ApplyResult) => void>();
  /**
   * The config HAProxy runs, paired with the fds the supervisor holds: set by a successful launch, refreshed by
   * runtime changes (same listeners), taken from the file by a takeover. Undefined: the file is all there is.
   */
  private committed: (() => string) | undefined;
  /** An adopted HAProxy runs a config file that could not be paired with sockets: no crash restart until a launch. */
  private unpaired = false;
  /** The `# listener` lines of the committed config (its shape). */
  private committedListeners: string | undefined;
  /** `show servers state` as of the last change this agent made; see applyNow. */
  private actualCache: Map<string, ReadonlyMap<string, RuntimeServer>> | undefined;
  private readonly queue = new SerialQueue();
  private driftTimer: Timer | undefined;
  private readonly recent: ActionRecord[] = [];
  private readonly overrideTracker = new OverrideTracker();
  /** Servers that left the desired state and drain until their service's drain timeout (see Drains). */
  private readonly drains: Drains;
  private drainTimer: Timer | undefined;
  /** Sockets were copied from an adopted HAProxy and are kept until it runs a config of ours (releaseUnusedSockets). */
  private socketsPinned = false;
  /** Socket keys of this apply that can only be bound once an old socket on their port is closed (see vacate). */
  private readonly awaitingBind = new Set<string>();
  private readonly rejectedServices = new RejectedServices();
  /** haproxy.cfg: written at once before every start or reload, coalesced after runtime changes. */
  private readonly configFile: CoalescedFile;
  /** `errors`: I/O and other unexpected failures caught (state dir writes, spawn, …); the agent kept serving. */
  readonly counters = { reloads: 0, runtimeCommands: 0, rejected: 0, driftRepairs: 0, errors: 0 };

  constructor(private readonly opts: AgentOptions) {
    const { haproxy, agent } = opts.config;
    this.log = opts.log.child({ component: 'agent' });
    // Every HAProxy the agent starts gets its admin channel at fd 3 (render.ts); `runtime` only replaces what the
    // agent sends its commands to (tests wrap the channel to fail on demand).
    const channels =
      opts.supervisor || opts.makeSupervisor
        ? undefined
        : new AdminChannels({
            observer: new StatsSocketClient(haproxy.socketPath),
            keeperFile: path.join(agent.stateDir, 'admin-channel.json'),
          });
    this.channels = channels;
    const runtime = opts.runtime ?? channels;
    if (!runtime) throw new TypeError('Agent: a custom supervisor needs a runtime');
    this.runtime = runtime;
    this.clock = opts.clock ?? systemClock;
    this.sockets = opts.sockets ?? new NativeSocketPool(agent.backlog);
    this.checkConfig = opts.checkConfig ?? checkConfig;
    this.writeFile = opts.writeFile ?? writeFileAtomic;
    this.previous = opts.previous ?? {
      find: (configPath) => findHaproxies(configPath, opts.config.haproxy.binary),
      readFile: (file) => fsp.readFile(file, 'utf8').catch(() => ''),
      stop: (pid) => stopOrphan(pid, this.log),
    };
    this.serverStateFile = path.join(agent.stateDir, 'server-state');
    this.pidFile = path.join(agent.stateDir, 'haproxy.pid');
    this.drainIdsFile = path.join(agent.stateDir, 'agent-drains.json');
    this.identity = resolveHaproxyIdentity(opts.config, this.log);
    this.drains = new Drains(agent.drainTimeoutMs);
    this.retrier = new Retrier({
      clock: this.clock,
      baseMs: RETRY_BASE_MS,
      maxMs: RETRY_MAX_MS,
      ...(opts.random ? { random: opts.random } : {}),
    });
    this.configFile = new CoalescedFile(
      haproxy.configPath,
      async (file, content) => {
        await opts.beforeConfigWrite?.().catch(() => undefined); // (its own failure is reported by its owner)
        return this.writeFile(file, content);
      },
      agent.writeDelayMs,
      this.clock,
      (file, err) => {
        this.counters.errors++;
        this.log.error(
          { file, err: errorMessage(err) },
          'cannot write haproxy.cfg after a runtime change; HAProxy runs the change, the write is retried',
        );
      },
    );
    this.supervisor =
      opts.makeSupervisor?.({ beforeRestart: () => this.restoreCommitted() }) ??
      opts.supervisor ??
      new HaproxySupervisor({
        binary: haproxy.binary,
        configPath: haproxy.configPath,
        channels: channels!,
        log: opts.log.child({ component: 'haproxy' }),
        pidFile: this.pidFile,
        ...(opts.clock ? { clock: opts.clock } : {}),
        // A crash restart starts from the committed config (with the runtime changes made since), whatever a
        // failed launch or a pending write left in the file.
        beforeRestart: () => this.restoreCommitted(),
      });
    this.supervisor.on('restarted', () => {
      this.actualCache = undefined;
      this.overrideTracker.restarted();
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
    return this.lastGood;
  }

  /** What the last apply that was not rejected left out or kept (the status's warnings). */
  get lastProblems(): readonly StateProblem[] {
    return this.problemsOfCurrent;
  }

  /**
   * Per service: servers HAProxy has (maint excluded) and how many of them are DOWN, from the `show servers state`
   * the agent read last (after its own changes, and on every drift check); empty before HAProxy runs.
   */
  serverCounts(): Map<string, { total: number; down: number }> {
    const out = new Map<string, { total: number; down: number }>();
    // Servers on their way out (draining after leaving discovery) are not the service's servers any more: a host
    // that is gone fails its checks while it drains, and must not read as a server DOWN (the traffic gates judge it).
    const leaving = new Set(this.drains.ids());
    for (const [backend, servers] of this.actualCache ?? []) {
      let total = 0;
      let down = 0;
      for (const s of servers.values()) {
        if (inMaint(s) || leaving.has(`${backend}/${s.name}`)) continue;
        total++;
        if (s.operState === 0) down++;
      }
      out.set(backend, { total, down });
    }
    return out;
  }

  /** Recent reloads and runtime commands with their reasons, newest last. */
  recentActions(): readonly ActionRecord[] {
    return this.recent;
  }

  /**
   * Operator overrides: desired servers someone other than the agent put in drain or maint (`set server … state`
   * on the stats socket, or an agent-check) after the agent had them ready. Drift repair leaves them alone until
   * they are ready again or leave the desired state; a HAProxy crash restart gets them re-applied.
   */
  overrides(): { server: string; state: OverrideState }[] {
    return this.overrideTracker.list();
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
    this.lastRunTrusted = false;
  }

  /** Calls `fn` with the result of every retry (the gRPC source answers its push again). */
  onRetried(fn: (result: ApplyResult) => void): () => void {
    this.retryListeners.add(fn);
    return () => this.retryListeners.delete(fn);
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

  /**
   * Whether `desired` would apply whole, without applying it (a rollout asks every agent before its first wave):
   * the checks an apply makes — sanitizing, binding every new socket, the plan, `haproxy -c` of the config it would
   * run with the real fds — and nothing else. Sockets opened for it are closed again; HAProxy is not touched.
   * Serialized with applies; never rejects.
   */
  preflight(desired: DesiredState): Promise<PreflightResult> {
    if (!this.lifecycle.is('idle', 'running'))
      return Promise.resolve({
        ok: false,
        error: this.lifecycle.refuse('preflight a desired state').message,
        method: 'nothing',
        reasons: [],
        problems: [],
      });
    return this.serialize(async () => {
      try {
        return await this.preflightNow(desired);
      } catch (err) {
        return {
          ok: false,
          error: errorMessage(err),
          method: 'nothing' as const,
          reasons: [],
          problems: [],
          wholeConfig: true,
        };
      } finally {
        this.awaitingBind.clear();
        this.releaseUnusedSockets();
      }
    });
  }

  private async preflightNow(desired: DesiredState): Promise<PreflightResult> {
    let sanitized;
    try {
      sanitized = sanitizeState(desired, this.lastGood, this.opts.config.serviceOptions);
    } catch (err) {
      if (!(err instanceof StateError)) throw err;
      return {
        ok: false,
        error: err.message,
        method: 'nothing',
        reasons: [],
        problems: err.problems,
        wholeConfig: true,
      };
    }
    const problems = [...sanitized.problems];
    let state = this.withSockets(sanitized.state, problems);
    let actual: RuntimeState | undefined;
    // Read for the plan only: the cache stays what the agent's own last change left (overrides are observed there).
    if (this.supervisor.running)
      actual = this.actualCache ?? (await this.runtime.serversState().catch(() => undefined));
    const p = plan(
      state,
      this.supervisor.running ? this.running : undefined,
      actual,
      this.holds(),
      actual === this.actualCache,
    );
    const method: PreflightResult['method'] =
      p.reloadReasons.length > 0 ? 'reload' : p.actions.length > 0 ? 'runtime' : 'nothing';
    const reasons = p.reloadReasons.length > 0 ? p.reloadReasons.map((r) => r.text) : p.actions.map((a) => a.reason);
    try {
      state = await this.checkPerService(state, problems);
    } catch (err) {
      return {
        ok: false,
        error: errorMessage(err),
        ...(err instanceof HaproxyConfigError ? { haproxyOutput: err.output } : {}),
        method,
        reasons,
        problems,
        wholeConfig: true,
      };
    }
    const services = problems.filter((x) => x.service !== undefined && x.server === undefined);
    if (services.length > 0)
      return {
        ok: false,
        error: services.map((x) => `${x.where}: ${x.message}`).join('; '),
        method,
        reasons,
        problems,
      };
    return { ok: true, method, reasons, problems };
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
      return this.lastGood ? this.guarded(this.lastGood, 'drift') : undefined;
    }));
  }

  /**
   * Stops: HAProxy ends and the ports close. Resolves once HAProxy has exited; every later call returns the same
   * promise. After a hand-over there is nothing of this agent's left to stop: resolves with the hand-over.
   */
  stop(): Promise<void> {
    if (this.handingOver) return this.handingOver;
    return (this.stopping ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    this.lifecycle.to('stopping', 'stop');
    this.retrier.cancel();
    this.clock.clearTimeout(this.driftTimer);
    this.clock.clearTimeout(this.drainTimer);
    try {
      await this.queue.idle();
      this.configFile.cancel(); // HAProxy stops: the next start writes the config first
      await this.configFile.flush();
      await this.supervisor.stop();
      this.channels?.close();
      this.sockets.closeAll();
    } finally {
      this.lifecycle.to('stopped');
    }
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
   * applyNow, with nothing escaping: an exception used to be an unhandled rejection from the drift timer or the
   * restart handler and ended the agent. What runs keeps running; the next push or drift round retries.
   */
  private async guarded(desired: DesiredState, trigger: 'update' | 'drift'): Promise<ApplyResult> {
    const started = this.clock.now();
    try {
      return await this.applyNow(desired, trigger);
    } catch (err) {
      const error = this.asProxyMgrError(err);
      this.counters.rejected++;
      this.record(trigger, 'rejected', error.message, 'failed');
      this.log.error(
        { version: desired.version, trigger, code: error.code, err: error.message },
        `${trigger}: failed; HAProxy keeps running what it runs`,
      );
      return {
        version: desired.version,
        outcome: 'rejected',
        reasons: [],
        commands: [],
        problems: [],
        error,
        durationMs: this.clock.now() - started,
      };
    } finally {
      // The drain journal follows every apply (drains end by deadline, by return, by a service leaving, or after a
      // takeover; the first apply also replaces a predecessor's journal). Written only when it changed.
      await this.saveDrainIds();
    }
  }

  /** ProxyMgrErrors as they are; anything else (an errno from fs or spawn) is counted and becomes IO_FAILED. */
  private asProxyMgrError(err: unknown): ProxyMgrError {
    if (err instanceof ProxyMgrError) return err;
    this.counters.errors++;
    return new ProxyMgrError('IO_FAILED', errorMessage(err), { cause: err });
  }

  private async applyNow(desired: DesiredState, trigger: 'update' | 'drift'): Promise<ApplyResult> {
    const started = this.clock.now();
    const done = (
      outcome: Outcome,
      reasons: readonly Reason[],
      commands: string[],
      problems: readonly StateProblem[],
      error?: ProxyMgrError,
    ): ApplyResult => {
      const result = {
        version: desired.version,
        outcome,
        reasons,
        commands,
        problems,
        error,
        durationMs: this.clock.now() - started,
      };
      if (outcome !== 'rejected') this.problemsOfCurrent = problems;
      if (outcome !== 'nothing' || problems.length > 0) {
        this.log[outcome === 'rejected' ? 'error' : 'info'](
          {
            version: desired.version,
            trigger,
            outcome,
            reasons: reasons.map((r) => r.text),
            problems: problems.map((p) => `${p.where}: ${p.message}`),
            error: error?.message,
            duration_ms: result.durationMs,
          },
          `${trigger}: ${outcome}`,
        );
      }
      return result;
    };

    let sanitized;
    try {
      // The agent applies its own proxymgr.yml's service_options: a control plane of another version (or a
      // compromised one) cannot get past them.
      sanitized = sanitizeState(desired, this.lastGood, this.opts.config.serviceOptions);
    } catch (err) {
      if (!(err instanceof StateError)) throw err;
      this.counters.rejected++;
      this.record(trigger, 'rejected', err.message, 'invalid input');
      return done('rejected', [], [], err.problems, err);
    }
    const problems = [...sanitized.problems];
    if (!this.orphanChecked) {
      // Before the first bind: a HAProxy left by the previous agent holds every port. Take it over.
      this.orphanChecked = true;
      await this.takeOver(sanitized.state);
    }
    const reject = (err: unknown, reasons: readonly Reason[]): ApplyResult => {
      const error = this.asProxyMgrError(err);
      this.counters.rejected++;
      this.record(trigger, 'rejected', error.message, reasons.map((r) => r.text).join('; ') || 'rejected');
      return done('rejected', reasons, [], problems, error);
    };
    // (After the takeover: what the adopted HAProxy runs is what the servers are kept from.)
    const known = keepUnknownHosts(sanitized.state, await this.runningServers(sanitized.state), problems);
    let state = this.rejectedServices.withoutKnown(this.withSockets(known, problems), this.lastGood, problems);
    // A draining server that is desired again is simply desired (the plan readies it).
    if (trigger === 'update' && this.drains.forgetDesired(state) > 0) this.armDrainTimer();

    let actual: RuntimeState | undefined;
    let unreadable: string | undefined;
    /** Planning against the cache: services that are the very objects HAProxy runs need no look (see plan). */
    let fromCache = false;
    if (this.supervisor.running) {
      try {
        // Updates plan against the state read after the last change (saves parsing every backend's servers on
        // every host event); drift repair always reads it afresh and corrects whatever changed behind our back.
        if (trigger === 'update' && this.actualCache) {
          actual = this.actualCache;
          fromCache = true;
        } else {
          actual = await this.readActual();
          this.observe(actual, state);
        }
      } catch (err) {
        unreadable = errorMessage(err);
        this.log.warn({ err: unreadable, trigger }, 'cannot read show servers state');
      }
    }
    if (unreadable !== undefined && trigger === 'drift') return done('nothing', [], [], problems); // next round
    const planFor = (s: DesiredState): Plan =>
      unreadable !== undefined
        ? // Without the live state the runtime path is blind; the config file holds the full state, so reload it.
          {
            reloadReasons: [reason('state_unreadable', `reload: cannot read show servers state (${unreadable})`)],
            actions: [],
          }
        : plan(s, this.supervisor.running ? this.running : undefined, actual, this.holds(), fromCache);
    let p = planFor(state);
    if (p.reloadReasons.length > 0) {
      try {
        // A service HAProxy rejects keeps its previous version (or stays out) and the rest goes ahead.
        const checked = await this.checkPerService(state, problems);
        if (checked !== state) {
          state = checked;
          p = planFor(state);
        }
      } catch (err) {
        this.releaseUnusedSockets();
        return reject(err, p.reloadReasons);
      }
    }
    if (p.reloadReasons.length > 0) {
      try {
        const ran = await this.reload(state, p.reloadReasons, trigger, problems, true);
        this.lastGood = ran.state;
        return done('reload', p.reloadReasons, ran.commands, problems);
      } catch (err) {
        this.releaseUnusedSockets();
        return reject(err, p.reloadReasons);
      }
    }
    if (p.actions.length === 0) {
      if (trigger === 'update') this.scheduleConfig(state, problems);
      this.lastGood = state;
      return done('nothing', [], [], problems);
    }
    // Said before HAProxy hears of it: an agent that takes over after a kill -9 must not read these drains as an
    // operator's (haproxy.cfg and the state cache are written only within agent.write_delay_ms).
    const draining = p.actions.filter((a) => a.kind === 'drain').map((a) => `${a.backend}/${a.server}`);
    if (draining.length > 0) await this.saveDrainIds(draining);
    let commands: string[];
    try {
      commands = await this.runActions(p.actions, trigger);
    } catch (err) {
      this.actualCache = undefined; // some commands may have gone through
      const why = reason('runtime_fallback', `reload: runtime command failed (${errorMessage(err)})`);
      this.log.warn({ err: errorMessage(err) }, 'runtime API could not apply the change; falling back to a reload');
      try {
        const ran = await this.reload(state, [why], trigger, problems, false);
        this.lastGood = ran.state;
        return done('reload', [why], ran.commands, problems);
      } catch (err2) {
        this.releaseUnusedSockets();
        return reject(err2, [why]);
      }
    }
    await this.refreshActual(p.actions);
    this.running = mergeRunning(this.running!, state);
    this.noteDrains(p.actions, state);
    await this.saveDrainIds();
    this.scheduleConfig(state, problems);
    this.lastGood = state;
    if (trigger === 'drift') this.counters.driftRepairs++;
    return done(
      'runtime',
      p.actions.map((a) => reason(a.kind, a.reason)),
      commands,
      problems,
    );
  }

  /**
   * What HAProxy runs per service, for keepUnknownHosts: the last state applied, or — before anything was applied —
   * the `show servers state` of an adopted HAProxy, or the config file HAProxy last ran when none runs (read only
   * when `desired` has a service without servers that may keep some).
   */
  private async runningServers(desired: DesiredState): Promise<RunningServers | undefined> {
    // (Checked first: on the path of every host change, most states have nothing to keep.)
    if (!desired.services.some((s) => s.servers.length === 0 && s.hosts !== 'reported')) return undefined;
    if (this.lastGood) return runningServersOf(this.lastGood);
    if (!this.supervisor.running)
      return this.lastRunTrusted
        ? runningServersFromConfig(await this.previous.readFile(this.opts.config.haproxy.configPath))
        : undefined;
    try {
      return runningServersFromActual(await this.readActual());
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'cannot read what the adopted HAProxy runs; no servers to keep');
      return undefined;
    }
  }

  /** Operator overrides, and the servers draining on their way out (held in drain). */
  private holds(): Overrides {
    return this.drains.holds(this.overrideTracker.current);
  }

  /** Servers this apply set to drain (they left the desired state): their drain starts now. */
  private noteDrains(actions: readonly RuntimeAction[], desired: DesiredState): void {
    let started = false;
    for (const a of actions) {
      if (a.kind !== 'drain') continue;
      // A server HAProxy has that the agent never ran (its config was not one this agent would write, a server-state
      // file from before) drains with what HAProxy says of it: without an entry it would never be deleted, and every
      // drift check would set it to drain again.
      const live = this.actualCache?.get(a.backend)?.get(a.server);
      const def =
        this.running?.services.find((x) => x.name === a.backend)?.servers.find((v) => v.name === a.server) ??
        (live && serverFromRuntime(live));
      if (!def) continue;
      this.drains.started(
        a.backend,
        def,
        desired.services.find((x) => x.name === a.backend),
        this.clock.now(),
      );
      started = true;
    }
    if (started) this.armDrainTimer();
  }

  /**
   * Writes the ids of the servers this agent drains (and `also`, about to be drained) to the state dir, at once and
   * only when they changed: a few bytes, unlike haproxy.cfg. An agent that takes HAProxy over reads them to tell its
   * predecessor's drains from an operator's (OverrideTracker.adopted). Never throws: a failed write is logged.
   */
  private async saveDrainIds(also: readonly string[] = []): Promise<void> {
    const ids = new Set([...this.drains.ids(), ...also]);
    const text = `${JSON.stringify([...ids].sort())}\n`;
    if (text === this.drainIdsWritten) return;
    try {
      await this.writeFile(this.drainIdsFile, text);
      this.drainIdsWritten = text;
    } catch (err) {
      this.counters.errors++;
      this.log.warn(
        { file: this.drainIdsFile, err: errorMessage(err) },
        'cannot write the servers this agent drains; an agent that takes over after a kill -9 may read them as operator overrides',
      );
    }
  }

  /** Servers draining now: the ones on their way out (with their deadline), and those at weight 0 (no deadline). */
  draining(): { server: string; since?: number; deadline?: number }[] {
    const out: { server: string; since?: number; deadline?: number }[] = this.drains
      .list()
      .map((d) => ({ server: drainId(d), since: d.since, deadline: d.deadline }));
    for (const s of this.lastGood?.services ?? [])
      for (const v of s.servers) if (v.weight === 0) out.push({ server: `${s.name}/${v.name}` });
    return out;
  }

  private armDrainTimer(): void {
    this.clock.clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    const at = this.drains.nextDeadline();
    if (at === undefined || !this.lifecycle.is('running')) return;
    this.drainTimer = this.clock.setTimeout(
      () => void this.queue.pushFront(() => this.sweepDrains()),
      Math.max(20, at - this.clock.now()),
    );
    unrefTimer(this.drainTimer);
  }

  /**
   * Servers whose drain timeout passed: maint, their remaining sessions shut down, deleted (`del server`), so that
   * HAProxy's server list does not grow with churn. HAProxy refuses the deletion while connections (idle ones
   * included) remain: retried every second, at most DRAIN_DELETE_ATTEMPTS times; then the server stays in maint
   * until the next reload. Never rejects (it runs from a timer).
   */
  private async sweepDrains(): Promise<void> {
    try {
      if (!this.lifecycle.is('running')) return;
      const now = this.clock.now();
      if (!this.supervisor.running) {
        // HAProxy is (re)starting: try again in a second (not in a tight loop on a past deadline).
        for (const d of this.drains.due(now)) d.deadline = now + 1000;
        return;
      }
      let deleted = false;
      for (const d of this.drains.due(now)) {
        const id = drainId(d);
        try {
          // Each attempt from the start (all three are idempotent): HAProxy may have restarted in between and have
          // the server ready or draining again, and it deletes only a server in maint.
          await this.command(`set server ${id} state maint`, EMPTY_REPLY);
          await this.command(`shutdown sessions server ${id}`, EMPTY_REPLY);
          await this.command(`del server ${id}`, /Server deleted/);
        } catch (err) {
          d.attempts++;
          if (d.attempts < DRAIN_DELETE_ATTEMPTS) {
            d.deadline = now + 1000;
            continue;
          }
          this.drains.delete(d);
          this.log.warn(
            { server: id, err: errorMessage(err) },
            'drained server could not be deleted; it stays in maint until the next reload',
          );
          continue;
        }
        this.drains.delete(d);
        deleted = true;
        this.running = withoutServer(this.running, d.backend, d.server.name);
        const live = this.actualCache?.get(d.backend);
        if (live) {
          const rest = new Map(live);
          rest.delete(d.server.name);
          this.actualCache!.set(d.backend, rest);
        }
        this.record(
          'update',
          'runtime',
          `del server ${id}`,
          `drain of ${id} ended after ${Math.round((now - d.since) / 1000)} s: sessions shut down, server deleted`,
        );
        this.log.info({ server: id, drained_ms: now - d.since }, 'drained server deleted');
      }
      if (deleted && this.lastGood) this.configFile.schedule(this.commitRuntime(this.lastGood));
      await this.saveDrainIds(); // (only written when the set changed: deleted or given up)
    } catch (err) {
      this.counters.errors++;
      this.log.error({ err: errorMessage(err) }, 'sweeping drained servers failed; retrying');
    } finally {
      this.armDrainTimer();
    }
  }

  private async command(command: string, ok: RegExp): Promise<void> {
    const reply = (await this.runtime.command(command)).trim();
    this.counters.runtimeCommands++;
    if (!ok.test(reply)) throw new ProxyMgrError('HAPROXY_RUNTIME', `"${command}" answered: ${reply}`);
  }

  /** Operator overrides from a fresh `show servers state`; see OverrideTracker. */
  private observe(actual: RuntimeState, desired: DesiredState): void {
    for (const e of this.overrideTracker.observe(actual, desired)) this.noteOverride(e.server, e.what);
  }

  private noteOverride(id: string, what: string): void {
    this.log.info({ server: id }, `server ${id} ${what}`);
    this.record('drift', 'override', `${id} ${what}`, 'operator override');
  }

  /**
   * A HAProxy the previous agent left running (a restart, an upgrade, a kill -9) is taken over, not stopped: its
   * listening sockets are copied into the pool (pidfd_getfd), it becomes the supervisor's current process, and if
   * `desired` renders to exactly the config file it runs, the agent knows its shape, so the first apply needs no
   * reload. No port closes and no connection is cut. Only when the takeover fails is the old HAProxy stopped.
   */
  private async takeOver(desired: DesiredState): Promise<void> {
    const configPath = this.opts.config.haproxy.configPath;
    // Killed mid-reload, the previous agent may have left a newer HAProxy the pid file does not name yet (or no pid
    // file at all): take every one running our config; the newest is current, the others are soft-stopping.
    const all = this.previous.find(configPath);
    if (all.length === 0) {
      this.channels?.stopRecordedKeeper();
      return;
    }
    try {
      const held = all.map((p) => this.sockets.adoptFrom(p));
      // A soft-stopping HAProxy has closed its listeners (2.6 unbinds them on soft stop, fd@ ones included): the
      // current one is the newest that still holds one. When none does — the previous agent's last launch is gone
      // and only older generations finish their connections — none is current: they are watched and soft-stopped
      // again, and the first apply starts HAProxy (adopting one would leave nothing accepting).
      const holding = all.filter((_, i) => held[i]!.size > 0);
      if (holding.length === 0) {
        this.supervisor.adoptSoftStopping?.(all);
        this.socketsPinned = false;
        this.log.warn(
          { haproxy_pids: all },
          'the HAProxy processes the previous agent left are all soft-stopping (none holds a listener): starting one',
        );
        return;
      }
      const pid = holding.at(-1)!;
      const olderOrStopping = all.filter((p) => p !== pid);
      const sockets = [...new Set(held.flatMap((m) => [...m.values()].map((x) => x.address)))];
      const onDisk = await this.previous.readFile(configPath);
      // Every listener HAProxy runs must have been copied, or the first reload would close the ones missing.
      const listeners = [...onDisk.matchAll(/^\s*bind fd@(\d+)\s*$/gm)].map((m) => Number(m[1]));
      if (sockets.length < listeners.length)
        throw new Error(`copied ${sockets.length} of the ${listeners.length} listening sockets of HAProxy pid ${pid}`);
      this.socketsPinned = sockets.length > 0;
      const state = this.withSockets(desired, []);
      // Servers the previous agent was draining are in that config, with their drains: they go on draining (no
      // reload cuts their sessions short) when the config is exactly what this agent would write.
      const drains = this.drains.restore(onDisk, state, this.clock.now());
      // The file may be newer than the process (written, then the agent was killed before launching it): it is what
      // runs only if the process holds exactly the sockets its `# listener` lines name.
      const runsFile = sameSet(
        [...held[all.indexOf(pid)]!.values()].map((x) => x.address),
        [...parseListeners(onDisk).values()],
      );
      const same = runsFile && onDisk === this.configText(state);
      if (!same) this.drains.clear();
      // A crash restart before the first reload needs the fds of the file it runs: with the config this agent would
      // write, its own order; otherwise the sockets the file's `# listener` lines name, when the adopted processes
      // hold every one (else nothing is known to pair with the file, and the first apply reloads anyway).
      const fds = same ? this.fdsFor(state) : fileOrder(onDisk, listeners, held);
      this.supervisor.adopt(pid, fds, olderOrStopping);
      // What a crash restart starts: with the same listeners as the file, the state being applied (the cache, flushed
      // before every config write, is never older than the file: a runtime change whose config write failed is in
      // it); otherwise the file as it is, when its sockets are known.
      const paired = runsFile && (fds.length > 0 || listeners.length === 0);
      this.committed =
        paired && listenersOf(onDisk) === listenersOfState(state)
          ? () => this.configText(state)
          : paired
            ? () => onDisk
            : undefined;
      this.committedListeners = this.committed ? listenersOf(onDisk) : undefined;
      this.unpaired = this.committed === undefined && listeners.length > 0;
      if (same) {
        this.running = this.drains.withDraining(state);
        this.armDrainTimer();
      }
      this.overrideTracker.adopted(parseDrainIds(await this.previous.readFile(this.drainIdsFile)));
      const noChannel = await this.channels?.recover(pid);
      if (noChannel !== undefined)
        this.log.warn(
          { haproxy_pid: pid, reason: noChannel },
          'no admin channel to the adopted HAProxy: reads go to the read-only socket, the first change reloads it',
        );
      this.log.info(
        {
          haproxy_pid: pid,
          also_running: olderOrStopping,
          sockets,
          config_matches: same,
          draining: same ? drains : 0,
        },
        'took over the HAProxy the previous agent left running, with its listening sockets',
      );
    } catch (err) {
      this.log.error(
        { haproxy_pids: all, err: errorMessage(err) },
        'cannot take over the running HAProxy; stopping it and binding its ports again (connections in flight on it are cut)',
      );
      this.socketsPinned = false;
      this.sockets.closeAll();
      for (const p of all) await this.previous.stop(p);
      this.channels?.stopRecordedKeeper();
    }
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
      await this.configFile.flush();
      this.supervisor.handOver();
      this.channels?.release(); // its keeper stays, for the next agent
    })();
    return this.handingOver;
  }

  private withSockets(state: DesiredState, problems: StateProblem[]): DesiredState {
    this.awaitingBind.clear();
    const wanted = new Set(state.services.map((s) => socketKey(s.bindAddress, s.port)));
    let released = false;
    const services = state.services.filter((s) => {
      try {
        this.sockets.acquire(s.bindAddress, s.port);
        return true;
      } catch (first) {
        let err = first;
        if (this.blockedByUnwanted(s, err, wanted)) {
          this.awaitingBind.add(socketKey(s.bindAddress, s.port));
          return true;
        }
        if (!released && errnoOf(err) === 'EADDRINUSE') {
          // A socket of ours that nothing runs on may be in the way (one kept for a check, or left by a version
          // that never ran): closed, the port may be free.
          released = true;
          this.releaseUnusedSockets(wanted);
          try {
            this.sockets.acquire(s.bindAddress, s.port);
            return true;
          } catch (again) {
            err = again;
          }
        }
        // (A port taken for a moment: retried with the held state.)
        problems.push({ service: s.name, where: `service ${s.name}`, message: errorMessage(err), transient: true });
        return false;
      }
    });
    return services.length === state.services.length ? state : { ...state, services };
  }

  /**
   * Linux refuses to bind 127.0.0.1:P while 0.0.0.0:P is bound (and the reverse). When the socket in the way is one
   * of ours that the new state no longer wants (a bind_address change on the same port), the new one is bound
   * inside the reload, once the old one is closed (vacate).
   */
  private blockedByUnwanted(s: Service, err: unknown, wanted: ReadonlySet<string>): boolean {
    if (errnoOf(err) !== 'EADDRINUSE') return false;
    return (this.running?.services ?? []).some(
      (r) => r.port === s.port && !wanted.has(socketKey(r.bindAddress, r.port)),
    );
  }

  /**
   * The fds of the state's services in listen order. For `haproxy -c`, a service whose new address is not bound yet
   * (awaitingBind) is checked on the old socket of its port: HAProxy checks that `fd@N` is a listening socket.
   */
  private fdsFor(state: DesiredState, forCheck = false): number[] {
    return listenOrder(state).map((s) => {
      if (forCheck && this.awaitingBind.has(socketKey(s.bindAddress, s.port))) {
        const old = (this.running?.services ?? []).find((r) => r.port === s.port && r.bindAddress !== s.bindAddress);
        if (old) return this.sockets.acquire(old.bindAddress, old.port);
      }
      return this.sockets.acquire(s.bindAddress, s.port);
    });
  }

  /**
   * Services with a bind address change on the same port (see blockedByUnwanted): HAProxy is first reloaded without
   * them, so the old process soft-stops and closes its copies of their old sockets, the agent closes its own, and
   * the new addresses are bound; the caller then reloads with everything. For the services that move, the port is
   * closed between the two reloads, and connections still waiting in an old socket's backlog are reset: the price
   * of an operation Linux does not allow otherwise (the other services are served throughout). A new address that
   * still cannot be bound keeps the service at its previous version (reported), or leaves it out.
   */
  private async vacate(
    state: DesiredState,
    problems: StateProblem[],
    trigger: 'update' | 'drift',
  ): Promise<DesiredState> {
    const moving = state.services.filter((s) => this.awaitingBind.has(socketKey(s.bindAddress, s.port)));
    if (moving.length === 0) return state;
    const names = moving.map((s) => s.name).join(', ');
    const interim: DesiredState = { ...state, services: state.services.filter((s) => !moving.includes(s)) };
    if (!this.supervisor.running && this.committed) {
      // HAProxy is being (re)started on the committed fds, the old sockets among them: closing one now would leave a
      // crash restart without it. The moving services wait (kept or left out) and the retry of the state moves them.
      return this.withoutMoving(state, moving, problems, 'HAProxy is restarting on the sockets of the old address');
    }
    if (this.supervisor.running) {
      await this.saveServerState();
      const pid = await this.launch(this.configText(interim), this.fdsFor(interim));
      this.counters.reloads++;
      this.running = this.drains.withDraining(interim);
      this.record(
        trigger,
        'reload',
        `haproxy pid ${pid}`,
        `reload: without ${names} first, so that the old sockets of their ports close`,
      );
    }
    this.sockets.release(new Set(interim.services.map((s) => socketKey(s.bindAddress, s.port))));
    // The old process closes its listeners as soon as it gets the soft-stop signal; give it a moment.
    const closedAt = this.clock.now();
    const deadline = closedAt + 2000;
    const previous = new Map((this.lastGood?.services ?? []).map((s) => [s.name, s]));
    const services = [...interim.services];
    for (const s of moving) {
      for (;;) {
        try {
          this.sockets.acquire(s.bindAddress, s.port);
          this.log.info(
            { service: s.name, address: `${s.bindAddress}:${s.port}`, waited_ms: this.clock.now() - closedAt },
            'listening on the new address',
          );
          services.push(s);
          break;
        } catch (err) {
          if (this.clock.now() < deadline) {
            await new Promise((r) => this.clock.setTimeout(() => r(undefined), 20));
            continue;
          }
          const prev = previous.get(s.name);
          let kept = false;
          if (prev && !services.some((o) => o.port === prev.port)) {
            try {
              this.sockets.acquire(prev.bindAddress, prev.port);
              services.push(prev);
              kept = true;
            } catch {
              // its old address is gone too
            }
          }
          problems.push({
            service: s.name,
            where: `service ${s.name}`,
            message: `${errorMessage(err)} (after closing the old socket); ${kept ? 'kept its previous version' : 'left out'}`,
            transient: true,
          });
          break;
        }
      }
    }
    this.awaitingBind.clear();
    return { ...state, services: services.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) };
  }

  /** `state` with each moving service at its previous version (when its port is free for it) or left out. */
  private withoutMoving(
    state: DesiredState,
    moving: readonly Service[],
    problems: StateProblem[],
    why: string,
  ): DesiredState {
    const previous = new Map((this.lastGood?.services ?? []).map((s) => [s.name, s]));
    const services = state.services.filter((s) => !moving.includes(s));
    for (const s of moving) {
      const prev = previous.get(s.name);
      const kept = prev !== undefined && !services.some((o) => o.port === prev.port);
      if (kept) services.push(prev);
      problems.push({
        service: s.name,
        where: `service ${s.name}`,
        message: `${why}; ${kept ? 'kept its previous version' : 'left out'} for now`,
        transient: true,
      });
    }
    this.awaitingBind.clear();
    return { ...state, services: services.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)) };
  }

  /**
   * `haproxy -c` on the whole candidate. When every ALERT points at services, those services fall back to
   * their previous version (or are left out when new), are reported as problems, and the rest is checked again;
   * otherwise the whole version is rejected (see RejectedServices).
   */
  private async checkPerService(state: DesiredState, problems: StateProblem[]): Promise<DesiredState> {
    let current = state;
    for (let round = 1; ; round++) {
      try {
        await this.check(current);
        return current;
      } catch (err) {
        if (!(err instanceof HaproxyConfigError) || round >= 3) throw err;
        current = this.rejectedServices.fallBack(current, this.lastGood, err, problems);
        this.log.warn(
          { services: err.services, err: err.message },
          'haproxy -c rejected these services; the rest goes ahead',
        );
      }
    }
  }

  /** `haproxy -c` on the state's config, with the real fds (HAProxy checks `bind fd@N` even then). */
  private async check(state: DesiredState): Promise<void> {
    const { haproxy } = this.opts.config;
    // The config a reload would start: with the servers still draining (see reload).
    const text = this.render(this.drains.withDraining(state));
    const candidate = `${haproxy.configPath}.candidate`;
    await this.write(candidate, text);
    try {
      await this.checkConfig(haproxy.binary, candidate, text, this.fdsFor(state, true));
    } finally {
      await fsp.rm(candidate, { force: true }).catch(() => undefined);
    }
  }

  /** haproxy.cfg for `state`: with the servers still draining, and their drains for the next agent (Drains.trailer). */
  private configText(state: DesiredState): string {
    return this.render(this.drains.withDraining(state)) + this.drains.trailer();
  }

  private render(state: DesiredState): string {
    const { haproxy, agent } = this.opts.config;
    return renderHaproxyConfig(state, {
      socketPath: haproxy.socketPath,
      ...(haproxy.socketLevel ? { socketLevel: haproxy.socketLevel } : {}),
      serverStateFile: this.serverStateFile,
      hardStopAfterMs: agent.hardStopAfterMs,
      ...this.identity,
    });
  }

  /**
   * haproxy.cfg for a state that runs through the runtime API: written within `agent.write_delay_ms`, once for any
   * number of changes in between (rendering 2,000 services and fsyncing the file cost more than the change itself).
   * A write that failed is reported with every apply until one succeeds (it is retried meanwhile).
   */
  private scheduleConfig(state: DesiredState, problems: StateProblem[]): void {
    this.configFile.schedule(this.commitRuntime(state));
    if (this.configFile.failure !== undefined) {
      problems.push({
        where: 'haproxy.cfg',
        message: `cannot write ${this.configFile.file}: ${this.configFile.failure}; HAProxy runs the change, a crash restart before the write succeeds would start from the previous file (drift repair then catches up)`,
      });
    }
  }

  /** Writes what is pending of haproxy.cfg now (tests, stop, hand-over); resolves once written or failed. */
  flushFiles(): Promise<void> {
    return this.configFile.flush();
  }

  /** haproxy.cfg before a start or reload: at once, replacing whatever was pending (see write for errors). */
  /**
   * Starts or reloads HAProxy on `text` and `fds`, which become the committed pair only once it runs. A launch that
   * fails puts the committed config back at once: HAProxy still runs it on the committed fds, and a crash restart
   * (or the next agent's takeover) must read the config those fds belong to — a new file beside old fds fails on
   * `fd@k` or, with as many listeners in another order, cross-wires ports to the wrong sections.
   */
  private async launch(text: string, fds: readonly number[]): Promise<number> {
    let pid: number;
    try {
      pid = await this.supervisor.startOrReload(fds, () => this.writeConfigNow(text));
    } catch (err) {
      await this.restoreCommitted().catch((e: unknown) =>
        this.log.error({ err: errorMessage(e) }, 'cannot put the running config back after a failed launch'),
      );
      throw err;
    }
    this.committed = () => text;
    this.committedListeners = listenersOf(text);
    this.unpaired = false;
    return pid;
  }

  /**
   * The config text of `state` for a runtime change: it becomes the committed config (the servers of now) only when
   * its listeners are the ones the committed fds were launched with; otherwise the committed config stays as it is
   * (the file may then hold a shape that never ran: a crash restart writes the committed one back first).
   */
  private commitRuntime(state: DesiredState): () => string {
    const text = () => this.configText(state);
    if (listenersOfState(state) === this.committedListeners) this.committed = text;
    return text;
  }

  /** Writes the config HAProxy runs on the supervisor's fds (before a crash restart, after a failed launch). */
  private async restoreCommitted(): Promise<void> {
    if (this.committed) return this.writeConfigNow(this.committed());
    // Nothing launched yet, or an adopted HAProxy whose file could not be paired with sockets: a restart would start
    // a file whose `fd@k` are not the sockets it gets. It waits for the next apply, which launches a known pair.
    if (this.unpaired)
      throw new ProxyMgrError('HAPROXY_START_FAILED', 'no committed config and fds to restart HAProxy with');
    await this.configFile.flush();
  }

  private async writeConfigNow(content: string): Promise<void> {
    const file = this.configFile.file;
    await this.toIoError(file, this.configFile.writeNow(content));
  }

  /** The file writer; a failure (ENOSPC, EROFS, …) is counted and becomes IO_FAILED naming the file. */
  private async write(file: string, content: string): Promise<void> {
    await this.toIoError(file, this.writeFile(file, content));
  }

  private async toIoError(file: string, writing: Promise<unknown>): Promise<void> {
    try {
      await writing;
    } catch (err) {
      this.counters.errors++;
      this.log.error({ file, err: errorMessage(err) }, 'cannot write a file of the state dir');
      throw new ProxyMgrError('IO_FAILED', `cannot write ${file}: ${errorMessage(err)}`, { cause: err });
    }
  }

  /** Health and admin states survive a reload through the server-state file (see saveServerState). */
  private async saveServerState(): Promise<void> {
    const r = await saveServerState(
      this.serverStateFile,
      () => this.runtime.command('show servers state'),
      this.writeFile,
    );
    if (r.saved) return;
    // The new HAProxy's first states come from the config (or, not removed, an older save): not an operator's.
    this.overrideTracker.restarted();
    this.log.warn(
      { err: r.error, file: this.serverStateFile, removed: r.removed },
      r.removed
        ? 'cannot save server state before reload: the older file is removed, HAProxy starts from the config'
        : 'cannot save server state before reload, nor remove the older file: HAProxy loads it; no override is read from it',
    );
  }

  /**
   * Validates (unless `checked`), writes and (re)starts HAProxy on the state, then fixes server states at runtime.
   * Resolves with the state that runs (see vacate). Once the new HAProxy answers, the reload stands: a failing
   * runtime pass after it is a warning in `problems` (drift repair makes up for it), not a rejection of a config
   * that is running.
   */
  private async reload(
    state: DesiredState,
    reasons: readonly Reason[],
    trigger: 'update' | 'drift',
    problems: StateProblem[],
    checked: boolean,
  ): Promise<{ state: DesiredState; commands: string[] }> {
    if (!checked) await this.check(state);
    state = await this.vacate(state, problems, trigger);
    // Draining servers stay in the config (and in drain) until their deadline: a reload does not cut them short.
    const full = this.drains.withDraining(state);
    const text = this.configText(state);
    const fds = this.fdsFor(state);
    if (this.supervisor.running) {
      await this.saveServerState();
    } else if (!existsSync(this.serverStateFile)) {
      // An empty state file (format version line only) spares HAProxy's "can't open" warning at first start.
      await this.write(this.serverStateFile, '1\n');
    }
    const pid = await this.launch(text, fds);
    this.counters.reloads++;
    this.running = full;
    for (const r of reasons) this.record(trigger, 'reload', `haproxy pid ${pid}`, r.text);
    this.releaseUnusedSockets();
    try {
      // Saved states may say maint for a server that is desired again (or not say drain for one draining): one
      // runtime pass right after.
      const actual = await this.readActual();
      this.observe(actual, state);
      const after = plan(full, this.running, actual, this.holds());
      if (after.reloadReasons.length > 0 || after.actions.length === 0) return { state, commands: [] };
      const sent = await this.runActions(after.actions, trigger);
      await this.refreshActual(after.actions);
      this.noteDrains(after.actions, state);
      await this.saveDrainIds();
      return { state, commands: sent };
    } catch (err) {
      this.actualCache = undefined;
      const message = `runtime pass after the reload failed (${errorMessage(err)}); HAProxy runs the new config, drift repair finishes the server states`;
      this.log.warn({ err: errorMessage(err) }, message);
      problems.push({ where: 'haproxy', message });
      return { state, commands: [] };
    }
  }

  private async readActual(): Promise<RuntimeState> {
    // The previous read stays readable while this one is in flight (serverCounts feeds /metrics and the traffic
    // gates: cleared here, a scrape during every drift check read 0 servers); a failed read drops it.
    let actual: RuntimeState;
    try {
      actual = await this.runtime.serversState();
    } catch (err) {
      this.actualCache = undefined;
      throw err;
    }
    this.actualCache = new Map(actual);
    return actual;
  }

  /** Re-reads the backends the actions touched into the cache (or drops the cache when that fails). */
  private async refreshActual(actions: readonly RuntimeAction[]): Promise<void> {
    const cache = this.actualCache;
    if (!cache) return;
    try {
      for (const backend of new Set(actions.map((a) => a.backend))) {
        cache.set(backend, (await this.runtime.serversState(backend)).get(backend) ?? new Map());
      }
    } catch (err) {
      this.actualCache = undefined;
      this.log.warn({ err: errorMessage(err) }, 'cannot re-read show servers state; the next apply reads it in full');
    }
  }

  /** Closes the sockets no running service uses (and none in `alsoKeep`). */
  private releaseUnusedSockets(alsoKeep: ReadonlySet<string> = new Set()): void {
    // Sockets copied from an adopted HAProxy stay until HAProxy runs a config this agent knows: closing them after a
    // refused first apply would leave the next apply unable to bind its own ports.
    if (this.running === undefined && this.socketsPinned) return;
    const keep = new Set([...alsoKeep, ...(this.running?.services ?? []).map((s) => socketKey(s.bindAddress, s.port))]);
    const closed = this.sockets.release(keep);
    if (closed.length > 0) this.log.info({ closed }, 'closed listening sockets no service uses');
  }

  private async runActions(actions: readonly RuntimeAction[], trigger: 'update' | 'drift'): Promise<string[]> {
    const sent: string[] = [];
    for (const a of actions) {
      const reply = (await this.runtime.command(a.command)).trim();
      this.counters.runtimeCommands++;
      if (!a.ok.test(reply)) throw new ProxyMgrError('HAPROXY_RUNTIME', `"${a.command}" answered: ${reply}`);
      this.overrideTracker.applied(a);
      sent.push(a.command);
      this.record(trigger, 'runtime', a.command, a.reason);
    }
    return sent;
  }

  private record(trigger: 'update' | 'drift', kind: ActionRecord['kind'], detail: string, reason: string): void {
    this.recent.push({
      at: new Date(this.clock.now()).toISOString(),
      trigger,
      kind,
      detail,
      reason: trigger === 'drift' ? `drift: ${reason}` : reason,
    });
    if (this.recent.length > 200) this.recent.splice(0, this.recent.length - 200);
  }
}

/**
 * After runtime changes: the desired servers, plus removed ones HAProxy still holds (in maint). A service that is
 * the same object as before, or lost no server, stays the desired object itself: identity is what lets the next
 * plan skip it (work per change proportional to the change).
 */
/** How often deleting a drained server is tried (once a second) before it is left in maint. */
const DRAIN_DELETE_ATTEMPTS = 30;
const EMPTY_REPLY = /^\s*$/;

/** `running` without one server (deleted at runtime). */
function withoutServer(running: Running | undefined, backend: string, server: string): Running | undefined {
  if (!running) return running;
  return {
    ...running,
    services: running.services.map((s) =>
      s.name === backend ? { ...s, servers: s.servers.filter((v) => v.name !== server) } : s,
    ),
  };
}

function mergeRunning(running: Running, state: DesiredState): Running {
  const byName = new Map(running.services.map((s) => [s.name, s]));
  return {
    ...running,
    services: state.services.map((s) => {
      const was = byName.get(s.name);
      if (!was || was === s) return s;
      const wanted = new Set(s.servers.map((v) => v.name));
      const held = was.servers.filter((v) => !wanted.has(v.name));
      return held.length === 0 ? s : { ...s, servers: [...s.servers, ...held] };
    }),
  };
}

/** The journal saveDrainIds writes: server ids ("backend/server"); anything else in it is ignored. */
function parseDrainIds(text: string): Set<string> {
  try {
    const v: unknown = JSON.parse(text);
    return new Set(Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x.length <= 600) : []);
  } catch {
    return new Set();
  }
}

/**
 * The fds for a config file that names `listeners` (its `fd@k`, k from 4 on): for each k, the pool's copy of the
 * socket its `# listener fd@k address:port` line names, or [] when a line is missing or no adopted process holds
 * that socket. By address, not by the fd numbers the adopted process holds them at: the file may be newer than the
 * process (an agent killed between writing it and launching it), and pairing by number would cross-wire ports.
 */
function fileOrder(
  config: string,
  listeners: readonly number[],
  held: readonly ReadonlyMap<number, AdoptedSocket>[],
): number[] {
  const named = parseListeners(config);
  const byAddress = new Map(held.flatMap((m) => [...m.values()].map((x) => [x.address, x.fd] as const)));
  const fds: number[] = [];
  for (let k = FIRST_LISTEN_FD; k < FIRST_LISTEN_FD + listeners.length; k++) {
    const fd = listeners.includes(k) ? byAddress.get(named.get(k) ?? '') : undefined;
    if (fd === undefined) return [];
    fds.push(fd);
  }
  return fds;
}

/** The errno code a SOCKET_BIND_FAILED carries as its cause ('' when none). */
function errnoOf(err: unknown): string {
  return (err as { cause?: { code?: string } }).cause?.code ?? '';
}

/** A config's listeners (its `# listener fd@k address:port` lines, with the section names after them), as one key. */
function listenersOf(config: string): string {
  return [...config.matchAll(/^# listener fd@\d+ \S+\nlisten \S+$/gm)].map((m) => m[0]).join('\n');
}

/** listenersOf the config `state` renders to, without rendering it. */
function listenersOfState(state: DesiredState): string {
  return listenOrder(state)
    .map((s, i) => `# listener fd@${FIRST_LISTEN_FD + i} ${listenerAddress(s)}\nlisten ${s.name}`)
    .join('\n');
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const x = new Set(a);
  return x.size === new Set(b).size && b.every((v) => x.has(v));
}
