import type { EventEmitter } from 'node:events';
import type { DesiredState } from '../common/types';
import type { ApplyResult } from './results';

// The seams of the Agent: what it uses of HAProxy's processes, the listening sockets, `haproxy -c` and the state
// dir, each as a small interface. The real implementations (HaproxySupervisor, haproxy/sockets.ts, checkConfig,
// writeFileAtomic) are the defaults; unit tests pass fakes and run the Agent's timing logic in milliseconds.
// This file imports no implementation: a fake must not load the native socket addon or spawn anything.

/**
 * What the Agent (and its admin API, health and metrics) uses of the HAProxy supervisor (see HaproxySupervisor).
 * Events: 'restarted' (pid) after a crash restart; 'exit' ({ pid, code, signal, current }).
 */
export interface Supervisor extends Pick<EventEmitter, 'on' | 'once' | 'off'> {
  /** Whether a HAProxy runs (started, reloaded or adopted). */
  readonly running: boolean;
  /** The current HAProxy's pid while one runs. */
  readonly pid: number | undefined;
  /** Crash restarts so far. */
  readonly restarts: number;
  /** The pid of the HAProxy taken over from a previous agent, while it is the current process. */
  readonly adoptedPid: number | undefined;
  /** Starts HAProxy on `fds` (none runs) or reloads it seamlessly (one runs); resolves with the new pid once it answers. */
  /** `prepare` (writing the config the launch runs) is awaited in the launch's turn, after any crash restart. */
  startOrReload(fds: readonly number[], prepare?: () => Promise<void>): Promise<number>;
  /** Takes over a HAProxy a previous agent left running (and the older ones still soft-stopping). */
  adopt(pid: number, fds: readonly number[], softStopping?: readonly number[]): void;
  /** Takes over processes that are all soft-stopping (none is current; see HaproxySupervisor). */
  adoptSoftStopping?(pids: readonly number[]): void;
  /** Stops supervising and leaves HAProxy serving for the next agent. */
  handOver(): void;
  /** Stops every HAProxy and waits until they have exited. */
  stop(): Promise<void>;
}

/** The listening sockets the agent owns, one per address and port (see haproxy/sockets.ts). */
export interface SocketPool {
  /** The fd listening on address:port, bound on first use; throws SOCKET_BIND_FAILED (cause: the errno). */
  acquire(address: string, port: number): number;
  /** Closes every socket whose `address|port` key is not in `keep`; returns the `address:port` of each closed. */
  release(keep: ReadonlySet<string>): string[];
  closeAll(): void;
  /** Copies the listening sockets of a running process into the pool; returns them by their fd number there. */
  adoptFrom(pid: number): ReadonlyMap<number, AdoptedSocket>;
}

/** A listening socket of a running process, as the pool holds it. */
export interface AdoptedSocket {
  /** `address:port` */
  readonly address: string;
  /** The pool's fd for it. */
  readonly fd: number;
}

/**
 * `haproxy -c` on a candidate config with the listening fds (see haproxy/check.ts checkConfig). Throws
 * HaproxyConfigError when HAProxy rejects it, HAPROXY_CHECK_FAILED when the check could not run.
 */
export type ConfigCheck = (
  binary: string,
  configFile: string,
  configText: string,
  fds: readonly number[],
) => Promise<void>;

/**
 * Writes a file of the state dir atomically, unless it already holds `content` (see common/fs.ts writeFileAtomic).
 * Resolves with whether it was (re)written.
 */
export type FileWriter = (file: string, content: string, mode?: number) => Promise<boolean>;

/** Applies a desired state (the agent's apply). */
export type ApplyFn = (state: DesiredState) => Promise<ApplyResult>;

/** Where desired states come from: a file, or the control plane's gRPC stream — the agent sees only this. */
export interface StateSource {
  /** Calls `apply` with the current state and again on every change, until stop(). */
  start(apply: ApplyFn): Promise<void>;
  /** Resolves once nothing of the source is left open (streams, watchers, timers). */
  stop(): Promise<void>;
}

/** The HAProxy a previous agent left running (a restart, an upgrade, a kill -9), as the takeover sees it. */
export interface PreviousHaproxy {
  /** Every HAProxy running `configPath` (not `-c`), oldest first: the newest is current, the others soft-stop. */
  find(configPath: string): number[];
  /** A file the previous agent left: the config HAProxy runs, the servers it drained (empty when unreadable). */
  readFile(file: string): Promise<string>;
  /** Stops one that cannot be taken over, so that its ports can be bound again. */
  stop(pid: number): Promise<void>;
}
