/**
 * Unit tests of the gate's statistics (gate-stats.ts) and of one share's judgement (gate-ratio.ts): the normal
 * tail, the test of two proportions against known values, the split of the false-halt rate, and the rule that a
 * share regresses only when its excess is both larger than the threshold and more than chance. Includes a seeded
 * simulation of good and bad revisions that checks the false-halt rate and the power of the whole procedure.
 */
import {
  aboveShare,
  bakeLooks,
  erfc,
  pText,
  testAlpha,
  twoProportions,
  upperTail,
} from '../../../controlplane/rollout/gate-stats';
import { judgeShare, referenceSample, testsOf } from '../../../controlplane/rollout/gate-ratio';
import { seededRandom } from '../../../bench/lib-common';
import { binomial } from '../../../bench/lib-gate-noisy';

describe('upperTail / erfc', () => {
  it('matches the standard normal tail to 7 digits', () => {
    expect(upperTail(0)).toBeCloseTo(0.5, 7);
    expect(upperTail(1.959964)).toBeCloseTo(0.025, 6);
    expect(upperTail(2.326348)).toBeCloseTo(0.01, 6);
    expect(upperTail(-1.644854)).toBeCloseTo(0.95, 6);
    // Relative accuracy far in the tail.
    expect(upperTail(6) / 9.865876e-10).toBeCloseTo(1, 5);
    expect(erfc(0)).toBeCloseTo(1, 7);
    expect(erfc(-3)).toBeCloseTo(2 - 2.20905e-5, 7);
  });
});

describe('twoProportions', () => {
  it('gives the textbook value with continuity correction', () => {
    // 31/1000 vs 4/1000: pooled 0.0175, se 0.005865, diff 0.027 − 0.001 → z = 4.433.
    const t = twoProportions({ x: 31, n: 1000 }, { x: 4, n: 1000 });
    expect(t.z).toBeCloseTo(4.433, 2);
    expect(t.p).toBeLessThan(1e-5);
    expect(t.p).toBeGreaterThan(1e-6);
  });

  it('accounts for sample size: 3 errors in 51 requests are weak evidence, 300 in 5,100 strong', () => {
    const small = twoProportions({ x: 3, n: 51 }, { x: 1, n: 51 });
    const large = twoProportions({ x: 300, n: 5100 }, { x: 100, n: 5100 });
    expect(small.p).toBeGreaterThan(0.1);
    expect(large.p).toBeLessThan(1e-20);
  });

  it('zero errors on the reference: the pooled share keeps the variance honest', () => {
    expect(twoProportions({ x: 3, n: 51 }, { x: 0, n: 51 }).p).toBeGreaterThan(0.05);
    expect(twoProportions({ x: 3, n: 51 }, { x: 0, n: 5000 }).p).toBeLessThan(1e-6);
  });

  it('no evidence: no errors anywhere, only errors, no requests, or a lower canary', () => {
    expect(twoProportions({ x: 0, n: 100 }, { x: 0, n: 100 }).p).toBe(1);
    expect(twoProportions({ x: 100, n: 100 }, { x: 50, n: 50 }).p).toBe(1);
    expect(twoProportions({ x: 0, n: 0 }, { x: 5, n: 50 }).p).toBe(1);
    expect(twoProportions({ x: 1, n: 100 }, { x: 5, n: 100 }).p).toBeGreaterThan(0.8);
  });
});

describe('aboveShare', () => {
  it('tests a share against a fixed one', () => {
    expect(aboveShare({ x: 0, n: 100 }, 0).p).toBe(1);
    expect(aboveShare({ x: 1, n: 100 }, 0).p).toBe(0);
    expect(aboveShare({ x: 20, n: 100 }, 0.05).p).toBeLessThan(1e-6);
    expect(aboveShare({ x: 6, n: 100 }, 0.05).p).toBeGreaterThan(0.2);
  });
});

describe('the false-halt rate split', () => {
  it('counts looks over the bake (doubled for looks between samples) and splits the rate over every test', () => {
    expect(bakeLooks(8000, 1000)).toBe(18);
    expect(bakeLooks(0, 1000)).toBe(2);
    expect(testAlpha(0.01, 18, 6)).toBeCloseTo(0.01 / 108, 12);
    expect(testsOf(1)).toBe(1);
    expect(testsOf(3)).toBe(4);
  });

  it('says p plainly', () => {
    expect(pText(0.0004)).toBe('p < 0.001');
    expect(pText(0.0123)).toBe('p = 0.012');
    expect(pText(0.31)).toBe('p = 0.31');
  });
});

describe('judgeShare', () => {
  const q = (over: Partial<Parameters<typeof judgeShare>[0]>) =>
    judgeShare({ canary: { x: 0, n: 0 }, canaryVoices: [], references: [], threshold: 0.01, alpha: 0.001, ...over });

  it('halts a clear excess over every reference', () => {
    const a = q({
      canary: { x: 62, n: 2000 },
      references: [
        { pooled: { x: 40, n: 4000 }, voices: [] },
        { pooled: { x: 8, n: 2000 }, voices: [] },
      ],
    });
    expect(a.regressed).toBe(true);
    expect(a.p).toBeLessThan(0.001);
    expect(a.references).toEqual([
      { x: 40, n: 4000 },
      { x: 8, n: 2000 },
    ]);
  });

  it('does not halt a difference smaller than the threshold, however significant', () => {
    const a = q({
      canary: { x: 15_000, n: 1_000_000 },
      references: [{ pooled: { x: 10_000, n: 1_000_000 }, voices: [] }],
    });
    expect(a.p).toBeLessThan(1e-10);
    expect(a.regressed).toBe(false);
  });

  it('does not halt an excess that small samples explain by chance', () => {
    const a = q({ canary: { x: 3, n: 51 }, references: [{ pooled: { x: 0, n: 51 }, voices: [] }] });
    expect(a.regressed).toBe(false);
    expect(a.p).toBeGreaterThan(0.001);
  });

  it('must beat every reference: an agent that had the same errors before is not halted', () => {
    const a = q({
      canary: { x: 60, n: 2000 },
      references: [
        { pooled: { x: 10, n: 4000 }, voices: [] },
        { pooled: { x: 58, n: 2000 }, voices: [] },
      ],
    });
    expect(a.regressed).toBe(false);
  });

  it('tests agents one by one: one bad agent among good ones halts, named as one agent', () => {
    const voices = [
      { x: 10, n: 1000 },
      { x: 12, n: 1000 },
      { x: 150, n: 1000 },
      { x: 9, n: 1000 },
    ];
    const pooled = voices.reduce((a, v) => ({ x: a.x + v.x, n: a.n + v.n }), { x: 0, n: 0 });
    const a = q({ canary: pooled, canaryVoices: voices, references: [{ pooled: { x: 40, n: 4000 }, voices: [] }] });
    expect(a.regressed).toBe(true);
    expect(a.perAgent).toBe(false); // pooled 4.5 % vs 1 % already decides
    const b = q({
      canary: { x: 181, n: 10_000 },
      canaryVoices: [...voices.slice(0, 2), { x: 150, n: 1000 }, { x: 9, n: 8000 }],
      references: [{ pooled: { x: 100, n: 10_000 }, voices: [] }],
    });
    expect(b.regressed).toBe(true);
    expect(b.perAgent).toBe(true);
    expect(b.judged).toEqual({ x: 150, n: 1000 });
  });

  it("takes a reference's lower-median voice when one agent claims a flood of errors", () => {
    const side = {
      pooled: { x: 1_000_020, n: 1_000_300 },
      voices: [
        { x: 1, n: 100 },
        { x: 2, n: 100 },
        { x: 1_000_000, n: 1_000_000 },
      ],
    };
    expect(referenceSample(side)).toEqual({ x: 2, n: 100 });
    expect(q({ canary: { x: 100, n: 100 }, references: [side] }).regressed).toBe(true);
  });

  it('without a reference: the share must exceed the threshold by more than chance', () => {
    expect(q({ canary: { x: 2, n: 100 }, threshold: 0.01 }).regressed).toBe(false);
    expect(q({ canary: { x: 30, n: 300 }, threshold: 0.01 }).regressed).toBe(true);
  });
});

describe('the whole bake, simulated', () => {
  // 8 looks of 100 requests each on one canary against 4 stable agents; rate 0.01 split over 8 looks × 1 test.
  const bake = (r: () => number, canaryP: number, stableP: number) => {
    const looks = 8;
    const alpha = testAlpha(0.01, looks, 1);
    let c = { x: 0, n: 0 };
    let s = { x: 0, n: 0 };
    for (let k = 0; k < looks; k++) {
      c = { x: c.x + binomial(r, 100, canaryP), n: c.n + 100 };
      s = { x: s.x + binomial(r, 400, stableP), n: s.n + 400 };
      const a = judgeShare({
        canary: c,
        canaryVoices: [],
        references: [{ pooled: s, voices: [] }],
        threshold: 0.01,
        alpha,
      });
      if (a.regressed) return k;
    }
    return -1;
  };

  it('halts at most about the configured rate of good revisions, and nearly every bad one', () => {
    const r = seededRandom(22);
    let falseHalts = 0;
    for (let i = 0; i < 1000; i++) if (bake(r, 0.02, 0.02) >= 0) falseHalts++;
    // 1 % of 1,000 is 10; Bonferroni is conservative, so far fewer.
    expect(falseHalts).toBeLessThanOrEqual(10);
    let caught = 0;
    for (let i = 0; i < 200; i++) if (bake(r, 0.11, 0.01) >= 0) caught++;
    expect(caught).toBe(200);
  });
});
