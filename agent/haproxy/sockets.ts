import { readdirSync, readlinkSync } from 'node:fs';
import * as path from 'node:path';
import { ProxyMgrError } from '../../common/platform/errors';
import { nativeAddon } from './native';
import type * as ports from '../ports';
import { socketKey } from '../ports';

/**
 * The listening sockets the agent owns, one per bind address and port. They outlive every HAProxy process:
 * connections queue in their backlog while HAProxy restarts or reloads, so none is refused.
 */
export class NativeSocketPool implements ports.SocketPool {
  private readonly fds = new Map<string, number>();

  constructor(private readonly backlog: number) {}

  /** The fd listening on address:port, created on first use. Throws SOCKET_BIND_FAILED (e.g. port in use). */
  acquire(address: string, port: number): number {
    const key = `${address}|${port}`;
    const existing = this.fds.get(key);
    if (existing !== undefined) return existing;
    let fd: number;
    try {
      fd = nativeAddon().listenTcp(address, port, this.backlog);
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
      nativeAddon().closeFd(fd);
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
   * Every socket fd of the process is copied and asked whether it listens (SO_ACCEPTCONN); the copies of the others
   * are closed at once (closing a copy leaves the process's own fd as it is). Looking the listeners up in
   * /proc/net/tcp instead took seconds under load (tens of thousands of TIME_WAIT entries); taking only the fd
   * numbers haproxy.cfg names would miss a listener when the file is newer than the process (a failed reload).
   * Returns each listener by its fd number in `pid` (the order a crash restart needs when the agent does not know
   * the config it runs); a socket the pool already has is not copied twice.
   */
  adoptFrom(pid: number): Map<number, ports.AdoptedSocket> {
    const adopted = new Map<number, ports.AdoptedSocket>();
    const dir = `/proc/${pid}/fd`;
    for (const entry of readdirSync(dir)) {
      let link: string;
      try {
        link = readlinkSync(path.join(dir, entry));
      } catch {
        continue; // closed meanwhile
      }
      if (!link.startsWith('socket:')) continue;
      const socket = this.copyListener(pid, Number(entry));
      if (socket !== undefined) adopted.set(Number(entry), socket);
    }
    return adopted;
  }

  /** Copies fd `n` of process `pid` into the pool if it is a listening TCP socket (once per address:port). */
  private copyListener(pid: number, n: number): ports.AdoptedSocket | undefined {
    const fd = nativeAddon().dupFrom(pid, n);
    if (fd === null) return undefined; // closed meanwhile (or no such fd); any other failure throws
    const info = nativeAddon().socketInfo(fd);
    const key = info && info.listening && info.tcp ? socketKey(info.address, info.port) : undefined;
    if (key === undefined) {
      nativeAddon().closeFd(fd);
      return undefined;
    }
    const held = this.fds.get(key);
    if (held !== undefined) nativeAddon().closeFd(fd);
    else this.fds.set(key, fd);
    return { address: key.replace('|', ':'), fd: held ?? fd };
  }
}
