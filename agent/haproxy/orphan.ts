import { readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { Logger } from '../../common/platform/log';

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

/** The command line of a process (its arguments), or [] if it is gone. */
function cmdline(proc: string, pid: number): string[] {
  try {
    const argv = readFileSync(`${proc}/${pid}/cmdline`, 'utf8').split('\0');
    if (argv.at(-1) === '') argv.pop();
    return argv;
  } catch {
    return [];
  }
}

/**
 * The configured HAProxy binary as /proc shows it: the file's identity (device and inode: the binary under any name,
 * through any link) and its absolute path (a package upgrade replaces the file at the path, and the HAProxy started
 * before runs the old, deleted one: /proc/PID/exe reads "PATH (deleted)").
 */
export interface BinaryId {
  readonly path: string;
  readonly dev: number;
  readonly ino: number;
}

/** `binary` (haproxy.path: a path, or a name looked up in PATH) as a BinaryId; undefined when it is not found. */
export function binaryIdentity(binary: string, searchPath = process.env.PATH ?? ''): BinaryId | undefined {
  const candidates = binary.includes('/')
    ? [path.resolve(binary)]
    : searchPath
        .split(':')
        .filter((d) => d !== '')
        .map((d) => path.resolve(d, binary));
  for (const file of candidates) {
    try {
      const st = statSync(file);
      if (st.isFile()) return { path: realpathSync(file), dev: st.dev, ino: st.ino };
    } catch {
      // not here
    }
  }
  return undefined;
}

const withoutDeleted = (link: string) => link.replace(/ \(deleted\)$/, '');

/**
 * Whether the program of `pid` is HAProxy: the configured binary (`bin`: by file identity, under whatever name it
 * was copied or linked as; or by its path, for one upgraded in place), or a program named `haproxy` (one a previous
 * agent started from another haproxy.path). The program is read from /proc/PID/exe, which the process cannot
 * change; only where that cannot be read (another user's process, without the capability to look) from argv[0].
 */
function isHaproxy(proc: string, pid: number, argv0: string, bin: BinaryId | undefined, binary: string | undefined) {
  let exe: string | undefined;
  try {
    exe = withoutDeleted(readlinkSync(`${proc}/${pid}/exe`));
  } catch {
    exe = undefined;
  }
  if (exe !== undefined) {
    if (bin) {
      if (exe === bin.path) return true;
      try {
        const st = statSync(`${proc}/${pid}/exe`);
        if (st.dev === bin.dev && st.ino === bin.ino) return true;
      } catch {
        // gone meanwhile
      }
    }
    return path.basename(exe) === 'haproxy';
  }
  if (binary !== undefined && (argv0 === binary || argv0 === bin?.path)) return true;
  return /(^|\/)haproxy$/.test(argv0);
}

/**
 * Whether `pid` is a HAProxy serving `configPath`: the program is HAProxy (isHaproxy), `-f` names exactly that file,
 * and it is not a `haproxy -c` check. (A looser match once took `vim …/haproxy.cfg` for a HAProxy — review.)
 */
function runsConfig(
  proc: string,
  pid: number,
  configPath: string,
  bin: BinaryId | undefined,
  binary: string | undefined,
  isAlive: (pid: number) => boolean,
): boolean {
  const argv = cmdline(proc, pid);
  const f = argv.indexOf('-f');
  return (
    f >= 0 &&
    argv[f + 1] === configPath &&
    !argv.includes('-c') &&
    isHaproxy(proc, pid, argv[0] ?? '', bin, binary) &&
    isAlive(pid)
  );
}

/** Where findHaproxies looks (tests: a fake /proc tree). */
export interface ProcView {
  /** The proc file system's root (default /proc). */
  readonly root?: string;
  readonly alive?: (pid: number) => boolean;
}

/**
 * Every running HAProxy started with this agent's config file, oldest first. An agent killed in the middle of a
 * reload leaves two: the old one soft-stopping and the new one, which the pid file may not name yet. `binary` is
 * haproxy.path: that binary is recognised under any name (see isHaproxy).
 */
export function findHaproxies(configPath: string, binary?: string, view: ProcView = {}): number[] {
  const proc = view.root ?? '/proc';
  const isAlive = view.alive ?? alive;
  const bin = binary !== undefined ? binaryIdentity(binary) : undefined;
  const found: { pid: number; start: number }[] = [];
  for (const entry of readdirSync(proc)) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (!runsConfig(proc, pid, configPath, bin, binary, isAlive)) continue;
    found.push({ pid, start: startTime(proc, pid) });
  }
  return found.sort((a, b) => a.start - b.start || a.pid - b.pid).map((x) => x.pid);
}

/** A process's start time in clock ticks since boot (/proc/PID/stat field 22), 0 if unknown. */
function startTime(proc: string, pid: number): number {
  try {
    const stat = readFileSync(`${proc}/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) || 0;
  } catch {
    return 0;
  }
}

/**
 * Stops a HAProxy the agent could not take over (see apply/takeover.ts): SIGTERM, then SIGKILL after `graceMs`, so
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
