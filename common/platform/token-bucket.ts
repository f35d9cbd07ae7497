import { Clock, systemClock } from './clock';

/**
 * A token bucket: `rate` tokens per second, at most `burst` saved up. Used to rate-limit new agent streams and
 * pushes so thousands of agents reconnecting at once (a control-plane restart) do not sink the control plane.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly clock: Pick<Clock, 'now'> = systemClock,
  ) {
    this.tokens = burst;
    this.last = clock.now();
  }

  private refill(): void {
    const t = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
  }

  /** Takes one token if there is one. */
  tryTake(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Whether the bucket refilled to its burst (a new bucket would be no different). */
  full(): boolean {
    this.refill();
    return this.tokens >= this.burst;
  }

  /** Milliseconds until a token will be available (0 if one is). */
  waitMs(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) / this.rate) * 1000);
  }
}

/**
 * One token bucket per key (an agent credential and its peer address), so that one key that keeps reconnecting
 * drains its own budget and not everybody's. Memory stays bounded: at most `maxKeys` buckets; past that, buckets
 * that refilled completely (indistinguishable from new ones) are dropped first, then the least recently used.
 */
export class KeyedTokenBuckets {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly clock: Pick<Clock, 'now'> = systemClock,
    private readonly maxKeys = 100_000,
  ) {}

  /** Takes one token from `key`'s bucket if it has one. */
  tryTake(key: string): boolean {
    let b = this.buckets.get(key);
    if (b)
      this.buckets.delete(key); // re-inserted below: the Map's order is least recently used first
    else {
      if (this.buckets.size >= this.maxKeys) this.evict();
      b = new TokenBucket(this.rate, this.burst, this.clock);
    }
    this.buckets.set(key, b);
    return b.tryTake();
  }

  /** Number of keys with a bucket (for tests and metrics). */
  get size(): number {
    return this.buckets.size;
  }

  private evict(): void {
    for (const [k, b] of this.buckets) if (b.full()) this.buckets.delete(k);
    while (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
  }
}
