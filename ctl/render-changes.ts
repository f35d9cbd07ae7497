import { ChangeDetail, ChangeSummary, ListChangesResponse } from '../common/gen/proxymgr/v1/admin';
import { msText } from '../common/platform/duration-text';
import { clipText } from '../common/platform/text';
import { printable, table } from './table';

/** "3/3 agents applied", with the refused and still pending ones when there are any. */
export function appliedText(c: ChangeSummary): string {
  let s = `${c.applied}/${c.expected} agents applied`;
  if (c.refused > 0) s += `, ${c.refused} refused`;
  const pending = c.expected - c.applied - c.refused;
  if (pending > 0) s += `, ${pending} behind`;
  return s;
}

/** How the source time is known, in words (see ChangeSummary.source_time_kind). */
const KIND: Record<string, string> = {
  source: "the source's own time",
  arrival: 'when the answer arrived',
  observed: 'when discovery saw it (the source records no time)',
  skewed: "when discovery saw it (the source's clock is ahead)",
};

/** The source time as HH:MM:SS.mmm, with how it is known in one word. */
const sourceTimeText = (c: ChangeSummary) =>
  `${printable(c.sourceTime.slice(5, 23).replace('T', ' ')) || '-'} ${printable(c.sourceTimeKind)}`.trim();

/** Messages are one line, and not a screenful. */
const oneLine = (s: string, max = 300) => clipText(s.replace(/\s+/g, ' ').trim(), max);

/** The propagation histogram on one line: only the buckets that hold any. */
export function histogramText(r: ListChangesResponse): string {
  const parts: string[] = [];
  r.histogramCounts.forEach((n, i) => {
    if (!n) return;
    const le = r.histogramLeMs[i];
    parts.push(`${le === undefined ? `>${msText(r.histogramLeMs[i - 1] ?? 0)}` : `≤${msText(le)}`} ${n}`);
  });
  return parts.join(', ');
}

/**
 * `ctl changes`: the recent changes newest first, each with how many of the agents that should run it applied it,
 * its source → applied times, the slowest agents and those still behind; then who refused what, with the message.
 */
export function renderChanges(r: ListChangesResponse): string {
  const oldest = Number(r.oldestUnappliedSeconds);
  let text =
    oldest > 0
      ? `oldest change not yet applied by a connected agent: ${msText(oldest * 1000)} old\n`
      : 'every change is applied by the connected agents that should run it\n';
  if (r.changes.length === 0) return text + 'no changes traced yet (the first state is not a change)\n';
  const hist = histogramText(r);
  text += `${r.changes.length} changes, newest first; source → applied per agent: ${hist || 'none applied yet'}\n\n`;
  const rows: string[][] = [
    ['ID', 'SERVICE', 'SOURCE', 'AT', 'WHAT', 'AGENTS', 'P50', 'P99', 'MAX', 'SLOWEST', 'BEHIND'],
  ];
  for (const c of r.changes)
    rows.push([
      c.id,
      c.service,
      c.source,
      sourceTimeText(c),
      oneLine(c.what, 60),
      appliedText(c),
      c.applied > 0 ? msText(c.p50Ms) : '-',
      c.applied > 0 ? msText(c.p99Ms) : '-',
      c.applied > 0 ? msText(c.maxMs) : '-',
      c.slowest.join(', ') || '-',
      c.behind.join(', ') || '-',
    ]);
  text += table(rows);
  const refusals = r.changes.flatMap((c) => c.refusals.map((a) => [c.id, c.service, a.nodeId, oneLine(a.message)]));
  if (refusals.length > 0) text += '\nrefused:\n' + table([['ID', 'SERVICE', 'AGENT', 'HAPROXY SAID'], ...refusals]);
  return text;
}

/** `ctl change ID`: one change agent by agent. */
export function renderChange(d: ChangeDetail): string {
  const c = d.change;
  if (!c) return 'no such change\n';
  // The header is not a table: its fields from the control plane are made one-line printable here.
  let text = `change ${printable(c.id)}  service ${printable(c.service)}  source ${printable(c.source)}  ${printable(oneLine(c.what))}\n`;
  text += `  at ${printable(c.sourceTime) || '-'}  (${printable(Object.hasOwn(KIND, c.sourceTimeKind) ? KIND[c.sourceTimeKind]! : c.sourceTimeKind)})\n`;
  text += `  ${appliedText(c)}`;
  if (c.applied > 0)
    text += `; source → applied p50 ${msText(c.p50Ms)}, p99 ${msText(c.p99Ms)}, max ${msText(c.maxMs)}`;
  text += '\n';
  if (c.expected > d.agents.length)
    text += `  (${c.expected - d.agents.length} applied agents no longer detailed: the change is not among the most recent)\n`;
  if (d.agents.length === 0) return text;
  const rows: string[][] = [['AGENT', 'STATE', 'METHOD', 'PROPAGATION', 'QUEUED', 'CONNECTED', 'MESSAGE']];
  for (const a of d.agents)
    rows.push([
      a.nodeId,
      a.state,
      a.method || '-',
      a.state === 'applied' ? msText(a.propagationMs) : '-',
      a.state === 'applied' ? msText(a.queuedMs) : '-',
      a.connected ? 'yes' : 'no',
      oneLine(a.message),
    ]);
  return text + '\n' + table(rows);
}
