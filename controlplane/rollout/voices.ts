/**
 * Per-agent figures for the traffic gates (pure), so that one agent cannot decide a verdict: pooled counters let an
 * agent that claims a huge clean count dilute a bad canary to nothing, or one that claims huge errors on the stable
 * revision raise the bar. Each agent's counts are a *voice*; agents with too little traffic to judge on their own
 * are pooled, in a fixed order, into voices of at least min_requests. The gate then takes, per metric, the upper
 * median of the canary's voices and the lower median of a reference's voices (gate.ts): a single agent, whatever it
 * claims, can move neither past the honest voices around it.
 *
 *   const v = groupVoices(perAgentCounts, 100)   // [[1_000_000_000, 0, …], [140, 30, …], [120, 25, …]]
 *   upperMedian([0, 0.2, 0.21])                   // 0.2: the flood is one voice of three
 */

/** A counter or gauge vector (see gate.ts: Counts, Gauges). */
type Vec = readonly number[];

/** Voices one replica publishes per revision and key at most (neighbours are pooled beyond that). */
export const MAX_VOICES = 64;

/**
 * Groups `list` (per-agent vectors, in a fixed order) into voices: a vector whose `list[i][sizeIndex]` is at least
 * `min` is a voice of its own; smaller ones are summed, in order, into groups of at least `min`. What is left at the
 * end (less than `min`) joins the last such group when `mergeRemainder` (the leader's final grouping), else stays a
 * voice of its own (a replica's remainder, pooled with the other replicas' remainders by the leader). More than
 * `max` voices: neighbours are summed pairwise until they fit.
 */
export function groupVoices(
  list: readonly Vec[],
  min: number,
  mergeRemainder: boolean,
  sizeIndex = 0,
  max = MAX_VOICES,
): number[][] {
  const out: number[][] = [];
  let lastGroup = -1;
  let acc: number[] | undefined;
  for (const v of list) {
    if ((v[sizeIndex] ?? 0) >= min) {
      out.push([...v]);
      continue;
    }
    acc = acc ? sum(acc, v) : [...v];
    if ((acc[sizeIndex] ?? 0) >= min) {
      lastGroup = out.length;
      out.push(acc);
      acc = undefined;
    }
  }
  if (acc) {
    if (mergeRemainder && lastGroup >= 0) out[lastGroup] = sum(out[lastGroup]!, acc);
    else out.push(acc);
  }
  let voices = out;
  while (voices.length > max) {
    const next: number[][] = [];
    for (let i = 0; i < voices.length; i += 2)
      next.push(i + 1 < voices.length ? sum(voices[i]!, voices[i + 1]!) : voices[i]!);
    voices = next;
  }
  return voices;
}

/** The upper median: at least half of `xs` are at or above it (undefined for none). The canary's robust figure. */
export function upperMedian(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** The lower median: at least half of `xs` are at or below it (undefined for none). A reference's robust figure. */
export function lowerMedian(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)];
}

function sum(a: Vec, b: Vec): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) out[i] = (a[i] ?? 0) + (b[i] ?? 0);
  return out;
}
