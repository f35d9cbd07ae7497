/**
 * pushsize: what one host change costs as the state grows, with incremental pushes (stream protocol 2). One control
 * plane (the built CLI, its own process, real ZooKeeper) and N simulated agents (lib-sim-agents.ts: real gRPC
 * clients in worker processes that take every push into a HeldState and ACK it). Two states in one run, with the
 * same agents and the same control-plane process:
 *
 * - small (the baseline): 1 service × 20 hosts;
 * - large: 500 services × 20 hosts (the 499 other services are added to ZooKeeper after the small rounds).
 *
 * In each, `--changes` host changes (one host node's port rewritten, one ZooKeeper request each); per change: every
 * agent's time from just before the write to its ACK of the new version, the control plane's CPU from just before
 * the write until every agent has ACKed (+100 ms for the last ACKs and their log lines), and the bytes of pushes
 * all agents received during the change / the agents that got it. Then the control plane's RSS at the large state.
 *
 * `npm run bench -- pushsize [--agents=1000] [--changes=5] [--services=500] [--hosts=20] [--workers=2]
 *   [--log-level=info] [--gap-ms=N]`
 * → {"agents":1000,"small":{"servers":20,"p50_ms":…,"p99_ms":…,"cp_cpu_ms_per_change":…,"bytes_per_agent_per_change":…},
 *    "large":{"servers":10000,…},"cp_rss_mb_large":…,"targets":{…}}
 */
import { sleep, tempDir } from '../testkit/net';
import { connectZk, ZkTestClient } from '../testkit/zk-client';
import { startZooKeeper, ZooKeeper } from '../testkit/zookeeper';
import { describeTimings, ms, quantile, say } from './lib-common';
import { CliChild, monoMs, onInterruptStopChildren, procStats } from './lib-grpc';
import { connectProgress, SimFleet } from './lib-sim-agents';
import {
  createConfigs,
  createHosts,
  hostData,
  hostPath,
  refillGapMs,
  setData,
  startControlPlane,
  waitAllAcked,
} from './lib-zk-services';
import { defineBenchmark, Figures, int, intOrDefault, OptionsOf, text } from './harness';

interface Phase {
  readonly servers: number;
  readonly p50_ms: number;
  readonly p99_ms: number;
  readonly cp_cpu_ms_per_change: number;
  readonly bytes_per_agent_per_change: number;
  readonly max_ms: number;
  readonly all_acked_p50_ms: number;
  readonly missing: number;
}

const options = {
  agents: int(1000, 'simulated agents', 1),
  changes: int(5, 'host changes per size', 1),
  services: int(500, 'services of the large state', 2),
  hosts: int(20, 'hosts per service', 1),
  workers: int(2, 'worker processes of simulated agents', 1),
  logLevel: text('info', "the control plane's log level"),
  gapMs: intOrDefault('ms between changes (-1: as long as the push limiter takes to refill)'),
};

async function run(o: OptionsOf<typeof options>): Promise<Figures> {
  const agents = o.agents;
  const changes = o.changes;
  const largeServices = o.services;
  const hosts = o.hosts;
  const workers = o.workers;
  const logLevel = o.logLevel;
  const gapArg = o.gapMs;
  // As in fanout: by default the push limiter (pushes_per_second) refills between changes.
  const gapMs = gapArg >= 0 ? gapArg : refillGapMs(agents);
  say(
    `pushsize: ${agents} simulated agents in ${workers} worker processes; ${changes} host changes at 1 × ${hosts} and at ${largeServices} × ${hosts}; control-plane log level ${logLevel}`,
  );

  const tmp = tempDir('proxymgr-bench-pushsize-');
  let zk: ZooKeeper | undefined;
  const offInterrupt = onInterruptStopChildren(async () => {
    await zk?.stop();
    tmp.cleanup();
  });
  let zkc: ZkTestClient | undefined;
  let cp: CliChild | undefined;
  let fleet: SimFleet | undefined;
  try {
    zk = await startZooKeeper();
    zkc = await connectZk(zk.connectString, 10_000);
    // Every host node exists from the start; the control plane serves a service once its config node exists.
    const t0 = monoMs();
    await createHosts(zkc, 0, largeServices, hosts);
    await createConfigs(zkc, zk.connectString, 0, 1);
    say(
      `ZooKeeper: ${largeServices} × ${hosts} host nodes written in ${Math.round(monoMs() - t0)} ms; 1 service configured`,
    );
    const started = await startControlPlane(zk.connectString, tmp.dir, logLevel);
    cp = started.cp;
    const address = started.address;

    fleet = await SimFleet.start(workers);
    await fleet.grow(address, agents);
    const connectMs = await fleet.waitConnected(agents, 120_000, connectProgress(agents));
    if (connectMs === undefined)
      throw new Error(`not all ${agents} agents connected within 120 s: ${JSON.stringify(await fleet.status())}`);
    if ((await fleet.waitHeld(1, hosts, 60_000)) === undefined)
      throw new Error(`not every agent holds 1 × ${hosts} servers: ${JSON.stringify(await fleet.status())}`);
    if (!(await waitAllAcked(address, agents, 60_000)))
      throw new Error('the control plane does not see every agent on its desired version');
    say(
      `${agents} agents connected in ${Math.round(connectMs)} ms; control plane pid ${cp.pid}, RSS ${procStats(cp.pid).rssMb} MB`,
    );
    await sleep(1000);

    let seq = 0;
    const phase = async (label: string, services: number): Promise<Phase> => {
      const samples: number[] = [];
      const allAcked: number[] = [];
      let cpuMs = 0;
      let bytes = 0;
      let got = 0;
      let missing = 0;
      for (let i = 0; i < changes; i++) {
        const s = (i * 97 + (services > 1 ? 13 : 0)) % services;
        const h = (i * 7) % hosts;
        seq++;
        const id = await fleet!.mark();
        const cpu0 = procStats(cp!.pid).cpuMs;
        const w0 = monoMs();
        await setData(zkc!, hostPath(s, h), hostData(s, h, { port: 9000 + seq }));
        const r = await fleet!.finish(id, 30_000);
        await sleep(100);
        cpuMs += procStats(cp!.pid).cpuMs - cpu0;
        const lat = r.acksAt.map((a) => a - w0);
        samples.push(...lat);
        allAcked.push(lat.reduce((a, b) => Math.max(a, b), 0));
        bytes += r.bytes;
        got += r.acksAt.length;
        missing += r.missing;
        if (r.missing > 0) say(`  ${label} change ${i + 1}: ${r.missing} agents did not get it within 30 s`);
        await sleep(gapMs);
      }
      const result: Phase = {
        servers: services * hosts,
        p50_ms: ms(quantile(samples, 0.5)),
        p99_ms: ms(quantile(samples, 0.99)),
        cp_cpu_ms_per_change: Math.round(cpuMs / changes),
        bytes_per_agent_per_change: got > 0 ? Math.round(bytes / got) : 0,
        max_ms: ms(samples.reduce((a, b) => Math.max(a, b), 0)),
        all_acked_p50_ms: ms(quantile(allAcked, 0.5)),
        missing,
      };
      say(
        `${label} (${services} × ${hosts} = ${result.servers} servers): write → ACK ${describeTimings(samples)}; all ACKed after ${result.all_acked_p50_ms} ms (median); ` +
          `CP CPU ${result.cp_cpu_ms_per_change} ms per change; ${result.bytes_per_agent_per_change} bytes per agent per change; missing ${missing}`,
      );
      return result;
    };

    const small = await phase('small', 1);

    // Grow to the large state: the other services' config nodes; each agent gets them as deltas.
    const g0 = monoMs();
    const before = await fleet.status();
    await createConfigs(zkc, zk.connectString, 1, largeServices);
    const heldMs = await fleet.waitHeld(largeServices, largeServices * hosts, 900_000, (s) =>
      say(`  growing: fewest servers held ${s.heldServersMin}/${largeServices * hosts}, resyncs ${s.resyncs}`),
    );
    if (heldMs === undefined)
      throw new Error(
        `not every agent holds ${largeServices} × ${hosts} servers within 900 s: ${JSON.stringify(await fleet.status())}`,
      );
    if (!(await waitAllAcked(address, agents, 120_000, 1000)))
      throw new Error('the control plane does not see every agent on its desired version');
    const grown = await fleet.status();
    const growMs = monoMs() - g0;
    say(
      `grown to ${largeServices} × ${hosts}: every agent holds it after ${Math.round(growMs)} ms; ${Math.round((grown.bytes - before.bytes) / agents)} bytes per agent, ` +
        `${((grown.pushes - before.pushes) / agents).toFixed(1)} pushes per agent; control plane RSS ${procStats(cp.pid).rssMb} MB`,
    );
    await sleep(1000 + agents / 5);

    const large = await phase('large', largeServices);
    const stats = procStats(cp.pid);
    const end = await fleet.status();
    say(
      `control plane after the large rounds: RSS ${stats.rssMb} MB (peak ${stats.peakRssMb}); agents: drops ${end.drops}, resyncs ${end.resyncs}, errors ${end.errors}${end.lastError ? ` (last: ${end.lastError})` : ''}`,
    );

    const targets = {
      p99_ms: large.p99_ms <= 1.5 * small.p99_ms + 20,
      cp_cpu_ms_per_change: large.cp_cpu_ms_per_change <= 1.5 * small.cp_cpu_ms_per_change + 10,
      bytes_per_agent_per_change: large.bytes_per_agent_per_change <= 2048,
      cp_rss_mb_large: stats.rssMb <= 300,
    };
    say(
      `targets: large p99 ${large.p99_ms} ≤ 1.5 × ${small.p99_ms} + 20 ms: ${targets.p99_ms}; large CPU ${large.cp_cpu_ms_per_change} ≤ 1.5 × ${small.cp_cpu_ms_per_change} + 10 ms: ${targets.cp_cpu_ms_per_change}; ` +
        `large ${large.bytes_per_agent_per_change} ≤ 2048 bytes: ${targets.bytes_per_agent_per_change}; RSS ${stats.rssMb} ≤ 300 MB: ${targets.cp_rss_mb_large}`,
    );
    return {
      agents,
      small,
      large,
      cp_rss_mb_large: stats.rssMb,
      targets,
      grow_ms: Math.round(growMs),
      cp_rss_peak_mb: stats.peakRssMb,
      drops: end.drops,
      resyncs: end.resyncs,
    };
  } finally {
    await fleet?.close();
    await cp?.stop();
    zkc?.close();
    await zk?.stop();
    tmp.cleanup();
    offInterrupt();
  }
}

/** The targets this benchmark computes into its own `targets` field, said in full for the harness's verdict. */
const TARGET_NAMES: Record<string, string> = {
  p99_ms: 'large p99_ms ≤ 1.5 × small p99_ms + 20 ms',
  cp_cpu_ms_per_change: 'large cp_cpu_ms_per_change ≤ 1.5 × small + 10 ms',
  bytes_per_agent_per_change: 'large bytes_per_agent_per_change ≤ 2048',
  cp_rss_mb_large: 'cp_rss_mb_large ≤ 300 MB',
};

export const benchmark = defineBenchmark({
  name: 'pushsize',
  summary: 'bytes and time of one host change at 20 servers and at 10,000 servers, to N simulated agents',
  options,
  smoke: { agents: 20, changes: 2, services: 20 },
  fields: ['agents', 'small', 'large', 'cp_rss_mb_large', 'drops', 'resyncs'],
  run,
  targets: (r) => {
    if (typeof r.targets !== 'object' || r.targets === null) throw new Error('the result has no targets field');
    const phase = (name: 'small' | 'large') => (r[name] ?? {}) as { missing?: number };
    return [
      ...Object.entries(r.targets as Record<string, boolean>).map(([name, held]) => ({
        name: TARGET_NAMES[name] ?? name,
        held,
        value: held ? 'met' : 'missed',
      })),
      {
        name: 'every agent got every change (missing = 0, small and large)',
        held: phase('small').missing === 0 && phase('large').missing === 0,
        value: `${phase('small').missing} / ${phase('large').missing}`,
        smoke: true,
      },
      { name: 'no stream dropped', held: r.drops === 0, value: r.drops, smoke: true },
    ];
  },
});
