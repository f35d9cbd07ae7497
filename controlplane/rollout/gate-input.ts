/**
 * The traffic gate's input for one wave (pure): every replica's pooled sums since the wave's window began, and their
 * per-agent voices (voices.ts) of that window, grouped again across replicas — what judge() in gate.ts reads.
 *
 *   const input = waveGateInput({ policy, from, to, traffic, start, window: gateWindow(wave), before, … })
 *   judge(input).verdict
 */
import { GatePolicy } from '../../common/config/config';
import {
  AGENTS,
  ByKey,
  Counts,
  GateInput,
  GateStart,
  Gauges,
  GAUGES_LENGTH,
  ReplicaTraffic,
  REQUESTS,
  sumOver,
  TrafficView,
  windowCounts,
} from './gate';
import { groupVoices } from './voices';

/** Names a wave's gate window, the same on every replica: voices are kept from the moment its agents all ACKed. */
export function gateWindow(
  wave: { readonly index: number; readonly ackedAt?: number } | undefined,
): string | undefined {
  return wave?.ackedAt === undefined ? undefined : `${wave.index}@${wave.ackedAt}`;
}

/**
 * Every replica's voices for `pick(t)` (only reports with `window`, when given), key by key, grouped again so that
 * the replicas' remainders pool into voices of at least `min` (the size is at `sizeIndex`; gauges: AGENTS, min 0).
 */
export function voicesOver(
  traffic: TrafficView,
  pick: (t: ReplicaTraffic) => ByKey<readonly (readonly number[])[]> | undefined,
  min: number,
  window?: string,
  sizeIndex = REQUESTS,
): Map<string, number[][]> {
  const all = new Map<string, (readonly number[])[]>();
  for (const t of [...traffic.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, x]) => x)) {
    if (window !== undefined && t.window !== window) continue;
    for (const [key, voices] of Object.entries(pick(t) ?? {})) {
      const acc = all.get(key) ?? [];
      acc.push(...voices);
      all.set(key, acc);
    }
  }
  const out = new Map<string, number[][]>();
  for (const [key, list] of all) out.set(key, groupVoices(list, min, true, sizeIndex, Infinity));
  return out;
}

/** What waveGateInput reads: every replica's report about the rollout, and where the wave's window starts. */
export interface WaveTraffic {
  readonly policy: GatePolicy;
  readonly from: string;
  readonly to: string;
  /** Only the reports about this rollout. */
  readonly traffic: TrafficView;
  readonly start: GateStart;
  /** gateWindow of the wave (undefined: no voices for the window's sides). */
  readonly window: string | undefined;
  /** The pooled "before" figures as the rollout keeps them. */
  readonly before: ByKey<Counts>;
  readonly beforeGauges: ByKey<Gauges>;
  readonly final: boolean;
  readonly now: number;
  /** How many looks the bake may take (gate-stats.ts bakeLooks): the false-halt rate is split over them. */
  readonly looks?: number;
}

/** The judgement's input for one wave: pooled sums and the per-agent voices of every replica (engine.ts, benches). */
export function waveGateInput(w: WaveTraffic): GateInput {
  const { traffic, from, to, window } = w;
  const min = w.policy.minRequests;
  return {
    policy: w.policy,
    canary: windowCounts(traffic, w.start, 'to', to),
    stable: windowCounts(traffic, w.start, 'from', from),
    before: new Map(Object.entries(w.before)),
    canaryGauges: sumOver(traffic, (t) => t.gauges[to], GAUGES_LENGTH),
    stableGauges: sumOver(traffic, (t) => t.gauges[from], GAUGES_LENGTH),
    beforeGauges: new Map(Object.entries(w.beforeGauges)),
    ...(window !== undefined
      ? {
          canaryVoices: voicesOver(traffic, (t) => t.voices?.[to], min, window),
          stableVoices: voicesOver(traffic, (t) => t.voices?.[from], min, window),
        }
      : {}),
    beforeVoices: voicesOver(traffic, (t) => t.baselineVoices, min),
    canaryGaugeVoices: voicesOver(traffic, (t) => t.gaugeVoices?.[to], 0, undefined, AGENTS),
    stableGaugeVoices: voicesOver(traffic, (t) => t.gaugeVoices?.[from], 0, undefined, AGENTS),
    beforeGaugeVoices: voicesOver(traffic, (t) => t.baselineGaugeVoices, 0, undefined, AGENTS),
    final: w.final,
    now: w.now,
    ...(w.looks !== undefined ? { looks: w.looks } : {}),
  };
}
