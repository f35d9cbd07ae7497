import { isIP } from 'node:net';
import { ageText, clipText } from '../common/platform/text';
import { AgentView, ListAgentsResponse } from '../common/gen/proxymgr/v1/admin';
import { ReloadStats } from '../common/gen/proxymgr/v1/reloads';
import { revisionOfVersion } from '../common/protocol/revision-id';
import { table } from './table';

/** Differences between what is wanted and what HAProxy has, per server (a `!` note each), and the table. */
export function renderAgentView(view: AgentView, now: number): string {
  const a = view.agent!;
  let text = `agent ${a.nodeId}  ${a.state}  ${a.connected ? `connected since ${a.connectedSince.slice(0, 19)} from ${a.peer}` : 'disconnected'}`;
  const labels = Object.entries(a.labels).map(([k, v]) => `${k}=${v}`);
  if (labels.length) text += `  labels ${labels.join(',')}`;
  text += `\n  runs        ${a.runningVersion || '-'}  (last ACK ${ageText(a.lastAckTime, now)}${a.lastAckTime ? ' ago' : ''})\n`;
  text += `  should run  ${a.desiredVersion || '(no desired state yet)'}\n`;
  if (a.lastNackedVersion) text += `  last NACK   ${a.lastNackedVersion}\n`;
  if (a.lastError) text += `  last error  ${a.lastError.replace(/\s+/g, ' ').slice(0, 300)}\n`;
  const rows: string[][] = [['SERVICE', 'SERVER', 'WANTED', 'HAPROXY', 'DIFFERENCE']];
  let differences = 0;
  const note = (s: string) => {
    differences++;
    return `! ${s}`;
  };
  const live = new Map<string, Map<string, AgentView['haproxy'][number]>>();
  for (const s of view.haproxy) {
    if (!live.has(s.backend)) live.set(s.backend, new Map());
    live.get(s.backend)!.set(s.name, s);
  }
  const known = view.haproxyError === '';
  for (const svc of view.desired?.services ?? []) {
    const have = live.get(svc.name);
    if (known && !have)
      rows.push([svc.name, '*', `${svc.servers.length} servers`, '-', note('service missing in HAProxy')]);
    for (const want of svc.servers) {
      const cur = have?.get(want.name);
      const wanted = `${want.address}:${want.port} w${want.weight ?? 1}`;
      if (!known) {
        rows.push([svc.name, want.name, wanted, '?', '']);
        continue;
      }
      if (!cur) {
        if (have) rows.push([svc.name, want.name, wanted, '-', note('missing in HAProxy')]);
        continue;
      }
      const diffs: string[] = [];
      // A hostname server shows its resolved IP in HAProxy: only the port can be compared.
      if ((isIP(want.address) !== 0 && cur.address !== want.address) || cur.port !== want.port)
        diffs.push(`address ${cur.address}:${cur.port}`);
      if (cur.weight !== (want.weight ?? 1)) diffs.push(`weight ${cur.weight}, wanted ${want.weight ?? 1}`);
      if (cur.adminState !== 'ready') diffs.push(cur.adminState);
      if (cur.operState === 'down') diffs.push('DOWN (health check)');
      rows.push([
        svc.name,
        want.name,
        wanted,
        `${cur.address}:${cur.port} w${cur.weight} ${cur.adminState} ${cur.operState}`,
        diffs.length ? note(diffs.join('; ')) : '',
      ]);
    }
    if (!have) continue;
    const wantedNames = new Set(svc.servers.map((s) => s.name));
    for (const cur of have.values()) {
      if (wantedNames.has(cur.name)) continue;
      const where = `${cur.address}:${cur.port} w${cur.weight} ${cur.adminState} ${cur.operState}`;
      rows.push([
        svc.name,
        cur.name,
        '-',
        where,
        cur.adminState === 'drain'
          ? '(removed; draining until its drain timeout, then deleted)'
          : cur.adminState === 'maint'
            ? '(removed; in maint, being deleted)'
            : note('in service but not wanted'),
      ]);
    }
  }
  const wantedServices = new Set((view.desired?.services ?? []).map((s) => s.name));
  for (const [backend, servers] of live)
    if (!wantedServices.has(backend))
      rows.push([backend, '*', '-', `${servers.size} servers`, note('service in HAProxy but not wanted')]);
  text += known
    ? `HAProxy (from the agent): ${view.haproxy.length} servers in ${live.size} backends; ${differences} difference(s)\n\n`
    : `HAProxy: unknown (${view.haproxyError})\n\n`;
  text += rows.length > 1 ? table(rows) : 'no services\n';
  if (view.reloads) text += reloadsText(view.reloads);
  if (a.counters.length > 0) {
    text += `\nTraffic (HAProxy's counters since the agent started, reported ${ageText(a.countersTime, now)}${a.countersTime ? ' ago' : ''}):\n`;
    text += table([
      ['SERVICE', 'REQUESTS', '5XX', 'SESSIONS', 'CONN ERRORS', 'RESP ERRORS', 'RETRIES', 'DOWN', 'QUEUE'],
      ...a.counters.map((c) => [
        c.service,
        String(c.requests),
        String(c.responses5xx),
        String(c.sessions),
        String(c.connectionErrors),
        String(c.responseErrors),
        String(c.retries),
        `${c.serversDown}/${c.servers}`,
        String(c.queue),
      ]),
    ]);
  }
  return text;
}

/** The agent's reloads: count, durations (launch to the old generation gone) and the old generations alive. */
export function reloadsText(r: ReloadStats): string {
  const ms = (n: number) =>
    n >= 10_000 ? `${(n / 1000).toFixed(0)} s` : n >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${n} ms`;
  let text = `\nReloads: ${r.reloads} (${r.completed} completed`;
  text +=
    r.recent > 0
      ? `; last ${ms(r.lastDurationMs)}, p50 ${ms(r.p50DurationMs)}, max ${ms(r.maxDurationMs)} over the last ${r.recent})`
      : ')';
  text += `\nOld generations: ${r.oldGenerations.length} alive (at most ${r.maxOldGenerations})`;
  if (r.generationsStopped > 0)
    text += `; ${r.generationsStopped} stopped to keep the bound, ${r.connectionsCut} client connection(s) cut`;
  text += '\n';
  if (r.oldGenerations.length > 0)
    text += table([
      ['PID', 'SOFT-STOPPING FOR', 'RELOADS SINCE', 'STATE'],
      ...r.oldGenerations.map((g) => [
        String(g.pid),
        ms(g.ageMs),
        String(g.reloadsSurvived),
        g.stopped ? 'stopped (SIGTERM), exiting' : 'finishing connections',
      ]),
    ]);
  return text;
}

const shortVersion = (version: string) => (version ? clipText(version, 20) : '-');

/** The human view of ListAgents: one line per agent, states first so that trouble stands out. */
export function renderAgents(list: ListAgentsResponse, now: number): string {
  if (list.agents.length === 0) return 'no agents have connected to this control plane\n';
  const order: Record<string, number> = { NACKED: 0, STALE: 1, DISCONNECTED: 2, SYNCED: 3 };
  const agents = [...list.agents].sort(
    (a, b) => (order[a.state] ?? 9) - (order[b.state] ?? 9) || (a.nodeId < b.nodeId ? -1 : 1),
  );
  const counts = ['SYNCED', 'STALE', 'NACKED', 'DISCONNECTED']
    .map((s) => `${agents.filter((a) => a.state === s).length} ${s}`)
    .join(', ');
  return (
    `${agents.length} agents: ${counts}\n\n` +
    table([
      ['AGENT', 'STATE', 'REVISION', 'RUNS', 'SHOULD RUN', 'LAST ACK', 'LABELS', 'ERROR'],
      ...agents.map((a) => [
        a.nodeId,
        a.state,
        revisionOfVersion(a.runningVersion) || '-',
        shortVersion(a.runningVersion),
        a.desiredVersion === a.runningVersion ? '=' : shortVersion(a.desiredVersion),
        ageText(a.lastAckTime, now),
        Object.entries(a.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(',') || '-',
        a.lastError.replace(/\s+/g, ' ').slice(0, 160),
      ]),
    ])
  );
}
