import { promises as fsp, readdirSync, readFileSync } from 'node:fs';
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
 * An agent that was killed hard (SIGKILL, OOM) leaves its HAProxy running on the inherited listening sockets: it
 * keeps serving, but the ports stay taken and the next agent could never bind them or change anything. The
 * supervisor records the running HAProxy's pid; at start the agent stops a HAProxy that still runs with its config
 * file (SIGTERM, then SIGKILL after `graceMs`) so it can take the ports over. Connections in flight on that old
 * process are cut — the price of recovering from a hard kill; a clean agent stop leaves nothing behind.
 */
export async function stopOrphan(pidFile: string, configPath: string, log: Logger, graceMs = 3000): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number((await fsp.readFile(pidFile, 'utf8')).trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 1 || !alive(pid)) return undefined;
  const cmd = cmdline(pid);
  if (!/haproxy/.test(cmd) || !cmd.includes(configPath)) return undefined; // the pid was reused by something else
  log.warn({ haproxy_pid: pid, pid_file: pidFile }, 'a HAProxy left by a previous agent still runs; stopping it to take over its ports');
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 10));
  if (alive(pid)) log.error({ haproxy_pid: pid }, 'the old HAProxy does not go away; its ports stay taken');
  return pid;
}
