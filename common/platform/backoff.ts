/**
 * How a delay is spread so a fleet does not retry in step:
 * - `none`: exactly the exponential step;
 * - `equal`: uniform in [step/2, step] (never longer than the cap);
 * - `centered`: uniform in [step/2, 3·step/2) (±50 % around the step, may pass the cap by half).
 */
export type Jitter = 'none' | 'equal' | 'centered';

export interface BackoffOptions {
  readonly baseMs: number;
  readonly maxMs: number;
  readonly jitter?: Jitter;
  /** For tests: a source in [0, 1). */
  readonly random?: () => number;
}

/** Doublings stop here; the cap is reached long before (base·2^20 is more than a day for any base ≥ 100 ms). */
const MAX_DOUBLINGS = 20;

/**
 * Exponential backoff: the delay before retry number `attempt` (0 = the first retry) is baseMs·2^attempt, capped
 * at maxMs, then spread by `jitter` (jittered delays are rounded to whole milliseconds).
 */
export function backoffMs(attempt: number, options: BackoffOptions): number {
  const step = Math.min(options.maxMs, options.baseMs * 2 ** Math.min(Math.max(0, attempt), MAX_DOUBLINGS));
  const jitter = options.jitter ?? 'none';
  if (jitter === 'none') return step;
  const r = (options.random ?? Math.random)();
  return jitter === 'equal' ? Math.round(step / 2 + (r * step) / 2) : Math.round(step * (0.5 + r));
}
