/**
 * Unit tests of gates that one agent cannot sway: voices.ts (grouping, medians), the per-agent figures and sample
 * cap of traffic.ts (TrafficLedger), the robust judgement in gate.ts (judge) and its input (gate-input.ts), and the
 * gauge bounds of agent-reports.ts. Pure logic; every time is explicit.
 */
import { DEFAULT_GATE_POLICY, GatePolicy } from '../../../common/config/config';
import { ServiceCounters } from '../../../common/gen/proxymgr/v1/counters';
import { ALL, Counts, GateInput, gateStart, judge, TrafficView } from '../../../controlplane/rollout/gate';
import { gateWindow, waveGateInput } from '../../../controlplane/rollout/gate-input';
import { MAX_QUEUE_PER_SERVICE, MAX_REQUESTS_PER_SECOND, TrafficLedger } from '../../../controlplane/rollout/traffic';
import { groupVoices, lowerMedian, upperMedian } from '../../../controlplane/rollout/voices';
import { boundedGauges } from '../../../controlplane/rollout/agent-reports';
import { server, service, state } from '../../../testkit/agent';

const c = (requests: number, x5 = 0, conn = 0, resp = 0, retries = 0): Counts => [requests, x5, conn, resp, retries];
const map = <T>(o: Record<string, T>): Map<string, T> => new Map(Object.entries(o));
const POLICY: GatePolicy = { ...DEFAULT_GATE_POLICY, minRequests: 100 };

function input(over: Partial<GateInput>): GateInput {
  return {
    policy: POLICY,
    canary: new Map(),
    stable: new Map(),
    before: new Map(),
    canaryGauges: new Map(),
    stableGauges: new Map(),
    beforeGauges: new Map(),
    final: false,
    now: 1,
    ...over,
  };
}

/** Pooled sums of `voices` (what the replicas' pooled sums say about the same agents). */
const pooled = (voices: readonly Counts[]): Counts => voices.reduce((a, v) => a.map((x, i) => x + (v[i] ?? 0)), c(0));

const sc = (service: string, requests: number, responses5xx = 0, more: Partial<ServiceCounters> = {}) =>
  ({
    service,
    requests,
    responses5xx,
    sessions: 0,
    connectionErrors: 0,
    responseErrors: 0,
    retries: 0,
    serversDown: 0,
    servers: 2,
    queue: 0,
    rtimeMs: 0,
    ...more,
  }) satisfies ServiceCounters;

describe('voices', () => {
  test('an agent with min requests is a voice of its own; smaller ones pool in order; a remainder joins the last pool or stays', () => {
    const list = [c(1_000_000), c(40, 10), c(70, 14), c(500, 5), c(30, 3), c(20, 2)];
    expect(groupVoices(list, 100, true)).toEqual([c(1_000_000), c(160, 29), c(500, 5)]);
    expect(groupVoices(list, 100, false)).toEqual([c(1_000_000), c(110, 24), c(500, 5), c(50, 5)]);
    expect(groupVoices([c(10), c(20)], 100, true)).toEqual([c(30)]);
  });

  test('more voices than allowed: neighbours pool pairwise; nothing is lost', () => {
    const list = Array.from({ length: 10 }, (_, i) => c(100 + i, i));
    const v = groupVoices(list, 100, false, 0, 4);
    expect(v.length).toBeLessThanOrEqual(4);
    expect(pooled(v)).toEqual(pooled(list));
  });

  test('upper and lower medians', () => {
    expect(upperMedian([0, 0.2])).toBe(0.2);
    expect(lowerMedian([0, 1])).toBe(0);
    expect(upperMedian([0.3, 0, 0.2])).toBe(0.2);
    expect(lowerMedian([0.3, 0, 0.2])).toBe(0.2);
    expect(upperMedian([])).toBeUndefined();
  });
});

describe('judge: one agent cannot sway it', () => {
  const honestBad = [c(400, 80), c(300, 60), c(350, 70)]; // 20 % 5xx each
  const flood = c(3_000_000_000); // one agent: 3·10^9 clean requests

  test('a 20 % canary diluted by one agent with huge clean counts: the pooled figure passes, the per-agent median halts', () => {
    const voices = [...honestBad, flood];
    const r = judge(input({ canary: map({ web: pooled(voices) }), canaryVoices: map({ web: voices }) }));
    expect(r.verdict).toBe('fail');
    const f = r.figures.find((x) => x.metric === 'http_5xx')!;
    expect(f.canary).toBeLessThan(1e-6); // what pooling alone would judge
    expect(f.median).toBeCloseTo(0.2);
    expect(f.voices).toBe(4);
    expect(f.perAgent).toBe(true);
    expect(f.agentShare).toBeCloseTo(0.2);
    expect(r.reason).toContain('5xx 20% on one agent (0% pooled), p < 0.001 over 400 of 3,000,001,050 request(s)');
    // Without voices (a replica from before them) the same pooled figure passes: this is what they add.
    expect(judge(input({ canary: map({ web: pooled(voices) }), final: true })).verdict).toBe('pass');
  });

  test('a stable agent claiming 100 % errors with huge counts does not raise the bar', () => {
    const stable = [c(1000, 5), c(800, 4), c(2_000_000_000, 2_000_000_000)];
    const r = judge(
      input({
        canary: map({ web: pooled(honestBad) }),
        canaryVoices: map({ web: honestBad }),
        stable: map({ web: pooled(stable) }),
        stableVoices: map({ web: stable }),
      }),
    );
    expect(r.verdict).toBe('fail');
    expect(r.figures.find((x) => x.metric === 'http_5xx')!.stable).toBeCloseTo(0.005);
  });

  test('both at once (a flood on each side) still halts; a good canary with the same floods passes', () => {
    const canaryV = [...honestBad, flood];
    const stableV = [c(1000, 5), c(3_000_000_000, 3_000_000_000)];
    const both = (cv: Counts[]) =>
      judge(
        input({
          canary: map({ web: pooled(cv) }),
          canaryVoices: map({ web: cv }),
          stable: map({ web: pooled(stableV) }),
          stableVoices: map({ web: stableV }),
          final: true,
        }),
      ).verdict;
    expect(both(canaryV)).toBe('fail');
    expect(both([c(400, 2), c(300, 1), c(350, 2), flood])).toBe('pass');
  });

  test('min_requests holds per voice: a voice under it is not judged on its own (one noisy agent halts nothing)', () => {
    const voices = [c(5000, 10), c(99, 99)]; // the second: under min_requests
    const r = judge(input({ canary: map({ web: pooled(voices) }), canaryVoices: map({ web: voices }), final: true }));
    expect(r.verdict).toBe('pass');
    expect(r.figures.find((x) => x.metric === 'http_5xx')!.voices).toBe(1);
  });

  test('gauges: one stable agent claiming every server DOWN does not excuse a canary with half its servers DOWN', () => {
    const g = (down: number, servers: number, queue = 0) => [down, servers, queue, 1];
    const stableV = [g(0, 4), g(0, 4), g(4, 4)];
    const pooledG = (vs: number[][]) => vs.reduce((a, v) => a.map((x, i) => x + v[i]!), [0, 0, 0, 0]);
    const r = judge(
      input({
        final: true,
        canaryGauges: map({ web: pooledG([g(2, 4), g(2, 4)]) }),
        canaryGaugeVoices: map({ web: [g(2, 4), g(2, 4)] }),
        stableGauges: map({ web: pooledG(stableV) }),
        stableGaugeVoices: map({ web: stableV }),
      }),
    );
    expect(r.verdict).toBe('fail');
    expect(r.figures.find((x) => x.metric === 'servers_down')!.stable).toBe(0);
  });
});

describe('TrafficLedger: sample cap and voices', () => {
  const ROLLOUT = { id: 'R', from: 'r1', to: 'r2', keys: new Set(['web']), minRequests: 100, window: '1@1000' };

  test("a sample adds at most MAX_REQUESTS_PER_SECOND × the real time since the agent's last one (no floor)", () => {
    const l = new TrafficLedger(60_000);
    l.follow(ROLLOUT);
    l.sample('P', 'r2', [sc('web', 0)], 10_000);
    // 1,000 samples in the same millisecond, each claiming another 10^6 requests: nothing counts.
    for (let i = 1; i <= 1000; i++) l.sample('P', 'r2', [sc('web', i * 1_000_000)], 10_000);
    expect(l.report(10_000)!.sums['r2']?.['web'] ?? c(0)).toEqual(c(0));
    // 250 ms later: a claim of 10^12 is cut to what 250 ms allow.
    l.sample('P', 'r2', [sc('web', 1e12)], 10_250);
    expect(l.report(10_250)!.sums['r2']!['web']![0]).toBe(MAX_REQUESTS_PER_SECOND / 4);
    // An honest agent below the bound keeps every request.
    l.sample('H', 'r2', [sc('web', 0)], 10_000);
    l.sample('H', 'r2', [sc('web', 4000, 800)], 12_000);
    expect(l.report(12_000)!.voices!['r2']!['web']).toEqual([c(4000, 800), c(MAX_REQUESTS_PER_SECOND / 4)]);
  });

  test('voices are kept per gate window, in node id order, small agents pooled; a new window starts them afresh', () => {
    const l = new TrafficLedger(60_000);
    l.follow(ROLLOUT);
    for (const [id, n] of [
      ['c', 60],
      ['a', 50],
      ['b', 500],
    ] as const) {
      l.sample(id, 'r2', [sc('web', 0)], 0);
      l.sample(id, 'r2', [sc('web', n, n / 10)], 1000);
    }
    const rep = l.report(1000)!;
    expect(rep.window).toBe('1@1000');
    // b stands alone; a (50) and c (60), in node id order, pool into one voice of 110.
    expect(rep.voices!['r2']!['web']).toEqual([c(500, 50), c(110, 11)]);
    l.follow({ ...ROLLOUT, window: '2@5000' });
    expect(l.report(5000)!.voices).toEqual({});
  });

  test("one credential's node ids are one voice: a wildcard identity cannot outvote the honest agents", () => {
    const l = new TrafficLedger(60_000);
    l.follow(ROLLOUT);
    // Two honest canaries with 20 % 5xx, and ten node ids of one attacker credential claiming clean traffic.
    for (const [id, voice, n, bad] of [
      ['h1', 'h1', 1000, 200],
      ['h2', 'h2', 1000, 200],
      ...Array.from({ length: 10 }, (_, i) => [`attacker-${i}`, 'attacker-agent', 1000, 0] as const),
    ] as const) {
      l.sample(id, 'r2', [sc('web', 0)], 0, true, voice);
      l.sample(id, 'r2', [sc('web', n, bad)], 1000, true, voice);
    }
    const voices = l.report(1000)!.voices!['r2']!['web']!;
    expect(voices).toHaveLength(3); // attacker-agent (10,000 clean), h1, h2 — not twelve
    expect(voices).toContainEqual(c(10_000, 0));
    // The canary's upper median stays the honest 20 %.
    const shares = voices.map((v) => v[1]! / v[0]!).sort((a, b) => a - b);
    expect(shares[Math.floor(shares.length / 2)]).toBeCloseTo(0.2);
  });

  test('gauges are bounded: DOWN at most the servers, the queue capped', () => {
    const l = new TrafficLedger(60_000);
    l.follow(ROLLOUT);
    l.sample('P', 'r1', [sc('web', 0, 0, { serversDown: 1e9, servers: 3, queue: 1e12 })], 0);
    expect(l.report(0)!.gauges['r1']!['web']).toEqual([3, 3, MAX_QUEUE_PER_SERVICE, 1, 0, 0]);
  });

  test('boundedGauges: an agent claims no more servers than it was sent, nor more DOWN than those', () => {
    const st = state([service('web', 8080, [server('a', 9001), server('b', 9002)])]);
    const [b] = boundedGauges([sc('web', 0, 0, { servers: 1000, serversDown: 900 })], st);
    expect([b!.servers, b!.serversDown]).toEqual([2, 2]);
    const [u] = boundedGauges([sc('other', 0, 0, { servers: 5, serversDown: 5 })], st);
    expect([u!.servers, u!.serversDown]).toEqual([0, 0]);
  });

  test('end to end through the leader input: a flooding canary agent on one replica does not pass a 20 % canary on another', () => {
    const rep1 = new TrafficLedger(60_000);
    const rep2 = new TrafficLedger(60_000);
    for (const l of [rep1, rep2]) l.follow(ROLLOUT);
    const before: TrafficView = new Map([
      ['rep1', rep1.report(0)!],
      ['rep2', rep2.report(0)!],
    ]);
    const start = gateStart(before, 'r1', 'r2');
    // Honest canaries: 3 agents at 20 % on rep1; the poisoner on rep2 sends as fast as its stream lets it.
    for (const id of ['h1', 'h2', 'h3']) rep1.sample(id, 'r2', [sc('web', 0)], 0);
    rep2.sample('p', 'r2', [sc('web', 0)], 0);
    for (let t = 100; t <= 20_000; t += 100) {
      rep2.sample('p', 'r2', [sc('web', t * 1e9)], t);
      if (t % 2000 === 0) for (const id of ['h1', 'h2', 'h3']) rep1.sample(id, 'r2', [sc('web', t / 20, t / 100)], t);
    }
    const traffic: TrafficView = new Map([
      ['rep1', rep1.report(20_000)!],
      ['rep2', rep2.report(20_000)!],
    ]);
    const judged = judge(
      waveGateInput({
        policy: POLICY,
        from: 'r1',
        to: 'r2',
        traffic,
        start,
        window: gateWindow({ index: 1, ackedAt: 1000 }),
        before: {},
        beforeGauges: {},
        final: true,
        now: 20_000,
      }),
    );
    expect(judged.verdict).toBe('fail');
    const f = judged.figures.find((x) => x.key === 'web' && x.metric === 'http_5xx')!;
    expect(f.canary).toBeLessThan(0.001);
    expect(f.median).toBeCloseTo(0.2);
    expect(traffic.get('rep2')!.sums['r2']![ALL]![0]).toBe(20 * MAX_REQUESTS_PER_SECOND);
  });
});
