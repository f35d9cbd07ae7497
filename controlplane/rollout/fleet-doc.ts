/**
 * The rollout document (kept in ZooKeeper by controlplane/ha, one node shared by every replica) and the pure helpers
 * that read and rewrite it; engine.ts steps it, commands.ts applies operator commands to it.
 */
import {
  DEFAULT_GATE_POLICY,
  DEFAULT_PREFLIGHT_POLICY,
  GatePolicy,
  PreflightPolicy,
  RolloutPolicyConfig,
  WaveSpec,
} from '../../common/config/config';
import { ByKey, Counts, GateResult, GateStart, Gauges } from './gate';

export type RolloutStateName = 'running' | 'paused' | 'halted' | 'completed' | 'rolled_back' | 'aborted' | 'superseded';

/** States in which the revision stays with the agents it was released to. */
export const ACTIVE_STATES: readonly RolloutStateName[] = ['running', 'paused', 'halted'];

/** A policy as stored (waves as the operator wrote them: "1", "10%"). */
export interface PolicyDoc {
  readonly waves: readonly string[];
  readonly bakeMs: number;
  readonly maxNacks: number;
  readonly autoRollback: boolean;
  /** Agent label each wave is spread across (see RolloutPolicyConfig.spreadBy). */
  readonly spreadBy?: string;
  /** Preflight before wave 1 (absent in documents from before it: none). */
  readonly preflight?: PreflightPolicy;
  /** Traffic gates during each bake (absent in documents from before them: none). */
  readonly gate?: GatePolicy;
  /**
   * A rollout that removes services starts paused, waiting for an operator (absent in documents from before it:
   * true). A removed service has no traffic left for a gate to judge, and an emptied `/service_config` looks exactly
   * like every service being deleted.
   */
  readonly confirmServiceRemovals?: boolean;
}

/** The preflight of a rollout, as the leader saw it (agents that fail are listed, at most MAX_LISTED). */
export interface PreflightDoc {
  readonly startedAt: number;
  readonly completedAt?: number;
  readonly passed: number;
  readonly failed: readonly { readonly nodeId: string; readonly error: string }[];
  readonly failedCount: number;
  /** Agents that could preflight but had not answered when it ended. */
  readonly unanswered: number;
  /** A resume let the waves start despite failures. */
  readonly overridden?: boolean;
}

export const MAX_LISTED = 20;
/** A baking wave's gate figures are written to the rollout document at most this often (verdict changes at once). */
export const GATE_FIGURES_EVERY_MS = 5000;
/** Characters of a failing agent's preflight message kept in the rollout document. */
export const MAX_LISTED_ERROR = 600;

export interface WaveDoc {
  /** 1-based. */
  readonly index: number;
  readonly spec: string;
  readonly agents: readonly string[];
  readonly startedAt: number;
  readonly ackedAt?: number;
  readonly completedAt?: number;
  /** Where the traffic gate's window began (each replica's sums when every agent of the wave had ACKed). */
  readonly gateStart?: GateStart;
  /** The traffic gate's latest judgement of this wave (final once the wave completed or halted). */
  readonly gate?: GateResult;
  /** A resume after the gate halted this wave: it is not judged again. */
  readonly gateOverridden?: boolean;
}

export interface AgentResult {
  readonly status: 'pending' | 'acked' | 'nacked';
  readonly wave: number;
  readonly error?: string;
  readonly at: number;
}

export interface RolloutDoc {
  readonly id: string;
  readonly from: string;
  readonly to: string;
  readonly state: RolloutStateName;
  readonly policy: PolicyDoc;
  readonly waves: readonly WaveDoc[];
  /** Specs of policy.waves not yet started or skipped. */
  readonly pending: readonly string[];
  readonly results: Readonly<Record<string, AgentResult>>;
  /** Agents whose NACKs were forgiven by a resume. */
  readonly forgiven: readonly string[];
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly finishedAt?: number;
  readonly reason: string;
  readonly changes: readonly string[];
  /** Counts kept in history entries (whose results are dropped). */
  readonly counts?: { readonly total: number; readonly acked: number; readonly nacked: number };
  readonly preflight?: PreflightDoc;
  /**
   * The traffic of the rollout's agents before they took its revision, as the leader last read it from the replicas
   * (kept here so that a replica that goes away, or a new leader, does not lose it).
   */
  readonly baseline?: { readonly counts: ByKey<Counts>; readonly gauges: ByKey<Gauges> };
}

/** Everything the control planes agree on, in one ZooKeeper node. */
export interface FleetDoc {
  /** The last fully released revision ("" before the first one). */
  readonly stable: string;
  readonly current?: RolloutDoc;
  /** Finished rollouts, newest first (without per-agent results). */
  readonly history: readonly RolloutDoc[];
  /** Policy override for the next rollout. */
  readonly nextPolicy?: PolicyDoc;
  /** Bumped on every change (for logs). */
  readonly seq: number;
}

/** One agent as the replicas report it (ZooKeeper agent status nodes); only connected agents are present. */
export interface FleetAgent {
  readonly nodeId: string;
  /** The revision the agent runs (from its last ACK or its hello). */
  readonly runningRevision: string;
  readonly lastNack?: { readonly revision: string; readonly error: string; readonly at: number };
  readonly labels?: Readonly<Record<string, string>>;
  /** Whether the agent can preflight (it said so in its hello). */
  readonly canPreflight?: boolean;
  /** Its answer to the latest preflight it was asked for. */
  readonly preflight?: { readonly rollout: string; readonly ok: boolean; readonly error: string };
}

export const HISTORY_LIMIT = 20;
export const EMPTY_DOC: FleetDoc = { stable: '', history: [], seq: 0 };

export function policyDoc(p: RolloutPolicyConfig): PolicyDoc {
  return {
    waves: p.waves.map(waveText),
    bakeMs: p.bakeMs,
    maxNacks: p.maxNacks,
    autoRollback: p.autoRollback,
    ...(p.spreadBy ? { spreadBy: p.spreadBy } : {}),
    preflight: p.preflight ?? DEFAULT_PREFLIGHT_POLICY,
    gate: p.gate ?? DEFAULT_GATE_POLICY,
    confirmServiceRemovals: p.confirmServiceRemovals ?? true,
  };
}

export function waveText(w: WaveSpec): string {
  return w.kind === 'count' ? String(w.count) : `${+(w.share * 100).toFixed(4)}%`;
}

export function isActive(
  r: RolloutDoc | undefined,
): r is RolloutDoc & { readonly state: 'running' | 'paused' | 'halted' } {
  return r !== undefined && ACTIVE_STATES.includes(r.state);
}

/**
 * The revision one agent may run: the rollout's target once a wave released it to the agent (while the rollout
 * is active), otherwise the last fully released revision. Agents that join mid-rollout get the stable one.
 */
export function releasedRevision(doc: FleetDoc, nodeId: string): string {
  const r = doc.current;
  if (isActive(r) && wavesByAgent(r).has(nodeId)) return r.to;
  return doc.stable;
}

/** The wave (1-based) that released the current rollout to `nodeId`, or 0. */
export function waveOf(r: RolloutDoc | undefined, nodeId: string): number {
  return r ? (wavesByAgent(r).get(nodeId) ?? 0) : 0;
}

/**
 * Agent → wave of a rollout, built once per (immutable) rollout document: every push asks what one agent may run,
 * and scanning the waves' agent lists made a push to every agent O(agents²) (2·10⁸ comparisons at 20,000 agents).
 */
const waveIndex = new WeakMap<RolloutDoc, ReadonlyMap<string, number>>();
function wavesByAgent(r: RolloutDoc): ReadonlyMap<string, number> {
  let index = waveIndex.get(r);
  if (!index) {
    const m = new Map<string, number>();
    for (const w of r.waves) for (const id of w.agents) m.set(id, w.index);
    waveIndex.set(r, (index = m));
  }
  return index;
}

/** Result counts of a rollout. */
export function counts(r: RolloutDoc): { total: number; acked: number; nacked: number } {
  if (r.counts) return r.counts;
  const all = Object.values(r.results);
  return {
    total: all.length,
    acked: all.filter((a) => a.status === 'acked').length,
    nacked: all.filter((a) => a.status === 'nacked').length,
  };
}

/** The rollout with its last wave replaced by `wave`. */
export function updateLast(r: RolloutDoc, wave: WaveDoc, now: number): RolloutDoc {
  return { ...r, waves: [...r.waves.slice(0, -1), wave], updatedAt: now };
}

/** `doc` with `before` (its current rollout) replaced by `after`; the same document when nothing changed. */
export function replace(doc: FleetDoc, before: RolloutDoc, after: RolloutDoc): FleetDoc {
  return before === after ? doc : { ...doc, current: after, seq: doc.seq + 1 };
}

/** `doc` with rollout `r` finished in `state`: kept as current, summarized into the history. */
export function finish(doc: FleetDoc, r: RolloutDoc, state: RolloutStateName, now: number, reason: string): FleetDoc {
  const done: RolloutDoc = { ...r, state, reason, updatedAt: now, finishedAt: now };
  // History lives in the same ZooKeeper node (1 MB by default): keep counts and verdicts, not per-agent lists or the
  // gates' per-replica sums.
  const { baseline: _baseline, ...kept } = done;
  const summary: RolloutDoc = {
    ...kept,
    results: {},
    waves: done.waves.map(({ gateStart: _start, ...w }) => ({ ...w, agents: [] })),
    counts: counts(done),
  };
  return {
    ...doc,
    stable: state === 'completed' ? r.to : doc.stable,
    current: done,
    history: [summary, ...doc.history.filter((h) => h.id !== r.id)].slice(0, HISTORY_LIMIT),
    seq: doc.seq + 1,
  };
}
