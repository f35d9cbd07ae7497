/**
 * The invariants `bench simulate` checks after every step, and once more when a schedule has settled:
 *
 *   a  at most one HAProxy generation accepts: every live process but the newest has been soft-stopped (or is gone)
 *   b  what runs is what haproxy.cfg + the fds say: no listener on another service's port, no process started on a
 *      config whose `fd@N` was not a listening socket handed over, the supervisor's current process is the one that
 *      accepts; once settled, HAProxy runs exactly the agent's current state, and haproxy.cfg names its services
 *   c  no live service loses all its servers unless the last state pushed said discovery reported it empty
 *   d  every drain ends by its deadline, plus a bounded slack (and the time no agent or no HAProxy ran, or the clock
 *      jumped)
 *   e  nothing grows without bound: timers pending, processes, sockets, old generations (agent.max_old_generations),
 *      the agent's records and drains, the registry's subscriptions; the agent's queue empties once the faults end
 *   f  once the faults end, the agent converges on the last state pushed (services whose config haproxy -c refuses
 *      excepted; servers only where the push knew them)
 */
import { RuntimeServer } from '../agent/haproxy/servers-state';
import { BAD_OPTION, active, FDRAIN, parseHaproxyConfig, SimProcess } from './lib-sim-world';
import { HOSTS, portsOf, SERVICES, type SimRegistry } from './lib-sim-fleet';
import type { Agent } from '../agent/agent';
import type { DesiredState } from '../common/protocol/types';
import type { ClockScope, SimClock, SimHost, SimRuntime, SimSocketPool } from './lib-sim-world';

export type Invariant = 'a' | 'b' | 'c' | 'd' | 'e' | 'f';
export const INVARIANTS: readonly Invariant[] = ['a', 'b', 'c', 'd', 'e', 'f'];

export interface Violation {
  readonly inv: Invariant;
  readonly step: number;
  readonly message: string;
}

/** One agent process: its clock, sockets, stats-socket client and the Agent itself. */
export interface AgentInc {
  readonly n: number;
  readonly scope: ClockScope;
  readonly pool: SimSocketPool;
  readonly runtime: SimRuntime;
  readonly agent: Agent;
  lastPushed: DesiredState | undefined;
  cacheWrite?: unknown;
}

/** What the invariants read of a simulation (Sim in lib-sim-run.ts). */
export interface SimView {
  readonly clock: SimClock;
  readonly host: SimHost;
  readonly registry: SimRegistry;
  readonly agent: AgentInc | undefined;
  readonly affirmedEmpty: ReadonlyMap<string, boolean>;
  fail(v: Omit<Violation, 'step'>): never;
}

/**
 * Slack on a drain's deadline: the sweep goes ahead of queued applies but waits for the one in progress (a `haproxy
 * -c` may take 30 s and a start's readiness 10 s), then delete attempts a second apart, a restart backoff.
 */
const DRAIN_SLACK_MS = 45_000;
const BOUNDS = {
  timers: 120,
  agentTimers: 40,
  processes: 16,
  sockets: 4 * SERVICES,
  recentActions: 200,
  draining: SERVICES * HOSTS,
  subscriptions: SERVICES + 1,
};

export class Invariants {
  violation: Violation | undefined;
  readonly maxima: Record<string, number> = {};
  /** Servers seen taking sessions per service, at the last check. */
  private readonly lastActive = new Map<string, number>();
  /** Drains seen in HAProxy: since when, and the excused time (no agent, no HAProxy, jumps) at that moment. */
  private readonly drains = new Map<string, { since: number; excusedAt: number }>();
  private excused = 0;
  private badFdsSeen = 0;

  constructor(private readonly sim: SimView) {}

  /** Simulated time passes: time without an agent or without an accepting HAProxy excuses drains. */
  passing(ms: number): void {
    if (!this.sim.agent || !this.sim.host.live().some((p) => p.accepting)) this.excused += ms;
  }

  jumped(ms: number): void {
    this.excused += ms;
  }

  private fail(inv: Invariant, message: string): never {
    return this.sim.fail({ inv, message });
  }

  private max(name: string, value: number, bound: number): void {
    this.maxima[name] = Math.max(this.maxima[name] ?? 0, value);
    if (value > bound) this.fail('e', `${name} ${value} > ${bound}`);
  }

  /** The checks that hold at every step. */
  check(): void {
    const { host, clock } = this.sim;
    const now = clock.now();
    const accepting = host.live().filter((p) => p.accepting);
    // a
    if (accepting.length > 1)
      this.fail('a', `${accepting.length} HAProxy generations accept: pids ${accepting.map((p) => p.pid).join(', ')}`);
    // b
    if (host.badFdStarts.length > this.badFdsSeen) {
      this.badFdsSeen = host.badFdStarts.length;
      this.fail('b', `HAProxy started on a config whose fds were not handed over: ${host.badFdStarts.at(-1)}`);
    }
    for (const p of accepting)
      for (const [name, s] of p.listeners)
        if (!portsOf(name).includes(s.port))
          this.fail('b', `pid ${p.pid}: listen ${name} accepts on port ${s.port}, another service's socket`);
    const inc = this.sim.agent;
    const sup = inc?.agent.supervisor;
    if (sup?.running && sup.pid !== undefined) {
      const p = host.procs.get(sup.pid);
      const adoptedLag = sup.pid === sup.adoptedPid && p && !p.alive && now - p.diedAt <= 1000;
      if (!p || (!adoptedLag && (!p.alive || p.softStopped)))
        this.fail(
          'b',
          `the supervisor's current HAProxy pid ${sup.pid} is ${!p ? 'unknown' : p.alive ? 'soft-stopped' : 'gone'} (accepting: ${accepting.map((x) => x.pid).join(', ') || 'none'})`,
        );
    }
    // c and d on the one accepting process
    const p = accepting[0];
    if (p) {
      this.checkServers(p);
      this.checkDrains(p, now);
    }
    // e
    this.max('timers_pending', clock.pending, BOUNDS.timers);
    this.max('live_processes', host.live().length, BOUNDS.processes);
    this.max('kernel_sockets', host.sockets.size, BOUNDS.sockets);
    this.max('registry_subscriptions', this.sim.registry.subscriptions, BOUNDS.subscriptions);
    if (inc) {
      this.max('agent_timers_pending', inc.scope.pending, BOUNDS.agentTimers);
      this.max('agent_sockets', inc.pool.size, BOUNDS.sockets);
      this.max('recent_actions', inc.agent.recentActions().length, BOUNDS.recentActions);
      const reloads = inc.agent.supervisor.reloadStats?.();
      if (reloads)
        this.max(
          'old_generations_not_stopped',
          reloads.oldGenerations.filter((g) => !g.stopped).length,
          reloads.maxOldGenerations,
        );
      this.max('draining', inc.agent.draining().length, BOUNDS.draining);
    }
  }

  private checkServers(p: SimProcess): void {
    for (const name of [...this.lastActive.keys()]) if (!p.listeners.has(name)) this.lastActive.delete(name);
    for (const name of p.listeners.keys()) {
      const servers = [...(p.backends.get(name)?.values() ?? [])];
      const n = servers.filter(active).length;
      const before = this.lastActive.get(name) ?? 0;
      if (before > 0 && n === 0 && !this.sim.affirmedEmpty.get(name))
        this.fail(
          'c',
          `service ${name} went from ${before} server(s) taking sessions to none in pid ${p.pid} (${describe(servers)}) without an affirmative empty`,
        );
      this.lastActive.set(name, n);
    }
  }

  private checkDrains(p: SimProcess, now: number): void {
    const seen = new Set<string>();
    for (const [name, servers] of p.backends) {
      if (!p.listeners.has(name)) continue;
      for (const s of servers.values()) {
        if ((s.adminState & FDRAIN) === 0 || (s.adminState & 0x01) !== 0) continue;
        const id = `${name}/${s.name}`;
        seen.add(id);
        const d = this.drains.get(id);
        if (!d) {
          this.drains.set(id, { since: now, excusedAt: this.excused });
          continue;
        }
        const timeout = 2000 + 1000 * Number(name.slice(3));
        const allowed = timeout + DRAIN_SLACK_MS + (this.excused - d.excusedAt);
        if (now - d.since > allowed)
          this.fail(
            'd',
            `${id} has been draining for ${now - d.since} ms (timeout ${timeout} ms, allowed ${allowed} ms)`,
          );
      }
    }
    for (const id of [...this.drains.keys()]) if (!seen.has(id)) this.drains.delete(id);
  }

  /** Once the faults have ended and the agent's queue is empty: HAProxy runs the agent's state, which is the last pushed. */
  checkSettled(): void {
    const inc = this.sim.agent;
    const current = inc?.agent.current;
    if (!inc || !current) return;
    const { host } = this.sim;
    const accepting = host.live().filter((x) => x.accepting);
    const p = accepting[0];
    if (!p || !inc.agent.supervisor.running || inc.agent.supervisor.pid !== p.pid)
      this.fail(
        'b',
        `settled, but the supervisor (running ${inc.agent.supervisor.running}, pid ${inc.agent.supervisor.pid}) and the accepting HAProxy (${p?.pid ?? 'none'}) disagree`,
      );
    const want = new Map(current.services.map((s) => [s.name, s]));
    const runs = [...p.listeners.keys()].sort().join(',');
    if (runs !== [...want.keys()].sort().join(','))
      this.fail(
        'b',
        `settled: HAProxy pid ${p.pid} listens for [${runs}], the agent's state has [${[...want.keys()].sort().join(',')}]`,
      );
    for (const s of current.services) {
      const sock = p.listeners.get(s.name)!;
      if (sock.port !== s.port || sock.address !== s.bindAddress)
        this.fail(
          'b',
          `settled: ${s.name} listens on ${sock.address}:${sock.port}, its state says ${s.bindAddress}:${s.port}`,
        );
      const backend = p.backends.get(s.name) ?? new Map<string, RuntimeServer>();
      const wanted = new Set(s.servers.map((v) => v.name));
      for (const v of s.servers) {
        const r = backend.get(v.name);
        if (!r || !active(r) || r.weight !== v.weight || r.address !== v.address || r.port !== v.port)
          this.fail(
            'b',
            `settled: ${s.name}/${v.name} should take sessions at weight ${v.weight}; HAProxy has ${r ? describe([r]) : 'nothing'}`,
          );
      }
      for (const r of backend.values())
        if (!wanted.has(r.name) && active(r))
          this.fail('b', `settled: ${s.name}/${r.name} takes sessions but is not desired`);
    }
    const onDisk = parseHaproxyConfig(host.files.get(host.configPath) ?? '')
      .listens.map((l) => l.name)
      .sort()
      .join(',');
    if (onDisk !== runs) this.fail('b', `settled: haproxy.cfg has [${onDisk}], HAProxy runs [${runs}]`);
    this.checkConverged(inc.lastPushed, current);
  }

  private checkConverged(
    pushed: import('../common/protocol/types').DesiredState | undefined,
    current: import('../common/protocol/types').DesiredState,
  ): void {
    if (!pushed) return;
    const cur = new Map(current.services.map((s) => [s.name, s]));
    for (const s of pushed.services) {
      if (s.listenOptions.includes(BAD_OPTION)) continue;
      const c = cur.get(s.name);
      if (!c) {
        this.fail(
          'f',
          `settled: ${s.name} was pushed (version ${pushed.version.slice(0, 8)}) but the agent does not run it (its version ${current.version.slice(0, 8)})`,
        );
      }
      const shape = (x: typeof s) => JSON.stringify([x.port, x.bindAddress, x.listenOptions, x.serverOptions]);
      if (shape(c) !== shape(s))
        this.fail(
          'f',
          `settled: ${s.name} runs ${shape(c)}, the last push (${pushed.version.slice(0, 8)}) says ${shape(s)}`,
        );
      if (s.hosts === 'unknown' || (s.servers.length === 0 && s.hosts !== 'reported')) continue;
      const servers = (x: typeof s) =>
        JSON.stringify(x.servers.map((v) => [v.name, v.address, v.port, v.weight]).sort());
      if (servers(c) !== servers(s))
        this.fail(
          'f',
          `settled: ${s.name} runs servers ${servers(c)}, the last push (${pushed.version.slice(0, 8)}) says ${servers(s)}`,
        );
    }
    const pushedNames = new Set(pushed.services.map((s) => s.name));
    for (const name of cur.keys())
      if (!pushedNames.has(name)) this.fail('f', `settled: the agent runs ${name}, which the last push removed`);
  }
}

function describe(servers: readonly RuntimeServer[]): string {
  return servers.map((s) => `${s.name}:admin=${s.adminState},w=${s.weight}`).join(' ') || 'no servers';
}
