import { Clock, systemClock } from '../common/platform/clock';

/**
 * Coalesces bursts: `poke()` schedules `flush` `delayMs` after the latest poke, but never later than `maxDelayMs`
 * after the first poke of the burst — so a steady stream of events still produces a snapshot at least every
 * `maxDelayMs` (the original ProxyMgr's ever-growing debounce could starve).
 */
export class Coalescer {
  private timer: unknown;
  private firstAt = 0;
  private dueAt = 0;

  constructor(
    private readonly flush: () => void,
    private readonly delayMs: number,
    private readonly maxDelayMs: number,
    private readonly clock: Clock = systemClock,
  ) {}

  poke(): void {
    const now = this.clock.now();
    if (this.timer === undefined) this.firstAt = now;
    const due = Math.min(now + this.delayMs, this.firstAt + this.maxDelayMs);
    if (this.timer !== undefined) {
      if (due === this.dueAt) return;
      this.clock.clearTimeout(this.timer);
    }
    this.dueAt = due;
    this.timer = this.clock.setTimeout(() => this.fire(), Math.max(0, due - now));
  }

  /** Runs a pending flush now (e.g. on stop), or does nothing. */
  flushNow(): void {
    if (this.timer !== undefined) {
      this.clock.clearTimeout(this.timer);
      this.fire();
    }
  }

  cancel(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private fire(): void {
    this.timer = undefined;
    this.flush();
  }
}
