/**
 * The simulated host of `bench simulate`: a clock, the kernel's listening sockets, HAProxy processes, the stats
 * socket, `haproxy -c` and the state dir, each a fake of one seam of the Agent. Nothing here touches a real process,
 * socket, file or timer: a schedule's outcome is a function of its seed.
 *
 * The fakes behave as HAProxy 2.6 does where the agent's correctness depends on it: a process reads haproxy.cfg and
 * the server-state file when it is spawned, binds `fd@N` to the N-th fd it was handed (and fails to start when that
 * is not a listening socket), answers on the stats socket once ready, soft-stops the `-sf` pids then (and on
 * SIGUSR1 closes its listeners and exits within hard-stop-after), and takes the runtime API commands the agent sends.
 */
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { Clock, Timer } from '../common/platform/clock';
import { FakeClock } from '../testkit/fake-clock';
import { HaproxyConfigError, ProxyMgrError, RuntimeApiError } from '../common/platform/errors';
import type { RuntimeApi } from '../agent/ports';
import { parseServersState, RuntimeServer, RuntimeState } from '../agent/haproxy/servers-state';
import type { AdoptedSocket, ConfigCheck, FileWriter, PreviousHaproxy, SocketPool } from '../agent/ports';

/** A number in [0, 1) from a string key (FNV-1a, then a mix): per-process randomness that survives shrinking. */
export function hashUnit(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return (h >>> 0) / 4294967296;
}

/**
 * Simulated time: the tests' FakeClock, driven by the simulator one timer at a time (`fireNext`, which lets every
 * promise chain settle in between); `jump` moves time without running anything.
 */
export class SimClock extends FakeClock {
  /** A view whose timers all go when its owner dies (a kill -9 ends an agent's timers with it). */
  scope(): ClockScope {
    return new ClockScope(this);
  }
}

/** The clock of one agent (or control plane) incarnation: `kill` cancels its timers, and it sets none after. */
export class ClockScope implements Clock {
  private readonly mine = new Set<number>();
  private dead = false;

  constructor(private readonly clock: SimClock) {}

  now(): number {
    return this.clock.now();
  }

  setTimeout(fn: () => void, ms: number): Timer {
    if (this.dead) return -1;
    const id = this.clock.setTimeout(() => {
      this.mine.delete(id);
      fn();
    }, ms) as number;
    this.mine.add(id);
    return id;
  }

  clearTimeout(timer: Timer | undefined): void {
    if (typeof timer !== 'number') return;
    this.mine.delete(timer);
    this.clock.clearTimeout(timer);
  }

  get pending(): number {
    return this.mine.size;
  }

  kill(): void {
    this.dead = true;
    for (const id of this.mine) this.clock.clearTimeout(id);
    this.mine.clear();
  }
}

/** A listening socket in the kernel: it lives while the agent's pool or a process holds it. */
export interface SimSocket {
  readonly id: number;
  readonly address: string;
  readonly port: number;
  holders: number;
}

function errno(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

const ADMIN: Record<string, number> = { ready: 0, maint: 0x01, drain: 0x08 };
const MAINT_ANY = 0x01 | 0x02 | 0x04 | 0x20;
export const FDRAIN = 0x08;

/** A server takes new sessions: neither in maint nor draining. */
export const active = (s: RuntimeServer): boolean => (s.adminState & (MAINT_ANY | FDRAIN)) === 0;

/** One HAProxy process. */
export class SimProcess {
  state: 'starting' | 'ready' | 'dead' = 'starting';
  softStopped = false;
  diedAt = 0;
  /** Listen section → the socket its `bind fd@N` got. */
  readonly listeners = new Map<string, SimSocket>();
  /** Its fds (4…) that are listening sockets. */
  readonly fdTable = new Map<number, SimSocket>();
  readonly backends = new Map<string, Map<string, RuntimeServer>>();
  handle: SimChild | undefined;

  constructor(
    readonly pid: number,
    readonly args: readonly string[],
    readonly config: string,
  ) {}

  get accepting(): boolean {
    return this.state === 'ready' && !this.softStopped;
  }

  get alive(): boolean {
    return this.state !== 'dead';
  }
}

/** The ChildProcess the supervisor holds; detached when its agent dies (exits go unheard). */
export class SimChild extends EventEmitter {
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly stdout = null;
  readonly stderr = null;
  detached = false;

  constructor(
    readonly pid: number,
    private readonly host: SimHost,
    private readonly ignoreSoftStop: boolean,
  ) {
    super();
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    if (signal === 'SIGUSR1' && this.ignoreSoftStop) return true;
    this.host.signal(this.pid, signal, 'supervisor');
    return true;
  }

  unref(): void {}
}

/** The parts of haproxy.cfg the fakes act on. */
interface ParsedConfig {
  readonly listens: { name: string; fd: number; servers: RuntimeServer[]; lines: string[] }[];
}

export function parseHaproxyConfig(text: string): ParsedConfig {
  const listens: ParsedConfig['listens'] = [];
  let cur: ParsedConfig['listens'][number] | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const head = /^(\S+)(?:\s+(\S+))?/.exec(line);
    if (!raw.startsWith(' ') && head) {
      cur = undefined;
      if (head[1] === 'listen') listens.push((cur = { name: head[2]!, fd: -1, servers: [], lines: [] }));
      continue;
    }
    if (!cur) continue;
    cur.lines.push(line);
    const bind = /^bind fd@(\d+)$/.exec(line);
    if (bind) cur.fd = Number(bind[1]);
    const srv = /^server (\S+) (\S+):(\d+) weight (\d+)/.exec(line);
    if (srv)
      cur.servers.push({
        backend: cur.name,
        name: srv[1]!,
        address: srv[2]!,
        port: Number(srv[3]),
        weight: Number(srv[4]),
        adminState: /(^|\s)disabled(\s|$)/.test(line) ? 0x04 : 0,
        operState: 2,
      });
  }
  return { listens };
}

/** Faults the schedule injects; counts are used up, times are "until" on the clock. */
export interface Faults {
  spawnFailures: number;
  startCrashes: number;
  slowStarts: number;
  slowStartMs: number;
  stallUntil: number;
  refuseUntil: number;
  checkSlowMs: number;
  checkErrors: number;
  diskFullUntil: number;
}

export const noFaults = (): Faults => ({
  spawnFailures: 0,
  startCrashes: 0,
  slowStarts: 0,
  slowStartMs: 0,
  stallUntil: 0,
  refuseUntil: 0,
  checkSlowMs: 0,
  checkErrors: 0,
  diskFullUntil: 0,
});

/** A listen option `haproxy -c` refuses (a permanent, per-service rejection). */
export const BAD_OPTION = 'maxconn 13';
/** How long the stats socket client waits for a reply (StatsSocketClient's default). */
const RUNTIME_TIMEOUT_MS = 5000;

/** Deliberately broken variants, to prove the invariants can fail. */
export type Mutant = 'none' | 'no-soft-stop' | 'drain-all';

/**
 * The host: kernel sockets, processes, the state dir and the stats socket, shared by every agent incarnation (an
 * agent restart or kill -9 leaves them as they are).
 */
export class SimHost {
  readonly files = new Map<string, string>();
  readonly procs = new Map<number, SimProcess>();
  readonly sockets = new Set<SimSocket>();
  /** Ports an outsider holds, until the time given. */
  readonly outsider = new Map<number, number>();
  faults: Faults = noFaults();
  /** The process bound to the stats socket's path: the last one that became ready, while it lives. */
  statsOwner: SimProcess | undefined;
  /** Spawns whose config named an fd that was not a listening socket handed over. */
  readonly badFdStarts: string[] = [];
  private nextPid = 4_200_000; // above Linux's pid_max: never a real process
  private nextSocket = 1;

  constructor(
    readonly clock: SimClock,
    readonly configPath: string,
    readonly serverStateFile: string,
    private readonly seedKey: string,
    private readonly hardStopAfterMs: number,
    private readonly trace: (line: string) => void,
    readonly mutant: Mutant = 'none',
  ) {}

  /** Binds address:port, as Linux would refuse it: any socket on the port whose address overlaps. */
  bind(address: string, port: number): SimSocket {
    const until = this.outsider.get(port);
    const clash =
      (until !== undefined && until > this.clock.now()) ||
      [...this.sockets].some(
        (s) => s.port === port && (s.address === address || s.address === '0.0.0.0' || address === '0.0.0.0'),
      );
    if (clash)
      throw new ProxyMgrError('SOCKET_BIND_FAILED', `cannot listen on ${address}:${port}: EADDRINUSE`, {
        cause: errno('EADDRINUSE', 'address already in use'),
      });
    const s: SimSocket = { id: this.nextSocket++, address, port, holders: 0 };
    this.sockets.add(s);
    return s;
  }

  hold(s: SimSocket): void {
    s.holders++;
  }

  drop(s: SimSocket): void {
    if (--s.holders <= 0) this.sockets.delete(s);
  }

  alive(pid: number): boolean {
    return this.procs.get(pid)?.alive ?? false;
  }

  live(): SimProcess[] {
    return [...this.procs.values()].filter((p) => p.alive);
  }

  /** The spawn of one agent incarnation's supervisor: fds are that agent's pool's. */
  spawnFor(pool: SimSocketPool) {
    return (_cmd: string, args: string[], opts: SpawnOptions): ChildProcess => {
      if (this.faults.spawnFailures > 0) {
        this.faults.spawnFailures--;
        this.trace('spawn: EAGAIN');
        throw errno('EAGAIN', 'spawn haproxy EAGAIN');
      }
      const stdio = (opts.stdio ?? []) as unknown[];
      const pid = this.nextPid++;
      const config = this.files.get(this.configPath) ?? '';
      const p = new SimProcess(pid, args, config);
      for (let n = 4; n < stdio.length; n++) {
        const fd = stdio[n];
        const s = typeof fd === 'number' ? pool.socketOf(fd) : undefined;
        if (s) {
          p.fdTable.set(n, s);
          this.hold(s);
        }
      }
      let failure: string | undefined;
      const parsed = parseHaproxyConfig(config);
      for (const l of parsed.listens) {
        const s = p.fdTable.get(l.fd);
        if (!s) failure ??= `listen ${l.name}: cannot bind fd@${l.fd} (not a listening socket handed over)`;
        else p.listeners.set(l.name, s);
        p.backends.set(l.name, new Map(l.servers.map((v) => [v.name, v])));
      }
      this.loadServerState(p);
      this.procs.set(pid, p);
      p.handle = new SimChild(pid, this, this.mutant === 'no-soft-stop');
      this.trace(
        `spawn ${pid} ${args.join(' ')} listens=${[...p.listeners].map(([n, s]) => `${n}@${s.port}`).join(',')}`,
      );
      if (failure) {
        this.badFdStarts.push(`pid ${pid} (${args.join(' ')}): ${failure}`);
        this.trace(`spawn ${pid}: ${failure}`);
        this.clock.setTimeout(() => this.exit(p, 1, null), 1);
      } else if (this.faults.startCrashes > 0) {
        this.faults.startCrashes--;
        this.clock.setTimeout(() => this.exit(p, 139, null), 2);
      } else {
        let delay = 1 + Math.floor(hashUnit(`${this.seedKey}:start:${pid}`) * 30);
        if (this.faults.slowStarts > 0) {
          this.faults.slowStarts--;
          delay = this.faults.slowStartMs;
        }
        this.clock.setTimeout(() => this.ready(p), delay);
      }
      return p.handle as unknown as ChildProcess;
    };
  }

  /** `load-server-state-from-file global`: saved admin states and weights of servers the config still has. */
  private loadServerState(p: SimProcess): void {
    const text = this.files.get(this.serverStateFile);
    if (!text) return;
    let saved: RuntimeState;
    try {
      saved = parseServersState(text);
    } catch {
      return;
    }
    for (const [backend, servers] of p.backends) {
      const old = saved.get(backend);
      if (!old) continue;
      for (const [name, s] of servers) {
        const o = old.get(name);
        if (!o) continue;
        servers.set(name, { ...s, adminState: s.adminState | (o.adminState & (0x01 | FDRAIN)), weight: o.weight });
      }
    }
  }

  private ready(p: SimProcess): void {
    if (!p.alive) return;
    p.state = 'ready';
    // The agent reaches each process on its own admin channel: one told to soft-stop while it started is not the
    // one the agent talks to.
    if (!p.softStopped) this.statsOwner = p;
    const sf = p.args.indexOf('-sf');
    if (sf >= 0 && this.mutant !== 'no-soft-stop')
      for (const old of p.args.slice(sf + 1)) this.signal(Number(old), 'SIGUSR1', `-sf of ${p.pid}`);
    this.trace(`ready ${p.pid}`);
  }

  /** A signal to `pid`: SIGUSR1 soft-stops (listeners closed, exit within hard-stop-after), SIGTERM/SIGKILL end it. */
  signal(pid: number, signal: NodeJS.Signals, from: string): void {
    const p = this.procs.get(pid);
    if (!p || !p.alive) return;
    if (signal === 'SIGUSR1') {
      if (p.softStopped) return;
      p.softStopped = true;
      for (const s of p.fdTable.values()) this.drop(s);
      p.fdTable.clear();
      const linger = Math.floor(hashUnit(`${this.seedKey}:linger:${pid}`) * this.hardStopAfterMs);
      this.trace(`soft-stop ${pid} (${from})`);
      this.clock.setTimeout(() => this.exit(p, 0, null), linger);
    } else if (signal === 'SIGKILL') {
      this.exit(p, null, 'SIGKILL');
    } else {
      this.clock.setTimeout(() => this.exit(p, null, signal), 1);
    }
  }

  exit(p: SimProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (!p.alive) return;
    p.state = 'dead';
    p.diedAt = this.clock.now();
    for (const s of p.fdTable.values()) this.drop(s);
    p.fdTable.clear();
    if (this.statsOwner === p) this.statsOwner = undefined;
    this.trace(`exit ${p.pid} ${code ?? signal}`);
    // Node reports an exit asynchronously.
    this.clock.setTimeout(() => {
      const h = p.handle;
      if (!h || h.detached) return;
      h.exitCode = code;
      h.signalCode = signal;
      h.emit('exit', code, signal);
    }, 0);
  }

  /** One runtime API command on process `p`, answered as HAProxy 2.6 answers the ones the agent sends. */
  command(p: SimProcess, cmd: string): string {
    let m: RegExpExecArray | null;
    if ((m = /^show servers state(?: (\S+))?$/.exec(cmd))) {
      const lines = ['1', '# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port'];
      for (const [b, servers] of p.backends) {
        if (m[1] !== undefined && m[1] !== b) continue;
        for (const s of servers.values())
          lines.push(`1 ${b} 1 ${s.name} ${s.address} ${s.operState} ${s.adminState} ${s.weight} ${s.port}`);
      }
      return lines.join('\n') + '\n';
    }
    if (cmd === 'show info') return `Pid: ${p.pid}\n`;
    if ((m = /^set server (\S+)\/(\S+) weight (\d+)$/.exec(cmd)))
      return this.change(p, m[1]!, m[2]!, { weight: Number(m[3]) }, '\n');
    if ((m = /^set server (\S+)\/(\S+) state (ready|maint|drain)$/.exec(cmd))) {
      if (this.mutant === 'drain-all' && m[3] === 'drain')
        for (const s of p.backends.get(m[1]!)?.keys() ?? []) this.change(p, m[1]!, s, { adminState: FDRAIN }, '\n');
      return this.change(p, m[1]!, m[2]!, { adminState: ADMIN[m[3]!]! }, '\n');
    }
    if ((m = /^set server (\S+)\/(\S+) addr (\S+) port (\d+)$/.exec(cmd)))
      return this.change(p, m[1]!, m[2]!, { address: m[3]!, port: Number(m[4]) }, 'IP changed\n');
    if (/^enable (health|agent) \S+\/\S+$/.test(cmd)) return '\n';
    if ((m = /^shutdown sessions server (\S+)\/(\S+)$/.exec(cmd)))
      return p.backends.get(m[1]!)?.has(m[2]!) ? '\n' : 'No such server.\n';
    if ((m = /^del server (\S+)\/(\S+)$/.exec(cmd))) {
      const be = p.backends.get(m[1]!);
      const srv = be?.get(m[2]!);
      if (!be || !srv) return 'No such server.\n';
      if ((srv.adminState & 0x01) === 0) return 'Only servers in maintenance mode can be deleted.\n';
      be.delete(m[2]!);
      return 'Server deleted.\n';
    }
    if ((m = /^add server (\S+)\/(\S+) (\S+):(\d+) weight (\d+)/.exec(cmd))) {
      const be = p.backends.get(m[1]!);
      if (!be) return 'No such backend.\n';
      if (be.has(m[2]!)) return 'Already exists a server with the same name in backend.\n';
      be.set(m[2]!, {
        backend: m[1]!,
        name: m[2]!,
        address: m[3]!,
        port: Number(m[4]),
        weight: Number(m[5]),
        adminState: 0x01,
        operState: 2,
      });
      return 'New server registered.\n';
    }
    return 'Unknown command.\n';
  }

  private change(p: SimProcess, backend: string, server: string, change: Partial<RuntimeServer>, ok: string): string {
    const be = p.backends.get(backend);
    const s = be?.get(server);
    if (!be || !s) return 'No such server.\n';
    be.set(server, { ...s, ...change });
    return ok;
  }
}

/** One agent incarnation's listening sockets: fds of its own, onto the host's kernel sockets. */
export class SimSocketPool implements SocketPool {
  private readonly fds = new Map<number, SimSocket>();
  private readonly byKey = new Map<string, number>();
  private nextFd = 10;

  constructor(private readonly host: SimHost) {}

  socketOf(fd: number): SimSocket | undefined {
    return this.fds.get(fd);
  }

  get size(): number {
    return this.fds.size;
  }

  acquire(address: string, port: number): number {
    const key = `${address}|${port}`;
    const fd = this.byKey.get(key);
    if (fd !== undefined) return fd;
    const s = this.host.bind(address, port);
    return this.add(key, s);
  }

  private add(key: string, s: SimSocket): number {
    this.host.hold(s);
    const fd = this.nextFd++;
    this.fds.set(fd, s);
    this.byKey.set(key, fd);
    return fd;
  }

  release(keep: ReadonlySet<string>): string[] {
    const closed: string[] = [];
    for (const [key, fd] of [...this.byKey]) {
      if (keep.has(key)) continue;
      this.host.drop(this.fds.get(fd)!);
      this.fds.delete(fd);
      this.byKey.delete(key);
      closed.push(key.replace('|', ':'));
    }
    return closed;
  }

  closeAll(): void {
    this.release(new Set());
  }

  /** What a kill -9 does to the agent's fds. */
  lose(): void {
    this.closeAll();
  }

  adoptFrom(pid: number): Map<number, AdoptedSocket> {
    const p = this.host.procs.get(pid);
    if (!p || !p.alive) throw errno('ENOENT', `/proc/${pid}/fd: no such process`);
    const out = new Map<number, AdoptedSocket>();
    for (const [n, s] of p.fdTable) {
      const key = `${s.address}|${s.port}`;
      const fd = this.byKey.get(key) ?? this.add(key, s); // (as the real pool: every listener, copied once)
      out.set(n, { address: `${s.address}:${s.port}`, fd });
    }
    return out;
  }
}

/** The stats socket as one agent incarnation reaches it; its waits die with the incarnation's clock. */
export class SimRuntime implements RuntimeApi {
  calls = 0;

  constructor(
    private readonly host: SimHost,
    private readonly clock: ClockScope,
  ) {}

  private async reach(cmd: string): Promise<SimProcess> {
    this.calls++;
    const f = this.host.faults;
    const stall = f.stallUntil - this.clock.now();
    if (stall > 0) {
      await new Promise<void>((r) => this.clock.setTimeout(r, Math.min(stall, RUNTIME_TIMEOUT_MS)));
      if (stall > RUNTIME_TIMEOUT_MS)
        throw new RuntimeApiError(`runtime API: "${cmd}": no reply within ${RUNTIME_TIMEOUT_MS} ms`);
    }
    const p = this.host.statsOwner;
    if (f.refuseUntil > this.clock.now() || !p || p.state !== 'ready')
      throw new RuntimeApiError(`runtime API: "${cmd}": connect ECONNREFUSED`);
    return p;
  }

  async command(cmd: string): Promise<string> {
    const p = await this.reach(cmd);
    return this.host.command(p, cmd);
  }

  async serversState(backend?: string): Promise<RuntimeState> {
    return parseServersState(await this.command(backend ? `show servers state ${backend}` : 'show servers state'));
  }

  async pid(): Promise<number> {
    return (await this.reach('show info')).pid;
  }
}

/** `haproxy -c`: refuses a listen section with BAD_OPTION (naming it) or an fd that was not handed over. */
export function simCheck(host: SimHost, pool: SimSocketPool, clock: ClockScope): ConfigCheck {
  return async (_binary, _file, text, fds) => {
    const f = host.faults;
    if (f.checkSlowMs > 0) {
      const ms = f.checkSlowMs;
      f.checkSlowMs = 0;
      await new Promise<void>((r) => clock.setTimeout(r, ms));
    }
    if (f.checkErrors > 0) {
      f.checkErrors--;
      throw new ProxyMgrError('HAPROXY_CHECK_FAILED', 'haproxy -c did not finish: killed after 30000 ms');
    }
    const blamed = new Map<string, string[]>();
    for (const l of parseHaproxyConfig(text).listens) {
      const fd = fds[l.fd - 4];
      if (fd === undefined || !pool.socketOf(fd))
        blamed.set(l.name, [
          `[ALERT] parsing [haproxy.cfg] : 'bind fd@${l.fd}' : cannot bind (not a listening socket)`,
        ]);
      else if (l.lines.includes(BAD_OPTION))
        blamed.set(l.name, [`[ALERT] proxy '${l.name}': '${BAD_OPTION}' refused by the simulator`]);
    }
    if (blamed.size > 0) {
      const alerts = [...blamed.values()].flat();
      throw new HaproxyConfigError(
        `haproxy -c rejected the configuration (${[...blamed.keys()].join(', ')})`,
        alerts.join('\n'),
        [...blamed.keys()],
        [],
        blamed,
      );
    }
  };
}

/** The state dir: writes fail with ENOSPC while the disk is full. */
export function simWriter(host: SimHost): FileWriter {
  return async (file, content) => {
    if (host.faults.diskFullUntil > host.clock.now()) throw errno('ENOSPC', 'no space left on device');
    if (host.files.get(file) === content) return false;
    host.files.set(file, content);
    return true;
  };
}

/** What a new agent finds of its predecessor: every live HAProxy (oldest first) and the state dir. */
export function simPrevious(host: SimHost, clock: ClockScope): PreviousHaproxy {
  return {
    find: () =>
      host
        .live()
        .map((p) => p.pid)
        .sort((a, b) => a - b),
    readFile: async (file) => host.files.get(file) ?? '',
    stop: (pid) => stopPid(host, clock, pid),
  };
}

/** SIGTERM, then SIGKILL after 3 s; resolves once the process is gone. */
export async function stopPid(host: SimHost, clock: ClockScope, pid: number): Promise<void> {
  host.signal(pid, 'SIGTERM', 'stop');
  for (let waited = 0; host.alive(pid); waited += 20) {
    if (waited >= 3000) host.signal(pid, 'SIGKILL', 'stop');
    await new Promise<void>((r) => clock.setTimeout(r, 20));
  }
}
