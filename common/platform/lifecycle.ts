import { Clock, Timer } from './clock';
import { LifecycleError } from './errors';
import { Logger } from './log';

/** How long a stopped process may take to exit by itself before it is made to. */
const EXIT_GRACE_MS = 5000;

/**
 * Runs until SIGINT/SIGTERM, then stops HAProxy and everything else cleanly. With `handOver`, SIGUSR2 instead
 * exits leaving HAProxy serving on its sockets for the next agent (restart, upgrade). Once stopped, whatever a
 * library leaves open (a ZooKeeper client's reconnect timer, a socket) must not keep the process alive: after a
 * grace period it exits anyway, naming what was still open.
 */
export async function runUntilSignal(
  log: Logger,
  stop: () => Promise<void>,
  handOver?: () => Promise<void>,
  signal: Promise<'stop' | 'hand over'> = listenForSignals(handOver !== undefined),
): Promise<number> {
  const how = await signal;
  if (how === 'hand over' && handOver) {
    log.info({}, 'handing over: HAProxy keeps serving on its sockets until the next agent takes it over');
    await handOver();
    log.info({}, 'handed over');
  } else {
    log.info({}, 'stopping');
    await stop();
    log.info({}, 'stopped');
  }
  setTimeout(() => {
    log.warn({ open: openHandles() }, `still running ${EXIT_GRACE_MS} ms after stopping; exiting`);
    process.exit(0);
  }, EXIT_GRACE_MS).unref();
  return 0;
}

/**
 * Installs the signal handlers now and resolves with the first signal's meaning. Call it before starting: a
 * SIGTERM or SIGUSR2 that arrives while the process starts (applying the cached state, a first reload) would
 * otherwise end it with Node's default action, half-started. Later signals are ignored while stopping: a second
 * Ctrl-C must not kill the agent before it has stopped its HAProxy. SIGKILL still works.
 */
export function listenForSignals(handOver: boolean): Promise<'stop' | 'hand over'> {
  return new Promise((resolve) => {
    process.on('SIGINT', () => resolve('stop'));
    process.on('SIGTERM', () => resolve('stop'));
    if (handOver) process.on('SIGUSR2', () => resolve('hand over'));
  });
}

/** What keeps the event loop alive, by kind (and address for sockets). */
function openHandles(): string[] {
  const handles = (process as unknown as { _getActiveHandles(): object[] })._getActiveHandles();
  return handles.map((h) => {
    const name = h.constructor?.name ?? typeof h;
    const sock = h as { remoteAddress?: string; remotePort?: number; localPort?: number };
    return sock.remoteAddress
      ? `${name} ${sock.remoteAddress}:${sock.remotePort}`
      : sock.localPort
        ? `${name} :${sock.localPort}`
        : name;
  });
}

/** Starts a process; if that fails half-way, stops what did start (HAProxy included) before the error surfaces. */
export async function startOrStop(proc: { start(): Promise<void>; stop(): Promise<void> }): Promise<void> {
  try {
    await proc.start();
  } catch (err) {
    await proc.stop().catch(() => undefined);
    throw err;
  }
}

/**
 * A long-lived component's lifecycle state: a string union and the transitions allowed between its states, listed
 * once. Any other transition throws a LifecycleError naming the component, its state and what was attempted.
 *
 *   type State = 'idle' | 'running' | 'stopping' | 'stopped';
 *   const lc = new Lifecycle<State>('discovery', 'idle', { idle: ['running', 'stopping'], running: ['stopping'], stopping: ['stopped'], stopped: [] });
 *   lc.to('running', 'start');           // throws "discovery: cannot start: it is stopped" once stopped
 */
export class Lifecycle<S extends string> {
  private current: S;

  constructor(
    private readonly component: string,
    initial: S,
    private readonly transitions: { readonly [K in S]: readonly S[] },
  ) {
    this.current = initial;
  }

  get state(): S {
    return this.current;
  }

  is(...states: readonly S[]): boolean {
    return states.includes(this.current);
  }

  /** Moves to `next`; `action` (what the caller was asked to do) names the refused operation in the error. */
  to(next: S, action: string = next): void {
    if (!this.transitions[this.current].includes(next)) throw this.refuse(action);
    this.current = next;
  }

  /** The error for `action` in the current state (for callers that report instead of throwing). */
  refuse(action: string): LifecycleError {
    return new LifecycleError(`${this.component}: cannot ${action}: it is ${this.current}`);
  }
}

/**
 * Waits until `p` settles (either way) or `ms` pass on `clock`, whichever comes first; true when it settled. For a
 * stop() that waits for something it asked to end, without hanging on it if it never reports back.
 */
export async function settleWithin(p: Promise<unknown>, ms: number, clock: Clock): Promise<boolean> {
  let bound: Timer | undefined;
  const settled = p.then(
    () => true,
    () => true,
  );
  const timedOut = new Promise<boolean>((resolve) => (bound = clock.setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([settled, timedOut]);
  } finally {
    clock.clearTimeout(bound);
  }
}
