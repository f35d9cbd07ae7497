/**
 * Statistics of the traffic gate (pure): is a share of failed requests on the new revision higher than a reference
 * share by more than chance explains? A one-sided test of two proportions, with the false-halt rate of a whole bake
 * split over every test the gate makes (Bonferroni over looks × keys × metrics × agents).
 *
 *   const t = twoProportions({ x: 31, n: 1000 }, { x: 4, n: 1000 })   // { z: 4.43, p: 4.6e-6 }
 *   const a = testAlpha(0.01, bakeLooks(8000, 1000), 6)                // the level each of 6 tests of a look uses
 *   pText(t.p)                                                         // "p < 0.001"
 *
 * The test is the normal approximation with pooled variance and Yates' continuity correction:
 *   z = (x1/n1 − x2/n2 − ½(1/n1 + 1/n2)) / √(p̂(1 − p̂)(1/n1 + 1/n2)),  p̂ = (x1 + x2)/(n1 + n2),  p = 1 − Φ(z).
 * Under the null hypothesis (both sides share one rate) the pooled p̂ is the best estimate of that rate, so zero
 * errors on the reference do not make its variance zero: 3 errors in 51 requests against 0 in 5,000 is z ≈ 14, but
 * against 0 in 51 it is z ≈ 1.2 (p ≈ 0.12). The correction makes the test conservative where counts are small (a
 * handful of errors); where both sides have no error at all (p̂ = 0) or only errors (p̂ = 1) there is no evidence
 * and p = 1.
 * Limits: with very few expected errors (n·p̂ below about 5) the normal tail is only an approximation and the
 * continuity correction errs towards not halting; an exact test (Fisher's) would be sharper there.
 */

/** Failed requests `x` out of `n` requests. */
export interface Sample {
  readonly x: number;
  readonly n: number;
}

/** The share of a sample (0 without requests). */
export const share = (s: Sample): number => (s.n > 0 ? s.x / s.n : 0);

/** The result of a one-sided test: its statistic and the probability of a result at least as extreme by chance. */
export interface TestResult {
  readonly z: number;
  readonly p: number;
}

/**
 * Complementary error function (Numerical Recipes' Chebyshev fit, relative error below 1.2e-7 everywhere), so that
 * tail probabilities as small as 1e-300 stay accurate to about 7 digits.
 */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

/** P(Z ≥ z) for a standard normal Z. */
export function upperTail(z: number): number {
  return 0.5 * erfc(z / Math.SQRT2);
}

/** One-sided test that `a`'s share is higher than `b`'s (see the file's comment for the formula and its limits). */
export function twoProportions(a: Sample, b: Sample): TestResult {
  if (a.n <= 0 || b.n <= 0) return { z: 0, p: 1 };
  const pooled = (a.x + b.x) / (a.n + b.n);
  const inv = 1 / a.n + 1 / b.n;
  const variance = pooled * (1 - pooled) * inv;
  if (!(variance > 0)) return { z: 0, p: 1 };
  const diff = share(a) - share(b);
  const z = (Math.abs(diff) > inv / 2 ? diff - Math.sign(diff) * (inv / 2) : 0) / Math.sqrt(variance);
  return { z, p: Math.min(1, upperTail(z)) };
}

/**
 * One-sided test that `a`'s share is higher than the fixed share `p0` (a side with no reference is compared with
 * the threshold itself). p0 = 0: any failure is evidence (p = 0), none is not (p = 1).
 */
export function aboveShare(a: Sample, p0: number): TestResult {
  if (a.n <= 0) return { z: 0, p: 1 };
  if (p0 <= 0) return a.x > 0 ? { z: Infinity, p: 0 } : { z: 0, p: 1 };
  if (p0 >= 1) return { z: 0, p: 1 };
  const diff = a.x - a.n * p0;
  const z = (diff > 0.5 ? diff - 0.5 : diff < -0.5 ? diff + 0.5 : 0) / Math.sqrt(a.n * p0 * (1 - p0));
  return { z, p: Math.min(1, upperTail(z)) };
}

/**
 * How many times a bake may be judged: once per sample_ms over the bake, plus the final look, doubled because the
 * engine also judges on fleet events between samples (a replica's new sums, an ACK).
 */
export function bakeLooks(bakeMs: number, sampleMs: number): number {
  return 2 * (Math.ceil(Math.max(0, bakeMs) / Math.max(1, sampleMs)) + 1);
}

/** The level of one test so that `tests` tests at each of `looks` looks halt a good revision at most `rate` of the time. */
export function testAlpha(rate: number, looks: number, tests: number): number {
  return rate / (Math.max(1, looks) * Math.max(1, tests));
}

/** "p < 0.001", "p = 0.012", "p = 0.31". */
export function pText(p: number): string {
  if (p < 0.001) return 'p < 0.001';
  if (p < 0.1) return `p = ${p.toFixed(3)}`;
  return `p = ${p.toFixed(2)}`;
}
