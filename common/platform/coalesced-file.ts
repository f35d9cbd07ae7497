import { Clock, Timer, unrefTimer } from './clock';
import { errorMessage } from './errors';

/** Writes `content` to `file` (atomically, in practice common/platform/fs.ts writeFileAtomic). */
export type WriteFn = (file: string, content: string) => Promise<unknown>;

/** The longest a failed write waits before it is tried again. */
const MAX_RETRY_MS = 5000;

/**
 * A file that many quick changes write once (haproxy.cfg and the agent's state cache after runtime
 * changes). `schedule` keeps only the newest content, produced lazily when the write happens, at most `delayMs`
 * later; `writeNow` (before HAProxy starts or reloads) drops what is pending and writes at once, after any write
 * in flight, so an older content never lands after a newer one. A failed write keeps its content pending and is
 * retried with backoff; its error stays in `failure` until a write succeeds.
 */
export class CoalescedFile {
  private pending: (() => string) | undefined;
  private timer: Timer | undefined;
  private chain: Promise<void> = Promise.resolve();
  private failures = 0;
  /** Bumped by every writeNow: a scheduled write that fails after one must not come back over its content. */
  private epoch = 0;
  /** The scheduled content being written now (the fallback of a writeNow that fails behind it). */
  private inFlight: (() => string) | undefined;
  /** The last write's error while writes fail; undefined once one succeeds. */
  failure: string | undefined;

  constructor(
    readonly file: string,
    private readonly write: WriteFn,
    private readonly delayMs: number,
    private readonly clock: Clock,
    private readonly onError: (file: string, err: unknown) => void = () => undefined,
  ) {}

  /** Whether a content waits to be written. */
  get dirty(): boolean {
    return this.pending !== undefined;
  }

  /** Content to write soon; the newest call wins, and `content` runs only when the write happens. */
  schedule(content: () => string): void {
    this.pending = content;
    this.arm(this.delayMs);
  }

  /**
   * Writes `content` now, in place of what is pending; rejects with the write's error, and then what was pending
   * (what runs, when the caller's reload does not happen) is pending again.
   */
  writeNow(content: string): Promise<void> {
    this.epoch++;
    const dropped = this.pending ?? this.inFlight;
    this.pending = undefined;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    const done = this.chain.then(() => this.write(this.file, content));
    this.chain = done.then(
      () => this.succeeded(),
      (err: unknown) => {
        this.failure = errorMessage(err);
        if (dropped && !this.pending) this.schedule(dropped);
      },
    );
    return done.then(() => undefined);
  }

  /** Writes what is pending now; resolves once written (or failed: see `failure`). */
  flush(): Promise<void> {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    const content = this.pending;
    this.pending = undefined;
    if (!content) return this.chain;
    const epoch = this.epoch;
    this.chain = this.chain.then(async () => {
      this.inFlight = content;
      try {
        await this.write(this.file, content());
        this.succeeded();
      } catch (err) {
        this.failures++;
        this.failure = errorMessage(err);
        this.onError(this.file, err);
        // Unless something newer came meanwhile (a schedule, or a writeNow queued behind this write), this content
        // is still what the file should hold.
        if (!this.pending && epoch === this.epoch) {
          this.pending = content;
          this.arm(Math.min(MAX_RETRY_MS, this.delayMs * 2 ** this.failures));
        }
      } finally {
        this.inFlight = undefined;
      }
    });
    return this.chain;
  }

  /** Drops what is pending (the caller writes the file itself, or stops). */
  cancel(): void {
    this.pending = undefined;
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private succeeded(): void {
    this.failures = 0;
    this.failure = undefined;
  }

  private arm(ms: number): void {
    if (this.timer !== undefined) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, ms);
    unrefTimer(this.timer);
  }
}
