/**
 * reload: one reload storm against the agent (HAProxy on fds the agent owns, `-sf` reloads) and the same storm
 * against a naive baseline (HAProxy binding the port itself; every "reload" kills it and starts a new one), in
 * the same run, under the same fresh-connection load. A connection fails when it is refused, reset, or closed
 * without a 200 reply.
 *
 * `npm run bench -- reload [--reloads=50] [--clients=16] [--gap-ms=20]`
 * → {"reloads":N,"connections":M,"failed_agent":A,"failed_naive":B}; M counts the connections of both runs.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { FIRST_LISTEN_FD, renderHaproxyConfig } from '../agent/haproxy/render';
import { StatsSocketClient } from '../agent/haproxy/runtime';
import { DesiredState } from '../common/protocol/types';
import { server, service, startTestAgent, state } from '../testkit/agent';
import { LoadResult } from '../testkit/load';
import { freePort, sleep, tempDir } from '../testkit/net';
import { describeTimings, killAgentNow, onInterrupt, say } from './lib-common';
import { BackendInfo, startTraffic, Traffic } from './lib-traffic';
import { defineBenchmark, Figures, int, OptionsOf } from './harness';

interface StormResult {
  readonly connections: number;
  readonly failed: number;
  readonly load: LoadResult;
  readonly stormMs: number;
}

/** The web service of reload number `gen`: a changed listen option per step makes every step a real reload. */
function stormState(port: number, backends: readonly BackendInfo[], gen: number): DesiredState {
  const listenOptions = ['mode http', 'balance roundrobin', `http-response set-header X-Gen ${gen}`];
  return state([
    service(
      'web',
      port,
      backends.map((b) => server(b.name, b.port)),
      { listenOptions },
    ),
  ]);
}

/** Runs `reloadOnce(i)` `reloads` times under `clients` fresh-connection clients; counts what failed. */
async function storm(
  traffic: Traffic,
  port: number,
  clients: number,
  reloads: number,
  gapMs: number,
  reloadOnce: (i: number) => Promise<void>,
): Promise<StormResult> {
  await traffic.startLoad([port], clients);
  await sleep(200);
  const started = Date.now();
  for (let i = 1; i <= reloads; i++) {
    await reloadOnce(i);
    await sleep(gapMs);
  }
  const stormMs = Date.now() - started;
  await sleep(300);
  const [r] = await traffic.stopLoad();
  if (!r) throw new Error('no load result');
  const failed = r.refused + r.reset + r.empty + r.other;
  return { connections: r.ok + failed, failed, load: r, stormMs };
}

function describe(name: string, s: StormResult, reloads: number): string {
  const { load: r } = s;
  return (
    `${name}: ${reloads} reloads in ${s.stormMs} ms; ${s.connections} connections, ${s.failed} failed ` +
    `(refused ${r.refused}, reset ${r.reset}, empty ${r.empty}, other ${r.other})` +
    (r.errors.length > 0 ? `; first errors: ${[...new Set(r.errors)].slice(0, 5).join(', ')}` : '')
  );
}

/**
 * The baseline: the same rendered config except that HAProxy binds the port itself; a reload kills the process
 * (SIGTERM, HAProxy's hard stop), waits for it to exit and starts a new one — what a plain `restart` does.
 * Every process it starts is tracked so none outlives the benchmark.
 */
class NaiveHaproxy {
  private readonly children = new Set<ChildProcess>();
  private current: ChildProcess | undefined;
  private readonly runtime: StatsSocketClient;
  private readonly configPath: string;

  constructor(
    private readonly dir: string,
    private readonly port: number,
  ) {
    this.configPath = path.join(dir, 'haproxy.cfg');
    this.runtime = new StatsSocketClient(path.join(dir, 'haproxy.sock'), 1000);
  }

  writeConfig(desired: DesiredState): void {
    const text = renderHaproxyConfig(desired, {
      socketPath: path.join(this.dir, 'haproxy.sock'),
      serverStateFile: path.join(this.dir, 'server-state'),
      hardStopAfterMs: 5000,
    });
    // The naive HAProxy binds its port itself and has no admin channel: its stats socket with a path is admin.
    const bound = text
      .replace(new RegExp(`^(\\s*)bind fd@${FIRST_LISTEN_FD}$`, 'm'), `$1bind 127.0.0.1:${this.port}`)
      .replace(/^\s*stats socket sockpair@\d+ level admin\n/m, '')
      .replace(/ mode 600 level user$/m, ' mode 600 level admin');
    if (!bound.includes(`bind 127.0.0.1:${this.port}`) || bound.includes('sockpair@'))
      throw new Error(
        `naive baseline: the rendered config has no "bind fd@${FIRST_LISTEN_FD}" or admin channel line to replace`,
      );
    writeFileSync(this.configPath, bound);
  }

  /** Starts HAProxy and resolves once it answers on its stats socket (it listens on the port by then). */
  async start(): Promise<void> {
    const child = spawn('haproxy', ['-db', '-f', this.configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null)
        throw new Error(`naive haproxy exited during start: ${stderr.trim()}`);
      try {
        if ((await this.runtime.pid()) === child.pid) break;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline)
        throw new Error(`naive haproxy pid ${child.pid} not ready after 10 s: ${stderr.trim()}`);
      await sleep(5);
    }
    this.current = child;
  }

  /** Kill, wait for the exit, start again; returns how long no process listened on the port (ms). */
  async restart(): Promise<number> {
    const old = this.current;
    const killedAt = performance.now();
    if (old) await this.kill(old, 'SIGTERM');
    await this.start();
    return performance.now() - killedAt;
  }

  private kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  }

  /** Kills every process this baseline started and waits until they are gone. */
  async stop(): Promise<void> {
    await Promise.all([...this.children].map((c) => this.kill(c, 'SIGKILL')));
    this.current = undefined;
  }

  /** For exit/signal handlers, which cannot wait. */
  killAllNow(): void {
    for (const c of this.children) c.kill('SIGKILL');
  }

  get alive(): number {
    return this.children.size;
  }
}

const options = {
  reloads: int(50, 'reloads per run', 1),
  clients: int(16, 'fresh-connection clients', 1),
  gapMs: int(20, 'ms between reloads'),
};

async function run(o: OptionsOf<typeof options>): Promise<Figures> {
  const reloads = o.reloads;
  const clients = o.clients;
  const gapMs = o.gapMs;
  say(
    `reload: ${reloads} reloads, ${clients} clients opening fresh connections without pause, ${gapMs} ms between reloads`,
  );

  // Backends and clients run on a worker thread, off the agent's event loop (see lib-traffic.ts).
  const traffic = await startTraffic([
    { name: 'a', host: '127.0.0.1' },
    { name: 'b', host: '127.0.0.1' },
  ]);
  const backends = traffic.backends;
  const tmp = tempDir('proxymgr-bench-naive-');
  const naivePort = await freePort();
  const naive = new NaiveHaproxy(tmp.dir, naivePort);
  let t: Awaited<ReturnType<typeof startTestAgent>> | undefined;
  // If the run is interrupted, no HAProxy may stay behind.
  const removeHandlers = onInterrupt(() => {
    naive.killAllNow();
    killAgentNow(t);
    tmp.cleanup();
  });
  const onExit = () => naive.killAllNow();
  process.once('exit', onExit);
  try {
    // The agent: sockets it owns, handed over as fd@N; each reload is a new HAProxy with -sf on the same fds.
    const agentPort = await freePort();
    t = await startTestAgent();
    const agent = t.agent;
    const first = await agent.apply(stormState(agentPort, backends, 0));
    if (first.outcome !== 'reload')
      throw new Error(`agent did not start: ${first.outcome} ${first.error?.message ?? ''}`);
    const reloadsBefore = agent.counters.reloads;
    const agentRun = await storm(traffic, agentPort, clients, reloads, gapMs, async (i) => {
      const r = await agent.apply(stormState(agentPort, backends, i));
      if (r.outcome !== 'reload') throw new Error(`agent reload ${i}: outcome ${r.outcome} ${r.error?.message ?? ''}`);
    });
    if (agent.counters.reloads - reloadsBefore !== reloads)
      throw new Error(`agent counted ${agent.counters.reloads - reloadsBefore} reloads, expected ${reloads}`);
    say(describe('agent (fd handoff, -sf)', agentRun, reloads));
    await t.close();
    t = undefined;

    // The baseline, same state and load: HAProxy binds the port; kill, then start a new one.
    naive.writeConfig(stormState(naivePort, backends, 0));
    await naive.start();
    const gaps: number[] = [];
    const naiveRun = await storm(traffic, naivePort, clients, reloads, gapMs, async (i) => {
      naive.writeConfig(stormState(naivePort, backends, i));
      gaps.push(await naive.restart());
    });
    say(describe('naive (bind in config, kill + start)', naiveRun, reloads));
    // A refused connect fails in microseconds and the client retries at once, so the naive failure count says
    // how many attempts hit a closed port; the time the port was closed is the steadier figure.
    say(
      `naive: port closed from kill to ready ${describeTimings(gaps)}, ${Math.round(gaps.reduce((a, b) => a + b, 0))} ms in total`,
    );

    return {
      reloads,
      connections: agentRun.connections + naiveRun.connections,
      failed_agent: agentRun.failed,
      failed_naive: naiveRun.failed,
    };
  } finally {
    await t?.close();
    await naive.stop();
    if (naive.alive > 0) say(`reload: WARNING ${naive.alive} naive haproxy processes still alive`);
    tmp.cleanup();
    await traffic.close();
    removeHandlers();
    process.removeListener('exit', onExit);
  }
}

export const benchmark = defineBenchmark({
  name: 'reload',
  summary: 'a reload storm on handed-over fds against a naive kill-and-start, under fresh-connection load',
  options,
  smoke: { reloads: 3, clients: 2 },
  fields: ['reloads', 'connections', 'failed_agent', 'failed_naive'],
  run,
  targets: (r) => [{ name: 'failed_agent = 0', held: r.failed_agent === 0, value: r.failed_agent, smoke: true }],
});
