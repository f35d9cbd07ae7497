import { ChildProcess, spawn as nodeSpawn, SpawnOptions } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { backoffDelay, haproxyLogLevel } from './process-helpers';
import { Clock, systemClock, Timer, unrefTimer } from '../../common/platform/clock';
import { ProxyMgrError } from '../../common/platform/errors';
import { writeFileAtomic } from '../../common/platform/fs';
import { Logger } from '../../common/platform/log';
import { PidHandles } from './pid-handle';
import type { Supervisor } from '../ports';
import { AdminChannelSource, OpenedChannel } from './admin-channel';
import { ReloadLedger, ReloadSnapshot, stopExcessGenerations } from './generations';
import type { RuntimeApi } from '../ports';

export type SpawnFn = (cmd: string, args: string[], opts: SpawnOptions) => ChildProcess;

export interface SupervisorOptions {
  readonly binary: string;
  readonly configPath: string;
  /**
   * Gives each process it starts its own admin channel (fd 3), through which it is asked whether it answers. Without
   * one (unit tests on a fake spawn), `runtime` is asked and fd 3 is left closed.
   */
  readonly channels?: AdminChannelSource;
  readonly runtime?: RuntimeApi;
  readonly log: Logger;
  readonly spawn?: SpawnFn;
  /**
   * How long a new HAProxy may take to answer on its admin channel (10 s). Doubled after each start that ran out of it
   * (up to 8×; reset by a start that answered): a large config on a loaded host would otherwise fail every retry alike.
   */
  readonly readyTimeoutMs?: number;
  readonly restartBaseMs?: number;
  readonly restartMaxMs?: number;
  /** Where the running HAProxy's pid is recorded (see orphan.ts). */
  readonly pidFile?: string;
  /**
   * Restart timers, the crash window, the watch of an adopted process and the readiness deadline (default: the real
   * clock). With a fake clock, a start waits for its process to answer only while the clock is advanced.
   */
  readonly clock?: Clock;
  /**
   * Runs before a crashed HAProxy is started again: the agent writes the committed haproxy.cfg. When it throws, that
   * restart attempt fails (and is retried with backoff).
   */
  readonly beforeRestart?: () => Promise<void>;
  /**
   * Processes that are not our children (adopted HAProxy processes): held from adoption on, asked whether they run,
   * stopped. Default: pidfds (PidHandles), so a signal never reaches a process that reused an adopted pid. The
   * simulator's processes are not in /proc.
   */
  readonly pids?: AdoptedPids;
  /**
   * The most old generations (soft-stopping processes) alive at once (default 3): after a launch, the oldest beyond it
   * are stopped hard (SIGTERM), their connections cut (agent.max_old_generations, docs/agent.md).
   */
  readonly maxOldGenerations?: number;
  /** Counts the client connections still open on a process about to be stopped hard (default: not counted). */
  readonly connectionsOf?: (pid: number) => number | undefined;
}

export { backoffDelay, haproxyLogLevel } from './process-helpers';

type State = 'stopped' | 'starting' | 'running' | 'restarting' | 'stopping';

/** See SupervisorOptions.pids. */
export interface AdoptedPids {
  /** Holds `pid` from now on; false when it already exited. */
  track?(pid: number): boolean;
  alive(pid: number): boolean;
  /** SIGUSR1 (what -sf sends), to that process or nobody. */
  softStop?(pid: number): void;
  stop(pid: number): Promise<void>;
}

/** How often an adopted HAProxy (not our child, so no exit event) is checked. */
const ADOPTED_POLL_MS = 500;

/**
 * Owns the HAProxy processes. HAProxy runs in the foreground (`-db`), one process per generation, listening on
 * fds the agent hands over. A reload starts a new process on the same fds with `-sf <old pid>`; the old one
 * soft-stops on its own (bounded by hard-stop-after). The agent is the supervisor: HAProxy 2.6's own
 * master-worker mode exits entirely when a worker dies. If the current process dies, it is restarted with
 * backoff on the same fds; meanwhile connections wait in the kernel backlog of the agent's sockets.
 *
 * Events: 'restarted' (pid) after a crash restart; 'exit' ({pid, code, signal, current}); 'reload-completed'
 * (duration ms: from the launch of a reload to the exit of the generation it replaced).
 */
export class HaproxySupervisor extends EventEmitter implements Supervisor {
  private state: State = 'stopped';
  private current: ChildProcess | undefined;
  private fds: readonly number[] = [];
  private readonly all = new Set<ChildProcess>();
  /** Children killed or stopped and not yet reaped: no longer a generation to soft-stop. */
  private readonly ending = new WeakSet<ChildProcess>();
  private closed = false;
  private crashes = 0;
  private lastStart = 0;
  private slowStarts = 0; // starts in a row that did not answer within their deadline
  private restartTimer: Timer | undefined;
  /** A HAProxy a previous agent left running and this one took over (not our child: watched by polling). */
  private adopted: number | undefined;
  /** Every adopted pid not yet gone (an adopted process soft-stops after the next reload). */
  private readonly adoptedPids = new Set<number>();
  private adoptedWatch: Timer | undefined;
  private readonly spawn: SpawnFn;
  private readonly pids: AdoptedPids;
  private readonly clock: Clock;
  /** The launch in progress (see oneAtATime). */
  private launching: Promise<unknown> = Promise.resolve();
  reloads = 0;
  restarts = 0;
  /** Reloads, their durations and the old generations alive (see generations.ts). */
  private readonly ledger: ReloadLedger;

  constructor(private readonly opts: SupervisorOptions) {
    super();
    if (!opts.channels && !opts.runtime) throw new TypeError('HaproxySupervisor: give channels or a runtime');
    this.spawn = opts.spawn ?? nodeSpawn;
    this.pids = opts.pids ?? new PidHandles();
    this.clock = opts.clock ?? systemClock;
    this.ledger = new ReloadLedger(() => this.clock.now(), opts.maxOldGenerations);
    this.ledger.onCompleted((ms) => this.emit('reload-completed', ms));
  }

  /** Reload count, durations and the old generations still alive. */
  reloadStats(): ReloadSnapshot {
    return this.ledger.snapshot();
  }

  get pid(): number | undefined {
    return this.state === 'running' ? (this.current?.pid ?? this.adopted) : undefined;
  }

  get adoptedPid(): number | undefined {
    return this.state === 'running' && this.current === undefined ? this.adopted : undefined;
  }

  get running(): boolean {
    return this.state === 'running';
  }

  /** Starts HAProxy (no process runs yet) or reloads it (one runs): resolves once the new process answers. */
  async startOrReload(fds: readonly number[], prepare?: () => Promise<void>): Promise<number> {
    if (this.closed)
      throw new ProxyMgrError('HAPROXY_START_FAILED', 'the supervisor was stopped; no new HAProxy is started');
    this.clock.clearTimeout(this.restartTimer);
    return this.oneAtATime(async () => {
      if (this.closed)
        throw new ProxyMgrError('HAPROXY_START_FAILED', 'the supervisor was stopped; no new HAProxy is started');
      this.clock.clearTimeout(this.restartTimer); // a crash restart armed while this waited: this start replaces it
      // The config is written here, in the launch's turn: written before it, a crash restart in between would start
      // this file on the fds of the process that runs.
      await prepare?.();
      // An adopted process is re-identified (its pidfd) before its pid goes to -sf, which HAProxy signals blindly.
      const adopted = this.adopted !== undefined && this.pids.alive(this.adopted) ? this.adopted : undefined;
      const oldPid = this.state === 'running' ? (this.current?.pid ?? adopted) : undefined;
      const pid = await this.launch(fds, oldPid);
      if (oldPid !== undefined) this.reloads++;
      return pid;
    });
  }

  /**
   * Launches run one at a time — an apply's start or reload and a crash restart never overlap — and after each
   * successful one every other process still alive is told to soft-stop (SIGUSR1, what -sf sends): only the newest
   * generation accepts new connections. (Two overlapping launches once left two HAProxy processes accepting on the
   * shared sockets, the older one unreachable and never signalled.)
   */
  private oneAtATime<T>(f: () => Promise<T>): Promise<T> {
    const run = this.launching.then(f, f);
    this.launching = run.catch(() => undefined);
    return run;
  }

  /**
   * Takes over a HAProxy a previous agent left running (restart, upgrade, kill -9): it becomes the current
   * process — the next reload soft-stops it with -sf — and is watched by polling, since it is not our child. A
   * crash restarts HAProxy on `fds` (the sockets copied from it, in the order of its config file).
   */
  adopt(pid: number, fds: readonly number[], softStopping: readonly number[] = []): void {
    if (this.closed) throw new ProxyMgrError('HAPROXY_START_FAILED', 'the supervisor was stopped');
    this.adopted = pid;
    // Held from here on (pidfds): a process already gone is not adopted; its exit shows at the first poll.
    for (const p of [...softStopping, pid]) if (this.pids.track?.(p) !== false) this.adoptedPids.add(p);
    // Old generations from here on, aged from the takeover (only those held: an exit is seen only for them).
    const held = softStopping.filter((p) => this.adoptedPids.has(p));
    this.ledger.launched(this.clock.now(), undefined, held);
    this.current = undefined;
    this.fds = fds;
    this.state = 'running';
    this.lastStart = this.clock.now();
    this.watchAdopted();
    this.opts.log.info({ haproxy_pid: pid }, 'took over the running haproxy');
  }

  /** Polls the adopted processes (not our children: no exit event) until every one has exited. */
  private watchAdopted(): void {
    this.clock.clearTimeout(this.adoptedWatch);
    const poll = () => {
      this.adoptedWatch = undefined;
      for (const p of this.adoptedPids)
        if (!this.pids.alive(p)) {
          this.adoptedPids.delete(p);
          this.ledger.exited(p);
        }
      if (this.adopted !== undefined && !this.adoptedPids.has(this.adopted)) {
        const gone = this.adopted;
        this.adopted = undefined;
        this.onAdoptedExit(gone);
      }
      if (this.adoptedPids.size > 0 && !this.closed) watch();
    };
    const watch = () => {
      this.adoptedWatch = this.clock.setTimeout(poll, ADOPTED_POLL_MS);
      unrefTimer(this.adoptedWatch);
    };
    watch();
  }

  /**
   * Takes over HAProxy processes that are all soft-stopping (no current one: the previous agent's last launch is
   * gone): they are watched until they exit and soft-stopped again by the next launch; nothing runs until then.
   */
  adoptSoftStopping(pids: readonly number[]): void {
    if (this.closed) throw new ProxyMgrError('HAPROXY_START_FAILED', 'the supervisor was stopped');
    for (const p of pids) if (this.pids.track?.(p) !== false) this.adoptedPids.add(p);
    const held = pids.filter((p) => this.adoptedPids.has(p));
    this.ledger.launched(this.clock.now(), undefined, held);
    this.watchAdopted();
    this.opts.log.info({ haproxy_pids: pids }, 'took over soft-stopping haproxy processes (none accepts)');
  }

  private onAdoptedExit(pid: number): void {
    this.emit('exit', { pid, code: null, signal: null, current: true });
    if (this.state !== 'running') return;
    this.crashes = this.clock.now() - this.lastStart > 10_000 ? 1 : this.crashes + 1;
    const delay = backoffDelay(this.crashes, this.opts.restartBaseMs ?? 100, this.opts.restartMaxMs ?? 5000);
    this.opts.log.error(
      { haproxy_pid: pid, restart_in_ms: delay },
      'the adopted haproxy died; restarting on the same sockets',
    );
    this.state = 'restarting';
    this.restartTimer = this.clock.setTimeout(() => void this.restart(), delay);
  }

  /**
   * Hands over: stops supervising without stopping anything. HAProxy keeps serving on its sockets; the next agent
   * started with the same configuration takes it over (adopt). What `systemctl restart` and upgrades do.
   */
  handOver(): void {
    this.closed = true;
    this.clock.clearTimeout(this.restartTimer);
    this.clock.clearTimeout(this.adoptedWatch);
    this.state = 'stopped';
    for (const p of this.all) {
      p.stdout?.destroy();
      p.stderr?.destroy();
      p.unref();
    }
  }

  private async launch(fds: readonly number[], oldPid: number | undefined): Promise<number> {
    const launchedAt = this.clock.now();
    const args = ['-db', '-f', this.opts.configPath];
    // Every older generation still alive, not only the current one: after a takeover in the middle of a reload, the
    // process before the adopted one may still accept, and the new process soft-stops them all the moment it
    // listens (waiting for its readiness to signal them left two generations accepting meanwhile).
    // (A crash restart too: a reload that failed after its -sf may have left the old process soft-stopping, or not.)
    const older = [...(oldPid === undefined ? [] : [oldPid]), ...this.olderGenerations(oldPid)];
    if (older.length > 0) args.push('-sf', ...older.map(String));
    this.state = 'starting';
    let child: ChildProcess;
    let channel: OpenedChannel | undefined;
    try {
      channel = this.opts.channels?.open();
      child = this.spawn(this.opts.binary, args, {
        stdio: ['ignore', 'pipe', 'pipe', channel?.haproxyEnd ?? 'ignore', ...fds],
      });
    } catch (err) {
      // spawn throws for some errno values (EBADF, EINVAL …): nothing started, whatever ran keeps running.
      channel?.close();
      this.settleFailedStart(undefined);
      throw new ProxyMgrError('HAPROXY_START_FAILED', `cannot spawn ${this.opts.binary}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    channel?.releaseHaproxyEnd(); // the child has its copy
    const answering = (channel ?? this.opts.runtime)!; // one of them, checked by the constructor
    this.all.add(child);
    const log = this.opts.log.child({ haproxy_pid: child.pid });
    let tail = '';
    const pipe = (source: NodeJS.ReadableStream | null, stream: 'stdout' | 'stderr') => {
      let buf = '';
      source?.on('data', (c: Buffer) => {
        buf += c.toString();
        tail = (tail + c.toString()).slice(-2000);
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (line) log[haproxyLogLevel(line)]({ stream }, line);
        }
      });
    };
    pipe(child.stdout, 'stdout');
    pipe(child.stderr, 'stderr');
    let exited = false;
    child.once('exit', (code, signal) => {
      exited = true;
      this.all.delete(child);
      this.onExit(child, code, signal);
    });
    // EAGAIN, ENOENT … arrive as an event; no 'exit' may follow.
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
      this.all.delete(child);
      log.error({ err: err.message }, 'cannot spawn haproxy');
    });

    const readyWithinMs = (this.opts.readyTimeoutMs ?? 10_000) * 2 ** Math.min(this.slowStarts, 3);
    const deadline = this.clock.now() + readyWithinMs;
    for (;;) {
      if (exited || spawnError) {
        channel?.close();
        // Usually HAProxy exits before it signals its -sf pids (it binds first), but one that crashed after it
        // listened has soft-stopped the old process: not knowing which, the running config is started again.
        this.settleFailedStart(child, oldPid !== undefined && !spawnError);
        throw new ProxyMgrError(
          'HAPROXY_START_FAILED',
          spawnError
            ? `cannot spawn ${this.opts.binary}: ${spawnError.message}`
            : `haproxy exited during start: ${tail.trim()}`,
          { cause: spawnError },
        );
      }
      try {
        if ((await answering.pid()) === child.pid) break;
      } catch {
        // not answering yet
      }
      if (this.clock.now() > deadline) {
        child.kill('SIGKILL');
        this.ending.add(child);
        channel?.close();
        // Whatever ran before stays current (and supervised); without this the state stayed 'starting' forever.
        this.settleFailedStart(child, oldPid !== undefined);
        this.slowStarts++;
        throw new ProxyMgrError(
          'HAPROXY_START_FAILED',
          `haproxy pid ${child.pid} did not answer on ${channel ? 'its admin channel' : 'the stats socket'} within ${readyWithinMs} ms (the next start waits up to ${(this.opts.readyTimeoutMs ?? 10_000) * 2 ** Math.min(this.slowStarts, 3)} ms): ${tail.trim()}`,
        );
      }
      await new Promise<void>((r) => this.clock.setTimeout(r, 10));
    }
    if (this.closed) {
      child.kill('SIGTERM');
      this.ending.add(child);
      channel?.close();
      throw new ProxyMgrError('HAPROXY_START_FAILED', 'the supervisor was stopped while HAProxy started');
    }
    if (channel) this.opts.channels!.activate(channel, child.pid);
    this.slowStarts = 0;
    this.current = child;
    for (const other of this.all)
      if (other !== child && other.exitCode === null && other.signalCode === null) other.kill('SIGUSR1');
    for (const p of this.adoptedPids) if (p !== oldPid) this.pids.softStop?.(p); // (-sf told oldPid)
    this.adopted = undefined; // an adopted process soft-stops (-sf); stop() still waits for it
    this.ledger.launched(launchedAt, oldPid, this.olderGenerations(child.pid));
    this.keepOldGenerationsBounded(log);
    this.fds = fds;
    this.state = 'running';
    this.lastStart = this.clock.now();
    if (this.opts.pidFile)
      await writeFileAtomic(this.opts.pidFile, `${child.pid}\n`).catch((err: Error) =>
        log.warn({ err: err.message }, 'cannot write the pid file'),
      );
    log.info({ old_pid: oldPid }, oldPid ? 'haproxy reloaded' : 'haproxy started');
    return child.pid;
  }

  /** Stops (SIGTERM) the oldest old generations beyond maxOldGenerations: see stopExcessGenerations. */
  private keepOldGenerationsBounded(log: Logger): void {
    stopExcessGenerations(this.ledger, log, this.opts.connectionsOf, (pid) => {
      const child = [...this.all].find((p) => p.pid === pid);
      if (child) {
        child.kill('SIGTERM');
        this.ending.add(child);
      } else if (this.adoptedPids.has(pid)) void this.pids.stop(pid).catch(() => undefined);
      return child !== undefined || this.adoptedPids.has(pid);
    });
  }

  /** Live processes older than the current one (`except`): soft-stopping already, told again by the next -sf. */
  private olderGenerations(except: number | undefined): number[] {
    const children = [...this.all]
      .filter((p) => p.exitCode === null && p.signalCode === null && !this.ending.has(p))
      .map((p) => p.pid!);
    const adopted = [...this.adoptedPids].filter((p) => this.pids.alive(p));
    return [...new Set([...children, ...adopted])].filter((p) => p !== except);
  }

  /**
   * After a failed start. Without -sf, what ran before keeps running (and stays current), else nothing runs. After a
   * reload (-sf) that spawned a process, the old one may have been told to soft-stop already — HAProxy signals the
   * -sf pids as soon as it listens, before it answers on its admin channel — so it is not trusted to accept: the
   * committed config is started again at once (a crash restart), which soft-stops it in turn.
   */
  private settleFailedStart(child: ChildProcess | undefined, reload = false): void {
    const cur = this.current;
    const previousRuns =
      (cur !== undefined && cur !== child && cur.exitCode === null && cur.signalCode === null) ||
      this.adopted !== undefined;
    if (!previousRuns) {
      this.state = 'stopped';
      return;
    }
    this.state = 'running';
    if (!reload || child === undefined) return;
    this.opts.log.warn(
      { haproxy_pid: child.pid },
      'a reload failed after its process started (it may have soft-stopped the old one): starting the running config again',
    );
    this.state = 'restarting';
    this.current = undefined;
    this.adopted = undefined;
    this.restartTimer = this.clock.setTimeout(() => void this.restart(), 0);
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    const isCurrent = child === this.current;
    this.ledger.exited(child.pid!);
    this.emit('exit', { pid: child.pid, code, signal, current: isCurrent });
    if (!isCurrent || this.state === 'stopping' || this.state === 'stopped') {
      this.opts.log.debug({ haproxy_pid: child.pid, code, signal }, 'old haproxy exited');
      return;
    }
    if (this.state === 'starting') return; // a newer process is being started; it becomes current or fails
    this.crashes = this.clock.now() - this.lastStart > 10_000 ? 1 : this.crashes + 1;
    const delay = backoffDelay(this.crashes, this.opts.restartBaseMs ?? 100, this.opts.restartMaxMs ?? 5000);
    this.opts.log.error(
      { haproxy_pid: child.pid, code, signal, restart_in_ms: delay },
      'haproxy died; restarting on the same sockets',
    );
    this.state = 'restarting';
    this.current = undefined;
    this.restartTimer = this.clock.setTimeout(() => void this.restart(), delay);
  }

  private async restart(): Promise<void> {
    if (this.state !== 'restarting') return;
    await this.oneAtATime(() => this.restartNow());
  }

  private async restartNow(): Promise<void> {
    if (this.state !== 'restarting') return; // an apply started one meanwhile
    try {
      // Must succeed: it puts back the config the fds belong to (a failed launch may have left another one). Failing
      // (a full disk), the restart waits for its next attempt rather than start a config on the wrong sockets.
      await this.opts.beforeRestart?.();
      if (this.state !== 'restarting') return;
      const pid = await this.launch(this.fds, undefined);
      this.restarts++;
      this.emit('restarted', pid);
    } catch (err) {
      this.opts.log.error({ err: (err as Error).message }, 'haproxy restart failed');
      this.crashes++;
      this.state = 'restarting';
      this.restartTimer = this.clock.setTimeout(
        () => void this.restart(),
        backoffDelay(this.crashes, this.opts.restartBaseMs ?? 100, this.opts.restartMaxMs ?? 5000),
      );
    }
  }

  /** Stops every HAProxy process this supervisor started or adopted (hard stop) and waits for them to exit. */
  async stop(): Promise<void> {
    this.closed = true; // for good: a late apply must not start a HAProxy nobody will stop
    this.state = 'stopping';
    this.clock.clearTimeout(this.restartTimer);
    this.clock.clearTimeout(this.adoptedWatch);
    await Promise.all([...this.adoptedPids].map((pid) => this.pids.stop(pid)));
    this.adoptedPids.clear();
    this.adopted = undefined;
    await Promise.all(
      [...this.all].map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null || p.signalCode !== null) return resolve();
            p.once('exit', () => resolve());
            p.kill('SIGTERM');
            setTimeout(() => p.kill('SIGKILL'), 3000).unref();
          }),
      ),
    );
    this.state = 'stopped';
    this.current = undefined;
  }
}
