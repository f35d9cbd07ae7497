/**
 * rollout: one control plane (the built CLI, real ZooKeeper, `rollout:` on with the default waves 1, 10 %, 50 %,
 * 100 % and bake_ms 0) and N simulated agents (real gRPC clients in worker processes, lib-sim-agents.ts; they ACK
 * every push at once). One service-config change (listen_options) → a rollout; timed from the ZooKeeper write
 * to the rollout's `completed` state in ZooKeeper (polled every 5 ms), with the control plane's CPU over it.
 *
 * Baseline, same run, same fleet and control plane: a host change, which reaches every agent at once — the
 * floor a rollout pays once per wave (plus the ZooKeeper writes of agent status and rollout state between waves).
 *
 * `npm run bench -- rollout [--agents=1000] [--workers=2]`
 * → {"agents":1000,"waves":4,"total_ms":…,"cp_cpu_s":…,"wave_ms":[…],"baseline_all_at_once_ms":…}
 */
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { decodeNode } from '../controlplane/ha/node-codec';
import { FleetDoc } from '../controlplane/rollout/engine';
import { freePort, sleep, tempDir } from '../testkit/net';
import { connectZk, ZkTestClient } from '../testkit/zk-client';
import { startZooKeeper, ZooKeeper } from '../testkit/zookeeper';
import { ms, say } from './lib-common';
import {
  CliChild,
  controlPlaneYaml,
  monoMs,
  onInterruptStopChildren,
  procStats,
  startCli,
  waitForDesiredState,
} from './lib-grpc';
import { SimFleet } from './lib-sim-agents';
import { defineBenchmark, Figures, int, OptionsOf } from './harness';

const SERVICE_PATH = '/services/web';

function readDoc(zkc: ZkTestClient): Promise<FleetDoc> {
  return new Promise((resolve, reject) =>
    zkc.client.getData('/proxymgr/rollout', (err, data) => (err ? reject(err) : resolve(decodeNode(data) as FleetDoc))),
  );
}

async function waitDoc(zkc: ZkTestClient, pred: (d: FleetDoc) => boolean, timeoutMs: number): Promise<FleetDoc> {
  const deadline = monoMs() + timeoutMs;
  for (;;) {
    const d = await readDoc(zkc).catch(() => undefined);
    if (d && pred(d)) return d;
    if (monoMs() > deadline)
      throw new Error(
        `rollout state not reached within ${timeoutMs} ms: ${JSON.stringify(d?.current ? { state: d.current.state, waves: d.current.waves.length, reason: d.current.reason } : d)}`,
      );
    await sleep(5);
  }
}

const options = {
  agents: int(1000, 'simulated agents', 1),
  workers: int(2, 'worker processes of simulated agents', 1),
};

async function run(o: OptionsOf<typeof options>): Promise<Figures> {
  const agents = o.agents;
  const workers = o.workers;
  say(`rollout: ${agents} simulated agents in ${workers} worker processes; default waves, bake_ms 0`);
  const tmp = tempDir('proxymgr-bench-rollout-');
  let zk: ZooKeeper | undefined;
  let zkc: ZkTestClient | undefined;
  let cp: CliChild | undefined;
  let fleet: SimFleet | undefined;
  const offInterrupt = onInterruptStopChildren(async () => {
    await zk?.stop();
    tmp.cleanup();
  });
  try {
    zk = await startZooKeeper();
    zkc = await connectZk(zk.connectString);
    const config = (rev: number) =>
      JSON.stringify({
        type: 'zookeeper',
        path: SERVICE_PATH,
        port: 18080,
        listen_options: ['mode http', `http-response set-header X-Rev ${rev}`],
      });
    await zkc.put('/service_config/web', config(1));
    for (let i = 0; i < 20; i++)
      await zkc.put(`${SERVICE_PATH}/h${i}`, JSON.stringify({ address: `10.0.0.${i + 1}`, port: 8080 }));
    const cpPort = await freePort();
    const cpAddress = `127.0.0.1:${cpPort}`;
    const cfg = path.join(tmp.dir, 'controlplane.yml');
    writeFileSync(cfg, controlPlaneYaml(zk.connectString, cpPort, 'rollout: {bake_ms: 0, replica_id: bench}\n'));
    cp = startCli(['controlplane', '--config', cfg], path.join(tmp.dir, 'controlplane.log'));
    await waitForDesiredState(cp, cpAddress);
    const first = await waitDoc(zkc, (d) => d.stable !== '', 20_000);

    fleet = await SimFleet.start(workers);
    await fleet.grow(cpAddress, agents);
    if ((await fleet.waitConnected(agents, 90_000)) === undefined)
      throw new Error(`not all ${agents} agents connected`);
    await sleep(1000 + agents / 5);

    // Baseline: a host change reaches every agent at once.
    const round = await fleet.mark();
    const b0 = monoMs();
    await zkc.put(`${SERVICE_PATH}/extra`, JSON.stringify({ address: '10.0.1.1', port: 8080 }));
    const base = await fleet.finish(round, 20_000);
    const baselineMs = base.acksAt.reduce((a, b) => Math.max(a, b), 0) - b0;
    say(
      `baseline: a host change reached all ${agents} agents (ACKed) in ${ms(baselineMs)} ms (missing ${base.missing})`,
    );
    await sleep(500);

    const cpu0 = procStats(cp.pid).cpuMs;
    const t0 = monoMs();
    const wall0 = Date.now();
    await zkc.put('/service_config/web', config(2));
    const done = await waitDoc(zkc, (d) => d.stable !== first.stable && d.current?.state === 'completed', 120_000);
    const totalMs = monoMs() - t0;
    const cpuS = (procStats(cp.pid).cpuMs - cpu0) / 1000;
    const r = done.current!;
    const waveMs = r.waves.map((w) => (w.ackedAt ?? w.startedAt) - w.startedAt);
    say(
      `rollout ${r.id}: ${r.waves.length} waves (${r.waves.map((w) => `${w.spec}: ${w.agents.length}`).join(', ')}); ${ms(totalMs)} ms from the write to completed (first wave ${r.waves[0]!.startedAt - wall0} ms after the write); per wave release → all ACKed: ${waveMs.join(', ')} ms; CP CPU ${cpuS.toFixed(2)} s`,
    );
    return {
      agents,
      waves: r.waves.length,
      total_ms: ms(totalMs),
      cp_cpu_s: Number(cpuS.toFixed(3)),
      wave_sizes: r.waves.map((w) => w.agents.length),
      wave_ms: waveMs,
      baseline_all_at_once_ms: ms(baselineMs),
      baseline_missing: base.missing,
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

export const benchmark = defineBenchmark({
  name: 'rollout',
  summary: 'a config revision released in waves to N simulated agents, against a host change to all at once',
  options,
  smoke: { agents: 20 },
  fields: ['agents', 'waves', 'total_ms', 'cp_cpu_s', 'baseline_all_at_once_ms', 'baseline_missing'],
  run,
  targets: (r) => [
    // The default waves: 1, 10 %, 50 %, 100 %, each released only after the one before was ACKed.
    { name: 'waves = 4 (the default 1, 10%, 50%, 100%)', held: r.waves === 4, value: r.waves, smoke: true },
    {
      name: 'the baseline host change reached every agent',
      held: r.baseline_missing === 0,
      value: r.baseline_missing,
      smoke: true,
    },
  ],
});
