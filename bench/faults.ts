/**
 * `npm run bench -- faults [--zk-down-ms=30000] [--clients=8] [--only=name,name]`: nothing may be lost on restart,
 * upgrade or fault. Real ZooKeeper (behind a TCP proxy that can delay or cut its replies), two control-plane
 * replicas with rollouts on, two agents with real HAProxy (127.0.0.1 and 127.0.0.2) and real backends, `clients`
 * fresh-connection clients through each agent the whole time, and a host change every ~200 ms. The faults in
 * turn, each followed by a check that both agents' HAProxies take sessions on exactly the hosts ZooKeeper holds
 * (removed hosts may still drain, as they do in production); throughout, the agents'
 * haproxy.cfg is sampled for a state with the service missing or fewer than its two permanent hosts (a partial
 * snapshot). Baseline: the same traffic and churn with no fault (`steady`). Faults that kill HAProxy with -9
 * (`haproxy_kill9`, `haproxy_crash_during_apply`, `failed_reload_then_crash`) may lose the requests in flight on
 * it (one per client per process killed); every other fault loses none.
 *
 * Last line: {"faults":[{"name","requests","failed","refused","reset","converged_ms","partial_states"}],
 *             "failed_total","all_converged"}
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { StatsSocketClient } from '../agent/haproxy/runtime';
import { inMaint, isDraining } from '../agent/haproxy/servers-state';
import { RolloutClient } from '../common/gen/proxymgr/v1/rollout';
import { freePort, sleep, tempDir } from '../testkit/net';
import { startSlowProxy } from '../testkit/slow-proxy';
import { connectZk } from '../testkit/zk-client';
import { startZooKeeper } from '../testkit/zookeeper';
import { Dnsmasq, startDnsmasq } from '../testkit/dnsmasq';
import { say } from './lib-common';
import { CliChild, onInterruptStopChildren, startCli } from './lib-grpc';
import { BackendInfo, startTraffic } from './lib-traffic';
import { defineBenchmark, Figures, int, OptionsOf, text } from './harness';
import { UsageError } from '../common/platform/args';

interface FaultResult {
  name: string;
  requests: number;
  failed: number;
  refused: number;
  reset: number;
  converged_ms: number;
  partial_states: number;
  /** HAProxy processes killed with -9 by the fault: each may lose the requests it held (one per client). */
  haproxy_kills?: number;
  note?: string;
}

const PERMANENT = 2;

/** The faults, in the order they run. */
const FAULT_NAMES = [
  'steady',
  'zk_down',
  'zk_session_expiry',
  'cp_leader_kill9',
  'cp_all_restart',
  'slow_zookeeper',
  'agent_restart',
  'agent_kill9',
  'haproxy_kill9',
  'state_dir_unwritable',
  'cp_restart_unreadable_watcher',
  'haproxy_crash_during_apply',
  'failed_reload_then_crash',
  'two_agents_at_once',
];

const options = {
  zkDownMs: int(30000, 'how long ZooKeeper stays down'),
  clients: int(8, 'HTTP clients'),
  clientPauseMs: int(0, "each client's pause after a reply (0: none, as fast as it can)"),
  only: text('', 'comma-separated fault names to run (default: all)'),
};

async function run(o: OptionsOf<typeof options>): Promise<Figures> {
  const zkDownMs = o.zkDownMs;
  const clients = o.clients;
  const only = o.only.split(',').filter(Boolean);
  const unknown = only.filter((n) => !FAULT_NAMES.includes(n));
  if (unknown.length > 0)
    throw new UsageError(`--only: no fault named ${unknown.join(', ')} (faults: ${FAULT_NAMES.join(', ')})`);
  const tmp = tempDir('proxymgr-faults-');
  const zk = await startZooKeeper();
  const proxy = await startSlowProxy(zk.port, { replyDelayMs: 0 });
  // The benchmark's own ZooKeeper client (direct, not through the proxy). Its requests wait for a reconnect with no
  // deadline and its session may expire while ZooKeeper is down: every write gets a deadline, and a client that
  // failed is replaced.
  let zkc = await connectZk(zk.connectString);
  const zkWrite = async (op: (c: typeof zkc) => Promise<void>) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        op(zkc),
        new Promise<never>(
          (_, reject) => (timer = setTimeout(() => reject(new Error('ZooKeeper write timed out')), 2000)),
        ),
      ]);
    } catch (err) {
      const old = zkc;
      zkc = await connectZk(zk.connectString).catch(() => old);
      if (zkc !== old) old.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  };
  const traffic = await startTraffic(Array.from({ length: 6 }, (_, i) => ({ name: `b${i}`, host: '127.0.0.1' })));
  const backends = traffic.backends;
  const webPort = await freePort();
  const children = new Set<CliChild>();
  /** The tmpfs of state_dir_unwritable, while mounted (an interrupted run unmounts it too). */
  let mounted: string | undefined;
  let dns: Dnsmasq | undefined;
  const stopInterrupt = onInterruptStopChildren(async () => {
    if (mounted) execFileSync('umount', ['-l', mounted], { stdio: 'pipe' });
    await dns?.stop();
    await zk.stop();
  });
  const write = (name: string, text: string) => {
    const f = path.join(tmp.dir, name);
    writeFileSync(f, text);
    return f;
  };

  // ZooKeeper content: the service and its hosts; b0, b1 always, b2..b5 come and go.
  await zkc.put(
    '/service_config/web',
    JSON.stringify({
      type: 'zookeeper',
      path: '/services/web',
      port: webPort,
      listen_options: ['mode http', 'retries 3', 'option redispatch'],
    }),
  );
  const hostNode = (b: BackendInfo) => JSON.stringify({ host: '127.0.0.1', port: b.port, name: b.name });
  // A second service whose hosts come from DNS (b0 and b1 through a real dnsmasq): the fault
  // cp_restart_unreadable_watcher restarts the control planes while that DNS server is down.
  const dnsPort = await freePort();
  try {
    dns = await startDnsmasq({ 'b0.proxymgr.test': ['127.0.0.1'], 'b1.proxymgr.test': ['127.0.0.1'] });
    await zkc.put(
      '/service_config/dnsweb',
      JSON.stringify({
        type: 'dns',
        port: dnsPort,
        nameservers: [dns.server],
        backends: backends.slice(0, PERMANENT).map((b) => ({ name: `${b.name}.proxymgr.test`, port: b.port })),
        listen_options: ['mode http', 'retries 3', 'option redispatch'],
      }),
    );
  } catch (err) {
    say(`faults: no dnsmasq (${(err as Error).message.split('\n')[0]}); cp_restart_unreadable_watcher is skipped`);
  }
  const present = new Set<string>();
  for (const b of backends.slice(0, 4)) {
    await zkc.put(`/services/web/${b.name}`, hostNode(b));
    present.add(b.name);
  }

  // Two control-plane replicas, through the proxy. The churn removes a host every ~400 ms and convergence means
  // "exactly what ZooKeeper holds": the removal cap (product default 0.5 per 10 s step) is off here.
  const cpPorts = [await freePort(), await freePort()];
  const cpConfig = (i: number) =>
    write(
      `cp${i}.yml`,
      `haproxy: {defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]}
service_config: {type: zookeeper, servers: "${proxy.connectString}", path: /service_config}
controlplane: {listen: "127.0.0.1:${cpPorts[i]}", zk_session_timeout_ms: 4000, initial_sync_timeout_ms: 10000, max_removal_share: 1}
rollout: {waves: [1, "100%"], bake_ms: 500, replica_id: cp${i}}
`,
    );
  const cps: (CliChild | undefined)[] = [undefined, undefined];
  const startCp = async (i: number) => {
    const c = startCli(['controlplane', '--config', cpConfig(i)], path.join(tmp.dir, `cp${i}.log`));
    children.add(c);
    cps[i] = c;
    await c.waitForLog(/control plane started/, 60_000);
  };
  await startCp(0);
  await startCp(1);

  // failed_reload_then_crash: the agents run HAProxy through a wrapper that refuses to start a config naming
  // `maxconn 500` while a marker file exists (as a config that passes `haproxy -c` and fails at start would);
  // checks, and every other config, pass through.
  const refuseReloads = path.join(tmp.dir, 'refuse-reloads');
  const haproxyWrapper = write(
    'haproxy',
    `#!/bin/sh
case " $* " in *" -c "*) ;; *) if [ -e '${refuseReloads}' ] && grep -q 'maxconn 500' "$3"; then echo '[ALERT] (faults) reload refused' >&2; exit 1; fi;; esac
exec '${execFileSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' }).trim()}' "$@"
`,
  );
  chmodSync(haproxyWrapper, 0o755);

  // Two agents: A on 127.0.0.1 (cp0 first), B on 127.0.0.2 (cp1 first).
  const agentIps = ['127.0.0.1', '127.0.0.2'];
  const agentDirs = agentIps.map((_, i) => path.join(tmp.dir, `agent${i}`));
  const agentConfig = (i: number) => {
    const dir = agentDirs[i]!;
    mkdirSync(dir, { recursive: true });
    const order = i === 0 ? cpPorts : [...cpPorts].reverse();
    return write(
      `agent${i}.yml`,
      `haproxy: {path: ${haproxyWrapper}, config_path: ${dir}/haproxy.cfg, socket_path: ${dir}/haproxy.sock}
agent: {state_dir: ${dir}/state, node_id: agent${i}, bind_address: ${agentIps[i]}, admin_listen: "", controlplanes: [${order.map((p) => `"127.0.0.1:${p}"`).join(', ')}]}
`,
    );
  };
  const agents: (CliChild | undefined)[] = [undefined, undefined];
  const startAgent = async (i: number) => {
    const a = launchAgent(i);
    children.add(a);
    agents[i] = a;
    await a.waitForLog(/agent started/, 30_000);
  };
  const launchAgent = (i: number, log = `agent${i}.log`) =>
    startCli(['agent', '--config', agentConfig(i)], path.join(tmp.dir, log));

  // state_dir_unwritable: agent 1's state dir on a 2 MB tmpfs that the fault fills (ENOSPC), where root may mount.
  let tmpfs = false;
  try {
    mkdirSync(path.join(agentDirs[1]!, 'state'), { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', path.join(agentDirs[1]!, 'state')], {
      stdio: 'pipe',
    });
    tmpfs = true;
    mounted = path.join(agentDirs[1]!, 'state');
  } catch (err) {
    say(
      `faults: cannot mount a tmpfs for state_dir_unwritable (${(err as Error).message.split('\n')[0]}); that fault is skipped`,
    );
  }
  await startAgent(0);
  await startAgent(1);

  const servedBy = (i: number): string[] | undefined => {
    let cfg: string;
    try {
      cfg = readFileSync(path.join(agentDirs[i]!, 'haproxy.cfg'), 'utf8');
    } catch {
      return undefined;
    }
    const section = /\nlisten web\n([\s\S]*?)(\n\n|$)/.exec(cfg)?.[1];
    if (section === undefined) return undefined;
    return [...section.matchAll(/^\s*server (\S+) /gm)].map((m) => m[1]!).sort();
  };
  /**
   * The servers an agent's HAProxy takes new sessions on: in its running process, not in maint and not draining.
   * A host that left discovery stays in haproxy.cfg while it drains (up to `drain_timeout_ms`), so the
   * config file alone would read as "not converged" for 30 s after every removal.
   */
  const takingSessions = async (i: number): Promise<string | undefined> => {
    try {
      const state = await new StatsSocketClient(path.join(agentDirs[i]!, 'haproxy.sock'), 2000).serversState('web');
      return [...(state.get('web')?.values() ?? [])]
        .filter((s) => !inMaint(s) && !isDraining(s))
        .map((s) => s.name)
        .sort()
        .join();
    } catch {
      return undefined; // HAProxy restarting: not converged yet
    }
  };
  let expectedHosts = () => [...present].sort().join();
  /** Converged: each agent's HAProxy takes sessions on exactly ZooKeeper's hosts, and its haproxy.cfg has them all. */
  const converged = async () => {
    const want = expectedHosts();
    for (let i = 0; i < agentIps.length; i++) {
      const inConfig = new Set(servedBy(i) ?? []);
      if (!want.split(',').every((h) => inConfig.has(h))) return false;
      if ((await takingSessions(i)) !== want) return false;
    }
    return true;
  };
  /** What ZooKeeper holds now (a write whose reply was lost may have happened after all). */
  const readHosts = () =>
    new Promise<string>((resolve) => {
      const t = setTimeout(() => resolve([...present].sort().join()), 2000);
      zkc.client.getChildren('/services/web', (err, children) => {
        clearTimeout(t);
        resolve(err ? [...present].sort().join() : [...children].sort().join());
      });
    });
  for (let i = 0; !(await converged()); i++) {
    if (i > 600)
      throw new Error(
        `faults: the agents never served ${expectedHosts()}: ${JSON.stringify(servedBy(0))} / ${JSON.stringify(servedBy(1))}`,
      );
    await sleep(50);
  }
  say(
    `faults: web on :${webPort} through 127.0.0.1 and 127.0.0.2; ${clients} clients each; a host change every ~200 ms`,
  );

  // Churn: every ~200 ms one of b2..b5 joins or leaves (writes that fail while ZooKeeper is down are retried later).
  const churn = {
    running: false,
    loop: Promise.resolve(),
    start() {
      this.running = true;
      this.loop = (async () => {
        for (let k = 0; this.running; k++) {
          const b = backends[PERMANENT + (k % (backends.length - PERMANENT))]!;
          try {
            if (present.has(b.name)) {
              await zkWrite((c) => c.remove(`/services/web/${b.name}`));
              present.delete(b.name);
            } else {
              await zkWrite((c) => c.put(`/services/web/${b.name}`, hostNode(b)));
              present.add(b.name);
            }
          } catch {
            // ZooKeeper down: the next round tries again
          }
          await sleep(200);
        }
      })();
    },
    async stop() {
      this.running = false;
      await this.loop;
    },
  };
  // A partial state: an agent's haproxy.cfg without the service or a permanent host, or its HAProxy not taking
  // sessions on a permanent host (a host that left the desired state drains, so the file alone would not show it).
  let partial = 0;
  let sampling = false;
  const sampler = setInterval(() => {
    if (sampling) return;
    sampling = true;
    void (async () => {
      for (let i = 0; i < agentIps.length; i++) {
        const s = servedBy(i);
        const live = (await takingSessions(i))?.split(',');
        const has = (h: string) => s?.includes(h) && (live === undefined || live.includes(h));
        if (s === undefined || !has('b0') || !has('b1')) partial++;
      }
    })().finally(() => (sampling = false));
  }, 50);

  const results: FaultResult[] = [];
  /** HAProxy processes the running fault killed (see FaultResult.haproxy_kills). */
  let kills = 0;
  const run = async (name: string, fault: () => Promise<string | void>, extraPorts: number[] = []) => {
    // FAULT_NAMES is what --only is checked against: a fault missing there could never be selected.
    if (!FAULT_NAMES.includes(name)) throw new Error(`fault ${name} is not in FAULT_NAMES`);
    if (only.length > 0 && !only.includes(name)) return;
    await traffic.startLoad(
      [webPort, ...extraPorts].flatMap((port) => agentIps.map((ip) => `${ip}:${port}`)),
      clients,
      o.clientPauseMs,
    );
    partial = 0;
    kills = 0;
    churn.start();
    await sleep(1000);
    const note = (await fault()) ?? undefined;
    // Converged: churn paused, both agents serve exactly what ZooKeeper holds.
    await churn.stop();
    const holds = await readHosts();
    expectedHosts = () => holds;
    const t0 = Date.now();
    let ms = -1;
    while (Date.now() - t0 < 60_000) {
      if (await converged()) {
        ms = Date.now() - t0;
        break;
      }
      await sleep(20);
    }
    await sleep(1000);
    const loads = await traffic.stopLoad();
    const sum = (k: 'ok' | 'refused' | 'reset' | 'empty' | 'other') => loads.reduce((n, l) => n + l[k], 0);
    const failed = sum('refused') + sum('reset') + sum('empty') + sum('other');
    const r: FaultResult = {
      name,
      requests: sum('ok') + failed,
      failed,
      refused: sum('refused'),
      reset: sum('reset'),
      converged_ms: ms,
      partial_states: partial,
      ...(kills > 0 ? { haproxy_kills: kills } : {}),
      ...(note ? { note } : {}),
    };
    results.push(r);
    say(
      `  ${JSON.stringify(r)}${failed > 0 ? `  errors: ${JSON.stringify(loads.map((l) => l.errors.slice(0, 5)))}` : ''}`,
    );
  };

  /** The replica leading rollouts, from the Rollout status of either replica. */
  const leader = async (): Promise<number> => {
    for (let attempt = 0; attempt < 100; attempt++) {
      for (const port of cpPorts) {
        const client = new RolloutClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
        const id = await new Promise<string>((resolve) =>
          client.status({}, new grpc.Metadata(), { deadline: Date.now() + 2000 }, (err, res) =>
            resolve(err ? '' : res.leader),
          ),
        );
        client.close();
        const m = /^cp(\d)$/.exec(id);
        if (m) return Number(m[1]);
      }
      await sleep(100);
    }
    throw new Error('faults: no rollout leader');
  };
  const haproxyPid = (i: number) =>
    Number(readFileSync(path.join(agentDirs[i]!, 'state', 'haproxy.pid'), 'utf8').trim());
  const killHaproxy = (i: number) => {
    try {
      process.kill(haproxyPid(i), 'SIGKILL');
      kills++;
    } catch {
      // restarting right now: nothing to kill
    }
  };

  await run('steady', async () => sleep(3000));
  await run('zk_down', async () => {
    await zk.kill(); // stop() would also remove its data dir
    await sleep(zkDownMs);
    await zk.restart();
    await sleep(2000);
  });
  await run('zk_session_expiry', async () => {
    const until = Date.now() + 4000 + 3000; // longer than the 4 s session timeout
    while (Date.now() < until) {
      proxy.cutAll();
      await sleep(100);
    }
    await sleep(3000);
  });
  await run('cp_leader_kill9', async () => {
    const j = await leader();
    cps[j]!.proc.kill('SIGKILL');
    await sleep(3000);
    await startCp(j);
    return `killed cp${j}`;
  });
  await run('cp_all_restart', async () => {
    await Promise.all(cps.map(async (c) => c?.stop()));
    await sleep(10_000);
    await Promise.all([startCp(0), startCp(1)]);
  });
  await run('slow_zookeeper', async () => {
    // Both replicas start behind the delay, so the agents can only be served by a replica whose first read of
    // ZooKeeper was slow (with one replica left up, the agents would stay on it and the slow start would be moot).
    await Promise.all(cps.map(async (c) => c?.stop()));
    proxy.setDelay(300, 0);
    await Promise.all([startCp(0), startCp(1)]);
    await sleep(3000);
    proxy.setDelay(0, 0);
    return 'both replicas restarted with ZooKeeper replies delayed 300 ms';
  });
  await run('agent_restart', async () => {
    for (const i of [0, 1]) {
      await agents[i]!.stop(10_000, 'SIGUSR2'); // as systemd's ExecStop: the signal, then wait for the exit
      await startAgent(i);
    }
  });
  await run('agent_kill9', async () => {
    for (const i of [0, 1]) {
      agents[i]!.proc.kill('SIGKILL');
      await sleep(500);
      await startAgent(i);
    }
  });
  await run('haproxy_kill9', async () => {
    for (const i of [0, 1]) killHaproxy(i);
    await sleep(2000);
  });
  if (tmpfs) {
    await run('state_dir_unwritable', async () => {
      const filler = path.join(agentDirs[1]!, 'state', 'filler');
      try {
        execFileSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k', 'count=64'], { stdio: 'pipe' });
      } catch {
        // dd stops at ENOSPC: that is the point
      }
      await sleep(4000);
      execFileSync('rm', ['-f', filler]);
      return 'agent1 state dir full (ENOSPC) for 4 s';
    });
  } else {
    results.push({
      name: 'state_dir_unwritable',
      requests: 0,
      failed: 0,
      refused: 0,
      reset: 0,
      converged_ms: -1,
      partial_states: 0,
      note: 'skipped: cannot mount a tmpfs here',
    });
  }

  // A restarted control plane reads the hosts its predecessor persisted: a service whose watcher cannot read (its
  // DNS server down) is sent with them, marked unknown, never as an empty list; its requests must all succeed.
  if (dns) {
    const d = dns;
    await run(
      'cp_restart_unreadable_watcher',
      async () => {
        await d.down();
        await sleep(2000);
        await Promise.all(cps.map(async (c) => c?.stop()));
        await Promise.all([startCp(0), startCp(1)]);
        await sleep(8000);
        await d.up();
        await sleep(2000);
        return `dnsweb (dns watcher) with its DNS server down across a restart of both replicas; load on web and dnsweb`;
      },
      [dnsPort],
    );
  } else if (only.length === 0 || only.includes('cp_restart_unreadable_watcher')) {
    results.push({
      name: 'cp_restart_unreadable_watcher',
      requests: 0,
      failed: 0,
      refused: 0,
      reset: 0,
      converged_ms: -1,
      partial_states: 0,
      note: 'skipped: no dnsmasq here',
    });
  }

  // HAProxy killed again and again while host changes (every ~200 ms) are being applied: crash restarts and the
  // applies' launches are serialized, and one generation serves in the end.
  await run('haproxy_crash_during_apply', async () => {
    for (let k = 0; k < 6; k++) {
      killHaproxy(k % 2);
      await sleep(400 + (k % 3) * 150);
    }
    await sleep(2000);
    return 'HAProxy of agent0/agent1 killed with -9 in turn, 6 times ~500 ms apart, during host churn';
  });
  // A reload that fails to start (the wrapper refuses -sf launches), then a crash: the crash restart must run the
  // config that ran, on its fds — not the failed reload's file. Then the retry of the held state succeeds.
  await run('failed_reload_then_crash', async () => {
    writeFileSync(refuseReloads, '');
    const b0 = backends[0]!;
    await zkc.put(
      `/services/web/${b0.name}`,
      JSON.stringify({ ...JSON.parse(hostNode(b0)), haproxy_server_options: 'maxconn 500' }),
    );
    await sleep(2500); // both agents' reloads fail (and are retried, failing again)
    for (const i of [0, 1]) {
      const log = readFileSync(agents[i]!.logFile, 'utf8');
      if (!/\(faults\) reload refused/.test(log) || !/transient failure; the state is applied again/.test(log))
        throw new Error(`faults: agent${i} never had a reload refused and retried (${agents[i]!.logFile})`);
    }
    for (const i of [0, 1]) killHaproxy(i);
    await sleep(2500); // crash restarts (no -sf: allowed) serve the committed config
    rmSync(refuseReloads);
    await sleep(4000); // the next retry reloads with the new server options
    await zkc.put(`/services/web/${b0.name}`, hostNode(b0));
    return 'reloads refused for 5 s (server options of b0 changed), HAProxy killed with -9 meanwhile';
  });
  // Two agents started at once on one state_dir: one takes HAProxy over, the other exits at once (the lock).
  await run('two_agents_at_once', async () => {
    await agents[0]!.stop(10_000, 'SIGUSR2');
    const twins = [launchAgent(0, 'agent0-twin-a.log'), launchAgent(0, 'agent0-twin-b.log')];
    const outcome = await Promise.all(
      twins.map(async (t) => {
        const exited = new Promise<'exited'>((resolve) => t.proc.once('exit', () => resolve('exited')));
        return Promise.race([t.waitForLog(/agent started/, 30_000).then(() => 'started' as const), exited]);
      }),
    );
    const winner = outcome.indexOf('started');
    const loser = twins[1 - winner];
    if (winner < 0 || outcome.filter((o) => o === 'started').length !== 1 || !loser)
      throw new Error(`faults: two agents on one state_dir: ${outcome.join(', ')} (want exactly one started)`);
    await new Promise((r) => (loser.proc.exitCode !== null ? r(undefined) : loser.proc.once('exit', r)));
    if (!/in use by another agent/.test(readFileSync(loser.logFile, 'utf8')))
      throw new Error(`faults: the second agent on one state_dir did not say the state_dir is in use`);
    children.add(twins[winner]!);
    agents[0] = twins[winner];
    await sleep(2000);
    return 'agent0 handed over, then two agents started on its state_dir at once: one took over, one exited';
  });

  clearInterval(sampler);
  const crashed = [...children]
    .filter((c) => c.proc.signalCode === null && c.proc.exitCode !== null && c.proc.exitCode !== 0)
    .map((c) => path.basename(c.logFile));
  for (const c of children) await c.stop();
  if (mounted) execFileSync('umount', [mounted], { stdio: 'pipe' });
  mounted = undefined;
  await traffic.close();
  await dns?.stop();
  await proxy.close();
  zkc.close();
  await zk.stop();
  stopInterrupt();
  if (process.env.BENCH_KEEP) say(`kept ${tmp.dir}`);
  else tmp.cleanup();

  const measured = results.filter((r) => !r.note?.startsWith('skipped'));
  return {
    bench: 'faults',
    faults: results,
    failed_total: results.reduce((n, r) => n + r.failed, 0),
    partial_states_total: results.reduce((n, r) => n + r.partial_states, 0),
    all_converged: measured.every((r) => r.converged_ms >= 0),
    crashed_processes: crashed,
  };
}

export const benchmark = defineBenchmark({
  name: 'faults',
  summary:
    'faults injected into a real fleet (ZooKeeper down or slow, kill -9, restarts): requests lost, partial states, convergence',
  options,
  // The smoke run in npm test takes the faults no other test covers (the suite's time is bounded): ZooKeeper outages
  // and leader kills are in test/integration/discovery-zk-outage and test/e2e/gate, agent restarts in
  // test/e2e/hitless-restart, a control-plane restart with a watcher that cannot read in
  // test/e2e/cp-restart-unknown-hosts, two agents on one state_dir in test/e2e/state-dir-lock; the full run takes
  // every fault.
  smoke: {
    zkDownMs: 1000,
    clients: 1,
    // Paced: unpaced clients burn a core that the rest of npm test needs; a fault that loses requests still does.
    clientPauseMs: 5,
    only: 'steady,zk_session_expiry,haproxy_kill9,state_dir_unwritable,haproxy_crash_during_apply,failed_reload_then_crash',
  },
  fields: ['faults', 'failed_total', 'partial_states_total', 'all_converged', 'crashed_processes'],
  run,
  targets: (r, o) => {
    const faults = (r.faults ?? []) as { name: string; failed: number; haproxy_kills?: number }[];
    const killing = faults.filter((f) => (f.haproxy_kills ?? 0) > 0);
    const others = faults.filter((f) => (f.haproxy_kills ?? 0) === 0);
    return [
      { name: 'all_converged', held: r.all_converged === true, value: String(r.all_converged), smoke: true },
      {
        name: 'no request failed in any fault that kills no HAProxy',
        held: others.every((f) => f.failed === 0),
        value: others.map((f) => `${f.name}: ${f.failed}`).join(', '),
      },
      // A kill -9 of HAProxy loses the requests it holds at that instant; the clients send one at a time each.
      ...killing.map((f) => ({
        name: `${f.name}: at most the requests in flight fail (one per client per HAProxy killed)`,
        held: f.failed <= o.clients * f.haproxy_kills!,
        value: `${f.failed} failed, ${f.haproxy_kills} killed`,
      })),
      { name: 'partial_states_total = 0', held: r.partial_states_total === 0, value: r.partial_states_total },
      {
        name: 'no process crashed',
        held: Array.isArray(r.crashed_processes) && r.crashed_processes.length === 0,
        value: JSON.stringify(r.crashed_processes),
        smoke: true,
      },
    ];
  },
});
