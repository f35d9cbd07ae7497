import { ChangeSummary, ListChangesResponse } from '../common/gen/proxymgr/v1/admin';
import { msText } from '../common/platform/duration-text';
import { esc, table, td, txt } from './status-html';

/**
 * The status page's changes section: how long changes take from their source to the agents (a bar chart of the
 * propagation histogram ListChanges returns), the age of the oldest change a connected agent has not applied, the
 * recent changes with how many agents applied each, and the agents still behind. The same data as `ctl changes`.
 */

/** A number for drawing: a field of a decoded document may hold anything; what is not a count draws as 0. */
const count = (x: unknown): number => {
  const n = Number(x);
  return Number.isFinite(n) && n > 0 ? n : 0;
};

/** The bucket labels: "≤10 ms" … "≤60 s", and ">60 s" for the last (+Inf) one. */
function bucketLabels(r: ListChangesResponse): string[] {
  const le = r.histogramLeMs;
  return r.histogramCounts.map((_, i) =>
    i < le.length ? `≤${msText(le[i]!)}` : `>${le.length ? msText(le[le.length - 1]!) : '0 ms'}`,
  );
}

const W = 860;
const H = 250;
const LEFT = 48;
const RIGHT = 12;
const TOP = 40;
const BOTTOM = 46;

/**
 * The propagation histogram as an inline SVG bar chart: one bar per bucket with its count above it, the buckets
 * labelled below, a scale on the left. Everything drawn from numbers; every label escaped.
 */
export function histogramSvg(r: ListChangesResponse): string {
  const counts = r.histogramCounts.map(count);
  const labels = bucketLabels(r);
  const total = counts.reduce((a, b) => a + b, 0);
  const max = Math.max(1, ...counts);
  const plotW = W - LEFT - RIGHT;
  const plotH = H - TOP - BOTTOM;
  const slot = counts.length ? plotW / counts.length : plotW;
  const barW = Math.max(4, slot * 0.7);
  const y = (n: number) => TOP + plotH - (n / max) * plotH;
  const parts: string[] = [];
  // Scale: 0, half and the highest count, with light grid lines.
  for (const v of [...new Set([0, Math.round(max / 2), max])]) {
    parts.push(
      `<line x1="${LEFT}" x2="${W - RIGHT}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="${v === 0 ? '#888' : '#e3e3e3'}"/>`,
      `<text x="${LEFT - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" font-size="11" fill="#555">${v}</text>`,
    );
  }
  counts.forEach((n, i) => {
    const x = LEFT + i * slot + (slot - barW) / 2;
    const cx = (x + barW / 2).toFixed(1);
    const h = (n / max) * plotH;
    parts.push(
      `<rect class="bucket" x="${x.toFixed(1)}" y="${y(n).toFixed(1)}" width="${barW.toFixed(1)}" height="${h.toFixed(1)}" fill="#3a7bd5"><title>${esc(labels[i]!)}: ${n}</title></rect>`,
      `<text x="${cx}" y="${(y(n) - 5).toFixed(1)}" text-anchor="middle" font-size="12" fill="${n ? '#222' : '#aaa'}">${n}</text>`,
      `<text x="${cx}" y="${TOP + plotH + 16}" text-anchor="middle" font-size="11" fill="#333">${esc(labels[i]!)}</text>`,
    );
  });
  parts.push(
    `<text x="${LEFT + plotW / 2}" y="${H - 8}" text-anchor="middle" font-size="12" fill="#333">time from the change at its source to applied on the agent</text>`,
    `<text x="${LEFT}" y="14" font-size="12" fill="#333">applies (one per agent and change)</text>`,
  );
  if (total === 0)
    parts.push(
      `<text x="${LEFT + plotW / 2}" y="${TOP + plotH / 2}" text-anchor="middle" font-size="13" fill="#666">no agent has applied a listed change yet</text>`,
    );
  const summary = labels.map((l, i) => `${l}: ${counts[i]}`).join(', ');
  return `<svg id="propagation-chart" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(`Propagation times of the listed changes: ${summary}`)}" font-family="system-ui,sans-serif">${parts.join('')}</svg>`;
}

const applied = (c: ChangeSummary) => `${txt(c.applied)}/${txt(c.expected)} applied`;
const ms = (c: ChangeSummary, x: number) => (count(c.applied) > 0 ? msText(x) : '-');

/** The changes section of the status page (empty without data: a page rendered by an older caller). */
export function changesSection(r: ListChangesResponse | undefined, now: number): string {
  if (!r) return '';
  const oldest = count(r.oldestUnappliedSeconds);
  const head =
    oldest > 0
      ? `<p id="oldest-unapplied">Oldest change not yet applied by a connected agent: <b class="bad">${esc(msText(oldest * 1000))}</b> old</p>`
      : '<p id="oldest-unapplied">Oldest change not yet applied by a connected agent: <b class="good">none</b> — every change is applied where it should run</p>';
  const rows = r.changes.map((c) => {
    const done = count(c.applied) === count(c.expected) && count(c.refused) === 0;
    return [
      td(c.id, 'version'),
      td(c.service),
      td(c.source),
      td(`${String(c.sourceTime).slice(5, 23).replace('T', ' ')} (${c.sourceTimeKind})`),
      td(c.what),
      `<td class="nowrap ${done ? 'good' : 'bad'}">${applied(c)}${count(c.refused) > 0 ? `, ${txt(c.refused)} refused` : ''}</td>`,
      td(ms(c, c.p50Ms), 'nowrap'),
      td(ms(c, c.p99Ms), 'nowrap'),
      td(ms(c, c.maxMs), 'nowrap'),
      td(c.slowest.join(', ')),
      td(c.behind.join(', '), c.behind.length ? 'bad' : ''),
      td(c.refusals.map((a) => `${a.nodeId}: ${a.message}`).join('; '), c.refusals.length ? 'error' : ''),
    ];
  });
  // Agent by agent: the listed changes it should run and has not applied (nor refused).
  const behind = new Map<string, string[]>();
  for (const c of r.changes)
    for (const node of c.behind) {
      const list = behind.get(node) ?? [];
      list.push(`${c.id} (${c.service})`);
      behind.set(node, list);
    }
  const behindRows = [...behind]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([node, list]) => [td(node), td(String(list.length), 'bad'), td(list.join(', '))]);
  return (
    `<h2>Changes</h2>\n<section id="changes">${head}` +
    `<figure>${histogramSvg(r)}<figcaption class="empty">Source → applied of the ${txt(r.changes.length)} changes below, one sample per agent that applied one; as of ${esc(new Date(now).toISOString().slice(11, 19))}</figcaption></figure>` +
    table(
      [
        'change',
        'service',
        'source',
        'at the source',
        'what',
        'agents',
        'p50',
        'p99',
        'max',
        'slowest',
        'behind',
        'refused',
      ],
      rows,
      'changes',
    ) +
    `<h3>Agents behind</h3>${behindRows.length ? table(['agent', 'changes', 'not yet applied'], behindRows, 'behind') : '<p class="empty" id="none-behind">none</p>'}` +
    `<p class="empty">The same as <code>proxymgr ctl changes</code>; per agent: <code>ctl change ID</code></p></section>\n`
  );
}
