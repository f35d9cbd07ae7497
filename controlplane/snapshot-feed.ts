import { errorMessage } from '../common/platform/errors';
import { Logger } from '../common/platform/log';
import { DesiredState } from '../common/protocol/types';

/** Called with every new snapshot. */
export type SnapshotListener = (state: DesiredState) => void;

/**
 * The snapshots discovery publishes, to whoever follows them: listeners, async iterators, one-off waits. Holds the
 * latest; a listener that throws is logged and does not keep the others from hearing.
 */
export class SnapshotFeed {
  private readonly listeners = new Set<SnapshotListener>();
  private latest: DesiredState | undefined;

  /** `ended` says when iterators stop (discovery stopping). */
  constructor(
    private readonly log: Logger,
    private readonly ended: () => boolean,
  ) {}

  /** The latest snapshot, if one was published. */
  current(): DesiredState | undefined {
    return this.latest;
  }

  /** Makes `state` the latest and tells every listener. */
  publish(state: DesiredState): void {
    this.latest = state;
    this.notify(state);
  }

  /** Tells every listener about `state` again (news that left the version as it was). */
  notify(state: DesiredState): void {
    for (const l of [...this.listeners]) {
      try {
        l(state);
      } catch (err) {
        this.log.error({ err: errorMessage(err) }, 'snapshot listener failed');
      }
    }
  }

  /** Calls `listener` with every new snapshot (not with the current one). Returns the unsubscribe. */
  onSnapshot(listener: SnapshotListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Forgets every listener. */
  clear(): void {
    this.listeners.clear();
  }

  /** The current snapshot (if any), then every new one; a slow reader skips to the latest. Ends on `signal`. */
  async *snapshots(signal?: AbortSignal): AsyncGenerator<DesiredState> {
    let latest = this.latest;
    let wake: (() => void) | undefined;
    const off = this.onSnapshot((s) => {
      latest = s;
      wake?.();
    });
    const onAbort = () => wake?.();
    signal?.addEventListener('abort', onAbort);
    try {
      let sent: DesiredState | undefined;
      while (!signal?.aborted && !this.ended()) {
        if (latest && latest !== sent) {
          sent = latest;
          yield latest;
          continue;
        }
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    } finally {
      off();
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Resolves with the first snapshot (current or future) that satisfies `predicate`. */
  waitFor(predicate: (s: DesiredState) => boolean = () => true, timeoutMs = 10_000): Promise<DesiredState> {
    if (this.latest && predicate(this.latest)) return Promise.resolve(this.latest);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(
          new Error(`no matching snapshot within ${timeoutMs} ms (current version ${this.latest?.version ?? 'none'})`),
        );
      }, timeoutMs);
      const off = this.onSnapshot((s) => {
        if (!predicate(s)) return;
        clearTimeout(timer);
        off();
        resolve(s);
      });
    });
  }
}
