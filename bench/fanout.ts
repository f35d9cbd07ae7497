/**
 * fanout: one control plane (the built CLI, its own process, real ZooKeeper) and N simulated agents (real gRPC
 * clients, one TCP connection each, in worker processes; see lib-sim-agents.ts). One host change in ZooKeeper →
 * per agent, the time from the ZooKeeper write to the agent's ACK of the new version (the simulated agent ACKs
 * as soon as it has taken the push into its HeldState: "push received and merged"). Several changes
 * per N; the samples of all of them are pooled. N steps up (100, 1000, 2000, 5000, 10000): the largest N whose agents
 * all connected, stayed connected and got every change is `max_connected`.
 *
 * The control plane serves `--services` services of `--hosts` hosts each (lib-zk-services.ts); every change is
 * one host of service `web`. The simulated agents speak stream protocol 2 (incremental pushes) and take every push
 * into a HeldState, so `bytes_per_agent_per_change` (bytes of pushes received by all agents during a change's
 * round / agents that got the change) is what one host change costs on the wire per agent.
 *
 * Baseline, same run, same clients and ZooKeeper: a bare grpc-js server that writes one push (the whole state of
 * service `web`, protocol 0) to every stream on each ZooKeeper watch event (lib-fanout-baseline.ts).
 *
 * `npm run bench -- fanout [--agents=100,1000,2000,5000,10000] [--changes=5] [--workers=2] [--services=1]
 *   [--hosts=20] [--baseline-agents=1000] [--log-level=info] [--gap-ms=N]`
 * → {"runs":[{"agents":N,"p50_ms":…,"p99_ms":…,"cp_rss_mb":…,"bytes_per_agent_per_change":…,…},…],
 *    "max_connected":N,"baseline":{…}}
 */
import { sleep, tempDir } from '../testkit/net';
import { connectZk, ZkTestClient } from '../testkit/zk-client';
import { startZooKeeper, ZooKeeper } from '../testkit/zookeeper';
import { startBaselineServer } from './lib-fanout-baseline';
import { describeTimings, ms, quantile, say } from './lib-common';
import { CliChild, onInterruptStopChildren, listAgents, monoMs, procStats } from './lib-grpc';
import { connectProgress, SimFleet } from './lib-sim-agents';
import { createConfigs, createHosts, refillGapMs, servicePath, startControlPlane } from './lib-zk-services';
import { defineBenchmark, Figures, num, int, intOrDefault, ints, OptionsOf, text } from './harness';

const DEFAULTS = ['mode http', 'timeout connect 2s', 'timeout client 10s', 'timeout server 10s'];
const SERVICE_PATH = servicePath(0);

interface Measured {
  readonly samples: number[];
  /** Per change: when the last agent ACKed (ms after the write). */
  readonly allAcked: number[];
  readonly missing: number;
  /** Bytes of pushes received by all agents during the changes' rounds / agents that got the changes. */
  readonly bytesPerAgentPerChange: number;
}

/** `changes` host changes (a host node added, removed, added, …), each timed from the write to every agent's ACK. */
async function measure(fleet: SimFleet, zkc: ZkTestClient, changes: number, gapMs: number): Promise<Measured> {
  const samples: number[] = [];
  const allAcked: number[] = [];
  let missing = 0;
  let bytes = 0;
  let got = 0;
  const node = `${SERVICE_PATH}/extra`;
  for (let i = 0; i < changes; i++) {
    const present = await new Promise<boolean>((resolve, reject) =>
      zkc.client.exists(node, (err, stat) => (err ? reject(err) : resolve(!!stat))),
    );
    const id = await fleet.mark();
    const t0 = monoMs();
    // The raw client (not put()): one ZooKeeper request, started at t0.
    await new Promise<void>((resolve, reject) => {
      const cb = (err: Error | null) => (err ? reject(err) : resolve());
      if (!present) zkc.client.create(node, Buffer.from(JSON.stringify({ address: '10.0.1.1', port: 8080 })), cb);
      else zkc.client.remove(node, -1, cb);
    });
    const r = await fleet.finish(id, 20_000);
    const lat = r.acksAt.map((a) => a - t0);
    samples.push(...lat);
    allAcked.push(lat.reduce((a, b) => Math.max(a, b), 0));
    missing += r.missing;
    bytes += r.bytes;
    got += r.acksAt.length;
    if (r.missing > 0) say(`  change ${i + 1}: ${r.missing} agents did not get it within 20 s`);
    await sleep(gapMs);
  }
  return { samples, allAcked, missing, bytesPerAgentPerChange: got > 0 ? Math.round(bytes / got) : 0 };
}

const options = {
  agents: ints([100, 1000, 2000, 5000, 10000], 'fleet sizes, in turn', 1),
  changes: int(5, 'host changes per fleet size', 1),
  workers: int(2, 'worker processes of simulated agents', 1),
  services: int(1, 'services', 1),
  hosts: int(20, 'hosts per service', 1),
  baselineAgents: int(1000, 'agents of the plain gRPC baseline (0: none)'),
  logLevel: text('info', "the control plane's log level"),
  gapMs: intOrDefault('ms between changes (-1: as long as the push limiter takes to refill)'),
};

async function run(o: OptionsOf<typeof options>): Promise<Figures> {
  const steps = o.agents;
  const changes = o.changes;
  const workers = o.workers;
  const services = o.services;
  const hosts = o.hosts;
  const baselineAgents = o.baselineAgents;
  const logLevel = o.logLevel;
  // By default the push limit (pushes_per_second 2000, burst 10,000) refills between changes (N / 2000 s), so each
  // change measures a fan-out, not the limiter; --gap-ms=0 measures changes back to back.
  const gapArg = o.gapMs;
  const gapMs = gapArg >= 0 ? gapArg : undefined;
  say(
    `fanout: N = ${steps.join(', ')} simulated agents in ${workers} worker processes; ${changes} host changes per N; ${services} service(s) with ${hosts} hosts each; control-plane log level ${logLevel}`,
  );

  const tmp = tempDir('proxymgr-bench-fanout-');
  let zk: ZooKeeper | undefined;
  const offInterrupt = onInterruptStopChildren(async () => {
    await zk?.stop();
    tmp.cleanup();
  });
  let zkc: ZkTestClient | undefined;
  let cp: CliChild | undefined;
  let fleet: SimFleet | undefined;
  let baseline: Awaited<ReturnType<typeof startBaselineServer>> | undefined;
  try {
    zk = await startZooKeeper();
    zkc = await connectZk(zk.connectString);
    const webPort = 18080;
    await createHosts(zkc, 0, services, hosts);
    await createConfigs(zkc, zk.connectString, 0, services);

    const started = await startControlPlane(zk.connectString, tmp.dir, logLevel);
    cp = started.cp;
    const cpAddress = started.address;
    say(`control plane pid ${cp.pid} on ${cpAddress}, RSS ${procStats(cp.pid).rssMb} MB before any agent`);

    fleet = await SimFleet.start(workers);
    const runs: object[] = [];
    let maxConnected = 0;
    for (const n of steps) {
      const before = await fleet.status();
      await fleet.grow(cpAddress, n);
      const connectMs = await fleet.waitConnected(n, 90_000, connectProgress(n));
      const afterConnect = await fleet.status();
      if (connectMs === undefined) {
        say(
          `N=${n}: only ${afterConnect.connected} agents connected within 90 s (last error: ${afterConnect.lastError}); stopping here`,
        );
        runs.push({ agents: n, connected: afterConnect.connected, failed: 'not all agents connected within 90 s' });
        break;
      }
      // Every agent holds the whole state (the control plane may still have been reading ZooKeeper at the start).
      if ((await fleet.waitHeld(services, services * hosts, 300_000)) === undefined) {
        const s = await fleet.status();
        say(
          `N=${n}: not every agent holds ${services} × ${hosts} servers within 300 s (fewest ${s.heldServersMin}, most ${s.heldServersMax}); stopping here`,
        );
        runs.push({ agents: n, connected: s.connected, failed: 'not every agent got the whole state within 300 s' });
        break;
      }
      // Let the initial pushes' ACKs and logs drain and the push bucket refill, then check nobody dropped out meanwhile.
      await sleep(700 + refillGapMs(n));
      const cpu0 = procStats(cp.pid).cpuMs;
      const m = await measure(fleet, zkc, changes, gapMs ?? refillGapMs(n));
      const cpuPerChange = (procStats(cp.pid).cpuMs - cpu0) / changes;
      const after = await fleet.status();
      const view = await listAgents(cpAddress);
      const cpConnected = view.agents.filter((a) => a.connected).length;
      const cpAcked = view.agents.filter((a) => a.connected && a.lastAckedVersion === view.desiredVersion).length;
      const stats = procStats(cp.pid);
      const drops = after.drops - before.drops;
      const run = {
        agents: n,
        p50_ms: ms(quantile(m.samples, 0.5)),
        p99_ms: ms(quantile(m.samples, 0.99)),
        max_ms: ms(m.samples.reduce((a, b) => Math.max(a, b), 0)),
        all_acked_p50_ms: ms(quantile(m.allAcked, 0.5)),
        cp_rss_mb: stats.rssMb,
        cp_rss_peak_mb: stats.peakRssMb,
        cp_cpu_ms_per_change: Math.round(cpuPerChange),
        connect_ms: Math.round(connectMs),
        refused_while_connecting: afterConnect.refused - before.refused,
        drops,
        missing: m.missing,
        cp_connected: cpConnected,
        cp_acked: cpAcked,
        bytes_per_agent_per_change: m.bytesPerAgentPerChange,
        resyncs: after.resyncs - before.resyncs,
      };
      runs.push(run);
      say(
        `N=${n}: write → ACK ${describeTimings(m.samples)}; all ${n} ACKed after ${ms(quantile(m.allAcked, 0.5))} ms (median of ${changes} changes); ` +
          `CP RSS ${stats.rssMb} MB (peak ${stats.peakRssMb}), CPU ${run.cp_cpu_ms_per_change} ms per change, ${m.bytesPerAgentPerChange} bytes per agent per change; connected in ${run.connect_ms} ms ` +
          `(${run.refused_while_connecting} refused by the new-stream limit and retried); drops ${drops}, missing ${m.missing}; the CP sees ${cpConnected} connected, ${cpAcked} on the new version`,
      );
      if (drops === 0 && m.missing === 0 && cpAcked === n) maxConnected = n;
      else break;
    }

    let baselineResult: object | undefined;
    if (baselineAgents > 0) {
      // The control plane goes first so it does not compete for the CPU (it would still follow ZooKeeper).
      await fleet.disconnectAll();
      await cp.stop();
      baseline = await startBaselineServer({
        zk: zk.connectString,
        path: SERVICE_PATH,
        service: 'web',
        port: webPort,
        defaults: DEFAULTS,
      });
      await fleet.grow(`127.0.0.1:${baseline.port}`, baselineAgents);
      const connectMs = await fleet.waitConnected(baselineAgents, 90_000);
      if (connectMs === undefined) throw new Error(`baseline: not all ${baselineAgents} agents connected`);
      await sleep(1000 + baselineAgents / 5);
      const cpu0 = procStats(baseline.pid).cpuMs;
      const m = await measure(fleet, zkc, changes, gapMs ?? refillGapMs(baselineAgents));
      const stats = procStats(baseline.pid);
      const cpuPerChange = Math.round((stats.cpuMs - cpu0) / changes);
      baselineResult = {
        agents: baselineAgents,
        p50_ms: ms(quantile(m.samples, 0.5)),
        p99_ms: ms(quantile(m.samples, 0.99)),
        max_ms: ms(m.samples.reduce((a, b) => Math.max(a, b), 0)),
        all_acked_p50_ms: ms(quantile(m.allAcked, 0.5)),
        rss_mb: stats.rssMb,
        cpu_ms_per_change: cpuPerChange,
        missing: m.missing,
        bytes_per_agent_per_change: m.bytesPerAgentPerChange,
      };
      say(
        `baseline (bare grpc-js fan-out on each ZooKeeper watch event), N=${baselineAgents}: write → ACK ${describeTimings(m.samples)}; ` +
          `all ACKed after ${ms(quantile(m.allAcked, 0.5))} ms; RSS ${stats.rssMb} MB, CPU ${cpuPerChange} ms per change, ${m.bytesPerAgentPerChange} bytes per agent per change (whole state of service web)`,
      );
    }
    return { runs, max_connected: maxConnected, ...(baselineResult ? { baseline: baselineResult } : {}) };
  } finally {
    await fleet?.close();
    await baseline?.stop();
    await cp?.stop();
    zkc?.close();
    await zk?.stop();
    tmp.cleanup();
    offInterrupt();
  }
}

export const benchmark = defineBenchmark({
  name: 'fanout',
  summary: 'one host change to N simulated agents, timed to every ACK, against a plain gRPC fan-out',
  options,
  smoke: { agents: [20], changes: 2, baselineAgents: 20 },
  fields: ['runs', 'max_connected'],
  run,
  targets: (r, o) => {
    type Run = {
      agents: number;
      p99_ms?: number;
      cp_rss_mb?: number;
      drops?: number;
      missing?: number;
      failed?: string;
    };
    const runs = (r.runs ?? []) as Run[];
    const at1000 = runs.find((x) => x.agents === 1000);
    return [
      {
        name: 'every fleet size connected, stayed connected and got every change (max_connected = the largest --agents)',
        held: r.max_connected === Math.max(...o.agents),
        value: r.max_connected,
        smoke: true,
      },
      {
        name: 'no drops and no missing changes in any run',
        held: runs.every((x) => !x.failed && x.drops === 0 && x.missing === 0),
        smoke: true,
        value: runs.map((x) => `${x.agents}: ${x.failed ?? `drops ${x.drops}, missing ${x.missing}`}`).join('; '),
      },
      ...(at1000
        ? [
            { name: 'cp_rss_mb ≤ 300 at 1,000 agents', held: num(at1000.cp_rss_mb) <= 300, value: at1000.cp_rss_mb },
            {
              name: 'p99_ms ≤ 1000 at 1,000 agents',
              held: num(at1000.p99_ms) <= 1000,
              value: at1000.p99_ms,
              notJudged:
                'the simulated fleet and the control plane share 2 cores; judged on connections, drops and RSS',
            },
          ]
        : []),
    ];
  },
});
