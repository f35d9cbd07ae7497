import { EventEmitter } from 'node:events';
import { FakeClock } from './fake-clock';
import { parseConfig, ProxyMgrConfig } from '../common/config/config';
import { ProxyMgrError } from '../common/platform/errors';
import { silentLogger } from '../common/platform/log';
import { Agent } from '../agent/agent';
import type { RuntimeApi } from '../agent/ports';
import { RuntimeServer, RuntimeState } from '../agent/haproxy/servers-state';
import { AdoptedSocket, ConfigCheck, FileWriter, SocketPool, Supervisor } from '../agent/ports';

// Fakes for every seam of the Agent: no HAProxy, no socket, no file, no timer of its own. The "HAProxy" is
// FakeRuntime: it loads the servers of the config file the agent wrote (in FakeFiles) when FakeSupervisor
// (re)starts it, and answers runtime commands the way HAProxy 2.6 does for the ones the agent sends.

/** An in-memory state dir; `failWith` makes writes of matching files fail (ENOSPC, EROFS …). */
export class FakeFiles {
  readonly files = new Map<string, string>();
  readonly writes: string[] = [];
  failWith: ((file: string) => NodeJS.ErrnoException | undefined) | undefined;

  readonly write: FileWriter = async (file, content) => {
    const err = this.failWith?.(file);
    if (err) throw err;
    if (this.files.get(file) === content) return false;
    this.files.set(file, content);
    this.writes.push(file);
    return true;
  };
}

/** An errno error as fs raises it. */
export function errno(code: string, message = code): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

const ADMIN: Record<string, number> = { ready: 0, maint: 0x01, drain: 0x08 };

/** The runtime API of a pretend HAProxy; `commands` records what the agent sent. */
export class FakeRuntime implements RuntimeApi {
  readonly backends = new Map<string, Map<string, RuntimeServer>>();
  readonly commands: string[] = [];
  currentPid = 0;

  /** What a (re)started HAProxy has: every `server` line of every `listen` section of `config`, ready. */
  load(config: string, pid: number): void {
    this.currentPid = pid;
    this.backends.clear();
    let backend: Map<string, RuntimeServer> | undefined;
    let name = '';
    for (const line of config.split('\n').map((l) => l.trim())) {
      const listen = /^listen (\S+)/.exec(line);
      if (listen) {
        name = listen[1]!;
        this.backends.set(name, (backend = new Map()));
        continue;
      }
      const server = /^server (\S+) (\S+):(\d+) weight (\d+)/.exec(line);
      if (server && backend)
        backend.set(server[1]!, this.server(name, server[1]!, server[2]!, Number(server[3]), Number(server[4]), 0));
    }
  }

  /** `del server` of these (backend/server) is refused this many more times ("still has connections"). */
  readonly busy = new Map<string, number>();

  /** Changes a server behind the agent's back (what drift repair is for). */
  tamper(backend: string, server: string, change: Partial<RuntimeServer>): void {
    const be = this.backends.get(backend)!;
    be.set(server, { ...be.get(server)!, ...change });
  }

  async command(cmd: string): Promise<string> {
    this.commands.push(cmd);
    let m: RegExpExecArray | null;
    if (cmd === 'show servers state')
      return '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\n';
    if ((m = /^set server (\S+)\/(\S+) weight (\d+)$/.exec(cmd)))
      return this.change(m[1]!, m[2]!, { weight: Number(m[3]) }, '\n');
    if ((m = /^set server (\S+)\/(\S+) state (ready|maint|drain)$/.exec(cmd)))
      return this.change(m[1]!, m[2]!, { adminState: ADMIN[m[3]!]! }, '\n');
    if ((m = /^set server (\S+)\/(\S+) addr (\S+) port (\d+)$/.exec(cmd)))
      return this.change(m[1]!, m[2]!, { address: m[3]!, port: Number(m[4]) }, 'IP changed from a to b\n');
    if ((m = /^enable (health|agent) (\S+)\/(\S+)$/.exec(cmd))) return '\n';
    if ((m = /^shutdown sessions server (\S+)\/(\S+)$/.exec(cmd)))
      return this.backends.get(m[1]!)?.has(m[2]!) ? '\n' : 'No such server.\n';
    if ((m = /^del server (\S+)\/(\S+)$/.exec(cmd))) {
      const be = this.backends.get(m[1]!);
      const srv = be?.get(m[2]!);
      if (!be || !srv) return 'No such server.\n';
      // As HAProxy: only a server in maint, and not while it still has connections.
      if ((srv.adminState & 0x01) === 0) return 'Only servers in maintenance mode can be deleted.\n';
      if ((this.busy.get(`${m[1]}/${m[2]}`) ?? 0) > 0) {
        this.busy.set(`${m[1]}/${m[2]}`, this.busy.get(`${m[1]}/${m[2]}`)! - 1);
        return 'Server still has connections attached to it, cannot remove it.\n';
      }
      be.delete(m[2]!);
      return 'Server deleted.\n';
    }
    if ((m = /^add server (\S+)\/(\S+) (\S+):(\d+) weight (\d+)/.exec(cmd))) {
      const be = this.backends.get(m[1]!);
      if (!be) return `No such backend.\n`;
      be.set(m[2]!, this.server(m[1]!, m[2]!, m[3]!, Number(m[4]), Number(m[5]), 0x01)); // dynamic servers start in maint
      return 'New server registered.\n';
    }
    return 'Unknown command.\n';
  }

  async serversState(backend?: string): Promise<RuntimeState> {
    const copy = (be: Map<string, RuntimeServer>) => new Map(be);
    if (backend === undefined) return new Map([...this.backends].map(([k, v]) => [k, copy(v)]));
    const be = this.backends.get(backend);
    return be ? new Map([[backend, copy(be)]]) : new Map();
  }

  async pid(): Promise<number> {
    return this.currentPid;
  }

  private change(backend: string, server: string, change: Partial<RuntimeServer>, ok: string): string {
    if (!this.backends.get(backend)?.has(server)) return 'No such server.\n';
    this.tamper(backend, server, change);
    return ok;
  }

  private server(
    backend: string,
    name: string,
    address: string,
    port: number,
    weight: number,
    adminState: number,
  ): RuntimeServer {
    return { backend, name, address, port, weight, adminState, operState: 2 };
  }
}

/** Starts and reloads the pretend HAProxy on the config file the agent wrote; records every start with its fds. */
export class FakeSupervisor extends EventEmitter implements Supervisor {
  running = false;
  restarts = 0;
  adoptedPid: number | undefined;
  /** Every adopt: the pid taken over and the fds it was given. */
  readonly adoptions: { pid: number; fds: readonly number[] }[] = [];
  readonly starts: { fds: readonly number[]; pid: number }[] = [];
  stops = 0;
  handOvers = 0;
  private nextPid = 1000;
  private currentPid: number | undefined;

  constructor(
    private readonly files: FakeFiles,
    private readonly runtime: FakeRuntime,
    private readonly configPath: string,
  ) {
    super();
  }

  get pid(): number | undefined {
    return this.running ? this.currentPid : undefined;
  }

  async startOrReload(fds: readonly number[], prepare?: () => Promise<void>): Promise<number> {
    await prepare?.();
    const pid = ++this.nextPid;
    this.runtime.load(this.files.files.get(this.configPath) ?? '', pid);
    this.starts.push({ fds: [...fds], pid });
    this.currentPid = pid;
    this.adoptedPid = undefined;
    this.running = true;
    return pid;
  }

  /** Takes over the pretend HAProxy as it is (the runtime keeps its servers and states). */
  adopt(pid: number, fds: readonly number[]): void {
    this.adoptions.push({ pid, fds: [...fds] });
    this.currentPid = pid;
    this.adoptedPid = pid;
    this.runtime.currentPid = pid;
    this.running = true;
  }

  /** What a crash restart does: HAProxy comes back from the config file, and the agent hears of it. */
  crashAndRestart(): void {
    const pid = ++this.nextPid;
    this.runtime.load(this.files.files.get(this.configPath) ?? '', pid);
    this.currentPid = pid;
    this.restarts++;
    this.emit('restarted', pid);
  }

  handOver(): void {
    this.handOvers++;
    this.running = false;
  }

  async stop(): Promise<void> {
    this.stops++;
    this.running = false;
  }
}

/** Listening sockets as numbers; `busy` ports fail to bind (EADDRINUSE), like a port another process holds. */
export class FakeSocketPool implements SocketPool {
  readonly open = new Map<string, number>();
  readonly busy = new Set<number>();
  /** The listening sockets a previous agent's HAProxy holds (`address|port` → fd), copied by adoptFrom. */
  readonly inherited = new Map<string, number>();
  private nextFd = 10;

  acquire(address: string, port: number): number {
    const key = `${address}|${port}`;
    const fd = this.open.get(key);
    if (fd !== undefined) return fd;
    if (this.busy.has(port))
      throw new ProxyMgrError('SOCKET_BIND_FAILED', `cannot listen on ${address}:${port}: EADDRINUSE`, {
        cause: errno('EADDRINUSE'),
      });
    this.open.set(key, ++this.nextFd);
    return this.nextFd;
  }

  release(keep: ReadonlySet<string>): string[] {
    const closed: string[] = [];
    for (const key of [...this.open.keys()]) {
      if (keep.has(key)) continue;
      this.open.delete(key);
      closed.push(key.replace('|', ':'));
    }
    return closed;
  }

  closeAll(): void {
    this.release(new Set());
  }

  /** As HAProxy holds them: fd 4 on, in the order of `inherited`. */
  adoptFrom(): Map<number, AdoptedSocket> {
    const adopted = new Map<number, AdoptedSocket>();
    for (const [key, fd] of this.inherited) {
      this.open.set(key, fd);
      adopted.set(4 + adopted.size, { address: key.replace('|', ':'), fd });
    }
    return adopted;
  }
}

/** `haproxy -c` that passes, or throws what `failWith` returns; records the fds of every check. */
export class FakeCheck {
  readonly calls: { configFile: string; fds: readonly number[] }[] = [];
  failWith: ((configText: string) => Error | undefined) | undefined;

  readonly check: ConfigCheck = async (_binary, configFile, configText, fds) => {
    this.calls.push({ configFile, fds: [...fds] });
    const err = this.failWith?.(configText);
    if (err) throw err;
  };
}

/** An Agent on fakes only, with the fakes to drive and inspect it. Paths point nowhere: nothing touches them. */
export function fakeAgent(driftCheckIntervalMs = 1000, previous?: PreviousAgent) {
  const dir = '/nonexistent/proxymgr-fake-agent';
  const config: ProxyMgrConfig = parseConfig(
    `haproxy:
  config_path: ${dir}/haproxy.cfg
  socket_path: ${dir}/haproxy.sock
agent:
  state_dir: ${dir}
  drift_check_interval_ms: ${driftCheckIntervalMs}
`,
    `${dir}/proxymgr.yml`,
  );
  // A second agent on the same host shares the state dir, the running HAProxy and the time of the first.
  const clock = previous?.clock ?? new FakeClock(1_000_000);
  const files = previous?.files ?? new FakeFiles();
  const runtime = previous?.runtime ?? new FakeRuntime();
  const supervisor = new FakeSupervisor(files, runtime, config.haproxy.configPath);
  const sockets = new FakeSocketPool();
  for (const [key, fd] of previous?.sockets.open ?? []) sockets.inherited.set(key, fd);
  const stopped: number[] = [];
  const check = new FakeCheck();
  const agent = new Agent({
    config,
    log: silentLogger,
    runtime,
    clock,
    makeSupervisor: () => supervisor,
    channels: undefined,
    identity: { user: '', group: '' },
    sockets,
    checkConfig: check.check,
    writeFile: files.write,
    random: () => 0.5, // retries exactly at their backoff step
    previous: {
      find: () => (previous ? [previous.haproxyPid] : []),
      readFile: async (file) => files.files.get(file) ?? '',
      stop: async (pid) => void stopped.push(pid),
    },
  });
  return { agent, config, clock, files, runtime, supervisor, sockets, check, stopped };
}

/** What a second fakeAgent takes over from the first (see fakeAgent): its state dir, HAProxy, sockets and time. */
export interface PreviousAgent {
  readonly clock: FakeClock;
  readonly files: FakeFiles;
  readonly runtime: FakeRuntime;
  readonly sockets: FakeSocketPool;
  /** The pid of the HAProxy it left running. */
  readonly haproxyPid: number;
}
