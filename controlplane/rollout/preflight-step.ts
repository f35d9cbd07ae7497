import { clipText } from '../../common/platform/text';
import { FleetAgent, MAX_LISTED, MAX_LISTED_ERROR, PreflightDoc, RolloutDoc } from './fleet-doc';

/**
 * Preflight before wave 1: every connected agent that can preflight is asked (by its replica) to check the revision
 * without applying it. Done once each of them answered, or at the timeout (the rest are counted as unanswered);
 * more failures than max_failures halt the rollout before any agent runs the revision.
 */
export function preflightStep(
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
