import { ProxyMgrError } from '../../common/platform/errors';
import { parseWaveSpec } from '../../common/config/config';
import { finish, FleetDoc, isActive, PolicyDoc, replace } from './fleet-doc';

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
