import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import * as path from 'node:path';
import { ProxyMgrError } from '../../common/errors';
import { findUp } from '../../common/fs';
import type * as ports from '../ports';

interface ListenFdAddon {
  listenTcp(host: string, port: number, backlog: number): number;
  localPort(fd: number): number;
  closeFd(fd: number): void;
  /** null when that fd closed meanwhile; throws on anything else (EPERM: no ptrace access, seccomp). */
  dupFrom(pid: number, fd: number): number | null;
  socketInfo(fd: number): { address: string; port: number; listening: boolean; tcp: boolean } | null;
}

// Built by `npm install` (node-gyp, agent/native). See agent/native/listenfd.c for why Node's own sockets won't do.
const ADDON = path.join('agent', 'native', 'build', 'Release', 'listenfd.node');

// eslint-disable-next-line @typescript-eslint/no-require-imports -- a native addon (a .node file) loads only through require()
const addon = require(findUp(ADDON)) as ListenFdAddon;

/**
 * The listening sockets the agent owns, one per bind address and port. They outlive every HAProxy process:
 * connections queue in their backlog while HAProxy restarts or reloads, so none is refused.
 */
export class SocketPool implements ports.SocketPool {
  private readonly fds = new Map<string, number>();

  constructor(private readonly backlog: number) {}

  /** The fd listening on address:port, created on first use. Throws SOCKET_BIND_FAILED (e.g. port in use). */
  acquire(address: string, port: number): number {
    const key = `${address}|${port}`;
    const existing = this.fds.get(key);
    if (existing !== undefined) return existing;
    let fd: number;
    try {
      fd = addon.listenTcp(address, port, this.backlog);
    } catch (err) {
      throw new ProxyMgrError('SOCKET_BIND_FAILED', `cannot listen on ${address}:${port}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    this.fds.set(key, fd);
    return fd;
  }

  /** Closes every socket not in `keep` (address|port keys) — called once HAProxy no longer uses them. */
  release(keep: ReadonlySet<string>): string[] {
    const closed: string[] = [];
    for (const [key, fd] of this.fds) {
      if (keep.has(key)) continue;
      addon.closeFd(fd);
      this.fds.delete(key);
      closed.push(key.replace('|', ':'));
    }
    return closed;
  }

  closeAll(): void {
    this.release(new Set());
  }

  /**
   * Copies the listening TCP sockets of a running process (the HAProxy a previous agent left) into the pool, so
   * that the same sockets — and the connections in their backlog — go on to the next HAProxy: no port closes.
   * Returns the address:port of each; sockets the pool already has are not copied twice.
   */
  adoptFrom(pid: number): string[] {
    const adopted: string[] = [];
    const dir = `/proc/${pid}/fd`;
    // Only listening sockets are worth copying; under load HAProxy holds thousands of connection fds that come and go.
    const listening = listeningInodes();
    for (const entry of readdirSync(dir)) {
      let link: string;
      try {
        link = readlinkSync(path.join(dir, entry));
      } catch {
        continue; // closed meanwhile
      }
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      if (inode === undefined || !listening.has(inode)) continue;
      const fd = addon.dupFrom(pid, Number(entry));
      if (fd === null) continue; // closed between readdir and the copy; any other failure throws
      const info = addon.socketInfo(fd);
      const key = info && info.listening && info.tcp ? socketKey(info.address, info.port) : undefined;
      if (key === undefined || this.fds.has(key)) {
        addon.closeFd(fd);
        continue;
      }
      this.fds.set(key, fd);
      adopted.push(key.replace('|', ':'));
    }
    return adopted;
  }
}

/** Inodes of the TCP sockets in LISTEN state (/proc/net/tcp and tcp6, column 10; state 0A). */
function listeningInodes(): Set<string> {
  const out = new Set<string>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue; // no IPv6
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '0A' && f[9] !== undefined) out.add(f[9]);
    }
  }
  return out;
}

export function socketKey(address: string, port: number): string {
  return `${address}|${port}`;
}
