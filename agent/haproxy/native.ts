import * as path from 'node:path';
import { findUp } from '../../common/platform/fs';

/** The agent's native addon (agent/native/listenfd.c): sockets Node itself cannot make or hand over. */
export interface NativeAddon {
  listenTcp(host: string, port: number, backlog: number): number;
  localPort(fd: number): number;
  closeFd(fd: number): void;
  /** null when that fd closed meanwhile; throws on anything else (EPERM: no ptrace access, seccomp). */
  dupFrom(pid: number, fd: number): number | null;
  socketInfo(fd: number): { address: string; port: number; listening: boolean; tcp: boolean } | null;
  /** An AF_UNIX socketpair (close-on-exec): datagram or stream. */
  socketPair(datagram: boolean): [number, number];
  /** Sends `fd` over the unix socket `via` (SCM_RIGHTS); throws EAGAIN instead of blocking. */
  sendFd(via: number, fd: number): void;
  /** Opens and flock()s `path`; the fd holds the lock until closed or the process ends. Throws code ELOCKED when held. */
  lockFile(path: string): number;
  /** A pidfd for `pid` (close-on-exec), null when there is no such process. */
  pidOpen(pid: number): number | null;
  /** Sends `signal` (0: only asks) through a pidfd; false once that process has exited. */
  pidSignal(pidfd: number, signal: number): boolean;
}

// Built by `npm install` (node-gyp, agent/native). See agent/native/listenfd.c for why Node's own sockets won't do.
const ADDON = path.join('agent', 'native', 'build', 'Release', 'listenfd.node');

let loaded: NativeAddon | undefined;

/** The addon, loaded on first use (a module that only imports this file does not load it). */
export function nativeAddon(): NativeAddon {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a native addon (a .node file) loads only through require()
  loaded ??= require(findUp(ADDON)) as NativeAddon;
  return loaded;
}
