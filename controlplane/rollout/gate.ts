/**
 * Traffic gates (pure): during a wave's bake, the agents on the rollout's new revision are compared with the agents
 * still on the stable one over the same window, and with their own rates before they took the revision. Every
 * replica sums the counters of its agents per revision (controlplane/rollout/traffic.ts) and keeps the sums in
 * ZooKeeper; the leader judges from the sums of all replicas, so a leader that takes over judges on.
 *
 *   const start = gateStart(traffic, rollout)          // when every agent of the wave ACKed (kept in the wave)
 *   const v = judge(policy, rollout, start, traffic, baseline, { final })  // 'fail' halts; 'pass' / 'insufficient' at the end
 */
import { DEFAULT_GATE_POLICY, GateMetric, GatePolicy } from '../../common/config/config';
import { figureText } from '../../common/platform/text';
import { lowerMedian, upperMedian } from './voices';
import { judgeShare, ReferenceSide, testsOf } from './gate-ratio';
import { pText, Sample, testAlpha } from './gate-stats';

export { DEFAULT_GATE_POLICY, GATE_METRICS } from '../../common/config/config';
export type { GateMetric, GatePolicy } from '../../common/config/config';

/** A counter vector: HAProxy's monotonic counters, summed. */
export type Counts = readonly number[];
/** Indices into Counts. Requests are HTTP requests, or sessions for tcp services. */
export const REQUESTS = 0;
export const HTTP_5XX = 1;
export const CONN_ERRORS = 2;
export const RESP_ERRORS = 3;
export const RETRIES = 4;
export const COUNTS_LENGTH = 5;

/**
 * A gauge vector (current values, summed over agents): servers DOWN, servers, requests queued, agents reporting,
 * the agents' average response times in ms (HAProxy's `rtime` over its last 1,024 requests) and how many agents
 * report one (an agent whose HAProxy has served no request yet reports 0); absent from replicas that predate them.
 */
export type Gauges = readonly number[];
export const DOWN = 0;
export const SERVERS = 1;
export const QUEUE = 2;
export const AGENTS = 3;
export const RTIME = 4;
export const RTIME_AGENTS = 5;
export const GAUGES_LENGTH = 6;

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
  /** The gate window the voices are about (gateWindow of the rollout's last wave); absent: none kept. */
  readonly window?: string;
  /** Per-agent counts in `window`, grouped into voices (voices.ts): revision → key → one vector per voice. */
  readonly voices?: Readonly<Record<string, ByKey<readonly Counts[]>>>;
  /** Per-agent current gauges, one vector per voice: revision → key → voices. */
  readonly gaugeVoices?: Readonly<Record<string, ByKey<readonly Gauges[]>>>;
  /** The rollout's agents before they took its revision, one vector per voice. */
  readonly baselineVoices?: ByKey<readonly Counts[]>;
  readonly baselineGaugeVoices?: ByKey<readonly Gauges[]>;
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
  /** The upper median of the canary's voices (per-agent figures; absent: none with enough traffic, or none kept). */
  readonly median?: number;
  /** Voices that median was taken over. */
  readonly voices?: number;
  readonly threshold: number;
  readonly requests: number;
  readonly regressed: boolean;
  /**
   * Shares only: the one-sided test of the judged canary sample against the highest reference (gate-stats.ts), the
   * level each test of the look had to beat, the judged sample's requests and whether it is one agent's voice.
   */
  readonly p?: number;
  readonly alpha?: number;
  readonly judgedRequests?: number;
  readonly perAgent?: boolean;
  /** The share of the one agent's voice that regressed (perAgent). */
  readonly agentShare?: number;
  /** The new revision's agents reporting the key (from the gauges). */
  readonly agents?: number;
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
  /**
   * The same sides as voices (per-agent figures, voices.ts); a side without them is judged on its pooled figure
   * alone (a replica from before voices, or one that has not yet seen the window).
   */
  readonly canaryVoices?: ReadonlyMap<string, readonly Counts[]>;
  readonly stableVoices?: ReadonlyMap<string, readonly Counts[]>;
  readonly beforeVoices?: ReadonlyMap<string, readonly Counts[]>;
  readonly canaryGaugeVoices?: ReadonlyMap<string, readonly Gauges[]>;
  readonly stableGaugeVoices?: ReadonlyMap<string, readonly Gauges[]>;
  readonly beforeGaugeVoices?: ReadonlyMap<string, readonly Gauges[]>;
  /** The bake is over: no more waiting for traffic. */
  readonly final: boolean;
  readonly now: number;
  /** How many looks the bake may take (gate-stats.ts bakeLooks); absent: 1. The false-halt rate is split over them. */
  readonly looks?: number;
}

/** The false-halt rate of a policy (rollout documents from before the setting have none). */
export const falseHaltRateOf = (p: GatePolicy): number => p.falseHaltRate ?? 0.01;

/** The failed part of a counts vector per share metric (capped at the requests: retries may outnumber them). */
const FAILED: Readonly<Record<'http_5xx' | 'errors' | 'retries', (v: Counts) => number>> = {
  http_5xx: (v) => v[HTTP_5XX] ?? 0,
  errors: (v) => (v[CONN_ERRORS] ?? 0) + (v[RESP_ERRORS] ?? 0),
  retries: (v) => v[RETRIES] ?? 0,
};
const sampleOf = (v: Counts, failed: (v: Counts) => number): Sample => {
  const n = v[REQUESTS] ?? 0;
  return { x: Math.min(n, Math.max(0, failed(v))), n };
};
const downShare = (g: Gauges | undefined) => (g && (g[SERVERS] ?? 0) > 0 ? (g[DOWN] ?? 0) / g[SERVERS]! : 0);
const queuePerAgent = (g: Gauges | undefined) => (g && (g[AGENTS] ?? 0) > 0 ? (g[QUEUE] ?? 0) / g[AGENTS]! : 0);
const rtimePerAgent = (g: Gauges | undefined) =>
  g && (g[RTIME_AGENTS] ?? 0) > 0 ? (g[RTIME] ?? 0) / g[RTIME_AGENTS]! : undefined;

/**
 * A reference side's figure: the lower of its pooled figure and the lower median of its voices (either may be
 * absent), so that one agent claiming huge error counts on the stable revision cannot raise the bar.
 */
function referenceOf(pooled: number | undefined, voices: readonly number[] | undefined): number | undefined {
  const m = voices && lowerMedian(voices);
  if (m === undefined) return pooled;
  return pooled === undefined ? m : Math.min(pooled, m);
}

/**
 * Judges one wave. A metric regresses when the new revision's figure exceeds every reference that has enough data
 * (the stable agents in the same window, the same agents before) by more than its threshold; with no reference it
 * is compared with the threshold alone. So a backend that fails for everyone (the stable agents too) is not the
 * revision's fault, and a service that only the new revision's agents serve is still judged. Ratios count only
 * with `minRequests` requests (and may halt a wave mid-bake); gauges (servers DOWN, queue) are judged at the end of
 * the bake.
 *
 * Shares (5xx, errors, retries) must also pass a one-sided test of two proportions (gate-ratio.ts, gate-stats.ts):
 * pooled, and agent by agent when the canary has several voices (per-agent figures, voices.ts), each against the
 * robust figure of each reference (the lower of its pooled figure and its voices' lower median). The policy's
 * false-halt rate is split over every test of every look of the bake (Bonferroni), so the threshold is the
 * smallest difference that halts and the test says whether the difference is more than chance. A voice counts with
 * `minRequests` requests (agents with less are pooled into voices by the replicas). Gauges are judged as the upper
 * median of the canary's voices against the lower median of each reference's.
 */
export function judge(input: GateInput): GateResult {
  const { policy, canary, stable, before } = input;
  const t = policy.thresholds;
  // Rollout documents written before a metric existed have no threshold for it: the default's.
  const limitOf = (m: GateMetric) => t[m] ?? DEFAULT_GATE_POLICY.thresholds[m];
  const enough = (v: Counts | undefined) => (v?.[REQUESTS] ?? 0) >= policy.minRequests;
  const figures: GateFigure[] = [];
  let judged = 0;
  const keys = [...new Set([...canary.keys(), ...input.canaryGauges.keys()])].sort((a, b) =>
    a === ALL ? -1 : b === ALL ? 1 : a < b ? -1 : a > b ? 1 : 0,
  );
  const hasAgents = (x: Gauges | undefined): x is Gauges => x !== undefined && (x[AGENTS] ?? 0) > 0;
  // Every share test of this look (per key and metric: pooled, and each voice when there are several) shares the
  // look's part of the bake's false-halt rate.
  let tests = 0;
  for (const key of keys) {
    if (enough(canary.get(key))) tests += 3 * testsOf(input.canaryVoices?.get(key)?.filter(enough).length ?? 0);
  }
  const alpha = testAlpha(falseHaltRateOf(policy), input.looks ?? 1, tests);
  for (const key of keys) {
    const c = canary.get(key);
    const requests = c?.[REQUESTS] ?? 0;
    /**
     * `value` is the canary's pooled figure, `voices` its voices' figures (the upper median counts too: the canary
     * regresses if either does); each reference is already the lower of its pooled figure and its voices' median.
     */
    const add = (
      metric: GateMetric,
      value: number,
      voices: readonly number[] | undefined,
      stableValue: number | undefined,
      beforeValue: number | undefined,
    ) => {
      const refs = [stableValue, beforeValue].filter((x): x is number => x !== undefined);
      const reference = refs.length > 0 ? Math.max(...refs) : 0;
      const median = voices && upperMedian(voices);
      const judgedValue = median === undefined ? value : Math.max(value, median);
      figures.push({
        key,
        metric,
        canary: value,
        ...(stableValue !== undefined ? { stable: stableValue } : {}),
        ...(beforeValue !== undefined ? { before: beforeValue } : {}),
        ...(median !== undefined ? { median, voices: voices!.length } : {}),
        threshold: limitOf(metric),
        requests,
        regressed: judgedValue - reference > limitOf(metric) + 1e-12,
      });
    };
    if (enough(c)) {
      judged++;
      const voicesOf = (voices: ReadonlyMap<string, readonly Counts[]> | undefined) =>
        voices?.get(key)?.filter(enough) ?? [];
      const canaryVoices = voicesOf(input.canaryVoices);
      const side = (pooled: Counts | undefined, voices: readonly Counts[]) =>
        enough(pooled) || voices.length > 0 ? { pooled: enough(pooled) ? pooled : undefined, voices } : undefined;
      const sides = [
        side(stable.get(key), voicesOf(input.stableVoices)),
        side(before.get(key), voicesOf(input.beforeVoices)),
      ];
      const agents = input.canaryGauges.get(key)?.[AGENTS];
      for (const metric of ['http_5xx', 'errors', 'retries'] as const) {
        const f = FAILED[metric];
        const asRef = (x: (typeof sides)[number]): ReferenceSide | undefined =>
          x && { ...(x.pooled ? { pooled: sampleOf(x.pooled, f) } : {}), voices: x.voices.map((v) => sampleOf(v, f)) };
        const a = judgeShare({
          canary: sampleOf(c!, f),
          canaryVoices: canaryVoices.map((v) => sampleOf(v, f)),
          references: sides.map(asRef),
          threshold: limitOf(metric),
          alpha,
        });
        const [s, b] = a.references;
        const shareOf = (x: Sample | undefined) => (x && x.n > 0 ? x.x / x.n : undefined);
        const median = upperMedian(canaryVoices.map((v) => shareOf(sampleOf(v, f)) ?? 0));
        figures.push({
          key,
          metric,
          canary: shareOf(sampleOf(c!, f)) ?? 0,
          ...(a.perAgent ? { agentShare: shareOf(a.judged) ?? 0 } : {}),
          ...(s ? { stable: shareOf(s)! } : {}),
          ...(b ? { before: shareOf(b)! } : {}),
          ...(median !== undefined ? { median, voices: canaryVoices.length } : {}),
          threshold: limitOf(metric),
          requests,
          regressed: a.regressed,
          p: a.p,
          alpha,
          judgedRequests: a.judged.n,
          perAgent: a.perAgent,
          ...(agents !== undefined && agents > 0 ? { agents } : {}),
        });
      }
    }
    // Gauges are a moment's values: judged at the end of the bake only, so that one spike does not halt a wave.
    const g = input.final ? input.canaryGauges.get(key) : undefined;
    if (hasAgents(g)) {
      const sg = input.stableGauges.get(key);
      const bg = input.beforeGauges.get(key);
      const of = (voices: ReadonlyMap<string, readonly Gauges[]> | undefined, f: (v: Gauges) => number) =>
        voices?.get(key)?.filter(hasAgents).map(f);
      const gaugeFigure = (metric: GateMetric, f: (v: Gauges) => number) =>
        add(
          metric,
          f(g),
          of(input.canaryGaugeVoices, f),
          referenceOf(hasAgents(sg) ? f(sg) : undefined, of(input.stableGaugeVoices, f)),
          referenceOf(hasAgents(bg) ? f(bg) : undefined, of(input.beforeGaugeVoices, f)),
        );
      gaugeFigure('servers_down', downShare);
      gaugeFigure('queue', queuePerAgent);
      // Averages with no spread to test: the margin alone decides, and only where the canary reports one.
      const rt = (x: Gauges | undefined) => rtimePerAgent(x);
      const rtimes = (voices: ReadonlyMap<string, readonly Gauges[]> | undefined) =>
        voices
          ?.get(key)
          ?.map(rt)
          .filter((x): x is number => x !== undefined);
      const canaryRtime = rt(g);
      if (canaryRtime !== undefined)
        add(
          'rtime',
          canaryRtime,
          rtimes(input.canaryGaugeVoices),
          referenceOf(rt(sg), rtimes(input.stableGaugeVoices)),
          referenceOf(rt(bg), rtimes(input.beforeGaugeVoices)),
        );
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

/**
 * A share: "service web: 5xx 3.1% vs 0.4%, p < 0.001 over 2,400 request(s) from 3 agent(s) (stable 0.4%, before
 * 0.3%) > +1% allowed"; one agent: "5xx 12% on one agent (3.1% pooled) vs 0.4%, p < 0.001 over 800 of 2,400 …".
 * A gauge: "service web: servers DOWN 50%, per-agent median 50% of 3 voice(s) (stable 0%) > +0% allowed".
 */
export function describeFigure(f: GateFigure): string {
  const fmt = (x: number) => figureText(f.metric, x);
  const refs = [
    f.stable !== undefined ? `stable ${fmt(f.stable)}` : '',
    f.before !== undefined ? `before ${fmt(f.before)}` : '',
  ].filter(Boolean);
  const where = f.key === ALL ? 'all services' : `service ${f.key}`;
  const name = {
    http_5xx: '5xx',
    errors: 'errors',
    retries: 'retries',
    servers_down: 'servers DOWN',
    queue: 'queue',
    rtime: 'response time',
  }[f.metric];
  const allowed = `${f.regressed ? '>' : '<='} +${fmt(f.threshold)} allowed`;
  if (f.p !== undefined) {
    const count = (n: number) => Math.round(Number(n)).toLocaleString('en-US');
    const reference = [f.stable, f.before].filter((x): x is number => x !== undefined);
    const vs = reference.length > 0 ? ` vs ${fmt(Math.max(...reference))}` : '';
    const agent = f.perAgent && f.agentShare !== undefined;
    const what = agent ? `${fmt(f.agentShare)} on one agent (${fmt(f.canary)} pooled)` : fmt(f.canary);
    const over =
      agent && f.judgedRequests !== undefined
        ? `${count(f.judgedRequests)} of ${count(f.requests)}`
        : `${count(f.requests)}`;
    const from = f.agents !== undefined ? ` from ${count(f.agents)} agent(s)` : '';
    return `${where}: ${name} ${what}${vs}, ${pText(Number(f.p))} over ${over} request(s)${from} (${refs.join(', ') || 'no reference'}) ${allowed}`;
  }
  const median = f.median !== undefined ? `, per-agent median ${fmt(f.median)} of ${f.voices ?? 0} voice(s)` : '';
  return `${where}: ${name} ${fmt(f.canary)}${median} over ${f.requests} request(s) (${refs.join(', ') || 'no reference'}) ${allowed}`;
}
