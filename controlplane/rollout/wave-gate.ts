import { GatePolicy } from '../../common/config/config';
import {
  ALL,
  COUNTS_LENGTH,
  GateResult,
  gateStart,
  GAUGES_LENGTH,
  judge,
  REQUESTS,
  sumOver,
  TrafficView,
} from './gate';
import { gateWindow, waveGateInput } from './gate-input';
import { bakeLooks } from './gate-stats';
import { GATE_FIGURES_EVERY_MS, RolloutDoc, updateLast } from './fleet-doc';

/** The gate's judgement of the rollout's last wave now; the result is kept in the wave (and the baseline in the rollout). */
export function judgeWave(
  r: RolloutDoc,
  gate: GatePolicy,
  traffic: TrafficView,
  final: boolean,
  now: number,
): { rollout: RolloutDoc; result: GateResult } {
  let wave = r.waves[r.waves.length - 1]!;
  // Only what the replicas say about this rollout (a traffic node not yet republished may be about the last one).
  const mine: TrafficView = new Map([...traffic].filter(([, t]) => t.rollout === r.id));
  // No start recorded (the wave settled in a step without the traffic view): it starts now.
  if (!wave.gateStart) {
    wave = { ...wave, gateStart: gateStart(mine, r.from, r.to) };
    r = updateLast(r, wave, now);
  }
  const start = wave.gateStart!;
  // The baseline only grows as agents take the revision; a replica that went away must not shrink it.
  const counts = sumOver(mine, (t) => t.baseline, COUNTS_LENGTH);
  const gauges = sumOver(mine, (t) => t.baselineGauges, GAUGES_LENGTH);
  let baseline = r.baseline;
  const more = counts.has(ALL) && (counts.get(ALL)![REQUESTS] ?? 0) > (baseline?.counts[ALL]?.[REQUESTS] ?? -1);
  if (more || (!baseline?.gauges[ALL] && gauges.has(ALL))) {
    baseline = { counts: Object.fromEntries(counts), gauges: Object.fromEntries(gauges) };
  }
  const result = judge(
    waveGateInput({
      policy: gate,
      from: r.from,
      to: r.to,
      traffic: mine,
      start,
      window: gateWindow(wave),
      before: baseline?.counts ?? {},
      beforeGauges: baseline?.gauges ?? {},
      final,
      now,
      looks: bakeLooks(r.policy.bakeMs, gate.sampleMs),
    }),
  );
  // Kept when the verdict changes, and new figures at most every GATE_FIGURES_EVERY_MS: the document is shared by
  // every replica, and rewriting it on every sample would load ZooKeeper and each of them.
  const prev = wave.gate;
  const changed =
    !prev ||
    prev.verdict !== result.verdict ||
    (now - prev.at >= GATE_FIGURES_EVERY_MS && JSON.stringify(prev.figures) !== JSON.stringify(result.figures));
  let rollout = r;
  if (changed) rollout = updateLast(rollout, { ...wave, gate: result }, now);
  if (baseline !== r.baseline && baseline) rollout = { ...rollout, baseline, updatedAt: now };
  return { rollout, result: changed ? result : prev };
}
