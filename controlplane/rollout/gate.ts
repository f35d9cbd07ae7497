/**
 * Traffic gates (pure): during a wave's bake, the agents on the rollout's new revision are compared with the agents
 * still on the stable one over the same window, and with their own rates before they took the revision. Every
 * replica sums the counters of its agents per revision (controlplane/rollout/traffic.ts) and keeps the sums in
 * ZooKeeper; the leader judges from the sums of all replicas, so a leader that takes over judges on.
 *
 *   const start = gateStart(traffic, rollout)          // when every agent of the wave ACKed (kept in the wave)
 *   const v = judge(policy, rollout, start, traffic, baseline, { final })  // 'fail' halts; 'pass' / 'insufficient' at the end
 */
import { GateMetric, GatePolicy } from '../../common/config';
import { percent } from '../../common/text';

export { DEFAULT_GATE_POLICY, GATE_METRICS } from '../../common/config';
export type { GateMetric, GatePolicy } from '../../common/config';

/** A counter vector: HAProxy's monotonic counters, summed. */
export type Counts = readonly number[];
/** Indices into Counts. Requests are HTTP requests, or sessions for tcp services. */
export const REQUESTS = 0;
export const HTTP_5XX = 1;
export const CONN_ERRORS = 2;
export const RESP_ERRORS = 3;
export const RETRIES = 4;
export const COUNTS_LENGTH = 5;

/** A gauge vector (current values, summed over agents): servers DOWN, servers, requests queued, agents reporting. */
export type Gauges = readonly number[];
export const DOWN = 0;
export const SERVERS = 1;
export const QUEUE = 2;
export const AGENTS = 3;
export const GAUGES_LENGTH = 4;

/** The key of the figures over every service. */
export const ALL = '*';

/** Per key (a service name, or ALL). */
export type ByKey<T> = Readonly<Record<string, T>>;

/** What one replica reports for the current rollout (one ZooKeeper node per replica). */
export interface ReplicaTraffic {
  /** Changes whenever the replica's sums start again from zero (a restart). */
  readonly epoch: string;
  readonly at: number;
  /** The rollout the figures are about. */
  readonly rollout: string;
  /** Counts since `epoch` by the revision the agents ran while they counted them: revision → key → counts. */
  readonly sums: Readonly<Record<string, ByKey<Counts>>>;
  /** Current gauges of the agents by the revision they run. */
  readonly gauges: Readonly<Record<string, ByKey<Gauges>>>;
  /** The rollout's agents before they took its revision (each agent's last `baseline_ms` before its ACK). */
  readonly baseline: ByKey<Counts>;
  readonly baselineGauges: ByKey<Gauges>;
}

/** Every replica's report, by replica id. */
export type TrafficView = ReadonlyMap<string, ReplicaTraffic>;

/** Each replica's sums of the two revisions when the window began (kept in the wave). */
export type GateStart = Readonly<
  Record<string, { readonly epoch: string; readonly to: ByKey<Counts>; readonly from: ByKey<Counts> }>
>;

/** One figure that a verdict rests on. */
export interface GateFigure {
  readonly key: string;
  readonly metric: GateMetric;
  /** The new revision's agents in the window. */
  readonly canary: number;
  /** The stable revision's agents in the same window (absent: too little traffic, or none left). */
  readonly stable?: number;
  /** The new revision's agents before they took it (absent: too little traffic). */
  readonly before?: number;
  readonly threshold: number;
  readonly requests: number;
  readonly regressed: boolean;
}

export type GateVerdict = 'pending' | 'pass' | 'fail' | 'insufficient';

export interface GateResult {
  readonly verdict: GateVerdict;
  readonly reason: string;
  /** The figures judged (regressions first; at most MAX_FIGURES). */
  readonly figures: readonly GateFigure[];
  readonly at: number;
}

/** Keys judged per wave at most (the figures stay small in the rollout document). */
export const MAX_FIGURES = 12;

/** Sums over every replica of `revision`'s counts since `start` (a replica that restarted counts from zero). */
export function windowCounts(
  traffic: TrafficView,
  start: GateStart,
  side: 'to' | 'from',
  revision: string,
): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const [replica, t] of traffic) {
    const s = start[replica];
    const base = s && s.epoch === t.epoch ? s[side] : undefined;
    for (const [key, v] of Object.entries(t.sums[revision] ?? {})) {
      const b = base?.[key];
      const acc = out.get(key) ?? new Array<number>(COUNTS_LENGTH).fill(0);
      for (let i = 0; i < COUNTS_LENGTH; i++) acc[i]! += Math.max(0, (v[i] ?? 0) - (b?.[i] ?? 0));
      out.set(key, acc);
    }
  }
  return out;
}

/** The sums each replica has now of both revisions: where a gate window starts. */
export function gateStart(traffic: TrafficView, from: string, to: string): GateStart {
  const out: Record<string, GateStart[string]> = {};
  for (const [replica, t] of traffic) out[replica] = { epoch: t.epoch, to: t.sums[to] ?? {}, from: t.sums[from] ?? {} };
  return out;
}

/** Sums `pick(t)` over every replica, key by key. */
export function sumOver(
  traffic: TrafficView,
  pick: (t: ReplicaTraffic) => ByKey<readonly number[]> | undefined,
  length: number,
): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const t of traffic.values()) {
    for (const [key, v] of Object.entries(pick(t) ?? {})) {
      const acc = out.get(key) ?? new Array<number>(length).fill(0);
      for (let i = 0; i < length; i++) acc[i]! += v[i] ?? 0;
      out.set(key, acc);
    }
  }
  return out;
}

/** Everything the judgement of one wave reads. */
export interface GateInput {
  readonly policy: GatePolicy;
  /** Counts of the new revision's agents in the window, and of the stable revision's. */
  readonly canary: ReadonlyMap<string, Counts>;
  readonly stable: ReadonlyMap<string, Counts>;
  /** The new revision's agents before they took it. */
  readonly before: ReadonlyMap<string, Counts>;
  readonly canaryGauges: ReadonlyMap<string, Gauges>;
  readonly stableGauges: ReadonlyMap<string, Gauges>;
  readonly beforeGauges: ReadonlyMap<string, Gauges>;
  /** The bake is over: no more waiting for traffic. */
  readonly final: boolean;
  readonly now: number;
}

const ratio = (v: Counts | undefined, i: number) => (v && (v[REQUESTS] ?? 0) > 0 ? (v[i] ?? 0) / v[REQUESTS]! : 0);
const errors = (v: Counts | undefined) =>
  v && (v[REQUESTS] ?? 0) > 0 ? ((v[CONN_ERRORS] ?? 0) + (v[RESP_ERRORS] ?? 0)) / v[REQUESTS]! : 0;
const downShare = (g: Gauges | undefined) => (g && (g[SERVERS] ?? 0) > 0 ? (g[DOWN] ?? 0) / g[SERVERS]! : 0);
const queuePerAgent = (g: Gauges | undefined) => (g && (g[AGENTS] ?? 0) > 0 ? (g[QUEUE] ?? 0) / g[AGENTS]! : 0);

/**
 * Judges one wave. A metric regresses when the new revision's figure exceeds every reference that has enough data
 * (the stable agents in the same window, the same agents before) by more than its threshold; with no reference it
 * is compared with zero. So a backend that fails for everyone (the stable agents too) is not the revision's fault,
 * and a service that only the new revision's agents serve is still judged. Ratios count only with `minRequests`
 * requests (and may halt a wave mid-bake); gauges (servers DOWN, queue) are judged at the end of the bake.
 */
export function judge(input: GateInput): GateResult {
  const { policy, canary, stable, before } = input;
  const t = policy.thresholds;
  const enough = (v: Counts | undefined) => (v?.[REQUESTS] ?? 0) >= policy.minRequests;
  const figures: GateFigure[] = [];
  let judged = 0;
  const keys = [...new Set([...canary.keys(), ...input.canaryGauges.keys()])].sort((a, b) =>
    a === ALL ? -1 : b === ALL ? 1 : a < b ? -1 : a > b ? 1 : 0,
  );
  for (const key of keys) {
    const c = canary.get(key);
    const requests = c?.[REQUESTS] ?? 0;
    const add = (
      metric: GateMetric,
      value: number,
      stableValue: number | undefined,
      beforeValue: number | undefined,
    ) => {
      const refs = [stableValue, beforeValue].filter((x): x is number => x !== undefined);
      const reference = refs.length > 0 ? Math.max(...refs) : 0;
      figures.push({
        key,
        metric,
        canary: value,
        ...(stableValue !== undefined ? { stable: stableValue } : {}),
        ...(beforeValue !== undefined ? { before: beforeValue } : {}),
        threshold: t[metric],
        requests,
        regressed: value - reference > t[metric] + 1e-12,
      });
    };
    if (enough(c)) {
      judged++;
      const s = enough(stable.get(key)) ? stable.get(key) : undefined;
      const b = enough(before.get(key)) ? before.get(key) : undefined;
      add('http_5xx', ratio(c, HTTP_5XX), s && ratio(s, HTTP_5XX), b && ratio(b, HTTP_5XX));
      add('errors', errors(c), s && errors(s), b && errors(b));
      add('retries', ratio(c, RETRIES), s && ratio(s, RETRIES), b && ratio(b, RETRIES));
    }
    // Gauges are a moment's values: judged at the end of the bake only, so that one spike does not halt a wave.
    const g = input.final ? input.canaryGauges.get(key) : undefined;
    if (g && (g[AGENTS] ?? 0) > 0) {
      const sg = input.stableGauges.get(key);
      const bg = input.beforeGauges.get(key);
      const has = (x: Gauges | undefined) => x !== undefined && (x[AGENTS] ?? 0) > 0;
      add('servers_down', downShare(g), has(sg) ? downShare(sg) : undefined, has(bg) ? downShare(bg) : undefined);
      add('queue', queuePerAgent(g), has(sg) ? queuePerAgent(sg) : undefined, has(bg) ? queuePerAgent(bg) : undefined);
    }
  }
  const bad = figures.filter((f) => f.regressed);
  const shown = [...bad, ...figures.filter((f) => !f.regressed)].slice(0, MAX_FIGURES);
  if (bad.length > 0)
    return {
      verdict: 'fail',
      reason: `traffic gate: ${bad.slice(0, 3).map(describeFigure).join('; ')}`,
      figures: shown,
      at: input.now,
    };
  const total = canary.get(ALL)?.[REQUESTS] ?? 0;
  if (!input.final) return { verdict: 'pending', reason: '', figures: shown, at: input.now };
  if (judged === 0) {
    return {
      verdict: 'insufficient',
      reason: `traffic gate: too little traffic to judge (${total} request(s) on the new revision in the bake, min_requests ${policy.minRequests})`,
      figures: shown,
      at: input.now,
    };
  }
  return {
    verdict: 'pass',
    reason: `traffic gate passed (${total} request(s) on the new revision, ${judged} key(s) judged)`,
    figures: shown,
    at: input.now,
  };
}

/** A gate figure as people read it: a percentage for the ratios, requests per agent (two decimals) for the queue. */
export function figureText(metric: string, x: number): string {
  return metric === 'queue' ? String(+x.toFixed(2)) : percent(x);
}

/** "service web: 5xx 97.5% (stable 0%, before 0.1%) > +5% allowed" */
export function describeFigure(f: GateFigure): string {
  const fmt = (x: number) => figureText(f.metric, x);
  const refs = [
    f.stable !== undefined ? `stable ${fmt(f.stable)}` : '',
    f.before !== undefined ? `before ${fmt(f.before)}` : '',
  ].filter(Boolean);
  const where = f.key === ALL ? 'all services' : `service ${f.key}`;
  const name = { http_5xx: '5xx', errors: 'errors', retries: 'retries', servers_down: 'servers DOWN', queue: 'queue' }[
    f.metric
  ];
  return `${where}: ${name} ${fmt(f.canary)} over ${f.requests} request(s) (${refs.join(', ') || 'no reference'}) ${f.regressed ? '>' : '<='} +${fmt(f.threshold)} allowed`;
}
