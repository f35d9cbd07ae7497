import { backoffMs } from '../common/platform/backoff';
import { Clock, Timer, unrefTimer } from '../common/platform/clock';
import { ErrorCode, ProxyMgrError, StateProblem } from '../common/platform/errors';

/** The first retry after a transient failure, and the longest wait between two (before jitter). */
export const RETRY_BASE_MS = 1000;
export const RETRY_MAX_MS = 60_000;
/**
 * Retries of one held state at most (about 7 minutes of backoff): a config that passes `haproxy -c` and fails at
 * every start cannot be told from a start that failed by chance; it is not retried forever.
 */
export const RETRY_MAX_ATTEMPTS = 10;

/**
 * Failures the same input may not meet again: `haproxy -c` that could not run or was killed, a HAProxy that did
 * not start or answer, a runtime command or a file write that failed, a port taken for a moment. Everything else
 * (HAProxy rejected the config, an invalid state) is permanent: the same input fails the same way, so it waits for
 * the next version.
 */
const TRANSIENT: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'HAPROXY_CHECK_FAILED',
  'HAPROXY_START_FAILED',
  'HAPROXY_RUNTIME',
  'IO_FAILED',
  'SOCKET_BIND_FAILED',
]);

export function isTransientError(error: ProxyMgrError | undefined): boolean {
  return error !== undefined && TRANSIENT.has(error.code);
}

/** Whether an apply left something a retry of the same input may fix. */
export function transientFailure(r: {
  readonly outcome: string;
  readonly error?: ProxyMgrError;
  readonly problems: readonly StateProblem[];
}): string | undefined {
  if (r.outcome === 'rejected') return isTransientError(r.error) ? r.error!.message : undefined;
  const p = r.problems.find((x) => x.transient);
  return p ? `${p.where}: ${p.message}` : undefined;
}

export interface RetryOptions {
  readonly clock: Clock;
  readonly baseMs: number;
  readonly maxMs: number;
  /** In [0, 1): the jitter (default Math.random; the simulator passes its seeded one). */
  readonly random?: () => number;
}

/** What the status says about a pending retry. */
export interface RetryStatus {
  /** Retries made so far for the held state. */
  readonly attempt: number;
  /** When the next one runs (clock ms). */
  readonly at: number;
  readonly reason: string;
}

/**
 * Retries of the held state after a transient failure: exponential backoff with jitter (centered, so a fleet hit
 * by the same outage does not retry in step), reset by any new input. One retry pending at most.
 */
export class Retrier {
  private timer: Timer | undefined;
  private attempts = 0;
  private pending: RetryStatus | undefined;
  private run: (() => void) | undefined;
  /** Retries run so far (metrics). */
  total = 0;

  constructor(private readonly opts: RetryOptions) {}

  get status(): RetryStatus | undefined {
    return this.pending;
  }

  /** A new input arrived (or the held one succeeded): no retry, and the next failure starts from the base delay. */
  reset(): void {
    this.cancel();
    this.attempts = 0;
  }

  /**
   * Arms the next retry of the held state; `run` is called once, unless reset or cancelled first. False (nothing
   * armed) once RETRY_MAX_ATTEMPTS retries of this state have run.
   */
  schedule(reason: string, run: () => void): boolean {
    this.cancel();
    if (this.attempts >= RETRY_MAX_ATTEMPTS) return false;
    const delay = backoffMs(this.attempts, {
      baseMs: this.opts.baseMs,
      maxMs: this.opts.maxMs,
      jitter: 'centered',
      ...(this.opts.random ? { random: this.opts.random } : {}),
    });
    this.attempts++;
    this.pending = { attempt: this.attempts, at: this.opts.clock.now() + delay, reason };
    this.run = run;
    this.timer = this.opts.clock.setTimeout(() => this.runNow(), delay);
    unrefTimer(this.timer);
    return true;
  }

  /** Runs the pending retry now (circumstances changed: HAProxy was just restarted); nothing when none is pending. */
  runNow(): void {
    if (!this.pending) return;
    this.opts.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
    this.total++;
    this.run?.();
  }

  cancel(): void {
    this.opts.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }
}
