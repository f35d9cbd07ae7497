import { figureText, percent } from '../common/platform/text';
import { RolloutInfo, RolloutPlan, RolloutStatus } from '../common/gen/proxymgr/v1/rollout';
import { bar, table } from './table';

/** A gate verdict with the figures that decided it. */
function renderGate(w: RolloutInfo['waves'][number]): string {
  const g = w.gate;
  if (!g) return '';
  let text = `  wave ${w.index} gate: ${g.verdict.toUpperCase()}${g.overridden ? ' (overridden by operator)' : ''}${g.reason ? `: ${g.reason}` : ''}\n`;
  if (g.figures.length === 0) return text;
  text += table([
    ['    KEY', 'METRIC', 'NEW', 'STABLE', 'BEFORE', 'ALLOWED', 'REQUESTS', 'P', ''],
    ...g.figures.map((f) => {
      const fmt = (x: number) => figureText(f.metric, x);
      return [
        `    ${f.key}`,
        f.metric,
        fmt(f.canary),
        f.hasStable ? fmt(f.stable) : '-',
        f.hasBefore ? fmt(f.before) : '-',
        `+${fmt(f.threshold)}`,
        String(f.requests),
        !f.hasP ? '-' : f.p < 0.001 ? '<0.001' : f.p.toFixed(3),
        f.regressed ? '! regressed' : '',
      ];
    }),
  ]);
  return text;
}

/** `ctl rollout plan` as text. */
export function renderPlan(p: RolloutPlan): string {
  if (!p.pending) return 'nothing pending: the revision discovery has is the stable one\n';
  let text = `revision ${p.fromRevision || '(none)'} -> ${p.toRevision}${p.rolloutId ? `  rollout ${p.rolloutId} ${p.state.toUpperCase()}` : '  (no rollout started yet)'}\n`;
  if (p.changes.length) text += `changes: ${p.changes.join('; ')}\n`;
  text += `services added: ${p.servicesAdded.join(', ') || '-'}\nservices removed: ${p.servicesRemoved.join(', ') || '-'}\nservices changed: ${p.servicesChanged.join(', ') || '-'}\n\n`;
  text += table([
    ['AGENT', 'GETS', 'PREFLIGHT', 'APPLY', 'WHY'],
    ...p.agents.map((a) => [
      a.nodeId,
      a.services.join(',') || '-',
      a.preflight,
      a.method || '-',
      (a.error ? `${a.error}` : a.reasons.join('; ')).replace(/\s+/g, ' ').slice(0, 200),
    ]),
  ]);
  return text;
}

const time = (iso: string) => (iso ? iso.slice(11, 23) : '-');

/** The human view of a status: header, progress bar, waves, agents. */
export function renderStatus(s: RolloutStatus): string {
  if (!s.enabled) return 'rollouts are off on this control plane (no rollout section in proxymgr.yml)\n';
  let text = `replica ${s.replica}  leader ${s.leader || '(none)'}  stable revision ${s.stableRevision || '(none)'}\n`;
  const r = s.rollout;
  if (!r) return text + 'no rollout yet\n';
  text += `rollout ${r.id}: ${r.fromRevision} -> ${r.toRevision}  ${r.state.toUpperCase()}  (${r.reason})\n`;
  if (r.changes.length) text += `changes: ${r.changes.join('; ')}\n`;
  const p = r.policy;
  if (p) {
    text += `policy: waves ${p.waves.join(',')}  bake ${p.bakeMs} ms  max_nacks ${p.maxNacks}  auto_rollback ${p.autoRollback}${p.spreadBy ? `  spread_by ${p.spreadBy}` : ''}`;
    text += `  preflight ${p.preflight?.enabled ? 'on' : 'off'}`;
    const g = p.gate;
    text +=
      g?.enabled && g.thresholds
        ? `  gate on (min_requests ${g.minRequests}; 5xx +${percent(g.thresholds.http5xx)}, errors +${percent(g.thresholds.errors)}, retries +${percent(g.thresholds.retries)}, servers_down +${percent(g.thresholds.serversDown)}, queue +${g.thresholds.queue}, rtime +${g.thresholds.rtime} ms; false_halt_rate ${g.falseHaltRate || 0.01})\n`
        : '  gate off\n';
  }
  const total = s.agents.length;
  const on = s.agents.filter((a) => a.runningRevision === r.toRevision).length;
  text += `${bar(on, total)} agents on ${r.toRevision}; ${r.agentsNacked} NACK(s)\n\n`;
  text += table([
    ['WAVE', 'SPEC', 'AGENTS', 'ACKED', 'NACKED', 'STARTED', 'ACKED_AT', 'COMPLETED'],
    ...r.waves.map((w) => [
      String(w.index),
      w.spec,
      String(w.agents.length),
      String(w.acked),
      String(w.nacked),
      time(w.startedAt),
      time(w.ackedAt),
      time(w.completedAt),
    ]),
    ...r.pendingWaves.map((spec) => ['-', spec, '-', '-', '-', 'pending', '-', '-']),
  ]);
  for (const w of r.waves) text += renderGate(w);
  const pf = r.preflight;
  if (pf) {
    text += `preflight: ${pf.passed} passed, ${pf.failed} failed, ${pf.unanswered} unanswered${pf.completedAt ? '' : ' (running)'}${pf.overridden ? ' (overridden by operator)' : ''}\n`;
    for (const f of pf.failures) text += `  ${f.nodeId}: ${f.error.replace(/\s+/g, ' ').slice(0, 300)}\n`;
  }
  text += '\n';
  text += table([
    ['AGENT', 'WAVE', 'RELEASED', 'RUNNING', 'STATUS', 'REPLICA', 'ERROR'],
    ...s.agents.map((a) => [
      a.nodeId,
      a.wave ? String(a.wave) : '-',
      a.releasedRevision,
      a.runningRevision || '-',
      a.connected ? a.status : `${a.status} (disconnected)`,
      a.replica || '-',
      a.error.replace(/\s+/g, ' ').slice(0, 160),
    ]),
  ]);
  return text;
}

/** `ctl rollout history` as text: one line per finished rollout. */
export function renderHistory(rollouts: readonly RolloutInfo[]): string {
  if (rollouts.length === 0) return 'no finished rollouts\n';
  return table([
    ['ROLLOUT', 'FROM', 'TO', 'STATE', 'WAVES', 'ACKED', 'NACKED', 'CREATED', 'FINISHED', 'REASON'],
    ...rollouts.map((r) => [
      r.id,
      r.fromRevision,
      r.toRevision,
      r.state,
      String(r.waves.length),
      String(r.agentsAcked),
      String(r.agentsNacked),
      r.createdAt,
      r.finishedAt,
      r.reason,
    ]),
  ]);
}
