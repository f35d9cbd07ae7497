/**
 * Unit tests of the rollout traffic gates and preflight: gate.ts (judge, windowCounts, gateStart, sumOver,
 * describeFigure), traffic.ts (TrafficLedger), the gate/preflight phases of engine.step, and their config.
 * Pure logic over hand-built data: no processes, no timers (every `now` is explicit).
 */
import { ConfigError } from '../../../common/platform/errors';
import {
  DEFAULT_GATE_POLICY,
  DEFAULT_PREFLIGHT_POLICY,
  GatePolicy,
  parseConfig,
  PreflightPolicy,
} from '../../../common/config/config';
import { ServiceCounters } from '../../../common/gen/proxymgr/v1/counters';
import {
  command,
  EMPTY_DOC,
  FleetAgent,
  FleetDoc,
  onRevision,
  PolicyDoc,
  policyDoc,
  releasedRevision,
  step,
} from '../../../controlplane/rollout/engine';
import {
  ALL,
  Counts,
  describeFigure,
  GateFigure,
  GateInput,
  gateStart,
  Gauges,
  judge,
  MAX_FIGURES,
  ReplicaTraffic,
  sumOver,
  TrafficView,
  windowCounts,
} from '../../../controlplane/rollout/gate';
import { TrafficLedger } from '../../../controlplane/rollout/traffic';

/** A counts vector: requests, 5xx, connection errors, response errors, retries. */
const c = (requests: number, x5 = 0, conn = 0, resp = 0, retries = 0): Counts => [requests, x5, conn, resp, retries];
/** A gauges vector: servers DOWN, servers, queued, agents, response times (ms, summed over agents). */
const g = (down: number, servers: number, queue: number, agents: number, rtime = 0): Gauges => [
  down,
  servers,
  queue,
  agents,
  rtime,
  rtime > 0 ? agents : 0,
];
const map = <T>(o: Record<string, T>): Map<string, T> => new Map(Object.entries(o));

// ---------------------------------------------------------------------------------------------------- judge

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
    now: 42,
    ...over,
  };
}

const fig = (figures: readonly GateFigure[], key: string, metric: GateFigure['metric']) =>
  figures.find((f) => f.key === key && f.metric === metric);

describe('judge', () => {
  test('a canary at 100 % 5xx over min_requests while stable is at 0 %: fail, naming the service and 5xx (without waiting for the bake to end)', () => {
    const r = judge(
      input({
        canary: map({ [ALL]: c(200, 200), web: c(200, 200) }),
        stable: map({ [ALL]: c(1000, 0), web: c(1000, 0) }),
      }),
    );
    expect(r.verdict).toBe('fail');
    expect(r.at).toBe(42);
    expect(r.reason).toMatch(/^traffic gate: /);
    expect(r.reason).toContain('service web: 5xx 100% vs 0%, p < 0.001 over 200 request(s) (stable 0%) > +5% allowed');
    expect(r.reason).toContain('all services: 5xx 100%');
    expect(fig(r.figures, 'web', 'http_5xx')).toEqual({
      key: 'web',
      metric: 'http_5xx',
      canary: 1,
      stable: 0,
      threshold: 0.05,
      requests: 200,
      regressed: true,
      p: expect.any(Number) as number,
      alpha: 0.01 / 6,
      judgedRequests: 200,
      perAgent: false,
    });
    expect(fig(r.figures, 'web', 'http_5xx')!.p).toBeLessThan(1e-100);
    // Regressions come first; only http_5xx regressed.
    expect(r.figures.filter((f) => f.regressed).map((f) => `${f.key}/${f.metric}`)).toEqual([
      '*/http_5xx',
      'web/http_5xx',
    ]);
    expect(r.figures[0]!.regressed).toBe(true);
    expect(r.figures[1]!.regressed).toBe(true);
    expect(r.figures.slice(2).every((f) => !f.regressed)).toBe(true);
  });

  test("a backend failing for everyone (stable at 100 % 5xx too) is not the revision's fault", () => {
    const r = judge(
      input({
        canary: map({ [ALL]: c(200, 200), web: c(200, 200) }),
        stable: map({ [ALL]: c(1000, 1000), web: c(1000, 1000) }),
        final: true,
      }),
    );
    expect(r.verdict).toBe('pass');
    expect(fig(r.figures, 'web', 'http_5xx')).toMatchObject({ canary: 1, stable: 1, regressed: false });
    // The agents' own "before" rate counts as a reference just as well (no stable traffic left, e.g. the last waves).
    const before = judge(input({ canary: map({ web: c(200, 200) }), before: map({ web: c(500, 500) }), final: true }));
    expect(before.verdict).toBe('pass');
    expect(fig(before.figures, 'web', 'http_5xx')).toMatchObject({ before: 1, regressed: false });
    expect(fig(before.figures, 'web', 'http_5xx')).not.toHaveProperty('stable');
  });

  test('a reference must exceed every reference; references below min_requests are ignored (then compared with zero)', () => {
    // Stable bad but before good: the canary at 100 % exceeds the higher one (stable 100 %) by 0: no regression.
    expect(
      judge(
        input({
          canary: map({ web: c(200, 200) }),
          stable: map({ web: c(200, 200) }),
          before: map({ web: c(200, 0) }),
        }),
      ).verdict,
    ).toBe('pending');
    // Stable has 50 requests at 100 % 5xx: too few to count; the canary's 10 % is compared with 0.
    const r = judge(input({ canary: map({ web: c(1000, 100) }), stable: map({ web: c(50, 50) }) }));
    expect(r.verdict).toBe('fail');
    expect(fig(r.figures, 'web', 'http_5xx')).not.toHaveProperty('stable');
    expect(r.reason).toContain('(no reference)');
  });

  test('below min_requests: pending while the bake lasts, insufficient at its end', () => {
    const few = { canary: map({ [ALL]: c(99, 99), web: c(99, 99) }), stable: map({ [ALL]: c(1000, 0) }) };
    const pending = judge(input(few));
    expect(pending).toEqual({ verdict: 'pending', reason: '', figures: [], at: 42 });
    const fin = judge(input({ ...few, final: true }));
    expect(fin.verdict).toBe('insufficient');
    expect(fin.reason).toBe(
      'traffic gate: too little traffic to judge (99 request(s) on the new revision in the bake, min_requests 100)',
    );
    // Exactly min_requests is enough.
    expect(judge(input({ canary: map({ [ALL]: c(100, 100) }), final: true })).verdict).toBe('fail');
  });

  test('good traffic at the end of the bake: pass, saying what was judged', () => {
    const r = judge(
      input({
        canary: map({ [ALL]: c(500, 1), web: c(300, 1), api: c(50) }),
        stable: map({ [ALL]: c(5000, 10) }),
        final: true,
      }),
    );
    expect(r.verdict).toBe('pass');
    // api (50 requests) is below min_requests: only * and web are judged.
    expect(r.reason).toBe('traffic gate passed (500 request(s) on the new revision, 2 key(s) judged)');
    expect(r.figures.map((f) => f.key)).toEqual(['*', '*', '*', 'web', 'web', 'web']);
    expect(r.figures.every((f) => !f.regressed)).toBe(true);
  });

  test('thresholds: exactly the allowed increase passes, more fails; errors count connection + response errors', () => {
    expect(
      judge(input({ canary: map({ web: c(1000, 50) }), stable: map({ web: c(1000, 0) }), final: true })).verdict,
    ).toBe('pass');
    expect(
      judge(input({ canary: map({ web: c(1000, 51) }), stable: map({ web: c(1000, 0) }), final: true })).verdict,
    ).toBe('fail');
    const errs = judge(input({ canary: map({ web: c(1000, 0, 30, 30) }), stable: map({ web: c(1000, 0, 0, 0) }) }));
    expect(errs.verdict).toBe('fail');
    expect(fig(errs.figures, 'web', 'errors')).toMatchObject({ canary: 0.06, regressed: true });
    expect(fig(errs.figures, 'web', 'http_5xx')).toMatchObject({ regressed: false });
    expect(errs.reason).toContain('service web: errors 6%');
    const retries = judge(
      input({ canary: map({ web: c(1000, 0, 0, 0, 150) }), stable: map({ web: c(1000, 0, 0, 0, 40) }) }),
    );
    expect(fig(retries.figures, 'web', 'retries')).toMatchObject({ canary: 0.15, stable: 0.04, regressed: true });
  });

  test('servers DOWN is a gauge: judged at the end of the bake (one spike mid-bake does not halt), without any request minimum', () => {
    expect(
      judge(input({ canaryGauges: map({ web: g(2, 4, 0, 1) }), stableGauges: map({ web: g(0, 4, 0, 3) }) })).verdict,
    ).toBe('pending');
    const r = judge(
      input({ final: true, canaryGauges: map({ web: g(2, 4, 0, 1) }), stableGauges: map({ web: g(0, 4, 0, 3) }) }),
    );
    expect(r.verdict).toBe('fail');
    expect(fig(r.figures, 'web', 'servers_down')).toEqual({
      key: 'web',
      metric: 'servers_down',
      canary: 0.5,
      stable: 0,
      threshold: 0.2,
      requests: 0,
      regressed: true,
    });
    expect(r.reason).toContain('service web: servers DOWN 50% over 0 request(s) (stable 0%) > +20% allowed');
    // The same share DOWN on the stable agents: the servers are down for everyone.
    expect(
      judge(
        input({ final: true, canaryGauges: map({ web: g(2, 4, 0, 1) }), stableGauges: map({ web: g(6, 12, 0, 3) }) }),
      ).verdict,
    ).toBe('insufficient');
    // No agent of the new revision reporting: nothing judged.
    expect(judge(input({ final: true, canaryGauges: map({ web: g(4, 4, 0, 0) }) })).figures).toEqual([]);
  });

  test('queue: requests queued per agent, threshold in requests', () => {
    const at = (queued: number) =>
      judge(
        input({
          final: true,
          canaryGauges: map({ [ALL]: g(0, 4, queued, 2) }),
          stableGauges: map({ [ALL]: g(0, 8, 20, 4) }),
        }),
      );
    expect(fig(at(30).figures, ALL, 'queue')).toMatchObject({ canary: 15, stable: 5, regressed: false }); // +10: allowed
    const bad = at(32);
    expect(bad.verdict).toBe('fail');
    expect(fig(bad.figures, ALL, 'queue')).toMatchObject({ canary: 16, stable: 5, threshold: 10, regressed: true });
    expect(bad.reason).toBe('traffic gate: all services: queue 16 over 0 request(s) (stable 5) > +10 allowed');
  });

  test('figures are capped at MAX_FIGURES (regressions first) and the reason names at most 3', () => {
    const canary = new Map<string, Counts>();
    for (let i = 0; i < 20; i++) canary.set(`s${i}`, c(1000, 1000));
    const r = judge(input({ canary }));
    expect(r.verdict).toBe('fail');
    expect(r.figures).toHaveLength(MAX_FIGURES);
    expect(r.figures.every((f) => f.regressed)).toBe(true);
    expect(r.reason.split('; ')).toHaveLength(3);
  });

  test('describeFigure', () => {
    const f: GateFigure = {
      key: 'web',
      metric: 'http_5xx',
      canary: 0.975,
      stable: 0,
      before: 0.001,
      threshold: 0.05,
      requests: 40,
      regressed: true,
    };
    expect(describeFigure(f)).toBe('service web: 5xx 97.5% over 40 request(s) (stable 0%, before 0.1%) > +5% allowed');
    expect(
      describeFigure({ key: ALL, metric: 'retries', canary: 0.01, threshold: 0.1, requests: 7, regressed: false }),
    ).toBe('all services: retries 1% over 7 request(s) (no reference) <= +10% allowed');
  });
});

// ---------------------------------------------------------------------------------------------------- window sums

function replica(over: Partial<ReplicaTraffic> = {}): ReplicaTraffic {
  return { epoch: 'e1', at: 0, rollout: 'R', sums: {}, gauges: {}, baseline: {}, baselineGauges: {}, ...over };
}

describe('windowCounts / gateStart / sumOver', () => {
  test('windowCounts subtracts the start of the same epoch; a restarted or new replica counts from zero; never negative', () => {
    const traffic: TrafficView = new Map([
      ['rep1', replica({ epoch: 'e1', sums: { r2: { [ALL]: c(100, 10), web: c(40, 4) } } })],
      ['rep2', replica({ epoch: 'e2-new', sums: { r2: { [ALL]: c(30, 3) } } })],
      ['rep3', replica({ epoch: 'e3', sums: { r2: { [ALL]: c(5, 5) } } })],
      ['rep4', replica({ epoch: 'e4', sums: { r2: { [ALL]: c(1, 0) } } })],
    ]);
    const start = {
      rep1: { epoch: 'e1', to: { [ALL]: c(60, 2), web: c(10, 0) }, from: {} },
      rep2: { epoch: 'e2-old', to: { [ALL]: c(1000, 900) }, from: {} }, // restarted since: counts from zero
      rep4: { epoch: 'e4', to: { [ALL]: c(10, 0) }, from: {} }, // went down (cannot on one epoch): clamped to 0
    };
    const w = windowCounts(traffic, start, 'to', 'r2');
    expect(w.get(ALL)).toEqual([40 + 30 + 5 + 0, 8 + 3 + 5, 0, 0, 0]);
    expect(w.get('web')).toEqual([30, 4, 0, 0, 0]);
    expect(windowCounts(traffic, start, 'from', 'r1').size).toBe(0);
  });

  test('gateStart snapshots both revisions of every replica; a window from it is empty until more traffic comes', () => {
    const t0: TrafficView = new Map([
      ['rep1', replica({ sums: { r1: { [ALL]: c(500, 1) }, r2: { [ALL]: c(20, 0) } } })],
      ['rep2', replica({ epoch: 'x', sums: { r1: { [ALL]: c(7) } } })],
    ]);
    const start = gateStart(t0, 'r1', 'r2');
    expect(start).toEqual({
      rep1: { epoch: 'e1', to: { [ALL]: c(20, 0) }, from: { [ALL]: c(500, 1) } },
      rep2: { epoch: 'x', to: {}, from: { [ALL]: c(7) } },
    });
    expect(windowCounts(t0, start, 'to', 'r2').get(ALL)).toEqual(c(0));
    const t1: TrafficView = new Map([
      ['rep1', replica({ sums: { r1: { [ALL]: c(600, 1) }, r2: { [ALL]: c(70, 9) } } })],
      ['rep2', replica({ epoch: 'x', sums: { r1: { [ALL]: c(17) }, r2: { [ALL]: c(3, 3) } } })],
    ]);
    expect(windowCounts(t1, start, 'to', 'r2').get(ALL)).toEqual(c(53, 12));
    expect(windowCounts(t1, start, 'from', 'r1').get(ALL)).toEqual(c(110, 0));
  });

  test('sumOver adds key by key over every replica', () => {
    const t: TrafficView = new Map([
      ['a', replica({ gauges: { r2: { [ALL]: g(1, 4, 2, 1), web: g(1, 2, 0, 1) } } })],
      ['b', replica({ gauges: { r2: { [ALL]: g(0, 4, 3, 2) }, r1: { [ALL]: g(9, 9, 9, 9) } } })],
      ['c', replica()],
    ]);
    const s = sumOver(t, (x) => x.gauges['r2'], 4);
    expect(s.get(ALL)).toEqual([1, 8, 5, 3]);
    expect(s.get('web')).toEqual([1, 2, 0, 1]);
    expect([...s.keys()].sort()).toEqual(['*', 'web']);
  });
});

// ---------------------------------------------------------------------------------------------------- ledger

const sc = (
  service: string,
  requests: number,
  responses5xx = 0,
  more: Partial<ServiceCounters> = {},
): ServiceCounters => ({
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
});

const ROLLOUT = { id: 'R', from: 'r1', to: 'r2', keys: new Set(['web']) };

describe('TrafficLedger', () => {
  test('sums deltas by the revision of the previous sample, baselines at the ACK, counts a restart from its new values, sums gauges', () => {
    const l = new TrafficLedger(60_000);
    l.follow(ROLLOUT);
    // Agent A: two samples on r1, its ACK on r2 (counters at the apply), one more on r2.
    l.sample('A', 'r1', [sc('web', 100, 1), sc('api', 50)], 0);
    l.sample('B', 'r1', [sc('web', 10)], 0);
    l.sample('D', 'r0', [sc('web', 1000)], 0);
    l.sample('A', 'r1', [sc('web', 200, 2), sc('api', 70)], 20_000);
    l.sample('A', 'r2', [sc('web', 210, 2), sc('api', 75)], 30_000); // ACK: 200→210 was still served by r1
    l.sample('C', 'r2', [sc('web', 7)], 35_000); // C's first sample: nothing to compare with
    l.sample('A', 'r2', [sc('web', 260, 12, { serversDown: 1 }), sc('api', 80)], 40_000);
    l.sample('B', 'r1', [sc('web', 30)], 40_000);
    l.sample('D', 'r0', [sc('web', 2000, 500)], 40_000); // neither revision of the rollout: not summed
    l.sample('C', 'r2', [sc('web', 17, 1)], 45_000);
    l.sample('B', 'r1', [sc('web', 5)], 50_000); // B restarted: its 5 requests count
    const rep = l.report(50_000)!;
    expect(rep).toMatchObject({ epoch: l.epoch, at: 50_000, rollout: 'R' });
    expect(Object.keys(rep.sums).sort()).toEqual(['r1', 'r2']);
    // r1: A 100+10 (with 1 5xx), B 20 + 5 (restart); ALL adds A's api (20 + 5) too.
    expect(rep.sums['r1']).toEqual({ web: c(135, 1), [ALL]: c(160, 1) });
    // r2: A 50 (10 5xx) after its ACK, C 10 (1 5xx).
    expect(rep.sums['r2']).toEqual({ web: c(60, 11), [ALL]: c(65, 11) });
    // A's "before": from its oldest sample in the window (t=0) to its last one before the ACK (t=20 s). C had none.
    expect(rep.baseline).toEqual({ web: c(100, 1), [ALL]: c(120, 1) });
    expect(rep.baselineGauges).toEqual({ web: g(0, 2, 0, 1), [ALL]: g(0, 4, 0, 1) });
    // Gauges of each agent's last sample, summed by revision (A and C on r2, B on r1; D on r0 left out).
    expect(rep.gauges).toEqual({
      r2: { web: g(1, 4, 0, 2), [ALL]: g(1, 6, 0, 2) },
      r1: { web: g(0, 2, 0, 1), [ALL]: g(0, 2, 0, 1) },
    });
  });

  test('the baseline reaches back baseline_ms from the ACK, and is taken once per rollout', () => {
    const l = new TrafficLedger(60_000);
    l.follow(ROLLOUT);
    l.sample('E', 'r1', [sc('web', 0)], 0);
    l.sample('E', 'r1', [sc('web', 100)], 30_000);
    l.sample('E', 'r1', [sc('web', 300, 30)], 50_000);
    l.sample('E', 'r2', [sc('web', 310, 30)], 80_000); // window from 20 s: begins at the 30 s sample
    expect(l.report(80_000)!.baseline['web']).toEqual(c(200, 30));
    l.sample('E', 'r1', [sc('web', 320, 30)], 90_000); // rolled back…
    l.sample('E', 'r2', [sc('web', 400, 30)], 100_000); // …and forward again: no second baseline
    const rep = l.report(100_000)!;
    expect(rep.baseline['web']).toEqual(c(200, 30));
    expect(rep.sums['r1']!['web']).toEqual(c(310 + 80, 30)); // 300 + 10 + 80 (the last two intervals ran r1)
    expect(rep.sums['r2']!['web']).toEqual(c(10, 0));
  });

  test('follow: nothing reported without a rollout; samples meanwhile are the base of the next delta; a new rollout starts afresh', () => {
    const l = new TrafficLedger(60_000);
    l.sample('A', 'r1', [sc('web', 10)], 0);
    l.follow(undefined);
    expect(l.report(1)).toBeUndefined();
    l.follow(ROLLOUT);
    l.sample('A', 'r1', [sc('web', 25)], 1000);
    expect(l.report(1000)!.sums).toEqual({ r1: { web: c(15), [ALL]: c(15) } });
    l.follow({ ...ROLLOUT, keys: new Set(['web']) }); // the same rollout: sums kept
    expect(l.report(1000)!.sums['r1']!['web']).toEqual(c(15));
    l.follow({ ...ROLLOUT, id: 'R2' });
    expect(l.report(1000)).toMatchObject({ rollout: 'R2', sums: {}, baseline: {} });
    l.follow(undefined);
    expect(l.report(2000)).toBeUndefined();
  });

  test("forget: the agent's next sample starts afresh (counted by whichever replica had it meanwhile)", () => {
    const l = new TrafficLedger(60_000);
    l.follow(ROLLOUT);
    l.sample('A', 'r1', [sc('web', 10)], 0);
    l.forget('A');
    l.sample('A', 'r1', [sc('web', 500)], 1000);
    l.sample('A', 'r1', [sc('web', 510)], 2000);
    expect(l.report(2000)!.sums['r1']!['web']).toEqual(c(10));
  });

  test('tcp services count sessions as requests', () => {
    const l = new TrafficLedger(60_000);
    l.follow({ ...ROLLOUT, keys: new Set(['db']) });
    l.sample('A', 'r2', [sc('db', 0, 0, { sessions: 40, connectionErrors: 1 })], 0);
    l.sample('A', 'r2', [sc('db', 0, 0, { sessions: 90, connectionErrors: 3 })], 1000);
    expect(l.report(1000)!.sums['r2']!['db']).toEqual(c(50, 0, 2));
  });
});

// ---------------------------------------------------------------------------------------------------- engine: gate

const GATE: GatePolicy = { ...DEFAULT_GATE_POLICY, minRequests: 10, sampleMs: 1000 };
const GATED: PolicyDoc = { waves: ['1', '100%'], bakeMs: 10_000, maxNacks: 0, autoRollback: true, gate: GATE };
const AGENTS = ['a00', 'a01', 'a02'];

function fleetOf(running: Record<string, string>, extra: Partial<FleetAgent> = {}): Map<string, FleetAgent> {
  return new Map(Object.entries(running).map(([id, rev]) => [id, { nodeId: id, runningRevision: rev, ...extra }]));
}

function startRollout(policy: PolicyDoc): FleetDoc {
  return onRevision(onRevision(EMPTY_DOC, 'r1', policy, 0), 'r2', policy, 1000);
}

/** One replica's view: sums[revision][key]. */
const view = (
  rollout: string,
  sums: Record<string, Record<string, Counts>>,
  gauges: ReplicaTraffic['gauges'] = {},
): TrafficView => new Map([['rep1', replica({ rollout, sums, gauges })]]);

/** Wave 1 (a00) released at 1000 and ACKed at 2000; returns the doc after the ACK step. */
function canaryAcked(policy: PolicyDoc, trafficAtAck: (id: string) => TrafficView) {
  const d0 = startRollout(policy);
  const id = d0.current!.id;
  const running: Record<string, string> = Object.fromEntries(AGENTS.map((a) => [a, 'r1']));
  const d1 = step(d0, fleetOf(running), 1000, trafficAtAck(id)).doc;
  expect(d1.current!.waves.map((w) => w.agents)).toEqual([['a00']]);
  running['a00'] = 'r2';
  const acked = step(d1, fleetOf(running), 2000, trafficAtAck(id));
  return { id, running, ...acked };
}

const atAck = (id: string) => view(id, { r1: { [ALL]: c(100), web: c(100) }, r2: { [ALL]: c(2), web: c(2) } });
/** 50 canary requests since the ACK, all 5xx; stable 100 requests, none. */
const bad = (id: string) => view(id, { r1: { [ALL]: c(200), web: c(200) }, r2: { [ALL]: c(52, 50), web: c(52, 50) } });
const good = (id: string, n = 1) => view(id, { r1: { [ALL]: c(100 + 100 * n, 1) }, r2: { [ALL]: c(2 + 50 * n) } });

describe('engine: traffic gate', () => {
  test('the gate window starts at the ACK; the gate is judged every sample_ms until the bake ends', () => {
    const { doc, wakeAt } = canaryAcked(GATED, atAck);
    const w = doc.current!.waves[0]!;
    expect(w.ackedAt).toBe(2000);
    expect(w.gateStart).toEqual({
      rep1: { epoch: 'e1', to: { [ALL]: c(2), web: c(2) }, from: { [ALL]: c(100), web: c(100) } },
    });
    expect(w.gate?.verdict).toBe('pending');
    expect(wakeAt).toBe(3000);
    // Near the end of the bake the wake is the bake's end, not a sample later.
    const late = step(doc, fleetOf({ a00: 'r2', a01: 'r1', a02: 'r1' }), 11_500, good(doc.current!.id));
    expect(late.wakeAt).toBe(12_000);
    expect(late.doc.current!.waves).toHaveLength(1);
  });

  test('the canary serving 100 % 5xx: rolled back (auto_rollback), the gate figures kept in history', () => {
    const { id, running, doc } = canaryAcked(GATED, atAck);
    const out = step(doc, fleetOf(running), 3000, bad(id)).doc;
    expect(out.current!.state).toBe('rolled_back');
    expect(out.current!.reason).toMatch(
      /^wave 1: traffic gate: .*service web: 5xx 100% vs 0%, p < 0\.001 over 50 request\(s\) \(stable 0%\).*; rolled back to r1$/,
    );
    expect(out.stable).toBe('r1');
    for (const a of AGENTS) expect(releasedRevision(out, a)).toBe('r1');
    const hist = out.history[0]!;
    expect(hist.id).toBe(id);
    expect(hist.state).toBe('rolled_back');
    expect(hist.waves[0]!.gate?.verdict).toBe('fail');
    expect(fig(hist.waves[0]!.gate!.figures, 'web', 'http_5xx')).toMatchObject({
      canary: 1,
      stable: 0,
      requests: 50,
      regressed: true,
    });
  });

  test('without auto_rollback the gate halts and the canary keeps the revision; resume lets the rollout go on', () => {
    const { id, running, doc } = canaryAcked({ ...GATED, autoRollback: false }, atAck);
    const halted = step(doc, fleetOf(running), 3000, bad(id)).doc;
    expect(halted.current!.state).toBe('halted');
    expect(halted.current!.reason).toMatch(/^wave 1: traffic gate: .*5xx 100%/);
    expect(halted.current!.waves[0]!.gate?.verdict).toBe('fail');
    expect(releasedRevision(halted, 'a00')).toBe('r2');
    expect(releasedRevision(halted, 'a01')).toBe('r1');
    expect(halted.stable).toBe('r1');
    // Halted: nothing moves, however long.
    expect(step(halted, fleetOf(running), 99_000, bad(id)).doc.current!.waves).toHaveLength(1);

    const resumed = command(halted, 'resume', 3500);
    expect(resumed.current!.waves[0]!.gateOverridden).toBe(true);
    const again = step(resumed, fleetOf(running), 4000, bad(id)).doc;
    expect(again.current!.state).toBe('running'); // the same figures do not halt it again
    const next = step(again, fleetOf(running), 30_000, bad(id)).doc;
    expect(next.current!.waves.map((w) => w.agents)).toEqual([['a00'], ['a01', 'a02']]);
  });

  test('good traffic: pending during the bake, pass at its end, then the next wave starts', () => {
    const { id, running, doc } = canaryAcked(GATED, atAck);
    const mid = step(doc, fleetOf(running), 3000, good(id));
    expect(mid.doc.current!.state).toBe('running');
    expect(mid.doc.current!.waves).toHaveLength(1);
    // Pending since the ACK's step (figures are written on a verdict change, then at most every 5 s).
    expect(mid.doc.current!.waves[0]!.gate).toMatchObject({ verdict: 'pending', at: 2000 });
    expect(mid.wakeAt).toBe(4000);
    const end = step(mid.doc, fleetOf(running), 12_000, good(id, 10));
    const w = end.doc.current!.waves;
    expect(w).toHaveLength(2);
    expect(w[0]!.gate?.verdict).toBe('pass');
    expect(w[0]!.gate?.reason).toBe('traffic gate passed (500 request(s) on the new revision, 1 key(s) judged)');
    expect(w[0]!.completedAt).toBe(12_000);
    expect(w[1]!.agents).toEqual(['a01', 'a02']);
    // The last wave has no bake and is not judged: bad traffic then does not stop completion.
    for (const a of AGENTS) running[a] = 'r2';
    const done = step(end.doc, fleetOf(running), 12_500, bad(id)).doc;
    expect(done.current!.state).toBe('completed');
    expect(done.stable).toBe('r2');
  });

  test('no traffic: insufficient at the end of the bake; on_insufficient_traffic pass goes on, halt halts', () => {
    const none = (id: string) => view(id, {});
    const pass = canaryAcked(GATED, none);
    const passed = step(pass.doc, fleetOf(pass.running), 12_000, none(pass.id)).doc;
    expect(passed.current!.state).toBe('running');
    expect(passed.current!.waves).toHaveLength(2);
    expect(passed.current!.waves[0]!.gate?.verdict).toBe('insufficient');
    expect(passed.current!.waves[0]!.gate?.reason).toMatch(
      /too little traffic to judge \(0 request\(s\).*min_requests 10\)/,
    );

    const halt = canaryAcked({ ...GATED, gate: { ...GATE, onInsufficientTraffic: 'halt' } }, none);
    // Before the bake ends, too little traffic is only pending.
    const mid = step(halt.doc, fleetOf(halt.running), 11_999, none(halt.id)).doc;
    expect(mid.current!.state).toBe('running');
    const halted = step(mid, fleetOf(halt.running), 12_000, none(halt.id)).doc;
    expect(halted.current!.state).toBe('halted'); // not rolled back, even with auto_rollback
    expect(halted.current!.reason).toMatch(
      /^wave 1: traffic gate: too little traffic .*\(gate\.on_insufficient_traffic: halt\)$/,
    );
    expect(halted.current!.waves).toHaveLength(1);
    expect(releasedRevision(halted, 'a00')).toBe('r2');
  });

  test('the gate disabled, or no traffic view given: bad traffic does not stop the rollout', () => {
    for (const [policy, withTraffic] of [
      [{ ...GATED, gate: { ...GATE, enabled: false } }, true],
      [GATED, false],
    ] as const) {
      const { id, running, doc } = canaryAcked(policy, atAck);
      const mid = step(doc, fleetOf(running), 3000, withTraffic ? bad(id) : undefined).doc;
      expect(mid.current!.state).toBe('running');
      const end = step(mid, fleetOf(running), 12_000, withTraffic ? bad(id) : undefined).doc;
      expect(end.current!.waves).toHaveLength(2);
    }
  });

  test('the baseline of the replicas (for this rollout only) is kept in the rollout and only grows', () => {
    const { id, running, doc } = canaryAcked(GATED, atAck);
    const withBaseline = (n: number, rollout = id): TrafficView =>
      new Map([
        [
          'rep1',
          replica({
            rollout,
            sums: { r2: { [ALL]: c(52) } },
            baseline: { [ALL]: c(n) },
            baselineGauges: { [ALL]: g(0, 2, 0, 1) },
          }),
        ],
      ]);
    const d1 = step(doc, fleetOf(running), 3000, withBaseline(40)).doc;
    expect(d1.current!.baseline).toEqual({ counts: { [ALL]: c(40) }, gauges: { [ALL]: g(0, 2, 0, 1) } });
    // A replica that lost its baseline (restart) does not shrink it; another rollout's baseline is ignored.
    expect(step(d1, fleetOf(running), 4000, withBaseline(10)).doc.current!.baseline?.counts[ALL]).toEqual(c(40));
    expect(step(d1, fleetOf(running), 4000, withBaseline(900, 'other')).doc.current!.baseline?.counts[ALL]).toEqual(
      c(40),
    );
    expect(step(d1, fleetOf(running), 4000, withBaseline(90)).doc.current!.baseline?.counts[ALL]).toEqual(c(90));
  });
});

// ---------------------------------------------------------------------------------------------------- engine: preflight

const PF: PreflightPolicy = { enabled: true, maxFailures: 0, timeoutMs: 5000 };
const PREFLIGHTED: PolicyDoc = { waves: ['1', '100%'], bakeMs: 0, maxNacks: 0, autoRollback: true, preflight: PF };

type Answer = { ok: boolean; error?: string; rollout?: string };
function pfFleet(
  rolloutId: string,
  answers: Record<string, Answer> = {},
  can: Record<string, boolean> = {},
): Map<string, FleetAgent> {
  return new Map(
    AGENTS.map((id) => {
      const a = answers[id];
      const agent: FleetAgent = {
        nodeId: id,
        runningRevision: 'r1',
        canPreflight: can[id] ?? true,
        ...(a ? { preflight: { rollout: a.rollout ?? rolloutId, ok: a.ok, error: a.error ?? '' } } : {}),
      };
      return [id, agent];
    }),
  );
}

describe('engine: preflight', () => {
  test("waits for the agents' answers before wave 1, until the timeout", () => {
    const d0 = startRollout(PREFLIGHTED);
    const id = d0.current!.id;
    const s1 = step(d0, pfFleet(id), 1000);
    expect(s1.doc.current!.waves).toEqual([]);
    expect(s1.doc.current!.state).toBe('running');
    expect(s1.doc.current!.reason).toBe('preflight: 0 passed, waiting for 3 agent(s)');
    expect(s1.doc.current!.preflight).toEqual({
      startedAt: 1000,
      passed: 0,
      failed: [],
      failedCount: 0,
      unanswered: 3,
    });
    expect(s1.wakeAt).toBe(6000);
    for (const a of AGENTS) expect(releasedRevision(s1.doc, a)).toBe('r1');
    // One answer; one answer about another rollout (ignored, even a failure).
    const s2 = step(
      s1.doc,
      pfFleet(id, { a00: { ok: true }, a01: { ok: false, error: 'old', rollout: 'older-rollout' } }),
      2000,
    );
    expect(s2.doc.current!.state).toBe('running');
    expect(s2.doc.current!.reason).toBe('preflight: 1 passed, waiting for 2 agent(s)');
    expect(s2.doc.current!.preflight).toMatchObject({ startedAt: 1000, passed: 1, unanswered: 2 });
    expect(s2.wakeAt).toBe(6000);
    expect(step(s2.doc, pfFleet(id, { a00: { ok: true } }), 5999).doc.current!.waves).toEqual([]);
  });

  test('an agent failing preflight halts the rollout before any agent runs the revision', () => {
    const d0 = startRollout(PREFLIGHTED);
    const id = d0.current!.id;
    const d1 = step(d0, pfFleet(id), 1000).doc;
    const fleet = pfFleet(id, { a00: { ok: true }, a01: { ok: false, error: 'haproxy -c: unknown keyword' } });
    const halted = step(d1, fleet, 1500).doc;
    const r = halted.current!;
    expect(r.state).toBe('halted');
    expect(r.reason).toMatch(
      /^preflight failed on 1 agent\(s\), more than preflight\.max_failures 0; no agent runs r2; a01: haproxy -c: unknown keyword$/,
    );
    expect(r.waves).toEqual([]);
    expect(r.preflight).toMatchObject({
      passed: 1,
      failed: [{ nodeId: 'a01', error: 'haproxy -c: unknown keyword' }],
      failedCount: 1,
      completedAt: 1500,
    });
    for (const a of AGENTS) expect(releasedRevision(halted, a)).toBe(halted.stable);
    expect(halted.stable).toBe('r1');
    // Still halted on later steps.
    expect(step(halted, fleet, 60_000).doc.current!.waves).toEqual([]);

    // resume: the operator lets the waves start anyway.
    const resumed = command(halted, 'resume', 2000);
    expect(resumed.current!.state).toBe('running');
    expect(resumed.current!.preflight).toMatchObject({ overridden: true, completedAt: 1500 });
    const going = step(resumed, fleet, 2001).doc;
    expect(going.current!.waves.map((w) => w.agents)).toEqual([['a00']]);
    expect(releasedRevision(going, 'a00')).toBe('r2');
  });

  test('every agent passing: wave 1 starts in the same step', () => {
    const d0 = startRollout(PREFLIGHTED);
    const id = d0.current!.id;
    const d1 = step(d0, pfFleet(id), 1000).doc;
    const ok = step(d1, pfFleet(id, { a00: { ok: true }, a01: { ok: true }, a02: { ok: true } }), 1200).doc;
    expect(ok.current!.preflight).toEqual({
      startedAt: 1000,
      completedAt: 1200,
      passed: 3,
      failed: [],
      failedCount: 0,
      unanswered: 0,
    });
    expect(ok.current!.waves.map((w) => w.agents)).toEqual([['a00']]);
    expect(releasedRevision(ok, 'a00')).toBe('r2');
  });

  test('the timeout: agents that did not answer are counted, and the waves start', () => {
    const d0 = startRollout(PREFLIGHTED);
    const id = d0.current!.id;
    const d1 = step(d0, pfFleet(id), 1000).doc;
    const out = step(d1, pfFleet(id, { a00: { ok: true } }), 6000);
    expect(out.doc.current!.preflight).toMatchObject({ passed: 1, unanswered: 2, completedAt: 6000 });
    expect(out.doc.current!.waves.map((w) => w.agents)).toEqual([['a00']]);
    // Once complete, preflight is not re-run (later answers change nothing).
    const later = step(out.doc, pfFleet(id, { a01: { ok: false, error: 'late' } }), 7000).doc;
    expect(later.current!.state).toBe('running');
    expect(later.current!.preflight?.failedCount).toBe(0);
  });

  test('agents that cannot preflight are not waited for; max_failures allows that many failures', () => {
    const d0 = startRollout({ ...PREFLIGHTED, preflight: { ...PF, maxFailures: 1 } });
    const id = d0.current!.id;
    const out = step(d0, pfFleet(id, { a00: { ok: false, error: 'x' }, a01: { ok: true } }, { a02: false }), 1000).doc;
    expect(out.current!.state).toBe('running');
    expect(out.current!.preflight).toMatchObject({ passed: 1, failedCount: 1, unanswered: 0, completedAt: 1000 });
    expect(out.current!.waves).toHaveLength(1);
    // Two failures with max_failures 1: halted.
    const d2 = startRollout({ ...PREFLIGHTED, preflight: { ...PF, maxFailures: 1 } });
    const two = step(
      d2,
      pfFleet(d2.current!.id, { a00: { ok: false, error: 'x' }, a01: { ok: false, error: 'y' } }),
      1000,
    ).doc;
    expect(two.current!.state).toBe('halted');
    expect(two.current!.reason).toContain('preflight failed on 2 agent(s)');
  });
});

// ---------------------------------------------------------------------------------------------------- config

const zk = 'service_config: {type: zookeeper, servers: "zk1:2181", path: /service_config}\n';
const rollout = (yaml: string) => parseConfig(`${zk}rollout: ${yaml}\n`, 'cp.yml').rollout!;

describe('config: rollout.gate and rollout.preflight', () => {
  test('defaults, booleans and mappings', () => {
    expect(rollout('{}')).toMatchObject({ gate: DEFAULT_GATE_POLICY, preflight: DEFAULT_PREFLIGHT_POLICY });
    expect(rollout('{gate: false, preflight: false}')).toMatchObject({
      gate: { ...DEFAULT_GATE_POLICY, enabled: false },
      preflight: { ...DEFAULT_PREFLIGHT_POLICY, enabled: false },
    });
    expect(rollout('{gate: true}').gate).toEqual(DEFAULT_GATE_POLICY);
    const r = rollout(
      '{gate: {min_requests: 50, false_halt_rate: 0.05, sample_ms: 500, baseline_ms: 30000, on_insufficient_traffic: halt, thresholds: {http_5xx: 0.1, queue: 25, rtime: 250}}, preflight: {max_failures: 2, timeout_ms: 5000}}',
    );
    expect(r.gate).toEqual({
      enabled: true,
      minRequests: 50,
      falseHaltRate: 0.05,
      sampleMs: 500,
      baselineMs: 30_000,
      onInsufficientTraffic: 'halt',
      thresholds: { ...DEFAULT_GATE_POLICY.thresholds, http_5xx: 0.1, queue: 25, rtime: 250 },
    });
    expect(r.preflight).toEqual({ enabled: true, maxFailures: 2, timeoutMs: 5000 });
    // The stored policy carries both.
    expect(policyDoc(r)).toMatchObject({ gate: r.gate, preflight: r.preflight });
  });

  test('bad values: a ConfigError naming the file and key', () => {
    const bad: [string, RegExp][] = [
      ['{gate: {thresholds: {http_5xx: 2}}}', /^cp\.yml: rollout\.gate\.thresholds\.http_5xx: expected a share 0\.\.1/],
      ['{gate: {thresholds: {queue: -1}}}', /rollout\.gate\.thresholds\.queue: expected a number of queued requests/],
      ['{gate: {thresholds: {latency: 1}}}', /rollout\.gate\.thresholds\.latency: unknown key/],
      ['{gate: {bogus: 1}}', /^cp\.yml: rollout\.gate\.bogus: unknown key/],
      ['{gate: {false_halt_rate: 0.9}}', /rollout\.gate\.false_halt_rate: expected a probability/],
      ['{gate: {min_requests: 0}}', /rollout\.gate\.min_requests: expected an integer 1\.\./],
      ['{gate: {on_insufficient_traffic: maybe}}', /rollout\.gate\.on_insufficient_traffic: expected "pass" or "halt"/],
      ['{gate: "yes"}', /rollout\.gate: expected a mapping/],
      [
        '{preflight: {timeout_ms: "x"}}',
        /^cp\.yml: rollout\.preflight\.timeout_ms: expected an integer 1000\.\.3600000, got string "x"/,
      ],
      ['{preflight: {enabled: "no"}}', /rollout\.preflight\.enabled: expected true or false/],
      ['{preflight: {retries: 1}}', /rollout\.preflight\.retries: unknown key/],
    ];
    for (const [yaml, message] of bad) {
      let err: unknown;
      try {
        rollout(yaml);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as Error).message).toMatch(message);
    }
  });
});

// ---------------------------------------------------------------------------------------------- review findings
//
// Each of these failed before its fix (found by a review of the first version).

describe('review findings (fixed)', () => {
  // engine.ts command('resume') marks the current wave gateOverridden whenever it has any gate result, a 'pending'
  // one included, so a pause/resume during a bake (not a gate halt) switches the gate off for that wave.
  test('pause then resume during a bake keeps the traffic gate on', () => {
    const { id, running, doc } = canaryAcked(GATED, atAck);
    const resumed = command(command(doc, 'pause', 2500), 'resume', 2600);
    const out = step(resumed, fleetOf(running), 3000, bad(id)).doc;
    expect(out.current!.state).toBe('rolled_back');
  });

  // engine.ts step() recurses with step(…, fleet, now) after starting a wave, dropping `traffic`: a wave whose agents
  // already run the revision settles in that recursion without a gateStart, and is later judged from the replicas'
  // epoch (everything since the sums began), not from its ACK.
  test('a wave whose agents already run the revision is judged from its ACK, not from the beginning of the sums', () => {
    const d0 = startRollout(GATED);
    const id = d0.current!.id;
    // a00 already runs r2 (e.g. it equals what it had); the replica has counted 1000 bad requests on r2 before.
    const running = { a00: 'r2', a01: 'r1', a02: 'r1' };
    const before = view(id, { r1: { [ALL]: c(100) }, r2: { [ALL]: c(1000, 1000) } });
    const d1 = step(d0, fleetOf(running), 1000, before).doc;
    expect(d1.current!.waves[0]!.ackedAt).toBe(1000);
    // Since then: 500 good requests on r2.
    const after = view(id, { r1: { [ALL]: c(200) }, r2: { [ALL]: c(1500, 1000) } });
    const d2 = step(d1, fleetOf(running), 2000, after).doc;
    expect(d2.current!.state).toBe('running');
  });

  // traffic.ts sample(): the restart check (delta()) runs on the ALL vector too, so when one service's counters go
  // down or vanish (a service removed by the revision) while the others keep counting, ALL counts the lifetime
  // totals of every other service instead of their increase.
  test("a service removed from an agent does not make ALL count the other services' lifetime totals", () => {
    const l = new TrafficLedger(60_000);
    l.follow(ROLLOUT);
    l.sample('A', 'r1', [sc('web', 100_000, 5000), sc('api', 50)], 0);
    l.sample('A', 'r2', [sc('web', 100_010, 5000)], 1000); // the new revision drops api
    // ALL on r1 in that second: web +10 (api's counters are gone, not negative traffic).
    expect(l.report(1000)!.sums['r1']![ALL]).toEqual(c(10, 0));
  });

  // traffic.ts follow(): a new rollout starts the sums afresh, and `epoch` (whose contract in gate.ts is to change
  // "whenever the replica's sums start again from zero") changes with them; the same rollout with other keys (its
  // revisions got known) keeps what was summed.
  test('follow() starting the sums afresh changes the reported epoch', () => {
    const l = new TrafficLedger(60_000);
    l.follow(ROLLOUT);
    l.sample('A', 'r2', [sc('web', 0)], 0);
    l.sample('A', 'r2', [sc('web', 100)], 1000);
    const first = l.report(1000)!;
    l.follow({ ...ROLLOUT, keys: new Set(['web', 'api']) });
    expect(l.report(1000)).toMatchObject({ epoch: first.epoch, sums: first.sums });
    l.follow({ ...ROLLOUT, id: 'another' });
    const second = l.report(1000)!;
    expect(second.sums).toEqual({});
    expect(second.epoch).not.toBe(first.epoch);
  });
});

// ---------------------------------------------------------------------------------------------------- statistics

describe('judge: shares tested for sample size, latency against a margin', () => {
  const P: GatePolicy = {
    ...DEFAULT_GATE_POLICY,
    minRequests: 50,
    thresholds: { ...DEFAULT_GATE_POLICY.thresholds, http_5xx: 0.01 },
  };
  test('51 requests with 3 errors and 5,100 with 300 are not judged alike', () => {
    const at = (n: number, x: number) =>
      judge(
        input({
          policy: P,
          canary: map({ web: c(n, x) }),
          stable: map({ web: c(n * 4, Math.round(n * 4 * 0.02)) }),
          canaryGauges: map({ web: g(0, 1, 0, 3) }),
          looks: 18,
        }),
      );
    const small = at(51, 3); // 5.9 % vs 2 %: could be chance
    expect(small.verdict).toBe('pending');
    expect(fig(small.figures, 'web', 'http_5xx')!.p).toBeGreaterThan(0.01);
    const large = at(5100, 300); // the same shares over 100 times the requests
    expect(large.verdict).toBe('fail');
    expect(large.reason).toBe(
      'traffic gate: service web: 5xx 5.88% vs 2%, p < 0.001 over 5,100 request(s) from 3 agent(s) (stable 2%) > +1% allowed',
    );
  });

  test('the false-halt rate is split over the looks of the bake', () => {
    const one = (looks: number) =>
      judge(
        input({
          policy: P,
          canary: map({ web: c(1000, 40) }),
          stable: map({ web: c(4000, 80) }),
          looks,
        }),
      );
    // 4 % vs 2 %: p ≈ 0.0003 — enough for one look, not for 100 looks of 3 metrics.
    expect(one(1).verdict).toBe('fail');
    expect(one(100).verdict).toBe('pending');
    expect(fig(one(100).figures, 'web', 'http_5xx')!.alpha).toBeCloseTo(0.01 / 300, 12);
  });

  test('response time: the canary agents against the stable ones, at the end of the bake, with a margin', () => {
    const at = (canaryMs: number, final = true) =>
      judge(
        input({
          policy: P,
          canary: map({ web: c(1000) }),
          stable: map({ web: c(4000) }),
          canaryGauges: map({ web: g(0, 2, 0, 2, 2 * canaryMs) }),
          stableGauges: map({ web: g(0, 4, 0, 4, 4 * 20) }),
          final,
        }),
      );
    expect(at(110).verdict).toBe('pass'); // +90 ms: within the 100 ms margin
    expect(at(220, false).verdict).toBe('pending'); // judged at the end of the bake only
    const slow = at(220);
    expect(slow.verdict).toBe('fail');
    expect(slow.reason).toBe(
      'traffic gate: service web: response time 220 ms over 1000 request(s) (stable 20 ms) > +100 ms allowed',
    );
  });
});
