/**
 * One schedule of `bench simulate`: the real Agent (with the real HaproxySupervisor) and the real Discovery, on the
 * simulated host and fleet (lib-sim-world.ts, lib-sim-fleet.ts), driven step by step on simulated time. Between
 * timers every promise chain settles (one turn of the event loop: nothing real is pending), so a seed replays
 * exactly. After every step the invariants are checked (lib-sim-invariants.ts); the first violation ends the run.
 */
import { createHash, Hash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { Agent, ApplyResult } from '../agent/agent';
import { HaproxySupervisor } from '../agent/haproxy/process';
import { replayed } from '../agent/state-cache';
import { parseConfig, ProxyMgrConfig } from '../common/config/config';
import { Logger, silentLogger } from '../common/platform/log';
import { DesiredState } from '../common/protocol/types';
import { Discovery } from '../controlplane/discovery';
import { watcherIdentity } from '../controlplane/watchers';
import { seededRandom } from './lib-common';
import { HOSTS, portOf, SERVICES, SimRegistry, svcName } from './lib-sim-fleet';
import { AgentInc, Invariants, SimView, Violation } from './lib-sim-invariants';
import { describeStep, Step } from './lib-sim-schedule';
import {
  ClockScope,
  Mutant,
  noFaults,
  SimClock,
  SimHost,
  SimRuntime,
  SimSocketPool,
  simCheck,
  simPrevious,
  simWriter,
  stopPid,
} from './lib-sim-world';

export const SIM_DIR = '/nonexistent/proxymgr-sim';
const START_MS = 1_700_000_000_000;
/** Time the faults are healed for at the end of a schedule, before the final checks. */
const HEAL_MS = 40_000;
/** Timers run at one instant (a loop of zero-delay timers) before the run counts as stuck. */
const RUNAWAY_TIMERS = 50_000;

const CONFIG_YAML = `haproxy:
  config_path: ${SIM_DIR}/haproxy.cfg
  socket_path: ${SIM_DIR}/haproxy.sock
  user: ""
  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]
service_config:
  type: zookeeper
  servers: "zk1:2181"
  path: /service_config
agent:
  state_dir: ${SIM_DIR}
  drift_check_interval_ms: 2000
  write_delay_ms: 200
  hard_stop_after_ms: 6000
  drain_timeout_ms: 3000
controlplane:
  coalesce_ms: 2
  initial_sync_timeout_ms: 3000
`;
/** The service-config ensemble: a zookeeper watcher that names no `server` follows it. */
const zkServersOf = (c: ProxyMgrConfig) =>
  c.serviceConfig?.type === 'zookeeper' ? c.serviceConfig.servers : undefined;

let parsed: ProxyMgrConfig | undefined;
export function simConfig(): ProxyMgrConfig {
  return (parsed ??= parseConfig(CONFIG_YAML, `${SIM_DIR}/proxymgr.yml`));
}

export interface RunOptions {
  readonly mutant?: Mutant;
  /** Keep the trace's lines (for a report), not only its digest. */
  readonly keepTrace?: boolean;
  /** The agent's and discovery's logger (default: silent). */
  readonly log?: Logger;
}

export interface RunResult {
  readonly seed: number;
  readonly steps: number;
  readonly digest: string;
  readonly violation?: Violation;
  readonly counts: Readonly<Record<string, number>>;
  readonly maxima: Readonly<Record<string, number>>;
  readonly trace?: readonly string[];
}

/** Thrown to end a run at its first violation. */
class Stop extends Error {}

export class Sim implements SimView {
  readonly clock = new SimClock(START_MS);
  readonly host: SimHost;
  readonly registry: SimRegistry;
  readonly inv: Invariants;
  agent: AgentInc | undefined;
  cp: { discovery: Discovery; scope: ClockScope } | undefined;
  /** The agent is down until then (a kill -9 and its restart delay). */
  private agentDue: number | undefined;
  private agents = 0;
  private readonly hash: Hash = createHash('sha1');
  readonly lines: string[] | undefined;
  readonly counts: Record<string, number> = {};
  step = 0;
  /** Per service: the last state pushed said discovery reported it empty (an affirmative empty). */
  readonly affirmedEmpty = new Map<string, boolean>();
  /**
   * The agent process's disk cache of the state it applied (agent-process.ts): written at once after a reload,
   * within write_delay_ms after other applies (lost to a kill -9 before that), applied first by the next agent.
   */
  stateCache: DesiredState | undefined;

  constructor(
    readonly seed: number,
    readonly opts: RunOptions,
  ) {
    const config = simConfig();
    const key = String(seed);
    this.lines = opts.keepTrace ? [] : undefined;
    this.host = new SimHost(
      this.clock,
      config.haproxy.configPath,
      `${SIM_DIR}/server-state`,
      key,
      config.agent.hardStopAfterMs,
      (l) => this.trace(l),
      opts.mutant ?? 'none',
    );
    const r = seededRandom(seed);
    this.registry = new SimRegistry(() => {
      const hosts = new Map<number, number>();
      for (let h = 0; h < HOSTS; h++) if (r() < 0.4) hosts.set(h, 1);
      return {
        present: r() < 0.7,
        variant: 0,
        anyAddress: false,
        opt: false,
        sopt: false,
        bad: false,
        hosts,
        mode: 'ok',
      };
    });
    this.inv = new Invariants(this);
  }

  trace(line: string): void {
    const l = `${this.clock.now() - START_MS} ${line}`;
    this.hash.update(l + '\n');
    this.lines?.push(l);
  }

  count(what: string): void {
    this.counts[what] = (this.counts[what] ?? 0) + 1;
  }

  get digest(): string {
    return this.hash.copy().digest('hex');
  }

  startCp(): void {
    const scope = this.clock.scope();
    const discovery = new Discovery({
      config: simConfig(),
      log: this.opts.log ?? silentLogger,
      clock: scope,
      source: this.registry.source(scope),
      knownHosts: this.registry.knownHostsStore(),
      watchers: {
        create: (config) => this.registry.watcher(config.name, scope),
        identity: (config) => watcherIdentity(config, { defaultZkServers: zkServersOf(simConfig()) }),
      },
    });
    discovery.onSnapshot((s) => this.push(s));
    discovery.start();
    this.cp = { discovery, scope };
    this.trace('control plane started');
  }

  stopCp(): void {
    if (!this.cp) return;
    const { discovery, scope } = this.cp;
    this.cp = undefined;
    void discovery.stop().catch(() => undefined);
    scope.kill();
    this.registry.unsubscribeAll(scope);
    this.trace('control plane stopped');
  }

  /** A snapshot reaches the agent (if one runs) over its stream. */
  push(state: DesiredState): void {
    const inc = this.agent;
    for (const s of state.services) this.affirmedEmpty.set(s.name, s.hosts === 'reported' && s.servers.length === 0);
    if (!inc) return;
    inc.lastPushed = state;
    const summary = state.services
      .map((s) => `${s.name}:${s.port}/${s.servers.length}${s.hosts === 'unknown' ? '?' : ''}`)
      .join(' ');
    this.trace(`push ${state.version.slice(0, 8)} ${summary}`);
    void inc.agent.apply(state).then((r) => this.settled(inc, r));
  }

  /** After every apply (and every retry the agent makes): counted, traced, and the state cache written. */
  private settled(inc: AgentInc, r: ApplyResult): void {
    this.count(`apply_${r.outcome}`);
    this.trace(`applied ${r.version.slice(0, 8)} ${r.outcome}${r.error ? ` (${r.error.code})` : ''}`);
    const current = inc.agent.current;
    if (r.outcome === 'rejected' || !current || this.agent !== inc) return;
    if (r.outcome === 'reload') {
      this.stateCache = current;
      inc.cacheWrite = undefined;
    } else if (!inc.cacheWrite) {
      inc.cacheWrite = inc.scope.setTimeout(() => {
        inc.cacheWrite = undefined;
        if (inc.agent.current) this.stateCache = inc.agent.current;
      }, simConfig().agent.writeDelayMs);
    }
  }

  startAgent(): void {
    this.agentDue = undefined;
    const scope = this.clock.scope();
    const pool = new SimSocketPool(this.host);
    const runtime = new SimRuntime(this.host, scope);
    const agent = new Agent({
      config: simConfig(),
      log: this.opts.log ?? silentLogger,
      runtime,
      channels: undefined,
      identity: { user: '', group: '' },
      clock: scope,
      sockets: pool,
      checkConfig: simCheck(this.host, pool, scope),
      writeFile: simWriter(this.host),
      previous: simPrevious(this.host, scope),
      // The agent process writes its pending state cache before every haproxy.cfg write (agent-process.ts).
      beforeConfigWrite: async () => {
        if (this.agent?.agent === agent) this.flushCache(this.agent);
      },
      random: seededRandom((this.seed ^ Math.imul(this.agents + 1, 0x9e3779b1)) >>> 0),
      makeSupervisor: ({ beforeRestart }) =>
        new HaproxySupervisor({
          binary: 'haproxy',
          configPath: simConfig().haproxy.configPath,
          runtime,
          log: silentLogger,
          spawn: this.host.spawnFor(pool),
          clock: scope,
          beforeRestart,
          pids: {
            track: (pid) => this.host.alive(pid),
            alive: (pid) => this.host.alive(pid),
            softStop: (pid) => this.host.signal(pid, 'SIGUSR1', 'supervisor'),
            stop: (pid) => stopPid(this.host, scope, pid),
          },
        }),
    });
    agent.startDriftRepair();
    const inc: AgentInc = { n: ++this.agents, scope, pool, runtime, agent, lastPushed: undefined };
    this.agent = inc;
    // A retry after a transient failure is cached like any apply (where the agent retries at all).
    (agent as unknown as { onRetried?: (f: (r: ApplyResult) => void) => void }).onRetried?.((r) =>
      this.settled(inc, r),
    );
    this.trace(`agent ${inc.n} started`);
    // The state cache first (what ran before), then the stream's current snapshot.
    const cached = this.stateCache;
    if (cached) {
      this.trace(`cache ${cached.version.slice(0, 8)}`);
      void agent.apply(replayed(cached)).then((r) => this.settled(inc, r));
    }
    const current = this.cp?.discovery.current();
    if (current) this.push(current);
  }

  /** Hand-over (systemctl restart): the pending state cache write is done first, as agent-process.ts does. */
  private flushCache(inc: AgentInc): void {
    if (inc.cacheWrite === undefined) return;
    inc.scope.clearTimeout(inc.cacheWrite);
    inc.cacheWrite = undefined;
    if (inc.agent.current) this.stateCache = inc.agent.current;
  }

  /** The agent process ends: its timers, its fds and its children's exit events go with it. */
  private loseAgent(inc: AgentInc): void {
    inc.scope.kill();
    inc.pool.lose();
    for (const p of this.host.procs.values()) if (p.handle) p.handle.detached = true;
    if (this.agent === inc) this.agent = undefined;
  }

  /** Applies one event to the world. */
  async event(e: Step): Promise<void> {
    this.count(`event_${e.k}`);
    this.trace(`event ${describeStep(e)}`);
    const now = this.clock.now();
    const f = this.host.faults;
    const m = 's' in e ? this.registry.svcs[e.s]! : undefined;
    const hostsChanged = () => this.registry.changed((e as { s: number }).s);
    const configChanged = () => this.registry.configsChanged();
    switch (e.k) {
      case 'host+':
        if (!m!.hosts.has(e.h)) m!.hosts.set(e.h, 1);
        return hostsChanged();
      case 'host-':
        m!.hosts.delete(e.h);
        return hostsChanged();
      case 'weight':
        if (m!.hosts.has(e.h)) m!.hosts.set(e.h, e.w);
        return hostsChanged();
      case 'opt':
        m!.opt = !m!.opt;
        return configChanged();
      case 'sopt':
        m!.sopt = !m!.sopt;
        return configChanged();
      case 'port':
        m!.variant = m!.variant === 0 ? 1 : 0;
        return configChanged();
      case 'bind':
        m!.anyAddress = !m!.anyAddress;
        return configChanged();
      case 'bad':
        m!.bad = !m!.bad;
        return configChanged();
      case 'svc+':
        m!.present = true;
        return configChanged();
      case 'svc-':
        m!.present = false;
        return configChanged();
      case 'watch':
        m!.mode = e.mode;
        return hostsChanged();
      case 'source':
        this.registry.sourceOk = e.ok;
        return configChanged();
      case 'crash': {
        const live = this.host.live().filter((p) => p.state === 'ready');
        const victim = e.which === 'current' ? live.filter((p) => !p.softStopped).at(-1) : live[0];
        if (victim) this.host.signal(victim.pid, 'SIGKILL', 'crash');
        return;
      }
      case 'spawnfail':
        f.spawnFailures += e.n;
        return;
      case 'startcrash':
        f.startCrashes++;
        return;
      case 'slowstart':
        f.slowStarts++;
        f.slowStartMs = e.ms;
        return;
      case 'stall':
        f.stallUntil = Math.max(f.stallUntil, now + e.ms);
        return;
      case 'refuse':
        f.refuseUntil = Math.max(f.refuseUntil, now + e.ms);
        return;
      case 'checkslow':
        f.checkSlowMs = e.ms;
        return;
      case 'checkfail':
        f.checkErrors += e.n;
        return;
      case 'diskfull':
        f.diskFullUntil = Math.max(f.diskFullUntil, now + e.ms);
        return;
      case 'porttaken': {
        const port = portOf(e.s, m!.variant === 0 ? 1 : 0); // the port it would move to
        this.host.outsider.set(port, now + e.ms);
        return;
      }
      case 'agent-restart': {
        const inc = this.agent;
        if (!inc) return;
        // systemctl restart: the agent hands HAProxy over, exits, and the next one takes it over.
        void inc.agent.handOver().then(() => {
          if (this.agent !== inc) return;
          this.flushCache(inc);
          this.loseAgent(inc);
          this.startAgent();
        });
        return;
      }
      case 'agent-kill': {
        const inc = this.agent;
        if (!inc) return;
        this.loseAgent(inc);
        this.agentDue = now + e.downMs;
        if (e.downMs === 0) this.startAgent();
        return;
      }
      case 'cp-restart':
        this.stopCp();
        for (const s of e.silent) {
          this.registry.svcs[s]!.mode = 'silent';
          this.registry.changed(s);
        }
        this.startCp();
        return;
      case 'jump':
        this.clock.jump(now + e.ms);
        this.inv.jumped(e.ms);
        return;
    }
  }

  /** Lets every promise chain run to where it waits for a timer: nothing real is pending, so one turn does. */
  private settle(): Promise<void> {
    return new Promise((resolve) => setImmediate(resolve));
  }

  /** Runs simulated time forward by `ms`, timer by timer. */
  async runFor(ms: number): Promise<void> {
    const end = this.clock.now() + ms;
    this.inv.passing(ms);
    await this.settle();
    let fired = 0;
    for (;;) {
      if (this.agentDue !== undefined && this.agentDue <= end && !this.agent) {
        const due = this.agentDue;
        // The restarted agent comes up at its time, between the timers around it.
        while (this.clock.fireNext(due)) await this.settle();
        this.clock.jump(due);
        this.startAgent();
        await this.settle();
      }
      if (!this.clock.fireNext(end)) break;
      if (++fired > RUNAWAY_TIMERS) this.fail({ inv: 'e', message: `more than ${RUNAWAY_TIMERS} timers in one step` });
      await this.settle();
    }
    this.clock.jump(end);
    await this.settle();
  }

  fail(v: Omit<Violation, 'step'>): never {
    const violation = { ...v, step: this.step };
    this.trace(`VIOLATION ${v.inv}: ${v.message}`);
    this.inv.violation = violation;
    throw new Stop(v.message);
  }

  /** Faults end, watchers and the source read again, and a downed agent comes back. */
  heal(): void {
    this.trace('heal');
    this.host.faults = noFaults();
    this.host.outsider.clear();
    this.registry.sourceOk = true;
    this.registry.configsChanged();
    this.registry.svcs.forEach((m, s) => {
      if (m.mode === 'ok') return;
      m.mode = 'ok';
      this.registry.changed(s);
    });
    if (!this.agent) this.startAgent();
  }

  /** Waits (on simulated time) until the agent has nothing queued: a drift check queued behind everything returns. */
  async quiesce(): Promise<boolean> {
    const inc = this.agent;
    if (!inc) return true;
    let done = false;
    void inc.agent.repairDrift().then(() => (done = true));
    for (let i = 0; i < 120 && !done; i++) await this.runFor(500);
    await inc.agent.flushFiles();
    return done;
  }
}

/** Runs `steps` on the world of `seed`; never throws (a crash of the simulator itself is an 'e' violation). */
export async function runSteps(seed: number, steps: readonly Step[], opts: RunOptions = {}): Promise<RunResult> {
  const sim = new Sim(seed, opts);
  const realRm = fsp.rm;
  // The agent removes its haproxy -c candidate with fs.promises.rm: the only real I/O on its path, and a thread-pool
  // round trip whose timing would leak into the schedule. The candidate is never written (the writer is fake).
  (fsp as { rm: typeof fsp.rm }).rm = (p: Parameters<typeof fsp.rm>[0], o?: Parameters<typeof fsp.rm>[1]) =>
    String(p).startsWith(SIM_DIR) ? Promise.resolve() : realRm(p, o);
  try {
    sim.startCp();
    sim.startAgent();
    await sim.runFor(1000);
    sim.inv.check();
    for (const step of steps) {
      sim.step++;
      await sim.event(step);
      await sim.runFor(step.dt);
      sim.inv.check();
    }
    sim.step++;
    sim.heal();
    for (let t = 0; t < HEAL_MS; t += 1000) {
      await sim.runFor(1000);
      sim.inv.check();
    }
    if (!(await sim.quiesce()))
      sim.fail({ inv: 'e', message: 'the agent did not finish its queue within 60 s after the faults ended' });
    sim.inv.check();
    sim.inv.checkSettled();
  } catch (err) {
    if (!(err instanceof Stop)) {
      sim.trace(`CRASH ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      sim.inv.violation ??= { inv: 'e', step: sim.step, message: `the simulation crashed: ${String(err)}` };
    }
  } finally {
    (fsp as { rm: typeof fsp.rm }).rm = realRm;
  }
  return {
    seed,
    steps: sim.step,
    digest: sim.digest,
    ...(sim.inv.violation ? { violation: sim.inv.violation } : {}),
    counts: sim.counts,
    maxima: sim.inv.maxima,
    ...(sim.lines ? { trace: sim.lines } : {}),
  };
}

export { SERVICES, svcName };
