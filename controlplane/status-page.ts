import { ageText, figureText, percent } from '../common/platform/text';
import { ListAgentsResponse, ListChangesResponse, ListServicesResponse } from '../common/gen/proxymgr/v1/admin';
import { GatePolicy, PreflightInfo, RolloutStatus, RolloutWave } from '../common/gen/proxymgr/v1/rollout';
import { revisionOfVersion } from '../common/protocol/revision-id';
import type { FleetServiceRow } from './service-status';
import { changesSection } from './status-changes';
import { esc, table, td, txt } from './status-html';

/** What the status page shows: the same answers ctl and grpcurl get. */
export interface StatusData {
  readonly rollout: RolloutStatus;
  readonly agents: ListAgentsResponse;
  readonly services: ListServicesResponse;
  /** Per service: which agents run which version of it, how, and who refused it (service-status.ts). */
  readonly serviceStatus?: readonly FleetServiceRow[];
  /** The most recent changes and how far each got (ListChanges). */
  readonly changes?: ListChangesResponse;
}

/** How often the page reloads itself (server-rendered: whatever puts a header in front of it does so each time). */
export const REFRESH_SECONDS = 2;

const time = (iso: string) => (iso ? iso.slice(11, 19) : '');

/** "42s ago" (see ageText). */
function age(iso: string, now: number): string {
  const a = ageText(iso, now);
  return a === 'never' ? a : `${a} ago`;
}

function gatePolicyText(g: GatePolicy | undefined): string {
  if (!g?.enabled || !g.thresholds) return 'off';
  const t = g.thresholds;
  return `on (min ${g.minRequests} requests; 5xx +${percent(t.http5xx)}, errors +${percent(t.errors)}, retries +${percent(t.retries)}, servers DOWN +${percent(t.serversDown)}, queue +${t.queue}, response time +${t.rtime || 100} ms; false-halt rate ${g.falseHaltRate || 0.01})`;
}

function preflightSection(p: PreflightInfo | undefined): string {
  if (!p) return '';
  const head = `<p id="preflight">Preflight: ${txt(p.passed)} passed · <span class="${p.failed > 0 ? 'bad' : ''}">${txt(p.failed)} failed</span> · ${txt(p.unanswered)} unanswered${p.completedAt ? '' : ' (running)'}${p.overridden ? ' · overridden by operator' : ''}</p>`;
  return (
    head +
    (p.failures.length
      ? table(
          ['agent', 'why it would fail'],
          p.failures.map((f) => [td(f.nodeId), td(f.error, 'error')]),
          'preflight',
        )
      : '')
  );
}

/** A wave's traffic gate: its verdict and the figures it rests on. */
function gateSection(w: RolloutWave): string {
  const g = w.gate;
  if (!g) return '';
  const cls = g.verdict === 'fail' ? 'bad' : g.verdict === 'pass' ? 'good' : '';
  const rows = g.figures.map((f) => [
    td(f.key === '*' ? 'all services' : f.key),
    td(f.metric),
    td(figureText(f.metric, f.canary), f.regressed ? 'bad' : ''),
    td(f.hasStable ? figureText(f.metric, f.stable) : '-'),
    td(f.hasBefore ? figureText(f.metric, f.before) : '-'),
    td(`+${figureText(f.metric, f.threshold)}`),
    td(String(f.requests)),
    td(f.regressed ? 'regressed' : 'ok', f.regressed ? 'bad' : ''),
  ]);
  return (
    `<p class="gate" id="gate-${txt(w.index)}">Wave ${txt(w.index)} traffic gate: <b class="${cls}">${esc(g.verdict.toUpperCase())}</b>${g.overridden ? ' (overridden by operator)' : ''} ${esc(g.reason)}</p>` +
    (rows.length
      ? table(['service', 'metric', 'new revision', 'stable agents', 'before', 'allowed', 'requests', ''], rows, 'gate')
      : '')
  );
}

/** The per-service applied table: versions current of all, methods, refusals with HAProxy's message. */
function appliedSection(rows: readonly FleetServiceRow[] | undefined): string {
  if (!rows) return '';
  const body = rows.map((r) => [
    td(r.name),
    td(r.desiredVersion ? r.desiredVersion.slice(0, 12) : '-', 'version'),
    td(`${r.current}/${r.agents}`, r.current < r.agents ? 'bad' : 'good'),
    td(
      Object.entries(r.byMethod)
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([m, n]) => `${n} ${m}`)
        .join(', ') || '-',
    ),
    td(String(r.refused), r.refused > 0 ? 'bad' : ''),
    td(r.refusal ? `${r.refusal.nodeId}: ${r.refusal.message}` : '', r.refusal ? 'error' : ''),
  ]);
  return `<h2>Applied per service</h2>\n<section id="applied">${table(['service', 'desired version', 'agents current', 'by', 'refused', 'HAProxy said'], body, 'applied')}</section>\n`;
}

/**
 * The control plane's status page (served next to /metrics, behind the viewer role): rollout progress with its
 * waves, the agents with their states (as `ctl agents`), per-agent errors, and the services with their hosts.
 * Server-rendered and reloading itself every REFRESH_SECONDS; no script, nothing fetched from elsewhere.
 */
export function renderStatusPage(d: StatusData, now: number): string {
  const r = d.rollout;
  const agents = [...d.agents.agents].sort((a, b) => (a.nodeId < b.nodeId ? -1 : 1));
  const counts = ['SYNCED', 'STALE', 'NACKED', 'DISCONNECTED']
    .map((s) => `<span class="state ${s}">${agents.filter((a) => a.state === s).length} ${s}</span>`)
    .join(' ');

  let rollout: string;
  if (!r.enabled)
    rollout =
      '<p>Rollouts are off on this control plane (no <code>rollout</code> section in proxymgr.yml): every change goes to every agent at once.</p>';
  else if (!r.rollout)
    rollout = `<p>Stable revision <code>${esc(r.stableRevision || '(none)')}</code>; no rollout yet.</p>`;
  else {
    const ro = r.rollout;
    const on = r.agents.filter((a) => a.runningRevision === ro.toRevision).length;
    const total = r.agents.length;
    const pct = total === 0 ? 0 : Math.min(100, Math.max(0, Math.round((on / total) * 100) || 0));
    rollout =
      `<p class="rollout-head"><b id="rollout-id">${esc(ro.id)}</b>: <code>${esc(ro.fromRevision)}</code> → <code>${esc(ro.toRevision)}</code> ` +
      `<span class="rstate ${esc(ro.state)}" id="rollout-state">${esc(ro.state.toUpperCase())}</span> ${esc(ro.reason)}</p>` +
      (ro.changes.length ? `<p>Changes: ${esc(ro.changes.join('; '))}</p>` : '') +
      (ro.policy
        ? `<p>Policy: waves ${esc(ro.policy.waves.join(', '))} · bake ${txt(ro.policy.bakeMs)} ms · max NACKs ${txt(ro.policy.maxNacks)} · auto-rollback ${txt(ro.policy.autoRollback)} · preflight ${ro.policy.preflight?.enabled ? 'on' : 'off'} · traffic gate ${esc(gatePolicyText(ro.policy.gate))}</p>`
        : '') +
      preflightSection(ro.preflight) +
      `<div class="bar"><div style="width:${pct}%"></div></div><p>${txt(on)} of ${txt(total)} agents on <code>${esc(ro.toRevision)}</code>; ${txt(ro.agentsNacked)} NACK(s)</p>` +
      table(
        ['wave', 'spec', 'agents', 'ACKed', 'NACKed', 'started', 'all ACKed', 'completed'],
        [
          ...ro.waves.map((w) => [
            td(String(w.index)),
            td(w.spec),
            td(w.agents.join(', ')),
            td(String(w.acked)),
            td(String(w.nacked), w.nacked > 0 ? 'bad' : ''),
            td(time(w.startedAt)),
            td(time(w.ackedAt)),
            td(time(w.completedAt)),
          ]),
          ...ro.pendingWaves.map((spec) => [td('-'), td(spec), td(''), td(''), td(''), td('pending'), td(''), td('')]),
        ],
        'waves',
      ) +
      ro.waves.map(gateSection).join('');
  }

  const agentRows = agents.map((a) => {
    const sum = (k: 'requests' | 'responses5xx') => a.counters.reduce((n, c) => n + c[k], 0);
    const traffic = a.counters.length === 0 ? '-' : `${sum('requests')} / ${sum('responses5xx')}`;
    return [
      td(a.nodeId),
      td(a.state, `state ${a.state}`),
      td(revisionOfVersion(a.runningVersion) || '-'),
      td(a.runningVersion || '-', 'version'),
      td(a.desiredVersion === a.runningVersion ? '=' : a.desiredVersion || '-', 'version'),
      td(age(a.lastAckTime, now)),
      td(traffic, a.counters.some((c) => c.responses5xx > 0) ? 'bad' : ''),
      td(
        Object.entries(a.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(', '),
      ),
      td(a.lastError, a.lastError ? 'error' : ''),
    ];
  });

  const services = d.services.services.map((s) => [
    td(s.name),
    td(`${s.bindAddress || '0.0.0.0'}:${s.port}`),
    td(String(s.servers.length)),
    td(s.servers.map((v) => `${v.name} ${v.address}:${v.port} w${v.weight ?? 1}`).join(', ')),
    td(d.services.errors[s.name] ?? '', d.services.errors[s.name] ? 'error' : ''),
  ]);
  for (const [name, err] of Object.entries(d.services.errors))
    if (!d.services.services.some((s) => s.name === name))
      services.push([td(name), td('-'), td('0'), td(''), td(err, 'error')]);

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="${REFRESH_SECONDS}">
<title>ProxyMgr · ${esc(r.replica || 'control plane')}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}code,.version{font-family:ui-monospace,monospace;font-size:12px}.error,.bad{color:#a40000}.good{color:#176b00}
.state{font-weight:600}.SYNCED{color:#176b00}.STALE{color:#8a6d00}.NACKED{color:#a40000}.DISCONNECTED{color:#666}
.rstate{font-weight:700;padding:0 .4em;border-radius:3px;background:#eee}.running{background:#dcecff}.halted,.rolled_back{background:#ffdcdc}.completed{background:#dcffd9}
.bar{width:420px;height:12px;background:#eee;border-radius:6px;overflow:hidden}.bar div{height:100%;background:#3a7bd5}.empty{color:#666}
table.changes td.nowrap{white-space:nowrap}table.changes td.error{min-width:16em;overflow-wrap:anywhere}figure{margin:.5em 0}
</style></head><body>
<h1>ProxyMgr control plane <code>${esc(r.replica || '')}</code></h1>
<p>Leader <code>${esc(r.leader || '(none)')}</code> · stable revision <code>${esc(r.stableRevision || '-')}</code> · desired version <code>${esc(d.agents.desiredVersion || '-')}</code> · ${agents.length} agents: ${counts}</p>
<h2>Rollout</h2>
<section id="rollout">${rollout}</section>
<h2>Agents</h2>
<section id="agents">${table(['agent', 'state', 'revision', 'runs', 'should run', 'last ACK', 'requests / 5xx', 'labels', 'last error'], agentRows, 'agents')}</section>
<h2>Services</h2>
<section id="services">${table(['service', 'listen', 'hosts', 'servers', 'problem'], services, 'services')}</section>
${appliedSection(d.serviceStatus)}${changesSection(d.changes, now)}<p class="empty">Refreshes every ${REFRESH_SECONDS} s · ${esc(new Date(now).toISOString())} · the same data as <code>proxymgr ctl agents</code>, <code>ctl rollout status</code> and ListServices; JSON at <a href="status.json">status.json</a></p>
</body></html>
`;
}

/** The page's data as JSON (proto3 JSON of each part). */
export function statusJson(d: StatusData): string {
  return JSON.stringify({
    rollout: RolloutStatus.toJSON(d.rollout),
    agents: ListAgentsResponse.toJSON(d.agents),
    services: ListServicesResponse.toJSON(d.services),
    ...(d.serviceStatus ? { serviceStatus: d.serviceStatus } : {}),
    ...(d.changes ? { changes: ListChangesResponse.toJSON(d.changes) } : {}),
  });
}
