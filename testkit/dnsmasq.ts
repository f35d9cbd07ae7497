import { ChildProcess, spawn } from 'node:child_process';
import { promises as dnsp } from 'node:dns';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { freePort, sleep, tempDir, killAndWait } from './net';

export interface SrvRecord {
  /** e.g. _http._tcp.web.proxymgr.test */
  readonly name: string;
  readonly target: string;
  readonly port: number;
  readonly priority?: number;
  readonly weight?: number;
}

export interface Dnsmasq {
  /** "127.0.0.1:PORT", for Resolver.setServers and the dns watcher's nameservers. */
  readonly server: string;
  /** Replaces the A records in the hosts dir (picked up at once, no restart). */
  setHosts(records: Record<string, string[]>): void;
  /** SRV records are command-line only: restarts dnsmasq on the same port with the new set. */
  setSrv(records: readonly SrvRecord[]): Promise<void>;
  /** Stops the server but keeps its port and records: queries are refused until up(). */
  down(): Promise<void>;
  /** Starts it again on the same port after down(). */
  up(): Promise<void>;
  stop(): Promise<void>;
}

/** A real dnsmasq on a free loopback port, authoritative for proxymgr.test, TTL 0. */
export async function startDnsmasq(
  hosts: Record<string, string[]> = {},
  srv: readonly SrvRecord[] = [],
): Promise<Dnsmasq> {
  const port = await freePort();
  const tmp = tempDir('proxymgr-dns-');
  const hostsDir = path.join(tmp.dir, 'hosts');
  mkdirSync(hostsDir);
  const setHosts = (records: Record<string, string[]>) => {
    const lines = Object.entries(records).flatMap(([name, ips]) => ips.map((ip) => `${ip} ${name}`));
    // A new file per change: dnsmasq (inotify) reads new and changed files; stale ones are emptied.
    const file = path.join(hostsDir, 'records');
    writeFileSync(file + '.tmp', lines.join('\n') + '\n');
    renameSync(file + '.tmp', file);
  };
  setHosts(hosts);
  let proc: ChildProcess | undefined;
  let currentSrv = srv;
  const launch = async () => {
    const args = [
      '--no-daemon',
      '-C',
      '/dev/null',
      '--no-resolv',
      '--no-hosts',
      '--user=root',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--local-ttl=0',
      '--local=/proxymgr.test/',
      `--hostsdir=${hostsDir}`,
      `--pid-file=${path.join(tmp.dir, 'pid')}`,
      ...currentSrv.map((s) => `--srv-host=${s.name},${s.target},${s.port},${s.priority ?? 0},${s.weight ?? 10}`),
    ];
    const p = spawn('dnsmasq', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    proc = p;
    let stderr = '';
    p.stderr?.on('data', (c) => (stderr = (stderr + c.toString()).slice(-2000)));
    const r = new dnsp.Resolver({ timeout: 200, tries: 1 });
    r.setServers([`127.0.0.1:${port}`]);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      if (p.exitCode !== null) throw new Error(`dnsmasq exited with ${p.exitCode}: ${stderr}`);
      try {
        await r.resolve4('ready.proxymgr.test');
        return;
      } catch (err) {
        // ENOTFOUND means dnsmasq answered: it is up.
        if ((err as NodeJS.ErrnoException).code === 'ENOTFOUND' || (err as NodeJS.ErrnoException).code === 'ENODATA')
          return;
      }
      await sleep(50);
    }
    throw new Error(`dnsmasq on port ${port} not ready: ${stderr}`);
  };
  const kill = () => killAndWait(proc);
  await launch();
  return {
    server: `127.0.0.1:${port}`,
    setHosts,
    setSrv: async (records) => {
      currentSrv = records;
      await kill();
      await launch();
    },
    down: kill,
    up: launch,
    stop: async () => {
      await kill();
      tmp.cleanup();
    },
  };
}
