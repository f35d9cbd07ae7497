/**
 * The rollout engine: a pure state machine over one document (kept in ZooKeeper by controlplane/ha). Every
 * function takes the document and the time and returns a new document; nothing here does I/O, so a leader that
 * takes over mid-rollout simply continues from the document it reads.
 *
 *   doc = onRevision(doc, 'ab12…', policy, now, changes)   // a new revision: a rollout starts (or supersedes one)
 *   doc = step(doc, fleet, now).doc                        // ACKs/NACKs in, waves out; call on every change
 *   releasedRevision(doc, 'web-17')                        // what one agent may run: the only gate for pushes
 */
import { ProxyMgrError } from '../../common/errors';
import { clipText } from '../../common/text';
import {
  DEFAULT_GATE_POLICY,
  DEFAULT_PREFLIGHT_POLICY,
  GatePolicy,
  parseWaveSpec,
  PreflightPolicy,
  RolloutPolicyConfig,
  WaveSpec,
} from '../../common/config';
import {
  ALL,
  ByKey,
  COUNTS_LENGTH,
  Counts,
  GateResult,
  gateStart,
  GateStart,
  Gauges,
  GAUGES_LENGTH,
  judge,
  REQUESTS,
  sumOver,
  TrafficView,
} from './gate';
import { gateWindow, waveGateInput } from './gate-input';

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

/**
 * A new current revision. The first one ever is released at once (nothing to roll back to). The same target as the
 * current/last rollout, or the stable revision itself, changes nothing — except that a running rollout whose change
 * was reverted is superseded. Anything else supersedes the active rollout (its agents fall back to the stable
 * revision) and starts a new rollout from the last fully released revision; one that removes services (`removes`,
 * compared with the stable revision) starts paused when its policy says so, until an operator resumes, promotes or
 * aborts it.
 */
export function onRevision(
  doc: FleetDoc,
  revision: string,
  policy: PolicyDoc,
  now: number,
  changes: readonly string[] = [],
  removes: readonly string[] = [],
): FleetDoc {
  if (doc.stable === '') return { ...doc, stable: revision, seq: doc.seq + 1 };
  const cur = doc.current;
  if (cur && cur.to === revision && (isActive(cur) || cur.state !== 'superseded')) return doc;
  let next = doc;
  if (isActive(cur))
    next = finish(
      next,
      cur,
      'superseded',
      now,
      revision === doc.stable ? 'the change was reverted' : `superseded by revision ${revision}`,
    );
  if (revision === doc.stable) return next;
  const use = next.nextPolicy ?? policy;
  const confirm = removes.length > 0 && use.confirmServiceRemovals !== false;
  const rollout: RolloutDoc = {
    id: `${revision}-${now.toString(36)}`,
    from: doc.stable,
    to: revision,
    state: confirm ? 'paused' : 'running',
    policy: use,
    waves: [],
    pending: use.waves,
    results: {},
    forgiven: [],
    createdAt: now,
    updatedAt: now,
    reason: confirm ? removalReason(removes) : 'started',
    changes,
  };
  const { nextPolicy: _dropped, ...rest } = next;
  return { ...rest, current: rollout, seq: next.seq + 1 };
}

export interface StepResult {
  readonly doc: FleetDoc;
  /** When step should run again even if nothing else happens (a bake time ends). */
  readonly wakeAt?: number;
}

/**
 * Advances the current rollout: records ACKs/NACKs of the agents it was released to, halts (and rolls back) past
 * the NACK threshold, and starts the next wave once every connected agent of the current wave ACKed and the bake
 * time passed. Agents of a wave that are not connected are not waited for; they get the revision when they return.
 *
 * Nothing advances on no evidence: no wave completes, and the rollout never completes, before at least one agent
 * ACKed the revision. A wave that settles without any ACK in the whole rollout (its agents left, or NACKed within
 * max_nacks) is followed by a replacement wave of the same size taken from agents not tried yet; with no such agent
 * (e.g. none connected) the rollout waits, and its reason says so.
 */
export function step(
  doc: FleetDoc,
  fleet: ReadonlyMap<string, FleetAgent>,
  now: number,
  traffic?: TrafficView,
): StepResult {
  const r0 = doc.current;
  if (!isActive(r0)) return { doc };
  let r = withResults(r0, fleet, now);
  const nacked = Object.entries(r.results).filter(([id, a]) => a.status === 'nacked' && !r.forgiven.includes(id));
  if (r.state === 'running' && nacked.length > r.policy.maxNacks) {
    const [id, a] = nacked[0]!;
    const why = `${nacked.length} NACK(s), more than max_nacks ${r.policy.maxNacks}; ${id}: ${a.error ?? ''}`.trim();
    if (r.policy.autoRollback) return { doc: finish(doc, r, 'rolled_back', now, `${why}; rolled back to ${r.from}`) };
    r = { ...r, state: 'halted', reason: why, updatedAt: now };
  }
  if (r.state === 'halted' && r.waves.length === 0 && r.preflight && !r.preflight.overridden && r.policy.preflight) {
    // Halted by its preflight: later answers still count, so status lists every agent that fails it.
    const pf = preflightStep({ ...r, state: 'running' }, fleet, now).rollout.preflight!;
    const tally = { ...pf, completedAt: r.preflight.completedAt };
    if (JSON.stringify(tally) !== JSON.stringify(r.preflight)) r = { ...r, preflight: tally, updatedAt: now };
  }
  if (r.state !== 'running') return { doc: replace(doc, r0, r) };

  if (r.waves.length === 0 && r.policy.preflight?.enabled && !r.preflight?.completedAt) {
    const pf = preflightStep(r, fleet, now);
    r = pf.rollout;
    if (pf.wakeAt !== undefined || r.state !== 'running')
      return { doc: replace(doc, r0, r), ...(pf.wakeAt !== undefined ? { wakeAt: pf.wakeAt } : {}) };
  }

  const assigned = new Set(r.waves.flatMap((w) => w.agents));
  // Agents whose preflight failed (within max_failures) go last: a canary should be an agent that can run it.
  const failedPreflight = (id: string) =>
    fleet.get(id)?.preflight?.rollout === r.id && fleet.get(id)?.preflight?.ok === false;
  const ordered = releaseOrder(
    [...fleet.keys()].filter((id) => !assigned.has(id)),
    fleet,
    r.policy.spreadBy,
  );
  const candidates = [...ordered.filter((id) => !failedPreflight(id)), ...ordered.filter(failedPreflight)];
  const anyAck = Object.values(r.results).some((a) => a.status === 'acked');
  const last = r.waves[r.waves.length - 1];
  if (last && last.completedAt === undefined) {
    const done = last.agents.every(
      (id) => !fleet.has(id) || r.results[id]?.status === 'acked' || r.results[id]?.status === 'nacked',
    );
    if (!done) return { doc: replace(doc, r0, r) };
    if (!anyAck) {
      // Settled without a single ACK: nothing is known about the revision yet. Try it on as many other agents.
      const take = candidates.slice(0, Math.max(1, last.agents.length));
      const gone = last.agents.filter((id) => !fleet.has(id)).length;
      const why =
        gone === last.agents.length
          ? `its ${gone} agent(s) disconnected`
          : `${last.agents.length - gone} NACKed${gone > 0 ? `, ${gone} disconnected` : ''}`;
      if (take.length === 0)
        return {
          doc: replace(
            doc,
            r0,
            waiting(
              r,
              `waiting for an agent to ACK ${r.to}: wave ${last.index} ended without an ACK (${why}) and no other agent is connected`,
              now,
            ),
          ),
        };
      r = updateLast(r, { ...last, completedAt: now }, now);
      return step(
        replace(doc, r0, startWave(r, last.spec, take, now, `wave ${last.index} ended without an ACK (${why}); `)),
        fleet,
        now,
        traffic,
      );
    }
    const ackedAt = last.ackedAt ?? now;
    const bakeEnd = ackedAt + (r.pending.length === 0 ? 0 : r.policy.bakeMs);
    // The last wave has no bake, so nothing to judge: the gates judge every wave before it.
    const gate =
      r.policy.gate?.enabled && traffic && bakeEnd > ackedAt && !last.gateOverridden ? r.policy.gate : undefined;
    if (last.ackedAt === undefined)
      r = updateLast(
        r,
        { ...last, ackedAt, ...(gate && traffic ? { gateStart: gateStart(traffic, r.from, r.to) } : {}) },
        now,
      );
    if (gate && traffic) {
      const judged = judgeWave(r, gate, traffic, now >= bakeEnd, now);
      r = judged.rollout;
      const g = judged.result;
      if (g.verdict === 'fail' || (g.verdict === 'insufficient' && gate.onInsufficientTraffic === 'halt')) {
        const why = `wave ${last.index}: ${g.reason}`;
        if (g.verdict === 'fail' && r.policy.autoRollback)
          return { doc: finish(doc, r, 'rolled_back', now, `${why}; rolled back to ${r.from}`) };
        return {
          doc: replace(doc, r0, {
            ...r,
            state: 'halted',
            reason: g.verdict === 'fail' ? why : `${why} (gate.on_insufficient_traffic: halt)`,
            updatedAt: now,
          }),
        };
      }
      if (now < bakeEnd) return { doc: replace(doc, r0, r), wakeAt: Math.min(bakeEnd, now + gate.sampleMs) };
    }
    if (now < bakeEnd) return { doc: replace(doc, r0, r), wakeAt: bakeEnd };
    const { gateStart: _done, ...completed } = r.waves[r.waves.length - 1]!;
    r = updateLast(r, { ...completed, completedAt: now }, now);
  }
  // Start the next wave that releases to at least one agent; none left → the revision is fully released.
  const total = new Set([...assigned, ...fleet.keys()]).size;
  const pending = [...r.pending];
  while (pending.length > 0) {
    const spec = pending.shift()!;
    const w = parseWaveSpec(spec, 'wave');
    const target = w.kind === 'count' ? assigned.size + w.count : Math.ceil(w.share * total - 1e-9);
    const take = candidates.slice(0, Math.max(0, target - assigned.size));
    if (take.length === 0) continue; // e.g. 10 % of 5 agents after the canary: nothing new, next spec
    // The new wave's agents may already run the revision (e.g. it equals what they had): settle at once.
    return step(replace(doc, r0, startWave({ ...r, pending }, spec, take, now)), fleet, now, traffic);
  }
  if (!anyAck) {
    // No wave could start (no agent connected) or none ACKed yet: completing now would make the revision stable for
    // every agent that connects later, canary or not.
    const why =
      fleet.size === 0 ? 'no agent is connected' : `none of the ${fleet.size} connected agent(s) ACKed it yet`;
    return {
      doc: replace(
        doc,
        r0,
        waiting(
          r,
          `waiting for an agent to ACK ${r.to} before ${r.waves.length === 0 ? 'wave 1 starts' : 'completing'}: ${why}`,
          now,
        ),
      ),
    };
  }
  return { doc: finish(doc, { ...r, pending: [] }, 'completed', now, `released to every agent (${assigned.size})`) };
}

/**
 * Preflight before wave 1: every connected agent that can preflight is asked (by its replica) to check the revision
 * without applying it. Done once each of them answered, or at the timeout (the rest are counted as unanswered);
 * more failures than max_failures halt the rollout before any agent runs the revision.
 */
function preflightStep(
  r: RolloutDoc,
  fleet: ReadonlyMap<string, FleetAgent>,
  now: number,
): { rollout: RolloutDoc; wakeAt?: number } {
  const policy = r.policy.preflight!;
  const startedAt = r.preflight?.startedAt ?? now;
  let passed = 0;
  let unanswered = 0;
  const failed: { nodeId: string; error: string }[] = [];
  for (const a of [...fleet.values()].sort((x, y) => (x.nodeId < y.nodeId ? -1 : 1))) {
    const res = a.preflight?.rollout === r.id ? a.preflight : undefined;
    if (!res) {
      if (a.canPreflight) unanswered++;
    } else if (res.ok) passed++;
    else failed.push({ nodeId: a.nodeId, error: res.error });
  }
  const timedOut = now >= startedAt + policy.timeoutMs;
  const done = unanswered === 0 || timedOut;
  // Listed with their messages cut short: the document is shared by every replica (the full ones are in agent status).
  const listed = failed.slice(0, MAX_LISTED).map((f) => ({
    nodeId: f.nodeId,
    error: clipText(f.error, MAX_LISTED_ERROR),
  }));
  const pf: PreflightDoc = {
    startedAt,
    passed,
    failed: listed,
    failedCount: failed.length,
    unanswered,
    ...(done ? { completedAt: now } : {}),
  };
  const same = r.preflight && JSON.stringify(r.preflight) === JSON.stringify(pf);
  let rollout = same ? r : { ...r, preflight: pf, updatedAt: now };
  if (failed.length > policy.maxFailures) {
    const list = listed
      .slice(0, 3)
      .map((f) => `${f.nodeId}: ${f.error}`)
      .join('; ');
    const reason = `preflight failed on ${failed.length} agent(s), more than preflight.max_failures ${policy.maxFailures}; no agent runs ${r.to}; ${list}`;
    return { rollout: { ...rollout, preflight: { ...pf, completedAt: now }, state: 'halted', reason, updatedAt: now } };
  }
  if (!done) {
    const reason = `preflight: ${passed} passed, waiting for ${unanswered} agent(s)`;
    if (rollout.reason !== reason) rollout = { ...rollout, reason, updatedAt: now };
    return { rollout, wakeAt: startedAt + policy.timeoutMs };
  }
  return { rollout };
}

/** The gate's judgement of the rollout's last wave now; the result is kept in the wave (and the baseline in the rollout). */
function judgeWave(
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

function startWave(r: RolloutDoc, spec: string, take: readonly string[], now: number, why = ''): RolloutDoc {
  const wave: WaveDoc = { index: r.waves.length + 1, spec, agents: [...take], startedAt: now };
  const results = { ...r.results };
  for (const id of take) results[id] = { status: 'pending', wave: wave.index, at: now };
  return {
    ...r,
    waves: [...r.waves, wave],
    results,
    updatedAt: now,
    reason: `${why}wave ${wave.index} (${spec}) released to ${take.length} agent(s)`,
  };
}

/** Why a rollout that removes services waits, and what the operator can do. */
function removalReason(removes: readonly string[]): string {
  const names = removes.slice(0, 10).join(', ') + (removes.length > 10 ? `, … (${removes.length})` : '');
  return (
    `waiting for an operator: removes ${removes.length} service(s) (${names}), and a removed service leaves no ` +
    `traffic for the gates to judge; resume to roll the removal out in waves, promote to release it to every agent ` +
    `now, abort to keep the services (restore their configs)`
  );
}

/** The rollout with `reason` (the same document when the reason is unchanged: no ZooKeeper write per step). */
function waiting(r: RolloutDoc, reason: string, now: number): RolloutDoc {
  return r.reason === reason ? r : { ...r, reason, updatedAt: now };
}

/** Operator commands; each returns the new document or throws RolloutCommandError. */
export type Command = 'pause' | 'resume' | 'promote' | 'abort';

/** An operator command the rollout's state does not allow (no rollout, already running, another rollout's id). */
export class RolloutCommandError extends ProxyMgrError {
  constructor(message: string, code: 'ROLLOUT_NONE' | 'ROLLOUT_BAD_STATE' | 'ROLLOUT_WRONG_ID') {
    super(code, message);
  }
}

export function command(doc: FleetDoc, cmd: Command, now: number, rolloutId = ''): FleetDoc {
  const r = doc.current;
  if (!isActive(r))
    throw new RolloutCommandError(
      `no rollout is in progress (last: ${r ? `${r.id} ${r.state}` : 'none'})`,
      'ROLLOUT_NONE',
    );
  if (rolloutId && rolloutId !== r.id)
    throw new RolloutCommandError(`rollout ${rolloutId} is not the current one (${r.id})`, 'ROLLOUT_WRONG_ID');
  switch (cmd) {
    case 'pause':
      if (r.state !== 'running')
        throw new RolloutCommandError(`rollout ${r.id} is ${r.state}, not running`, 'ROLLOUT_BAD_STATE');
      return replace(doc, r, { ...r, state: 'paused', reason: 'paused by operator', updatedAt: now });
    case 'resume': {
      if (r.state === 'running')
        throw new RolloutCommandError(`rollout ${r.id} is already running`, 'ROLLOUT_BAD_STATE');
      const forgiven = [
        ...new Set([
          ...r.forgiven,
          ...Object.entries(r.results)
            .filter(([, a]) => a.status === 'nacked')
            .map(([id]) => id),
        ]),
      ];
      // A halted preflight: the operator lets the waves start anyway. A wave its gate halted: it is not judged again
      // (its bake goes on from its ACK). A pause or a NACK halt leaves the gate as it was.
      const preflight =
        r.preflight && r.waves.length === 0 && r.state === 'halted'
          ? { ...r.preflight, completedAt: r.preflight.completedAt ?? now, overridden: true }
          : r.preflight;
      const last = r.waves[r.waves.length - 1];
      const gateHalted =
        r.state === 'halted' &&
        last?.completedAt === undefined &&
        (last?.gate?.verdict === 'fail' || last?.gate?.verdict === 'insufficient');
      const waves = gateHalted ? [...r.waves.slice(0, -1), { ...last, gateOverridden: true }] : r.waves;
      return replace(doc, r, {
        ...r,
        state: 'running',
        forgiven,
        waves,
        ...(preflight ? { preflight } : {}),
        reason: `resumed by operator (from ${r.state})`,
        updatedAt: now,
      });
    }
    case 'promote': {
      const last = r.waves[r.waves.length - 1];
      // Promote means now: a preflight still running (or one that halted the rollout) is not waited for.
      const preflight =
        r.preflight && r.waves.length === 0
          ? { ...r.preflight, completedAt: r.preflight.completedAt ?? now, overridden: true }
          : r.preflight;
      const waves =
        last && last.completedAt === undefined
          ? [...r.waves.slice(0, -1), { ...last, ackedAt: last.ackedAt ?? now, completedAt: now }]
          : r.waves;
      return replace(doc, r, {
        ...r,
        state: 'running',
        waves,
        ...(preflight ? { preflight } : {}),
        pending: ['100%'],
        policy: { ...r.policy, bakeMs: 0 },
        reason: 'promoted by operator: released to every agent',
        updatedAt: now,
      });
    }
    case 'abort':
      return finish(doc, r, 'aborted', now, `aborted by operator; rolled back to ${r.from}`);
  }
}

const POLICY_CHANGED = ' (policy changed by operator)';

/** Changes the current rollout's policy (new waves replace the pending ones), or sets the next rollout's. */
export function setPolicy(
  doc: FleetDoc,
  change: Partial<PolicyDoc>,
  next: boolean,
  base: PolicyDoc,
  now: number,
): FleetDoc {
  for (const [i, w] of (change.waves ?? []).entries()) parseWaveSpec(w, `waves[${i}]`);
  if (next) return { ...doc, nextPolicy: { ...(doc.nextPolicy ?? base), ...change }, seq: doc.seq + 1 };
  const r = doc.current;
  if (!isActive(r))
    throw new RolloutCommandError('no rollout is in progress (use next to change the next one)', 'ROLLOUT_NONE');
  const policy = { ...r.policy, ...change };
  return replace(doc, r, {
    ...r,
    policy,
    pending: change.waves ?? r.pending,
    // A rollout that waits (paused, halted) keeps saying why: a removal still waits for its operator.
    reason:
      r.state === 'running' ? 'policy changed by operator' : `${r.reason.replace(POLICY_CHANGED, '')}${POLICY_CHANGED}`,
    updatedAt: now,
  });
}

/**
 * The order in which agents not yet released are taken: node-id order, or with `spreadBy` round-robin over the
 * values of that label in their sort order (each value's agents in node-id order; agents without the label come
 * last, as one more group). Each wave orders what is left afresh, so no wave takes a second agent from one zone
 * before one from every other zone that still has agents.
 */
export function releaseOrder(
  ids: readonly string[],
  fleet: ReadonlyMap<string, FleetAgent>,
  spreadBy?: string,
): string[] {
  const sorted = [...ids].sort();
  if (!spreadBy) return sorted;
  const groups = new Map<string, string[]>();
  for (const id of sorted) {
    const value = fleet.get(id)?.labels?.[spreadBy] ?? '';
    const group = groups.get(value);
    if (group) group.push(id);
    else groups.set(value, [id]);
  }
  const lists = [...groups.keys()]
    .sort((a, b) => (a === '' ? 1 : b === '' ? -1 : a < b ? -1 : a > b ? 1 : 0))
    .map((k) => groups.get(k)!);
  const out: string[] = [];
  for (let i = 0; out.length < sorted.length; i++) for (const list of lists) if (i < list.length) out.push(list[i]!);
  return out;
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

function withResults(r: RolloutDoc, fleet: ReadonlyMap<string, FleetAgent>, now: number): RolloutDoc {
  let results: Record<string, AgentResult> | undefined;
  for (const w of r.waves) {
    for (const id of w.agents) {
      const a = fleet.get(id);
      const prev = r.results[id];
      if (!a || !prev) continue;
      let next: AgentResult = prev;
      if (a.runningRevision === r.to)
        next = prev.status === 'acked' ? prev : { status: 'acked', wave: w.index, at: now };
      else if (a.lastNack?.revision === r.to && a.lastNack.at >= w.startedAt)
        next =
          prev.status === 'nacked' && prev.error === a.lastNack.error
            ? prev
            : { status: 'nacked', wave: w.index, error: a.lastNack.error, at: now };
      if (next !== prev) (results ??= { ...r.results })[id] = next;
    }
  }
  return results ? { ...r, results, updatedAt: now } : r;
}

function updateLast(r: RolloutDoc, wave: WaveDoc, now: number): RolloutDoc {
  return { ...r, waves: [...r.waves.slice(0, -1), wave], updatedAt: now };
}

function replace(doc: FleetDoc, before: RolloutDoc, after: RolloutDoc): FleetDoc {
  return before === after ? doc : { ...doc, current: after, seq: doc.seq + 1 };
}

function finish(doc: FleetDoc, r: RolloutDoc, state: RolloutStateName, now: number, reason: string): FleetDoc {
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
