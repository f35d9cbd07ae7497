import type { EventEmitter } from 'node:events';
import type { DesiredState } from '../common/protocol/types';
import type { ApplyResult } from './results';
import type { RuntimeState } from './haproxy/servers-state';
import type { ReloadSnapshot } from './haproxy/generations';

// The seams of the Agent: what it uses of HAProxy's processes, the listening sockets, `haproxy -c` and the state
// dir, each as a small interface. The real implementations (HaproxySupervisor, haproxy/sockets.ts, checkConfig,
// writeFileAtomic) are the defaults; unit tests pass fakes and run the Agent's timing logic in milliseconds.
// This file imports no implementation: a fake must not load the native socket addon or spawn anything.

/**
 * What the Agent (and its admin API, health and metrics) uses of the HAProxy supervisor (see HaproxySupervisor).
 * Events: 'restarted' (pid) after a crash restart; 'exit' ({ pid, code, signal, current }); 'reload-completed'
 * (duration ms, launch to the old generation gone).
 */
export interface Supervisor extends Pick<EventEmitter, 'on' | 'once' | 'off'> {
  /** Whether a HAProxy runs (started, reloaded or adopted). */
  readonly running: boolean;
  /** The current HAProxy's pid while one runs. */
  readonly pid: number | undefined;
  /** Crash restarts so far. */
  readonly restarts: number;
  /** Reload count, durations (launch to the old generation gone) and the old generations alive (fakes may omit it). */
  reloadStats?(): ReloadSnapshot;
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

/** The HAProxy runtime API, one command per connection (see haproxy/runtime.ts, haproxy/admin-channel.ts). */
export interface RuntimeApi {
  /** Sends one command and returns HAProxy's whole reply. */
  command(cmd: string): Promise<string>;
  /** `show servers state [backend]`: every backend, or only the one named. */
  serversState(backend?: string): Promise<RuntimeState>;
  /** The pid of the process answering. */
  pid(): Promise<number>;
}

/**
 * The admin channels of the HAProxy processes the agent starts (see haproxy/admin-channel.ts AdminChannels): a
 * RuntimeApi that reaches the current process, kept open across agent restarts by a keeper process.
 */
export interface AdminChannelSet extends RuntimeApi {
  /** Whether commands reach the current HAProxy's admin channel (not only the read-only socket). */
  readonly connected: boolean;
  /** Finds the channel of an adopted HAProxy; resolves with why there is none, or undefined when found. */
  recover(haproxyPid: number): Promise<string | undefined>;
  /** Closes the channel and stops its keeper (the agent stops HAProxy). */
  close(): void;
  /** Lets go of the channel and leaves its keeper for the next agent (a hand-over). */
  release(): void;
  /** Stops a keeper a previous agent recorded (no HAProxy to take over). */
  stopRecordedKeeper(): void;
}

/** The user and group rendered into HAProxy's `global` section; "" = HAProxy keeps the agent's identity. */
export interface HaproxyIdentity {
  readonly user: string;
  readonly group: string;
}

/** The key a SocketPool knows a socket by: `address|port`. */
export function socketKey(address: string, port: number): string {
  return `${address}|${port}`;
}

/** The listening sockets the agent owns, one per address and port (see haproxy/sockets.ts). */
export interface SocketPool {
  /** The fd listening on address:port, bound on first use; throws SOCKET_BIND_FAILED (cause: the errno). */
  acquire(address: string, port: number): number;
  /** Closes every socket whose socketKey is not in `keep`; returns the `address:port` of each closed. */
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
 * `haproxy -c` on a candidate config with the listening fds (see haproxy/config-check.ts checkConfig). Throws
 * HaproxyConfigError when HAProxy rejects it, HAPROXY_CHECK_FAILED when the check could not run.
 */
export type ConfigCheck = (
  binary: string,
  configFile: string,
  configText: string,
  fds: readonly number[],
) => Promise<void>;

/**
 * Writes a file of the state dir atomically, unless it already holds `content` (see common/platform/fs.ts writeFileAtomic).
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
  /** A control plane's stream: where it is connected, why it is not, what it carried. */
  readonly controlPlane?: ControlPlaneLink;
  /** Answers the last push again, with the result of a retry (a control plane hears the new answer). */
  answerAgain?(result: ApplyResult): Promise<void>;
}

/** The state of a source's link to the control plane (status, metrics). */
export interface ControlPlaneLink {
  /** The control plane's address while connected. */
  readonly connectedTo: string | undefined;
  /** Why the last connection ended ('' when none did). */
  readonly lastError: string;
  /** Pushes taken (full: a first sync or a resync's answer), resyncs asked for, messages cut to fit. */
  readonly stats: { readonly full: number; readonly deltas: number; readonly resyncs: number; readonly cut: number };
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
