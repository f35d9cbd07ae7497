import { existsSync, promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { ProxyMgrConfig } from '../common/config';
import { errorMessage, ProxyMgrError, StateError, StateProblem } from '../common/errors';
import { writeFileAtomic } from '../common/fs';
import { Logger } from '../common/log';
import { DesiredState } from '../common/types';
import { sanitizeState } from '../common/validate-state';
import { checkConfig } from './haproxy/check';
import { findOrphan, stopOrphan } from './haproxy/orphan';
import { HaproxyIdentity, resolveHaproxyIdentity } from './haproxy/privileges';
import { HaproxySupervisor } from './haproxy/process';
import { listenOrder, renderHaproxyConfig } from './haproxy/render';
import { RuntimeApi, StatsSocketClient } from './haproxy/runtime';
import { RuntimeServer, RuntimeState } from './haproxy/servers-state';
import { SocketPool, socketKey } from './haproxy/sockets';
import { plan, Running, RuntimeAction } from './plan';

export type Outcome = 'nothing' | 'runtime' | 'reload' | 'rejected';

export interface ApplyResult {
  readonly version: string;
  readonly outcome: Outcome;
  /** Reload reasons, or the reasons of the runtime commands sent. */
  readonly reasons: readonly string[];
  readonly commands: readonly string[];
  /** Parts of the input that were rejected (the rest was applied). */
  readonly problems: readonly StateProblem[];
  /** Set when the whole state was rejected; the previous one keeps running. */
  readonly error?: ProxyMgrError;
  readonly durationMs: number;
}

export interface ActionRecord {
  readonly at: string;
  readonly trigger: 'update' | 'drift';
  readonly kind: 'reload' | 'runtime' | 'rejected';
  readonly detail: string;
  readonly reason: string;
}

export interface AgentOptions {
  readonly config: ProxyMgrConfig;
  readonly log: Logger;
  readonly runtime?: RuntimeApi;
}

/**
 * The agent's core: takes desired states, runs them on the local HAProxy — runtime API first, a seamless reload
 * only when the shape changes — and repairs drift. Applies are serialized; the last good state keeps running
 * whenever a new one is rejected.
 */
export class Agent {
  readonly supervisor: HaproxySupervisor;
  private readonly runtime: RuntimeApi;
  private readonly sockets: SocketPool;
  private readonly log: Logger;
  private readonly serverStateFile: string;
  private readonly pidFile: string;
  private readonly identity: HaproxyIdentity;
  private orphanChecked = false;
  private running: Running | undefined;
  private lastGood: DesiredState | undefined;
  /** `show servers state` as of the last change this agent made; see applyNow. */
  private actualCache: Map<string, ReadonlyMap<string, RuntimeServer>> | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private driftTimer: NodeJS.Timeout | undefined;
  private readonly recent: ActionRecord[] = [];
  readonly counters = { reloads: 0, runtimeCommands: 0, rejected: 0, driftRepairs: 0 };

  constructor(private readonly opts: AgentOptions) {
    const { haproxy, agent } = opts.config;
    this.log = opts.log.child({ component: 'agent' });
    this.runtime = opts.runtime ?? new StatsSocketClient(haproxy.socketPath);
    this.sockets = new SocketPool(agent.backlog);
    this.serverStateFile = path.join(agent.stateDir, 'server-state');
    this.pidFile = path.join(agent.stateDir, 'haproxy.pid');
    this.identity = resolveHaproxyIdentity(opts.config, this.log);
    this.supervisor = new HaproxySupervisor({
      binary: haproxy.binary,
      configPath: haproxy.configPath,
      runtime: this.runtime,
      log: opts.log.child({ component: 'haproxy' }),
      pidFile: this.pidFile,
    });
    this.supervisor.on('restarted', () => {
      this.actualCache = undefined;
      void this.repairDrift();
    });
  }

  /** The state applied last (what runs), if any. */
  get current(): DesiredState | undefined {
    return this.lastGood;
  }

  /** Recent reloads and runtime commands with their reasons, newest last. */
  recentActions(): readonly ActionRecord[] {
    return this.recent;
  }

  /** Applies a desired state (serialized with every other apply and drift repair). */
  apply(desired: DesiredState): Promise<ApplyResult> {
    return this.serialize(() => this.applyNow(desired, 'update'));
  }

  /** Starts periodic drift repair: compares `show servers state` with the desired state and fixes differences. */
  startDriftRepair(): void {
    const every = this.opts.config.agent.driftCheckIntervalMs;
    this.driftTimer = setInterval(() => void this.repairDrift(), every);
    this.driftTimer.unref();
  }

  /** One drift check now; resolves with what it did. */
  repairDrift(): Promise<ApplyResult | undefined> {
    return this.serialize(async () => (this.lastGood ? this.applyNow(this.lastGood, 'drift') : undefined));
  }

  async stop(): Promise<void> {
    clearInterval(this.driftTimer);
    await this.queue.catch(() => undefined);
    await this.supervisor.stop();
    this.sockets.closeAll();
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async applyNow(desired: DesiredState, trigger: 'update' | 'drift'): Promise<ApplyResult> {
    const started = Date.now();
    const done = (outcome: Outcome, reasons: string[], commands: string[], problems: readonly StateProblem[], error?: ProxyMgrError): ApplyResult => {
      const result = { version: desired.version, outcome, reasons, commands, problems, error, durationMs: Date.now() - started };
      if (outcome !== 'nothing' || problems.length > 0) {
        this.log[outcome === 'rejected' ? 'error' : 'info'](
          { version: desired.version, trigger, outcome, reasons, problems: problems.map((p) => `${p.where}: ${p.message}`), error: error?.message, duration_ms: result.durationMs },
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
    const state = this.withSockets(sanitized.state, problems);

    let actual: RuntimeState | undefined;
    let unreadable: string | undefined;
    if (this.supervisor.running) {
      try {
        // Updates plan against the state read after the last change (saves parsing every backend's servers on
        // every host event); drift repair always reads it afresh and corrects whatever changed behind our back.
        actual = trigger === 'update' && this.actualCache ? this.actualCache : await this.readActual();
      } catch (err) {
        unreadable = errorMessage(err);
        this.log.warn({ err: unreadable, trigger }, 'cannot read show servers state');
      }
    }
    if (unreadable !== undefined && trigger === 'drift') return done('nothing', [], [], problems); // next round
    const p =
      unreadable !== undefined
        ? // Without the live state the runtime path is blind; the config file holds the full state, so reload it.
          { reloadReasons: [`reload: cannot read show servers state (${unreadable})`], actions: [] }
        : plan(state, this.supervisor.running ? this.running : undefined, actual);
    if (p.reloadReasons.length > 0) {
      try {
        const commands = await this.reload(state, p.reloadReasons, trigger);
        this.lastGood = state;
        return done('reload', [...p.reloadReasons], commands, problems);
      } catch (err) {
        if (!(err instanceof ProxyMgrError)) throw err;
        this.counters.rejected++;
        this.record(trigger, 'rejected', err.message, p.reloadReasons.join('; '));
        this.releaseUnusedSockets();
        return done('rejected', [...p.reloadReasons], [], problems, err);
      }
    }
    if (p.actions.length === 0) {
      this.lastGood = state;
      if (trigger === 'update') await this.writeConfig(state);
      return done('nothing', [], [], problems);
    }
    try {
      const commands = await this.runActions(p.actions, trigger);
      await this.refreshActual(p.actions);
      this.running = mergeRunning(this.running!, state);
      await this.writeConfig(state);
      this.lastGood = state;
      if (trigger === 'drift') this.counters.driftRepairs++;
      return done('runtime', p.actions.map((a) => a.reason), commands, problems);
    } catch (err) {
      this.actualCache = undefined; // some commands may have gone through
      const reason = `reload: runtime command failed (${errorMessage(err)})`;
      this.log.warn({ err: errorMessage(err) }, 'runtime API could not apply the change; falling back to a reload');
      try {
        const commands = await this.reload(state, [reason], trigger);
        this.lastGood = state;
        return done('reload', [reason], commands, problems);
      } catch (err2) {
        if (!(err2 instanceof ProxyMgrError)) throw err2;
        this.counters.rejected++;
        return done('rejected', [reason], [], problems, err2);
      }
    }
  }

  /** Opens (or reuses) the socket of every service; a service whose socket cannot be had is left out. */
  /**
   * A HAProxy the previous agent left running (a restart, an upgrade, a kill -9) is taken over, not stopped: its
   * listening sockets are copied into the pool (pidfd_getfd), it becomes the supervisor's current process, and if
   * `desired` renders to exactly the config file it runs, the agent knows its shape, so the first apply needs no
   * reload. No port closes and no connection is cut. Only when the takeover fails is the old HAProxy stopped.
   */
  private async takeOver(desired: DesiredState): Promise<void> {
    const configPath = this.opts.config.haproxy.configPath;
    const pid = await findOrphan(this.pidFile, configPath);
    if (pid === undefined) return;
    try {
      const sockets = this.sockets.adoptFrom(pid);
      const state = this.withSockets(desired, []);
      const onDisk = await fsp.readFile(configPath, 'utf8').catch(() => '');
      const same = onDisk === this.render(state);
      this.supervisor.adopt(pid, same ? this.fdsFor(state) : []);
      if (same) this.running = state;
      this.log.info({ haproxy_pid: pid, sockets, config_matches: same }, 'took over the HAProxy the previous agent left running, with its listening sockets');
    } catch (err) {
      this.log.warn({ haproxy_pid: pid, err: errorMessage(err) }, 'cannot take over the running HAProxy');
      this.sockets.closeAll();
      await stopOrphan(pid, this.log);
    }
  }

  /** Hands HAProxy and its sockets over to the next agent (see HaproxySupervisor.handOver): nothing stops. */
  async handOver(): Promise<void> {
    clearInterval(this.driftTimer);
    await this.queue.catch(() => undefined);
    this.supervisor.handOver();
  }

  private withSockets(state: DesiredState, problems: StateProblem[]): DesiredState {
    const services = state.services.filter((s) => {
      try {
        this.sockets.acquire(s.bindAddress, s.port);
        return true;
      } catch (err) {
        problems.push({ service: s.name, where: `service ${s.name}`, message: errorMessage(err) });
        return false;
      }
    });
    return services.length === state.services.length ? state : { ...state, services };
  }

  private fdsFor(state: DesiredState): number[] {
    return listenOrder(state).map((s) => this.sockets.acquire(s.bindAddress, s.port));
  }

  private render(state: DesiredState): string {
    const { haproxy, agent } = this.opts.config;
    return renderHaproxyConfig(state, { socketPath: haproxy.socketPath, serverStateFile: this.serverStateFile, hardStopAfterMs: agent.hardStopAfterMs, ...this.identity });
  }

  private async writeConfig(state: DesiredState): Promise<void> {
    await writeFileAtomic(this.opts.config.haproxy.configPath, this.render(state));
  }

  /** Validates, writes and (re)starts HAProxy on the state, then fixes server states at runtime. */
  private async reload(state: DesiredState, reasons: readonly string[], trigger: 'update' | 'drift'): Promise<string[]> {
    const { haproxy } = this.opts.config;
    const text = this.render(state);
    const fds = this.fdsFor(state);
    const candidate = `${haproxy.configPath}.candidate`;
    await fsp.mkdir(path.dirname(candidate), { recursive: true });
    await fsp.writeFile(candidate, text, { mode: 0o600 });
    try {
      await checkConfig(haproxy.binary, candidate, text, fds);
    } finally {
      await fsp.rm(candidate, { force: true });
    }
    if (this.supervisor.running) {
      // Health and admin states survive the reload through the server-state file.
      try {
        await writeFileAtomic(this.serverStateFile, await this.runtime.command('show servers state'));
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, 'cannot save server state before reload');
      }
    } else if (!existsSync(this.serverStateFile)) {
      // An empty state file (format version line only) spares HAProxy's "can't open" warning at first start.
      await writeFileAtomic(this.serverStateFile, '1\n');
    }
    await writeFileAtomic(haproxy.configPath, text);
    const pid = await this.supervisor.startOrReload(fds);
    this.counters.reloads++;
    this.running = state;
    for (const reason of reasons) this.record(trigger, 'reload', `haproxy pid ${pid}`, reason);
    this.releaseUnusedSockets();
    // Saved states may say maint for a server that is desired again: one runtime pass right after.
    const after = plan(state, this.running, await this.readActual());
    if (after.reloadReasons.length > 0 || after.actions.length === 0) return [];
    const sent = await this.runActions(after.actions, trigger);
    await this.refreshActual(after.actions);
    return sent;
  }

  private async readActual(): Promise<RuntimeState> {
    this.actualCache = undefined;
    const actual = await this.runtime.serversState();
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

  private releaseUnusedSockets(): void {
    const keep = new Set((this.running?.services ?? []).map((s) => socketKey(s.bindAddress, s.port)));
    const closed = this.sockets.release(keep);
    if (closed.length > 0) this.log.info({ closed }, 'closed listening sockets no service uses');
  }

  private async runActions(actions: readonly RuntimeAction[], trigger: 'update' | 'drift'): Promise<string[]> {
    const sent: string[] = [];
    for (const a of actions) {
      const reply = (await this.runtime.command(a.command)).trim();
      this.counters.runtimeCommands++;
      if (!a.ok.test(reply)) throw new ProxyMgrError('HAPROXY_RUNTIME', `"${a.command}" answered: ${reply}`);
      sent.push(a.command);
      this.record(trigger, 'runtime', a.command, a.reason);
    }
    return sent;
  }

  private record(trigger: 'update' | 'drift', kind: ActionRecord['kind'], detail: string, reason: string): void {
    this.recent.push({ at: new Date().toISOString(), trigger, kind, detail, reason: trigger === 'drift' ? `drift: ${reason}` : reason });
    if (this.recent.length > 200) this.recent.splice(0, this.recent.length - 200);
  }
}

/** After runtime changes: the desired servers, plus removed ones HAProxy still holds (in maint). */
function mergeRunning(running: Running, state: DesiredState): Running {
  const byName = new Map(running.services.map((s) => [s.name, s]));
  return {
    ...running,
    services: state.services.map((s) => {
      const was = byName.get(s.name);
      const wanted = new Set(s.servers.map((v) => v.name));
      return { ...s, servers: [...s.servers, ...(was?.servers ?? []).filter((v) => !wanted.has(v.name))] };
    }),
  };
}

