/**
 * The judgement of one share (5xx, errors or retries per request) of one key (pure; gate.ts calls it): the new
 * revision's agents, pooled and agent by agent (their voices, voices.ts), against each reference that has enough
 * traffic (the stable agents in the same window, the same agents before). The new revision regresses when one of
 * its samples exceeds every reference by more than the threshold (the smallest effect worth a halt, so that a tiny
 * real difference on a huge sample does not halt) *and* a one-sided test of two proportions (gate-stats.ts) says the
 * excess is not chance at the level `alpha` (the bake's false-halt rate split over every test of the bake).
 *
 *   judgeShare({ canary: { x: 31, n: 1000 }, canaryVoices: [], references: [{ pooled: { x: 4, n: 1000 }, voices: [] }],
 *                threshold: 0.01, alpha: 0.001 })   // { regressed: true, p: 3e-6, … }
 */
import { lowerMedian } from './voices';
import { aboveShare, Sample, share, twoProportions } from './gate-stats';

/** One reference side: its pooled counts and its voices (each with enough requests). */
export interface ReferenceSide {
  readonly pooled?: Sample;
  readonly voices: readonly Sample[];
}

export interface ShareQuestion {
  /** The new revision's agents, pooled, and their voices (each with enough requests). */
  readonly canary: Sample;
  readonly canaryVoices: readonly Sample[];
  /** Absent sides (too little traffic) are left out; none at all: the canary is compared with the threshold. */
  readonly references: readonly (ReferenceSide | undefined)[];
  readonly threshold: number;
  /** The level of each test. */
  readonly alpha: number;
}

export interface ShareAnswer {
  readonly regressed: boolean;
  /** The robust sample of each reference side (undefined: side absent), in the order given. */
  readonly references: readonly (Sample | undefined)[];
  /** The canary sample the verdict names: the one that regressed (lowest p), else the pooled one. */
  readonly judged: Sample;
  /** Whether `judged` is one agent's voice rather than the pooled figure. */
  readonly perAgent: boolean;
  /** The test's p-value for `judged` against the highest reference (1: nothing to test). */
  readonly p: number;
}

/**
 * A reference side's sample: the pooled counts, or the voice at the lower median when its share is lower, so that
 * one agent claiming huge error counts on the stable revision cannot raise the bar.
 */
export function referenceSample(side: ReferenceSide): Sample | undefined {
  const m = lowerMedian(side.voices.map(share));
  const voice = m === undefined ? undefined : side.voices.find((v) => share(v) === m);
  if (!voice) return side.pooled;
  return side.pooled === undefined || share(voice) < share(side.pooled) ? voice : side.pooled;
}

/** See the file's comment. */
export function judgeShare(q: ShareQuestion): ShareAnswer {
  const references = q.references.map((side) => (side ? referenceSample(side) : undefined));
  const refs = references.filter((r): r is Sample => r !== undefined);
  // The worst (largest) p over the references: the canary sample must beat every one of them.
  const test = (s: Sample): { beats: boolean; p: number } => {
    if (refs.length === 0) {
      const p = aboveShare(s, q.threshold).p;
      return { beats: share(s) > q.threshold + 1e-12 && p < q.alpha, p };
    }
    let beats = true;
    let p = 0;
    for (const r of refs) {
      const t = twoProportions(s, r);
      p = Math.max(p, t.p);
      if (!(share(s) - share(r) > q.threshold + 1e-12 && t.p < q.alpha)) beats = false;
    }
    return { beats, p };
  };
  const pooled = test(q.canary);
  let answer: ShareAnswer = {
    regressed: pooled.beats,
    references,
    judged: q.canary,
    perAgent: false,
    p: pooled.p,
  };
  // One voice is the pooled figure again: agents are tested one by one only when there are several.
  if (q.canaryVoices.length > 1 && !pooled.beats) {
    for (const v of q.canaryVoices) {
      const t = test(v);
      if (t.beats && (!answer.regressed || t.p < answer.p))
        answer = { regressed: true, references, judged: v, perAgent: true, p: t.p };
    }
  }
  return answer;
}

/** Tests one key's share makes at one look: the pooled figure, and each voice when there are several. */
export function testsOf(voices: number): number {
  return 1 + (voices > 1 ? voices : 0);
}
