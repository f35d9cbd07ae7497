import { RolloutPlan } from '../../common/gen/proxymgr/v1/rollout';
import { FleetDoc, isActive } from './engine';
import type { RolloutStore } from './store';

/** `ctl rollout plan`: what the pending revision changes, per agent with its preflight. */
export function rolloutPlan(
  agentsSeen: RolloutStore['agents'],
  doc: FleetDoc | undefined,
  pending: { from: string; to: string } | undefined,
  changed:
    | {
        added: string[];
        removed: string[];
        changed: string[];
        changes: string[];
        servicesFor: (labels: Readonly<Record<string, string>>) => string[];
      }
    | undefined,
): RolloutPlan {
  if (!pending || !changed)
    return {
      pending: false,
      fromRevision: '',
      toRevision: '',
      rolloutId: '',
      state: '',
      servicesAdded: [],
      servicesRemoved: [],
      servicesChanged: [],
      changes: [],
      agents: [],
    };
  const r = doc?.current && doc.current.to === pending.to && isActive(doc.current) ? doc.current : undefined;
  const agents = [...agentsSeen.values()]
    .sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1))
    .map((a) => {
      const pf = r && a.preflight?.rollout === r.id ? a.preflight : undefined;
      const asked = r && r.policy.preflight?.enabled && a.canPreflight && !r.preflight?.completedAt;
      return {
        nodeId: a.nodeId,
        labels: { ...a.labels },
        services: changed.servicesFor(a.labels),
        preflight: pf ? (pf.ok ? 'passed' : 'failed') : asked ? 'pending' : 'not asked',
        method: pf?.method ?? '',
        reasons: [...(pf?.reasons ?? [])],
        error: pf?.error ?? '',
      };
    });
  return {
    pending: true,
    fromRevision: pending.from,
    toRevision: pending.to,
    rolloutId: r?.id ?? '',
    state: r?.state ?? '',
    servicesAdded: changed.added,
    servicesRemoved: changed.removed,
    servicesChanged: changed.changed,
    changes: changed.changes,
    agents,
  };
}
