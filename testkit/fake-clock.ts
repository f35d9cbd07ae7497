import type { Clock, Timer } from '../common/platform/clock';

interface FakeTimer {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
}

/**
 * A clock for tests: time stands still until `advance` moves it, which runs the timers that fall due in order
 * (a timer set by a callback runs in the same advance if it falls due within it).
 *
 *   const clock = new FakeClock();
 *   const s = new HaproxySupervisor({ …, clock });
 *   clock.advance(100);                  // the restart backoff ends now, not 100 ms from now
 */
export class FakeClock implements Clock {
  private nowMs: number;
  private seq = 0;
  private readonly timers = new Map<number, FakeTimer>();

  constructor(startMs = 0) {
    this.nowMs = startMs;
  }

  now(): number {
    return this.nowMs;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const seq = ++this.seq;
    this.timers.set(seq, { at: this.nowMs + Math.max(0, ms), seq, fn });
    return seq;
  }

  clearTimeout(timer: Timer | undefined): void {
    if (typeof timer === 'number') this.timers.delete(timer);
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.timers.size;
  }

  /** When the next timer falls due, or undefined if none is set. */
  get nextAt(): number | undefined {
    return this.next()?.at;
  }

  /** Moves time forward by `ms`, running every timer that falls due on the way (synchronously). */
  advance(ms: number): void {
    const end = this.nowMs + ms;
    for (let t = this.next(); t && t.at <= end; t = this.next()) this.fire(t);
    this.nowMs = end;
  }

  /**
   * Like `advance`, but lets the event loop turn before and after every timer, so promise chains a callback
   * starts (an await on a store, a spawn that resolves) settle before the next timer runs.
   */
  async advanceAsync(ms: number): Promise<void> {
    const end = this.nowMs + ms;
    await turn();
    for (let t = this.next(); t && t.at <= end; t = this.next()) {
      this.fire(t);
      await turn();
    }
    this.nowMs = end;
  }

  /** Runs the first timer due at or before `limit` (time moves to it); false when there is none. */
  fireNext(limit: number): boolean {
    const t = this.next();
    if (!t || t.at > limit) return false;
    this.fire(t);
    return true;
  }

  /** Moves time to `ms` (never back) without running a timer: a paused host, whose timers then run late. */
  jump(ms: number): void {
    this.nowMs = Math.max(this.nowMs, ms);
  }

  private next(): FakeTimer | undefined {
    let first: FakeTimer | undefined;
    for (const t of this.timers.values())
      if (!first || t.at < first.at || (t.at === first.at && t.seq < first.seq)) first = t;
    return first;
  }

  private fire(t: FakeTimer): void {
    this.timers.delete(t.seq);
    this.nowMs = Math.max(this.nowMs, t.at);
    t.fn();
  }
}

/** One turn of the event loop: every queued microtask (resolved awaits) runs before it ends. */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
