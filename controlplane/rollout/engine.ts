/**
 * The rollout engine: a pure state machine over one document (kept in ZooKeeper by controlplane/ha). Every
 * function takes the document and the time and returns a new document; nothing here does I/O, so a leader that
 * takes over mid-rollout simply continues from the document it reads.
 *
 *   doc = onRevision(doc, 'ab12…', policy, now, changes)   // a new revision: a rollout starts (or supersedes one)
 *   doc = step(doc, fleet, now).doc                        // ACKs/NACKs in, waves out; call on every change
 *   releasedRevision(doc, 'web-17')                        // what one agent may run: the only gate for pushes
 */
import { parseWaveSpec } from '../../common/config/config';
import { gateStart, TrafficView } from './gate';
import {
  AgentResult,
  finish,
  FleetAgent,
  FleetDoc,
  isActive,
  PolicyDoc,
  replace,
  RolloutDoc,
  updateLast,
  WaveDoc,
} from './fleet-doc';
import { preflightStep } from './preflight-step';
import { judgeWave } from './wave-gate';

// The engine's whole API in one import: the document and its helpers, and the operator commands.
export * from './fleet-doc';
export * from './commands';

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
