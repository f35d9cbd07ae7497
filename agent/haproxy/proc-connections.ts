import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** /proc/net/tcp states (include/net/tcp_states.h). */
const ESTABLISHED = '01';
const LISTEN = '0A';

/** The most fds of one process looked at (a HAProxy with more is counted as far as that). */
const MAX_FDS = 200_000;

/**
 * Client connections open in process `pid`: its established TCP sockets whose local port is one a socket listens on
 * (the frontends' ports; the sockets it opened to servers have ephemeral ports and are not counted). Read from
 * /proc (the process's own network namespace); undefined when the process or /proc cannot be read.
 *
 * The agent counts them just before it stops an old generation hard: they are the connections that stop cuts.
 */
export function clientConnections(pid: number): number | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const inodes = new Set<string>();
    const fds = readdirSync(`/proc/${pid}/fd`);
    for (const fd of fds.slice(0, MAX_FDS)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) inodes.add(m[1]!);
      } catch {
        // closed meanwhile
      }
    }
    const rows = [...tcpRows(`/proc/${pid}/net/tcp`), ...tcpRows(`/proc/${pid}/net/tcp6`)];
    const listening = new Set(rows.filter((r) => r.state === LISTEN).map((r) => r.localPort));
    return rows.filter((r) => r.state === ESTABLISHED && inodes.has(r.inode) && listening.has(r.localPort)).length;
  } catch {
    return undefined;
  }
}

interface TcpRow {
  readonly localPort: string;
  readonly state: string;
  readonly inode: string;
}

/** The rows of /proc/…/net/tcp{,6}: `sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …`. */
function tcpRows(file: string): TcpRow[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const rows: TcpRow[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    rows.push({ localPort: f[1]!.split(':')[1] ?? '', state: f[3]!, inode: f[9]! });
  }
  return rows;
}
