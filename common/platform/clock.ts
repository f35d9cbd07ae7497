/** An opaque timer handle: only the clock that made it can clear it. */
export type Timer = unknown;

/** Time and timers, injected wherever behaviour depends on them so the timing is tested without waiting. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  /** Clears a timer of this clock; `undefined` (or a timer that already ran) is ignored. */
  clearTimeout(timer: Timer | undefined): void;
}

/** The real clock: `Date.now` and Node's timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout | undefined),
};

/** Lets a real timer not keep the process alive by itself; a fake clock's timers are left as they are. */
export function unrefTimer(timer: Timer): void {
  (timer as { unref?: () => void } | undefined)?.unref?.();
}
