import { ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import * as http from 'node:http';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A TCP port that was free a moment ago on 127.0.0.1. */
/** Ports this process handed out already: not again while others are left. */
const handedOut = new Set<number>();
/**
 * Ports are picked below the kernel's ephemeral range (ip_local_port_range, 32768–60999 by default): a port the
 * kernel picks for `listen(0)` comes from that range, which every outgoing connection also draws its source port
 * from, and under load (thousands of connections next to the test) such a port was taken before the test bound it.
 * Each jest worker draws from its own slice of 20000–27999, so two test files running side by side never pick the
 * same port either (a port is only checked free when picked; the test binds it later). 28000–32767 is left to
 * test/e2e/large-state.test.ts, which binds 4,000 ports at once.
 */
const PORT_LOW = 20000;
const SLICE = 1000;
const worker = Number(process.env.JEST_WORKER_ID ?? 0) % 8; // 0: not under jest (benchmarks, the demo)
const sliceLow = PORT_LOW + worker * SLICE;

/**
 * Where a process may bind many ports at once (a benchmark's thousands of listeners) without taking ports another
 * jest worker picked: under jest (a smoke run inherits its worker's id), the upper half of this worker's slice,
 * which freePort also skips while they are bound; otherwise 21000–27999.
 */
export function bulkPortRange(): { low: number; high: number } {
  return worker > 0 ? { low: sliceLow + SLICE / 2, high: sliceLow + SLICE - 1 } : { low: 21_000, high: 27_999 };
}

/**
 * A TCP port nothing listens on now on `host`: outside the ephemeral range, in this process's slice; if none of a
 * few hundred tries is free there, one the kernel picks (as before the slices).
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 300; attempt++) {
    if (handedOut.size >= SLICE - 100) handedOut.clear(); // a long run: ports of finished tests are free again
    const port = sliceLow + Math.floor(Math.random() * SLICE);
    if (handedOut.has(port) || !(await canListen(port, host))) continue;
    handedOut.add(port);
    return port;
  }
  return kernelPort(host);
}

function kernelPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function canListen(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

/** A temp dir removed by the returned cleanup. */
export function tempDir(prefix = 'proxymgr-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Reply {
  status: number;
  body: string;
}

/** One GET over a fresh TCP connection (no keep-alive), so every call exercises accept() on the listener. */
export function get(port: number, host = '127.0.0.1', timeoutMs = 5000): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host, port, path: '/', agent: false, headers: { connection: 'close' }, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** Counts which backend answered `n` fresh-connection requests. */
export async function tally(port: number, n: number, host = '127.0.0.1'): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const r = await get(port, host);
    const key = r.status === 200 ? r.body.trim() : `status ${r.status}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** Polls `check` until it returns true or `timeoutMs` passes; returns whether it became true. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
  everyMs = 50,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return true;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** SIGKILLs a child process (if it still runs) and waits for its exit. */
export async function killAndWait(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    p.once('exit', () => resolve());
    p.kill('SIGKILL');
  });
}

/**
 * Whether something accepts connections on host:port. A connect that neither succeeds nor fails within `timeoutMs`
 * counts as listening (a full backlog): checks that a port must stay closed err on the side of failing.
 */
export function listening(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = net.connect({ port, host });
    s.setTimeout(timeoutMs);
    const answer = (open: boolean) => {
      s.destroy();
      resolve(open);
    };
    s.once('connect', () => answer(true));
    s.once('error', () => answer(false));
    s.once('timeout', () => answer(true));
  });
}

/**
 * Whether one of `pids` holds a TCP socket listening on `port` (read from /proc). Unlike `listening`, another
 * process that happens to listen on the port (a test running alongside took it after freePort) does not count.
 */
export function pidsListenOn(pids: readonly number[], port: number): boolean {
  const inodes = new Set(listeningInodes(port));
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone
    }
    for (const fd of fds) {
      try {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        if (inode !== undefined && inodes.has(inode)) return true;
      } catch {
        // closed meanwhile
      }
    }
  }
  return false;
}

/** The inodes of the sockets listening on `port` (from /proc/net/tcp and tcp6): the same socket keeps its inode. */
export function listeningInodes(port: number): string[] {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue; // no IPv6
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && f[1]!.endsWith(hex) && f[3] === '0A') out.push(f[9]!);
    }
  }
  return out.sort();
}
