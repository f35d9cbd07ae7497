import { randomBytes } from 'node:crypto';
import { ServiceCounters } from '../../common/gen/proxymgr/v1/counters';
import {
  ALL,
  AGENTS,
  COUNTS_LENGTH,
  DOWN,
  GAUGES_LENGTH,
  QUEUE,
  ReplicaTraffic,
  RTIME,
  RTIME_AGENTS,
  SERVERS,
} from './gate';
import { groupVoices } from './voices';

/** The rollout a ledger sums for: its revisions and the keys judged (ALL and the services it changes). */
export interface LedgerRollout {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  readonly keys: ReadonlySet<string>;
  /** How far back an agent's "before" window reaches (the rollout's gate.baseline_ms). */
  readonly baselineMs?: number;
  /** The gate window of the current wave (gateWindow in gate.ts); per-agent figures are kept from its start. */
  readonly window?: string;
  /** The rollout's gate.min_requests: agents with less are pooled into voices of at least this many. */
  readonly minRequests?: number;
}

/**
 * The most requests (and errors) one agent's sample may add per second of real time (the control plane's clock
 * between its accepted samples): a bound on what an agent can claim, far above what one HAProxy serves.
 */
export const MAX_REQUESTS_PER_SECOND = 1_000_000;

/** Requests queued one agent may report per service (a gauge; HAProxy's queues are far shorter in practice). */
export const MAX_QUEUE_PER_SERVICE = 100_000;
/** An agent's reported average response time is capped there (ms): HAProxy's own timeouts end requests sooner. */
export const MAX_RTIME_MS = 600_000;

/** Services judged one by one at most (the rest count in ALL only). */
export const MAX_GATED_SERVICES = 50;

interface Sample {
  readonly at: number;
  readonly revision: string;
  readonly counters: readonly ServiceCounters[];
}

interface AgentTraffic {
  last: Sample;
  /** Earlier samples, oldest first, at least a quarter of the baseline window apart (for the "before" window). */
  ring: Sample[];
  /** The rollout this agent's baseline was taken for. */
  baselined: string;
}

type Vec = number[];

/**
 * One replica's sums of its agents' counters for the traffic gates (see gate.ts). Each sample an agent sends (with
 * an ACK or its periodic Stats) is compared with its previous one; the difference counts for the revision the
 * agent ran in between (an ACK carries the counters at the apply, so the new revision's traffic starts there). A
 * counter that went down is an agent restart: the new value counts. When an agent takes the rollout's revision,
 * its traffic over the `baselineMs` before is added to the rollout's baseline.
 */
export class TrafficLedger {
  /** Changes whenever the sums start again from zero (see ReplicaTraffic.epoch). */
  epoch = newEpoch();
  private readonly agents = new Map<string, AgentTraffic>();
  private rollout: LedgerRollout | undefined;
  private sums = new Map<string, Map<string, Vec>>();
  private baseline = new Map<string, Vec>();
  private baselineGauges = new Map<string, Vec>();
  /** Per agent, what it counted in the current gate window: node id → revision → key → counts. */
  private windowed = new Map<string, Map<string, Map<string, Vec>>>();
  private window: string | undefined;
  /** Per agent, its traffic before it took the rollout's revision: node id → key → counts. */
  private agentBaseline = new Map<string, Map<string, Vec>>();
  private agentBaselineGauges = new Map<string, Map<string, Vec>>();
  /**
   * Whose voice each node id's counts are (its credential; its node id without authentication): a credential that
   * may take many node ids (a wildcard) is one voice in the gate, not one per node id.
   */
  private readonly voiceOf = new Map<string, string>();

  constructor(private baselineMs: number) {}

  /**
   * The rollout to sum for (undefined: none; nothing is summed). A different one starts every sum afresh (a new
   * epoch); the same one with other keys (its revisions got known) or another baseline keeps what was summed.
   */
  follow(rollout: LedgerRollout | undefined): void {
    if (rollout?.baselineMs !== undefined) this.baselineMs = rollout.baselineMs;
    if (rollout?.window !== this.window) {
      this.window = rollout?.window;
      this.windowed = new Map();
    }
    if (this.rollout && rollout && this.rollout.id === rollout.id) {
      this.rollout = rollout;
      return;
    }
    this.rollout = rollout;
    this.epoch = newEpoch();
    this.sums = new Map();
    this.baseline = new Map();
    this.baselineGauges = new Map();
    this.agentBaseline = new Map();
    this.agentBaselineGauges = new Map();
  }

  /**
   * A sample of `nodeId`, running `revision`. Not `countable` (the agent's word on its version does not match its
   * ACK, or it runs a partial apply): a boundary only — what it counted since its previous sample counts nowhere.
   */
  sample(
    nodeId: string,
    revision: string,
    counters: readonly ServiceCounters[],
    at: number,
    countable = true,
    voice = nodeId,
  ): void {
    this.voiceOf.set(nodeId, voice);
    const now: Sample = { at, revision, counters };
    const a = this.agents.get(nodeId);
    if (!a) {
      this.agents.set(nodeId, { last: now, ring: [], baselined: '' });
      return;
    }
    const r = this.rollout;
    if (r && countable && (a.last.revision === r.from || a.last.revision === r.to)) {
      let sums = this.sums.get(a.last.revision);
      if (!sums) this.sums.set(a.last.revision, (sums = new Map<string, Vec>()));
      let mine: Map<string, Vec> | undefined;
      if (this.window !== undefined) {
        let byRevision = this.windowed.get(nodeId);
        if (!byRevision) this.windowed.set(nodeId, (byRevision = new Map<string, Map<string, Vec>>()));
        mine = byRevision.get(a.last.revision);
        if (!mine) byRevision.set(a.last.revision, (mine = new Map<string, Vec>()));
      }
      for (const [key, v] of this.deltas(a.last.counters, counters, r.keys, at - a.last.at)) {
        add(sums, key, v);
        if (mine) add(mine, key, v);
      }
    }
    if (r && revision === r.to && a.last.revision !== r.to && a.baselined !== r.id) {
      // Taking the revision: the agent's own traffic before it, from the oldest sample in the window to the last one.
      a.baselined = r.id;
      const oldest = [...a.ring, a.last].find((s) => s.at >= at - this.baselineMs && s.revision === a.last.revision);
      if (oldest && oldest !== a.last) {
        const mine = new Map<string, Vec>();
        for (const [key, v] of this.deltas(oldest.counters, a.last.counters, r.keys, a.last.at - oldest.at)) {
          add(this.baseline, key, v);
          add(mine, key, v);
        }
        this.agentBaseline.set(nodeId, mine);
      }
      const gauges = this.gaugeVectors(a.last.counters, r.keys);
      for (const [key, g] of gauges) add(this.baselineGauges, key, g);
      this.agentBaselineGauges.set(nodeId, gauges);
    }
    const lastKept = a.ring[a.ring.length - 1];
    if (!lastKept || a.last.at - lastKept.at >= this.baselineMs / 4) a.ring.push(a.last);
    while (a.ring.length > 0 && a.ring[0]!.at < at - this.baselineMs * 1.25) a.ring.shift();
    a.last = now;
  }

  /** The agent left this replica: its next sample (on any replica) starts afresh. */
  forget(nodeId: string): void {
    this.agents.delete(nodeId);
    this.voiceOf.delete(nodeId);
  }

  /** What this replica reports to the leader (ZooKeeper node traffic/<replica>); undefined while no rollout is followed. */
  report(at: number): ReplicaTraffic | undefined {
    const r = this.rollout;
    if (!r) return undefined;
    const gauges: Record<string, Record<string, Vec>> = {};
    for (const a of this.agents.values()) {
      if (a.last.revision !== r.from && a.last.revision !== r.to) continue;
      const m = (gauges[a.last.revision] ??= {});
      for (const [key, g] of this.gaugeVectors(a.last.counters, r.keys)) {
        const acc = (m[key] ??= new Array<number>(GAUGES_LENGTH).fill(0));
        for (let i = 0; i < GAUGES_LENGTH; i++) acc[i]! += g[i]!;
      }
    }
    // Copies: what is published must not change under the reader (an in-memory store keeps the object).
    const obj = (m: Map<string, Vec>) => Object.fromEntries([...m].map(([k, v]) => [k, [...v]]));
    const min = r.minRequests ?? 1;
    const byNode = <T>(m: Map<string, T>) => [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const voiceOf = (nodeId: string) => this.voiceOf.get(nodeId) ?? nodeId;
    /** Per-node maps summed per voice (see voiceOf). */
    const perVoice = (m: Map<string, Map<string, Vec>>) => {
      const out = new Map<string, Map<string, Vec>>();
      for (const [nodeId, byKey] of m) {
        let acc = out.get(voiceOf(nodeId));
        if (!acc) out.set(voiceOf(nodeId), (acc = new Map<string, Vec>()));
        for (const [key, v] of byKey) add(acc, key, v);
      }
      return out;
    };
    // Per-agent figures as voices (voices.ts), in node id order: a fixed grouping the agents do not choose.
    const voices: Record<string, Record<string, number[][]>> = {};
    for (const rev of [r.from, r.to]) {
      const perKey = new Map<string, Vec[]>();
      const windowed = new Map(
        [...this.windowed].map(([nodeId, byRevision]) => [nodeId, byRevision.get(rev) ?? new Map<string, Vec>()]),
      );
      for (const [, byKey] of byNode(perVoice(windowed)))
        for (const [key, v] of byKey) perKey.set(key, [...(perKey.get(key) ?? []), v]);
      if (perKey.size > 0)
        voices[rev] = Object.fromEntries([...perKey].map(([k, list]) => [k, groupVoices(list, min, false)]));
    }
    const gaugeVoices: Record<string, Record<string, number[][]>> = {};
    for (const rev of [r.from, r.to]) {
      const perKey = new Map<string, Vec[]>();
      const current = new Map<string, Map<string, Vec>>();
      for (const [nodeId, a] of this.agents)
        if (a.last.revision === rev) current.set(nodeId, this.gaugeVectors(a.last.counters, r.keys));
      for (const [, byKey] of byNode(perVoice(current)))
        for (const [key, g] of byKey) perKey.set(key, [...(perKey.get(key) ?? []), g]);
      if (perKey.size > 0)
        gaugeVoices[rev] = Object.fromEntries([...perKey].map(([k, list]) => [k, groupVoices(list, 0, false, AGENTS)]));
    }
    const perAgent = (m: Map<string, Map<string, Vec>>, min: number, sizeIndex: number) => {
      const perKey = new Map<string, Vec[]>();
      for (const [, byKey] of byNode(perVoice(m)))
        for (const [key, v] of byKey) perKey.set(key, [...(perKey.get(key) ?? []), v]);
      return Object.fromEntries([...perKey].map(([k, list]) => [k, groupVoices(list, min, false, sizeIndex)]));
    };
    return {
      epoch: this.epoch,
      at,
      rollout: r.id,
      sums: Object.fromEntries([...this.sums].map(([rev, m]) => [rev, obj(m)])),
      gauges,
      baseline: obj(this.baseline),
      baselineGauges: obj(this.baselineGauges),
      ...(this.window !== undefined ? { window: this.window, voices } : {}),
      gaugeVoices,
      baselineVoices: perAgent(this.agentBaseline, min, 0),
      baselineGaugeVoices: perAgent(this.agentBaselineGauges, 0, AGENTS),
    };
  }

  /**
   * What each service counted between two samples of one agent (ALL: their sum; per key for `keys`). Service by
   * service, so a service that comes or goes does not read as a restart of the others. Requests are HTTP requests,
   * or sessions for tcp services.
   */
  private deltas(
    before: readonly ServiceCounters[],
    after: readonly ServiceCounters[],
    keys: ReadonlySet<string>,
    elapsedMs = Infinity,
  ): Map<string, Vec> {
    // An agent's claim is bounded by what one HAProxy can serve in the real time that passed (the control plane's
    // clock between two accepted samples, not what the agent says): a flood of samples adds nothing.
    const cap = Number.isFinite(elapsedMs)
      ? Math.floor((MAX_REQUESTS_PER_SECOND * Math.max(elapsedMs, 0)) / 1000)
      : Infinity;
    const prev = new Map(before.map((c) => [c.service, c]));
    const out = new Map<string, Vec>();
    const all = new Array<number>(COUNTS_LENGTH).fill(0);
    for (const c of after) {
      const p = prev.get(c.service);
      const d = delta(counts(c), p && counts(p)).map((x) => Math.min(x, cap));
      for (let i = 0; i < COUNTS_LENGTH; i++) all[i]! += d[i]!;
      if (keys.has(c.service)) out.set(c.service, d);
    }
    out.set(ALL, all);
    return out;
  }

  private gaugeVectors(counters: readonly ServiceCounters[], keys: ReadonlySet<string>): Map<string, Vec> {
    const out = new Map<string, Vec>();
    const all = [0, 0, 0, 1, 0, 0];
    for (const c of counters) {
      // Bounded: DOWN is at most the servers the agent reports (themselves bounded by the stream), the queue capped.
      const g = [
        Math.min(c.serversDown, c.servers),
        c.servers,
        Math.min(c.queue, MAX_QUEUE_PER_SERVICE),
        1,
        Math.min(c.rtimeMs ?? 0, MAX_RTIME_MS),
        (c.rtimeMs ?? 0) > 0 ? 1 : 0,
      ];
      all[DOWN]! += g[DOWN]!;
      all[SERVERS]! += g[SERVERS]!;
      all[QUEUE]! += g[QUEUE]!;
      // Over every service, an agent's response time is its slowest service's.
      all[RTIME] = Math.max(all[RTIME]!, g[RTIME]!);
      all[RTIME_AGENTS] = all[RTIME] > 0 ? 1 : 0;
      if (keys.has(c.service)) out.set(c.service, g);
    }
    all[AGENTS] = 1;
    out.set(ALL, all);
    return out;
  }
}

function newEpoch(): string {
  return randomBytes(6).toString('hex');
}

function counts(c: ServiceCounters): Vec {
  return [c.requests > 0 ? c.requests : c.sessions, c.responses5xx, c.connectionErrors, c.responseErrors, c.retries];
}

/** cur − prev per counter; a counter that went down means the agent restarted: then the new values count. */
function delta(cur: Vec, prev: Vec | undefined): Vec {
  if (!prev) return cur;
  if (cur.some((x, i) => x < (prev[i] ?? 0))) return cur;
  return cur.map((x, i) => x - (prev[i] ?? 0));
}

function add(m: Map<string, Vec>, key: string, v: Vec): void {
  const acc = m.get(key);
  if (!acc) m.set(key, [...v]);
  else for (let i = 0; i < v.length; i++) acc[i]! += v[i]!;
}
