/**
 * Shared by the gRPC benchmarks (fanout, propagation): the built CLI as a child process (so its memory and CPU
 * are its own, readable from /proc), a clock that several processes agree on, and small admin-API calls.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  Action,
  AgentAdminClient,
  ControlPlaneAdminClient,
  ListAgentsResponse,
  ListChangesResponse,
  StatusResponse,
} from '../common/gen/proxymgr/v1/admin';
import { sleep } from '../testkit/net';

export const CLI = path.join(__dirname, '..', 'bin', 'proxymgr.js');

/**
 * Milliseconds on CLOCK_MONOTONIC (process.hrtime), which is system-wide on Linux: a timestamp taken in a
 * worker process can be subtracted from one taken here. Date.now() has 1 ms resolution and can step.
 */
export function monoMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Resident memory (now and peak) and CPU time of a process, from /proc. */
export function procStats(pid: number): { rssMb: number; peakRssMb: number; cpuMs: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  // /proc/PID/stat: utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return {
    rssMb: Math.round(kb('VmRSS') / 102.4) / 10,
    peakRssMb: Math.round(kb('VmHWM') / 102.4) / 10,
    cpuMs: ticks * 10,
  };
}

/** One `proxymgr <role> --config FILE` child process; its JSON logs go to a file (a full pipe would stall it). */
export interface CliChild {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly logFile: string;
  logs(): string;
  /** Resolves once a log line matches `re`; throws after `timeoutMs` or if the process exits. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<void>;
  /** `signal` (SIGTERM; SIGUSR2 for an agent's hand-over), then SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number, signal?: NodeJS.Signals): Promise<void>;
}

/** Every child this module started; CLI children (an agent owns an HAProxy) are stopped with SIGTERM. */
const children = new Map<ChildProcess, NodeJS.Signals>();
/** Children already sent their signal (see killChildrenNow). */
const signalled = new WeakSet<ChildProcess>();
let exitHookInstalled = false;

/**
 * Starts the built CLI. `logLevel` is PROXYMGR_LOG_LEVEL (info is the production default). Node options for the
 * child come from BENCH_CLI_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile it.
 */
export function startCli(args: string[], logFile: string, logLevel = 'info'): CliChild {
  const fd = openSync(logFile, 'a');
  const nodeArgs = (process.env.BENCH_CLI_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
  const proc = spawn(process.execPath, [...nodeArgs, CLI, ...args], {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, PROXYMGR_LOG_LEVEL: logLevel },
  });
  closeSync(fd);
  track(proc, 'SIGTERM');
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const logs = () => readFileSync(logFile, 'utf8');
  return {
    proc,
    pid: proc.pid!,
    logFile,
    logs,
    waitForLog: async (re, timeoutMs = 20_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (re.test(logs())) return;
        if (proc.exitCode !== null || proc.signalCode !== null)
          throw new Error(
            `proxymgr ${args[0]} exited (${proc.exitCode ?? proc.signalCode}) before logging ${re}: ${logs().slice(-2000)}`,
          );
        if (Date.now() > deadline)
          throw new Error(
            `proxymgr ${args[0]}: no log line matching ${re} within ${timeoutMs} ms: ${logs().slice(-2000)}`,
          );
        await sleep(25);
      }
    },
    stop: async (graceMs = 10_000, signal = 'SIGTERM') => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      signalled.add(proc);
      proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Registers a child started elsewhere (worker processes) for `killChildrenNow`. */
export function trackChild(proc: ChildProcess): void {
  track(proc, 'SIGKILL');
}

function track(proc: ChildProcess, signal: NodeJS.Signals): void {
  children.set(proc, signal);
  proc.once('exit', () => children.delete(proc));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // No child may outlive the benchmark, even when it throws.
    process.once('exit', killChildrenNow);
  }
}

/**
 * Signals every child still running, once each (synchronous, for exit handlers): SIGTERM to the CLI, which then
 * stops its HAProxy itself, SIGKILL to worker processes. Once: the CLI's handler is `process.once`, so a second
 * SIGTERM would kill an agent mid-shutdown and leave its HAProxy running.
 */
export function killChildrenNow(): void {
  for (const [c, signal] of children) {
    if (c.exitCode !== null || c.signalCode !== null || signalled.has(c)) continue;
    signalled.add(c);
    c.kill(signal);
  }
}

/**
 * On SIGINT/SIGTERM: signal the children (killChildrenNow), wait up to 10 s for them to exit (an agent stops
 * HAProxy first), run `cleanup` (stop ZooKeeper, remove temp dirs), exit. Finally blocks do not run on signals.
 * Returns a function that removes the handlers.
 */
export function onInterruptStopChildren(cleanup: () => Promise<void>): () => void {
  const handler = (sig: NodeJS.Signals) => {
    killChildrenNow();
    const deadline = Date.now() + 10_000;
    const wait = async () => {
      while (children.size > 0 && Date.now() < deadline) await sleep(50);
      for (const c of children.keys()) c.kill('SIGKILL');
    };
    void wait()
      .then(cleanup)
      .catch(() => undefined)
      .finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.removeListener('SIGINT', handler);
    process.removeListener('SIGTERM', handler);
  };
}

/** ControlPlaneAdmin.ListAgents. */
export function listAgents(address: string): Promise<ListAgentsResponse> {
  return new Promise((resolve, reject) => {
    const c = new ControlPlaneAdminClient(address, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
    c.listAgents({}, new grpc.Metadata(), { deadline: Date.now() + 30_000 }, (err, res) => {
      c.close();
      if (err) reject(err);
      else resolve(res);
    });
  });
}

/** ControlPlaneAdmin.ListChanges: the control plane's own trace of the `limit` most recent changes (at most 1,000). */
export function listChanges(address: string, limit = 1000): Promise<ListChangesResponse> {
  return new Promise((resolve, reject) => {
    const c = new ControlPlaneAdminClient(address, grpc.credentials.createInsecure());
    c.listChanges({ limit }, new grpc.Metadata(), { deadline: Date.now() + 30_000 }, (err, res) => {
      c.close();
      if (err) reject(err);
      else resolve(res);
    });
  });
}

/** Polls ControlPlaneAdmin until the control plane answers with a desired state (at any log level). */
export async function waitForDesiredState(cp: CliChild, address: string, timeoutMs = 20_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (cp.proc.exitCode !== null || cp.proc.signalCode !== null)
      throw new Error(`control plane exited: ${cp.logs().slice(-2000)}`);
    const version = await listAgents(address).then(
      (r) => r.desiredVersion,
      () => '',
    );
    if (version) return version;
    if (Date.now() > deadline)
      throw new Error(
        `control plane at ${address}: no desired state within ${timeoutMs} ms: ${cp.logs().slice(-2000)}`,
      );
    await sleep(50);
  }
}

/** AgentAdmin.Status. */
export function agentStatus(address: string): Promise<StatusResponse> {
  return new Promise((resolve, reject) => {
    const c = new AgentAdminClient(address, grpc.credentials.createInsecure());
    c.status({}, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => {
      c.close();
      if (err) reject(err);
      else resolve(res);
    });
  });
}

/** AgentAdmin.RecentActions (newest last). */
export function agentRecentActions(address: string, limit = 200): Promise<Action[]> {
  return new Promise((resolve, reject) => {
    const c = new AgentAdminClient(address, grpc.credentials.createInsecure());
    c.recentActions({ limit }, new grpc.Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => {
      c.close();
      if (err) reject(err);
      else resolve(res.actions);
    });
  });
}

/** A control-plane proxymgr.yml following `/service_config` in ZooKeeper. */
export function controlPlaneYaml(zkConnect: string, listenPort: number, extra = ''): string {
  return `haproxy:
  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]
service_config:
  type: zookeeper
  servers: ${zkConnect}
  path: /service_config
controlplane:
  listen: 127.0.0.1:${listenPort}
${extra}`;
}
