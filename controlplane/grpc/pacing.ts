import { Identity, peerAddress } from '../../common/platform/auth';
import { Clock, systemClock, Timer } from '../../common/platform/clock';
import { KeyedTokenBuckets, TokenBucket } from '../../common/platform/token-bucket';

/**
 * Paces pushes through one token bucket and one byte budget, with one queue and one timer: when the bucket is
 * empty or the bytes written and not yet sent on exceed the budget, waiting streams queue up (each at most once)
 * instead of each polling with its own timer. The budget bounds the control plane's memory during a first sync of
 * a big state to thousands of agents (each push is copied per agent by grpc-js and held until the agent reads it).
 */
export class PushPacer {
  private readonly queue = new Set<() => void>();
  private timer: Timer | undefined;
  private inFlight = 0;

  constructor(
    private readonly bucket: TokenBucket,
    private readonly maxBytes = Infinity,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Bytes written and not yet sent on. */
  get bytesInFlight(): number {
    return this.inFlight;
  }

  /** Runs `send` now if a token and budget are free and nobody is waiting, else when its turn comes. */
  schedule(send: () => void): void {
    if (this.queue.size === 0 && this.inFlight < this.maxBytes && this.bucket.tryTake()) return send();
    this.queue.add(send);
    this.arm();
  }

  cancel(send: () => void): void {
    this.queue.delete(send);
  }

  /** `bytes` were written; call the returned function once they are sent on (or the stream is gone), once. */
  wrote(bytes: number): () => void {
    this.inFlight += bytes;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.inFlight -= bytes;
      if (this.queue.size > 0) this.arm(0);
    };
  }

  private arm(delayMs?: number): void {
    if (this.timer) return;
    // Over budget, it is a write completing that re-arms the queue (wrote's callback), not the bucket's timer.
    if (this.inFlight >= this.maxBytes && delayMs === undefined) return;
    this.timer = this.clock.setTimeout(
      () => {
        this.timer = undefined;
        for (const send of this.queue) {
          if (this.inFlight >= this.maxBytes || !this.bucket.tryTake()) break;
          this.queue.delete(send);
          send();
        }
        if (this.queue.size > 0) this.arm();
      },
      Math.max(delayMs ?? 1, this.bucket.waitMs()),
    );
  }
}

/**
 * Pushes this large (first syncs and resyncs of big states) count against the pacer's byte budget until grpc-js has
 * sent them on; deltas are a few KiB, and each agent has at most one unanswered push anyway (flow control).
 */
export const LARGE_PUSH_BYTES = 64 * 1024;

/** Why a new stream is refused: the budget of its credential (`identity` set), or the global one. */
export interface NewStreamRefusal {
  readonly identity?: Identity;
  readonly details: string;
}

/**
 * Budgets for new streams: one for every stream, and one per authenticated credential at one peer address so that one
 * credential reconnecting in a loop cannot use up the global budget for everyone.
 */
export class NewStreamAdmission {
  private readonly global: TokenBucket;
  private readonly perCredential: KeyedTokenBuckets;

  constructor(
    perSecond: number,
    private readonly perIdentityPerSecond: number,
    clock: Clock = systemClock,
  ) {
    this.global = new TokenBucket(perSecond, perSecond, clock);
    this.perCredential = new KeyedTokenBuckets(perIdentityPerSecond, perIdentityPerSecond, clock);
  }

  /**
   * Takes a token for a new stream from `peer` (authenticated as `caller`, when auth is on), or says why it is refused.
   * The credential's own budget comes first: a credential over its budget takes nothing from the global one.
   */
  refusal(caller: Identity | undefined, peer: string): NewStreamRefusal | undefined {
    if (caller && !this.perCredential.tryTake(`${caller.credential}\0${peerAddress(peer)}`))
      return {
        identity: caller,
        details: `too many new agent streams from ${caller.name} (${caller.via}) at ${peerAddress(peer)}: at most ${this.perIdentityPerSecond} per second (controlplane.new_streams_per_identity_per_second); retry with backoff`,
      };
    if (!this.global.tryTake()) return { details: 'too many new agent streams; retry with backoff' };
    return undefined;
  }
}

/** A stream's dropped Stats are logged at most this often (with the count since the last such line). */
export const STATS_DROP_LOG_EVERY_MS = 60_000;

/** What a StatsLimiter says of one Stats message. */
export type StatsVerdict =
  | { readonly accepted: true }
  /** `logDropped`: the drops to log now (this one included), at most every STATS_DROP_LOG_EVERY_MS; else unset. */
  | { readonly accepted: false; readonly logDropped?: number };

/**
 * One stream's Stats budget: a Stats message sooner than `minIntervalMs` after the last accepted one is dropped. An
 * agent sends them every gate.sample_ms, and a flood must not buy its sender more samples.
 */
export class StatsLimiter {
  private acceptedAt = -Infinity;
  private droppedUnlogged = 0;
  private dropLoggedAt = -Infinity;

  constructor(readonly minIntervalMs: number) {}

  /** Whether a Stats message arriving at `now` (control plane clock) is taken. */
  take(now: number): StatsVerdict {
    if (now - this.acceptedAt >= this.minIntervalMs) {
      this.acceptedAt = now;
      return { accepted: true };
    }
    this.droppedUnlogged++;
    if (now - this.dropLoggedAt < STATS_DROP_LOG_EVERY_MS) return { accepted: false };
    const logDropped = this.droppedUnlogged;
    this.dropLoggedAt = now;
    this.droppedUnlogged = 0;
    return { accepted: false, logDropped };
  }
}
