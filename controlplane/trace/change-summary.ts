import { ChangeAgent, ChangeDetail, ChangeSummary, ListChangesResponse } from '../../common/gen/proxymgr/v1/admin';
import { ChangeTrace, quantile, TracedChange } from './change-trace';

export { quantile };

/** The trace as the admin API, `ctl changes`, /status.json and the status page show it. */

/** Upper bounds (ms) of the propagation histogram ListChanges and the page show; the last bucket is +Inf. */
export const HISTOGRAM_LE_MS = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000];
/** The same bounds in seconds, for proxymgr_cp_change_propagation_seconds. */
export const PROPAGATION_BUCKETS_S = HISTOGRAM_LE_MS.map((ms) => ms / 1000);

const MAX_BEHIND = 10;
/** GetChange lists at most this many agents (pending and refused first; the summary counts them all). */
const MAX_DETAIL_AGENTS = 1000;
const MAX_REFUSALS = 10;

export function summaryOf(c: TracedChange): ChangeSummary {
  const times = [...c.times].sort((a, b) => a - b);
  const behind: string[] = [];
  const refusals: ChangeAgent[] = [];
  for (const [node, m] of c.marks) {
    if (m.state === 'pending' && behind.length < MAX_BEHIND) behind.push(node);
    if (m.state === 'refused' && refusals.length < MAX_REFUSALS)
      refusals.push(agentOf(node, m.state, '', m.message ?? '', 0, 0));
  }
  return {
    id: c.id,
    service: c.service,
    source: c.source,
    what: c.what,
    sourceTime: new Date(c.sourceTime.at).toISOString(),
    sourceTimeKind: c.sourceTime.kind,
    expected: c.expected,
    applied: c.applied,
    refused: c.refused,
    p50Ms: c.frozen?.p50 ?? quantile(times, 0.5),
    p99Ms: c.frozen?.p99 ?? quantile(times, 0.99),
    maxMs: c.frozen?.max ?? (times.length > 0 ? times[times.length - 1]! : 0),
    slowest: c.slowest.map((s) => s.node),
    behind: behind.sort(),
    refusals,
  };
}

function agentOf(
  nodeId: string,
  state: string,
  method: string,
  message: string,
  propagationMs: number,
  queuedMs: number,
  connected = false,
): ChangeAgent {
  return { nodeId, state, method, message, propagationMs, queuedMs, connected };
}

/** ListChanges: the `limit` most recent changes (50 by default, at most 1,000), and the histogram of their times. */
export function listChanges(
  trace: ChangeTrace,
  limit: number,
  connected: (node: string) => boolean,
): ListChangesResponse {
  const changes = trace.recent(Math.min(1000, limit || 50));
  const counts = new Array<number>(HISTOGRAM_LE_MS.length + 1).fill(0);
  for (const c of changes)
    for (const ms of c.times) {
      const i = HISTOGRAM_LE_MS.findIndex((le) => ms <= le);
      counts[i === -1 ? HISTOGRAM_LE_MS.length : i]!++;
    }
  return {
    changes: changes.map(summaryOf),
    oldestUnappliedSeconds: trace.oldestUnappliedMs(connected) / 1000,
    histogramLeMs: HISTOGRAM_LE_MS,
    histogramCounts: counts,
  };
}

/** GetChange: one change agent by agent (pending and refused first, then the slowest applied first; at most 1,000). */
export function changeDetail(c: TracedChange, connected: (node: string) => boolean): ChangeDetail {
  const order = { pending: 0, refused: 1, applied: 2 } as const;
  const agents = [...c.marks]
    .map(([node, m]) =>
      agentOf(node, m.state, m.method ?? '', m.message ?? '', m.propagationMs ?? 0, m.queuedMs ?? 0, connected(node)),
    )
    .sort(
      (a, b) =>
        order[a.state as keyof typeof order] - order[b.state as keyof typeof order] ||
        b.propagationMs - a.propagationMs ||
        a.nodeId.localeCompare(b.nodeId),
    )
    .slice(0, MAX_DETAIL_AGENTS);
  return { change: summaryOf(c), agents };
}
