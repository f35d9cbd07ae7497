import { readdirSync, readFileSync } from 'node:fs';
import { Logger } from '../../common/log';

/**
 * Whether `pid` runs. A zombie (exited, not reaped — PID 1 in some containers never reaps) counts as gone, but only
 * once all its threads are: a multi-threaded HAProxy's main thread shows as a zombie while its other threads are
 * still exiting, and until the last of them has, the process's files (its listening sockets) are still open.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  return tasks.some((tid) => {
    try {
      return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
    } catch {
      return false; // that thread is gone
    }
  });
}

/** The command line of a process, or "" if it is gone. */
function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

/**
 * Whether `pid` is a HAProxy serving `configPath`: the program is haproxy, `-f` names exactly that file, and it is
 * not a `haproxy -c` check. (A looser match once took `vim …/haproxy.cfg` for a HAProxy — review.)
 */
function runsConfig(pid: number, configPath: string): boolean {
  const argv = cmdline(pid).split(' ');
  const f = argv.indexOf('-f');
  return (
    /(^|\/)haproxy$/.test(argv[0] ?? '') && f >= 0 && argv[f + 1] === configPath && !argv.includes('-c') && alive(pid)
  );
}

/**
 * Every running HAProxy started with this agent's config file, oldest first. An agent killed in the middle of a
 * reload leaves two: the old one soft-stopping and the new one, which the pid file may not name yet.
 */
export function findHaproxies(configPath: string): number[] {
  const found: { pid: number; start: number }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (!runsConfig(pid, configPath)) continue;
    found.push({ pid, start: startTime(pid) });
  }
  return found.sort((a, b) => a.start - b.start || a.pid - b.pid).map((x) => x.pid);
}

/** A process's start time in clock ticks since boot (/proc/PID/stat field 22), 0 if unknown. */
function startTime(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) || 0;
  } catch {
    return 0;
  }
}

/**
 * Stops a HAProxy the agent could not take over (see Agent.takeOver): SIGTERM, then SIGKILL after `graceMs`, so
 * that its ports can be bound again. Connections in flight on it are cut — the fallback when adoption fails.
 */
export async function stopOrphan(pid: number, log: Logger, graceMs = 3000): Promise<void> {
  log.warn({ haproxy_pid: pid }, 'stopping the HAProxy a previous agent left running, to take over its ports');
  await stopPid(pid, graceMs);
  if (alive(pid)) log.error({ haproxy_pid: pid }, 'the old HAProxy does not go away; its ports stay taken');
}

/** SIGTERM, SIGKILL after `graceMs`, and wait (bounded) until the process and all its threads are gone. */
export async function stopPid(pid: number, graceMs = 3000): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (alive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      return;
    }
  }
  for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 10));
}
