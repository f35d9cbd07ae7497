import { ServiceStatus } from '../common/gen/proxymgr/v1/admin';
import { table } from './table';

/** A resource version as shown: its first 12 characters (a sha256 prefix), '-' for none. */
const short = (v: string) => (v ? v.slice(0, 12) : '-');

/** `ctl service NAME`: per agent the version it runs, how it came, whether it is current, and what it refused. */
export function renderService(s: ServiceStatus): string {
  const methods = Object.entries(s.byMethod)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([m, n]) => `${n} ${m}`)
    .join(', ');
  const versions = Object.entries(s.byVersion)
    .sort(([, a], [, b]) => b - a)
    .map(([v, n]) => `${short(v)} ×${n}`)
    .join(', ');
  let text = `service ${s.name}  version in the latest desired state ${short(s.desiredVersion)}\n`;
  text += `  agents ${s.agentsTotal}  refused ${s.refused}  runs: ${versions || '-'}  by: ${methods || '-'}\n`;
  const rows: string[][] = [['AGENT', 'RUNS', 'BY', 'DESIRED', 'STATE', 'REFUSED', 'HAPROXY SAID']];
  for (const a of s.agents) {
    const state = !a.connected
      ? 'disconnected'
      : a.unknown
        ? 'unknown (no apply seen since it connected)'
        : a.runningVersion !== '' && a.runningVersion === a.desiredVersion
          ? 'current'
          : a.refusedVersion !== ''
            ? 'refused'
            : 'behind';
    rows.push([
      a.nodeId,
      short(a.runningVersion),
      a.runningVersion ? a.method || '-' : '-',
      short(a.desiredVersion),
      state,
      a.refusedVersion ? short(a.refusedVersion) : '',
      a.refusal.replace(/\s+/g, ' ').slice(0, 300),
    ]);
  }
  text += table(rows);
  if (s.agentsTotal > s.agents.length) text += `(${s.agentsTotal - s.agents.length} more agents not listed: --limit)\n`;
  return text;
}
