/**
 * The noisy cases of bench gate: many rollouts judged by the product's own gate (judge() of
 * controlplane/rollout/gate.ts, the same input waveGateInput builds) on traffic drawn from a seeded model of a
 * fleet, on a simulated clock, so that 20 good revisions and several bad ones take seconds rather than an hour of
 * real bakes. What is simulated is the traffic only: per agent and per sample, requests at `ratePerAgent` with
 * failures drawn from a binomial of the agent's error share; each agent's average response time (HAProxy's `rtime`).
 *
 *   good:       every agent has its own background 5xx share, uniform in 1–2 %, the same before and after → no halt
 *   bad +3 / +10 points: 1 % background, the new revision's agents 3 or 10 points more → halted, with detection time
 *   latency +200 ms: 1 % background, the new revision's agents answer 200 ms slower → halted at the end of the bake
 *
 * Waves 1 agent, 50 %, 100 % (the last has no bake, as in the product); every agent's "before" is its own
 * `baselineMs` before its ACK. The verdict is taken every `sampleMs` of the bake and at its end, as the engine does.
 *
 *   runNoisy({ agents: 5, ratePerAgent: 40, bakeMs: 30000, sampleMs: 1000, … }) → { falseHalts, missed, detectMsP50, … }
 */
import { GatePolicy } from '../common/config/config';
import { ALL, Counts, GateInput, Gauges, judge } from '../controlplane/rollout/gate';
import { bakeLooks } from '../controlplane/rollout/gate-stats';
import { groupVoices } from '../controlplane/rollout/voices';
import { seededRandom } from './lib-common';

export interface NoisyOptions {
  readonly agents: number;
  readonly ratePerAgent: number;
  readonly bakeMs: number;
  readonly sampleMs: number;
  readonly policy: GatePolicy;
  readonly goodRevisions: number;
  /** Rollouts of each bad kind. */
  readonly badRevisions: number;
  readonly seed: number;
}

export type NoisyKind = 'good' | 'bad+3' | 'bad+10' | 'latency+200';

export interface NoisyRun {
  readonly kind: NoisyKind;
  readonly halted: boolean;
  /** The wave halted, and the simulated time from its ACK to the halt. */
  readonly wave?: number;
  readonly detectMs?: number;
  readonly reason: string;
}

export interface NoisyResult {
  readonly runs: readonly NoisyRun[];
  readonly falseHalts: number;
  readonly missed: number;
  readonly detectMsP50: number;
  readonly detectMsByKind: Readonly<Record<string, number>>;
}

/** Successes in `n` draws of probability `p` from `r`. */
export function binomial(r: () => number, n: number, p: number): number {
  let x = 0;
  for (let i = 0; i < n; i++) if (r() < p) x++;
  return x;
}

interface Agent {
  /** 5xx share on the stable revision and on the new one. */
  readonly pStable: number;
  readonly pNew: number;
  readonly rtimeStable: number;
  readonly rtimeNew: number;
}

const counts = (n: number, x: number): Counts => [n, x, 0, 0, 0];
const add = (a: Counts, b: Counts): Counts => a.map((v, i) => v + (b[i] ?? 0));
const ZERO = counts(0, 0);

/** The fleet of one rollout of `kind`. */
function fleet(kind: NoisyKind, n: number, r: () => number): Agent[] {
  return Array.from({ length: n }, () => {
    const background = kind === 'good' ? 0.01 + 0.01 * r() : 0.01;
    const extra = kind === 'bad+3' ? 0.03 : kind === 'bad+10' ? 0.1 : 0;
    // Response times: about 20 ms, each agent its own, ±2 ms between samples of its average.
    const rtime = 15 + 10 * r();
    return {
      pStable: background,
      pNew: background + extra,
      rtimeStable: rtime,
      rtimeNew: rtime + (kind === 'latency+200' ? 200 : 0),
    };
  });
}

/** One rollout: each judged wave baked and judged every sample until a halt or its end. */
function rollout(kind: NoisyKind, o: NoisyOptions, r: () => number): NoisyRun {
  const agents = fleet(kind, o.agents, r);
  const perSample = Math.max(1, Math.round((o.ratePerAgent * o.sampleMs) / 1000));
  const waves = [1, Math.ceil(o.agents * 0.5)];
  const looks = bakeLooks(o.bakeMs, o.sampleMs);
  const min = o.policy.minRequests;
  for (let w = 0; w < waves.length; w++) {
    const onNew = new Set(Array.from({ length: waves[w]! }, (_, i) => i));
    // Each agent's own "before": its last baseline_ms on the stable revision.
    const beforeN = Math.round((o.ratePerAgent * o.policy.baselineMs) / 1000);
    const before = agents.map((a, i) => (onNew.has(i) ? counts(beforeN, binomial(r, beforeN, a.pStable)) : ZERO));
    const window = agents.map(() => ZERO);
    for (let t = o.sampleMs; t <= o.bakeMs; t += o.sampleMs) {
      agents.forEach((a, i) => {
        const p = onNew.has(i) ? a.pNew : a.pStable;
        window[i] = add(window[i]!, counts(perSample, binomial(r, perSample, p)));
      });
      const final = t + o.sampleMs > o.bakeMs;
      const gauges = (i: number): Gauges => {
        const a = agents[i]!;
        const rt = (onNew.has(i) ? a.rtimeNew : a.rtimeStable) + 4 * (r() - 0.5);
        return [0, 2, 0, 1, rt, 1];
      };
      const side = (pick: (i: number) => boolean, of: readonly Counts[]) => {
        const idx = agents.map((_, i) => i).filter(pick);
        const pooled = idx.reduce((acc, i) => add(acc, of[i]!), ZERO);
        const voices = groupVoices(
          idx.map((i) => of[i]!),
          min,
          true,
        );
        const g = idx.map(gauges);
        const gsum = g.reduce((acc, v) => acc.map((x, k) => x + (v[k] ?? 0)), [0, 0, 0, 0, 0, 0]);
        return { pooled, voices, g, gsum, any: idx.length > 0 };
      };
      const canary = side((i) => onNew.has(i), window);
      const stable = side((i) => !onNew.has(i), window);
      const prior = side((i) => onNew.has(i), before);
      const both = <T>(v: T) =>
        new Map([
          [ALL, v],
          ['web', v],
        ]);
      const input: GateInput = {
        policy: o.policy,
        canary: both(canary.pooled),
        stable: stable.any ? both(stable.pooled) : new Map(),
        before: both(prior.pooled),
        canaryGauges: both(canary.gsum),
        stableGauges: stable.any ? both(stable.gsum) : new Map(),
        beforeGauges: new Map(),
        canaryVoices: both(canary.voices),
        stableVoices: both(stable.voices),
        beforeVoices: both(prior.voices),
        canaryGaugeVoices: both(canary.g),
        stableGaugeVoices: both(stable.g),
        final,
        now: t,
        looks,
      };
      const v = judge(input);
      if (v.verdict === 'fail') return { kind, halted: true, wave: w + 1, detectMs: t, reason: v.reason };
      if (final) break;
    }
  }
  return { kind, halted: false, reason: 'completed' };
}

/** Every noisy rollout, in a fixed order from one seed. */
export function runNoisy(o: NoisyOptions): NoisyResult {
  const r = seededRandom(o.seed);
  const runs: NoisyRun[] = [];
  for (let i = 0; i < o.goodRevisions; i++) runs.push(rollout('good', o, r));
  for (const kind of ['bad+3', 'bad+10', 'latency+200'] as const)
    for (let i = 0; i < o.badRevisions; i++) runs.push(rollout(kind, o, r));
  const bad = runs.filter((x) => x.kind !== 'good');
  const detect = bad
    .filter((x) => x.halted)
    .map((x) => x.detectMs!)
    .sort((a, b) => a - b);
  const median = (xs: readonly number[]) => (xs.length === 0 ? NaN : xs[Math.floor((xs.length - 1) / 2)]!);
  const byKind: Record<string, number> = {};
  for (const kind of ['bad+3', 'bad+10', 'latency+200'])
    byKind[kind] = median(
      bad
        .filter((x) => x.kind === kind && x.halted)
        .map((x) => x.detectMs!)
        .sort((a, b) => a - b),
    );
  return {
    runs,
    falseHalts: runs.filter((x) => x.kind === 'good' && x.halted).length,
    missed: bad.filter((x) => !x.halted).length,
    detectMsP50: median(detect),
    detectMsByKind: byKind,
  };
}
