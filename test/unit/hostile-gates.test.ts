/**
 * The hostile-bench class "gate flooding" (bench/lib-hostile-gates.ts) against the gate logic: whatever one
 * credential's Stats claim, a really bad canary is never judged to pass.
 */
import { GATE_FLOOD_STRATEGIES, gateFloodCases, judgeGateFlood } from '../../bench/lib-hostile-gates';
import { AgentMessage } from '../../common/gen/proxymgr/v1/stream';
import { encodeFloodStats } from '../../bench/lib-hostile-gates';

const SEED = 19_000;
const N = 160;

test(`${N} seeded gate-flooding cases: every bad canary still fails the gate`, () => {
  const cases = gateFloodCases(SEED, N);
  const swayedPooled: number[] = [];
  const byStrategy = new Map<string, number>();
  for (const c of cases) {
    const r = judgeGateFlood(c);
    byStrategy.set(c.strategy, (byStrategy.get(c.strategy) ?? 0) + 1);
    if (r.verdict !== 'fail')
      throw new Error(
        `seed ${c.seed} (${c.strategy}): ${r.verdict}: ${r.result.reason} (replay: gateFloodCase(${c.seed}))`,
      );
    if (r.pooled5xx < c.policy.thresholds.http_5xx) swayedPooled.push(c.seed);
  }
  // The generator does attack: in many cases the pooled figure alone would have passed the canary.
  expect(swayedPooled.length).toBeGreaterThan(N / 10);
  expect([...byStrategy.keys()].sort()).toEqual([...GATE_FLOOD_STRATEGIES].sort());
});

test('the same seed gives the same case; its messages encode as Stats', () => {
  const [a] = gateFloodCases(7, 1);
  const [b] = gateFloodCases(7, 1);
  expect(a).toEqual(b);
  const m = a!.messages.find((x) => x.hostile)!;
  const decoded = AgentMessage.decode(encodeFloodStats(m));
  expect(decoded.stats?.counters[0]?.service).toBe('web');
});
