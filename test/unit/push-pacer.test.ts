import { FakeClock } from '../../testkit/fake-clock';
import { TokenBucket } from '../../common/platform/token-bucket';
import { PushPacer } from '../../controlplane/grpc/pacing';

describe('push pacing on an injected clock (no waiting)', () => {
  test('the token bucket refills with the clock: rate per second, at most the burst', () => {
    const clock = new FakeClock(1_000);
    const bucket = new TokenBucket(10, 2, clock);
    expect([bucket.tryTake(), bucket.tryTake(), bucket.tryTake()]).toEqual([true, true, false]);
    expect(bucket.waitMs()).toBe(100);
    clock.advance(99);
    expect(bucket.tryTake()).toBe(false);
    clock.advance(1);
    expect(bucket.tryTake()).toBe(true);
    clock.advance(60_000); // a long quiet spell saves up the burst, not more
    expect([bucket.tryTake(), bucket.tryTake(), bucket.tryTake()]).toEqual([true, true, false]);
  });

  test('pushes beyond the burst wait their turn, in order, each once, as the clock moves', () => {
    const clock = new FakeClock(0);
    const pacer = new PushPacer(new TokenBucket(10, 2, clock), Infinity, clock);
    const sent: string[] = [];
    const push = (name: string) => () => sent.push(name);
    const c = push('c');
    for (const send of [push('a'), push('b'), c, c, push('d')]) pacer.schedule(send);
    expect(sent).toEqual(['a', 'b']); // the burst
    clock.advance(100);
    expect(sent).toEqual(['a', 'b', 'c']); // one token per 100 ms; c queued twice goes once
    clock.advance(100);
    expect(sent).toEqual(['a', 'b', 'c', 'd']);
    clock.advance(10_000);
    expect(sent).toHaveLength(4);
  });

  test('over the byte budget, the next push waits for bytes to be sent on, not for the clock', () => {
    const clock = new FakeClock(0);
    const pacer = new PushPacer(new TokenBucket(1000, 1000, clock), 100, clock);
    const sent: string[] = [];
    const done = pacer.wrote(150);
    pacer.schedule(() => sent.push('next'));
    clock.advance(5_000);
    expect(sent).toEqual([]);
    done();
    clock.advance(0);
    expect(sent).toEqual(['next']);
    expect(pacer.bytesInFlight).toBe(0);
  });
});
