/**
 * Hostile-bench class "gate flooding": seeded (repeatable) sequences of Stats messages with which one agent
 * credential tries to sway a rollout's traffic gate while the canary is really bad — huge clean counts on the new
 * revision, huge error counts on the stable one or before it took the revision, bursts, counter resets, reconnects,
 * lying gauges — interleaved with the honest agents' own reports. `judgeGateFlood` feeds a case to the gate logic as
 * the control plane does (the stream's Stats interval, the ledger's cap by real time, the per-agent voices, judge);
 * `encodeFloodStats` makes the wire message for a real stream.
 *
 *   for (const c of gateFloodCases(seed, 500)) judgeGateFlood(c).verdict   // 'fail' every time
 */
import { DEFAULT_GATE_POLICY, GatePolicy } from '../common/config/config';
import { ServiceCounters } from '../common/gen/proxymgr/v1/counters';
import { AgentMessage } from '../common/gen/proxymgr/v1/stream';
import { DEFAULT_LIMITS } from '../controlplane/grpc/stream-server';
import { GateResult, gateStart, HTTP_5XX, judge, REQUESTS, TrafficView } from '../controlplane/rollout/gate';
import { gateWindow, waveGateInput } from '../controlplane/rollout/gate-input';
import { TrafficLedger } from '../controlplane/rollout/traffic';
import { pickIndex, seededRandom } from './lib-common';

export const GATE_FLOOD_STRATEGIES = [
  'dilute', // the attacker runs the new revision and claims huge clean counts for the canary service
  'raise-stable', // it runs the stable revision and claims huge error counts: the bar goes up
  'poison-before', // huge errors while on the stable revision, huge clean counts once on the new one
  'both', // one node on each revision, both flooding
  'burst', // thousands of Stats in one millisecond, then quiet
  'restart-loop', // counters that go down every other sample (each "restart" counts its new values)
  'reconnect', // a new stream (and a new ledger entry) before every sample
  'gauges', // every server DOWN and a huge queue on the stable revision, a huge fleet of healthy servers on the new one
] as const;
export type GateFloodStrategy = (typeof GATE_FLOOD_STRATEGIES)[number];

/** One Stats message as the control plane would receive it. */
export interface FloodStats {
  /** Milliseconds from the moment the canary wave's agents all ACKed (negative: before). */
  readonly at: number;
  readonly nodeId: string;
  /** The revision the sender runs. */
  readonly revision: 'from' | 'to';
  readonly counters: readonly ServiceCounters[];
  /** Sent on a new stream (the previous one closed): the ledger forgets the node, the stream limit starts afresh. */
  readonly reconnect?: boolean;
  readonly hostile: boolean;
}

export interface GateFloodCase {
  readonly seed: number;
  readonly strategy: GateFloodStrategy;
  readonly service: string;
  readonly policy: GatePolicy;
  readonly bakeMs: number;
  /** The honest canary agents' 5xx share (far above the threshold): the verdict must be 'fail'. */
  readonly canaryErrorShare: number;
  readonly honestCanary: number;
  readonly honestStable: number;
  /** Every message, by time. */
  readonly messages: readonly FloodStats[];
}

const counters = (
  service: string,
  requests: number,
  x5: number,
  more: Partial<ServiceCounters> = {},
): ServiceCounters => ({
  service,
  requests,
  responses5xx: x5,
  sessions: requests,
  connectionErrors: 0,
  responseErrors: 0,
  retries: 0,
  serversDown: 0,
  servers: 2,
  queue: 0,
  rtimeMs: 0,
  ...more,
});

/** One seeded case: honest canary and stable agents over a bake, and one credential flooding by `strategy`. */
export function gateFloodCase(seed: number): GateFloodCase {
  const rand = seededRandom(seed);
  const strategy = GATE_FLOOD_STRATEGIES[pickIndex(rand, GATE_FLOOD_STRATEGIES.length)]!;
  const service = 'web';
  const policy: GatePolicy = { ...DEFAULT_GATE_POLICY, minRequests: 100, sampleMs: 1000, baselineMs: 10_000 };
  const bakeMs = 10_000 + pickIndex(rand, 20) * 1000;
  const canaryErrorShare = 0.15 + rand() * 0.8;
  const honestCanary = 1 + pickIndex(rand, 4);
  const honestStable = 1 + pickIndex(rand, 5);
  const messages: FloodStats[] = [];
  // Honest agents: 20-200 requests a second each, a report every sample_ms (with jitter); the canary agents ran the
  // stable revision (as cleanly as the stable agents) for baseline_ms before they took the new one at 0.
  const honest = (id: string, canary: boolean) => {
    const rate = 20 + rand() * 180;
    const cleanShare = rand() * 0.01;
    let req = 0;
    let x5 = 0;
    for (let t = -policy.baselineMs; t <= bakeMs; t += policy.sampleMs - 50 + pickIndex(rand, 100)) {
      const onNew = canary && t >= 0;
      messages.push({
        at: t,
        nodeId: id,
        revision: onNew ? 'to' : 'from',
        counters: [counters(service, Math.round(req), Math.round(x5))],
        hostile: false,
      });
      const n = (rate * policy.sampleMs) / 1000;
      req += n;
      x5 += n * (onNew ? canaryErrorShare : cleanShare);
    }
  };
  for (let i = 0; i < honestCanary; i++) honest(`canary-${i}`, true);
  for (let i = 0; i < honestStable; i++) honest(`stable-${i}`, false);

  const huge = () => 10 ** (6 + pickIndex(rand, 9));
  const flood = (id: string, revisionAt: (t: number) => 'from' | 'to', share: (t: number) => number, step: number) => {
    let req = 0;
    let x5 = 0;
    for (let t = -policy.baselineMs; t <= bakeMs; t += step) {
      const gauges =
        strategy === 'gauges'
          ? revisionAt(t) === 'from'
            ? { serversDown: 1e9, servers: 1e9, queue: 1e12 }
            : { serversDown: 0, servers: 1e9, queue: 0 }
          : {};
      const restart = strategy === 'restart-loop' && Math.round(t / step) % 2 === 1;
      const n = huge();
      req = restart ? n : req + n;
      x5 = restart ? n * share(t) : x5 + n * share(t);
      messages.push({
        at: t,
        nodeId: id,
        revision: revisionAt(t),
        counters: [counters(service, req, Math.round(x5), gauges)],
        ...(strategy === 'reconnect' ? { reconnect: true } : {}),
        hostile: true,
      });
      if (strategy === 'burst' && pickIndex(rand, 20) === 0)
        for (let k = 0; k < 1000; k++) {
          req += n;
          messages.push({
            at: t,
            nodeId: id,
            revision: revisionAt(t),
            counters: [counters(service, req, Math.round(x5))],
            hostile: true,
          });
        }
    }
  };
  const step = 5 + pickIndex(rand, 46);
  const onNew = () => 'to' as const;
  const onStable = () => 'from' as const;
  switch (strategy) {
    case 'raise-stable':
    case 'gauges':
      flood('evil-stable', onStable, () => 1, step);
      break;
    case 'poison-before':
      flood(
        'evil-canary',
        (t) => (t < 0 ? 'from' : 'to'),
        (t) => (t < 0 ? 1 : 0),
        step,
      );
      break;
    case 'both':
      flood('evil-canary', onNew, () => 0, step);
      flood('evil-stable', onStable, () => 1, step);
      break;
    default:
      flood('evil-canary', onNew, () => 0, step);
  }
  messages.sort((a, b) => a.at - b.at);
  return {
    seed,
    strategy,
    service,
    policy,
    bakeMs,
    canaryErrorShare,
    honestCanary,
    honestStable,
    messages,
  };
}

/** `n` cases from `seed` on (each its own seed: a failing one is replayed by its seed alone). */
export function gateFloodCases(seed: number, n: number): GateFloodCase[] {
  return Array.from({ length: n }, (_, i) => gateFloodCase(seed + i));
}

const UINT32_MAX = 0xffff_ffff;

/**
 * The wire form of one message (AgentMessage with Stats), for a real agent stream. The gauges are uint32 on the
 * wire: a larger claim goes out as the largest the wire carries (what an attacker could send at most).
 */
export function encodeFloodStats(m: FloodStats, runningVersion = ''): Buffer {
  const counters = m.counters.map((c) => ({
    ...c,
    serversDown: Math.min(c.serversDown, UINT32_MAX),
    servers: Math.min(c.servers, UINT32_MAX),
    queue: Math.min(c.queue, UINT32_MAX),
  }));
  return Buffer.from(AgentMessage.encode(AgentMessage.fromPartial({ stats: { counters, runningVersion } })).finish());
}

export interface GateFloodResult {
  readonly verdict: GateResult['verdict'];
  readonly result: GateResult;
  /** The pooled 5xx share of the canary service the gate saw, and the per-agent median. */
  readonly pooled5xx: number;
  readonly median5xx: number | undefined;
  readonly accepted: number;
  readonly dropped: number;
}

/**
 * Judges a case as the control plane does: per stream, a Stats sooner than `minStatsIntervalMs` after the last
 * accepted one is dropped; accepted ones go to one replica's TrafficLedger (the sample cap by real time); the gate
 * window opens at 0 and the verdict is the one at the end of the bake.
 */
export function judgeGateFlood(
  c: GateFloodCase,
  minStatsIntervalMs = DEFAULT_LIMITS.minStatsIntervalMs!,
): GateFloodResult {
  const ROLL = { id: 'R', from: 'r1', to: 'r2', keys: new Set([c.service]), minRequests: c.policy.minRequests };
  const rev = (r: 'from' | 'to') => (r === 'from' ? ROLL.from : ROLL.to);
  const ledger = new TrafficLedger(c.policy.baselineMs);
  ledger.follow(ROLL);
  const lastAccepted = new Map<string, number>();
  let accepted = 0;
  let dropped = 0;
  let start: ReturnType<typeof gateStart> | undefined;
  const openWindow = (at: number) => {
    ledger.follow({ ...ROLL, window: gateWindow({ index: 1, ackedAt: 0 })! });
    start = gateStart(new Map([['rep', ledger.report(at)!]]), ROLL.from, ROLL.to);
  };
  for (const m of c.messages) {
    if (!start && m.at >= 0) openWindow(0);
    if (m.reconnect) {
      ledger.forget(m.nodeId);
      lastAccepted.delete(m.nodeId);
    }
    const last = lastAccepted.get(m.nodeId);
    if (last !== undefined && m.at - last < minStatsIntervalMs) {
      dropped++;
      continue;
    }
    lastAccepted.set(m.nodeId, m.at);
    accepted++;
    ledger.sample(m.nodeId, rev(m.revision), m.counters, m.at);
  }
  if (!start) openWindow(0);
  const traffic: TrafficView = new Map([['rep', ledger.report(c.bakeMs)!]]);
  const rep = traffic.get('rep')!;
  const result = judge(
    waveGateInput({
      policy: c.policy,
      from: ROLL.from,
      to: ROLL.to,
      traffic,
      start: start!,
      window: gateWindow({ index: 1, ackedAt: 0 }),
      before: rep.baseline,
      beforeGauges: rep.baselineGauges,
      final: true,
      now: c.bakeMs,
    }),
  );
  const f = result.figures.find((x) => x.key === c.service && x.metric === 'http_5xx');
  const sums = rep.sums[ROLL.to]?.[c.service];
  const pooled5xx = sums && (sums[REQUESTS] ?? 0) > 0 ? (sums[HTTP_5XX] ?? 0) / sums[REQUESTS]! : 0;
  return { verdict: result.verdict, result, pooled5xx, median5xx: f?.median, accepted, dropped };
}
