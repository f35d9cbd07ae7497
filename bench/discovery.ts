/**
 * `npm run bench -- discovery [--changes=200] [--services=2000] [--hosts=20]`: host changes written to a real ZooKeeper → time until
 * Discovery publishes the snapshot that contains them, against the raw ZooKeeper watch latency (write → watch
 * callback, one sample interleaved before each change) measured in the same run as the floor; then the process RSS with 2,000 services × 20 hosts loaded.
 */
import { Event } from 'node-zookeeper-client';
import { DEFAULT_CONTROLPLANE_CONFIG } from '../common/config/config';
import { DesiredState } from '../common/protocol/types';
import { Discovery } from '../controlplane/discovery';
import { discoveryFromConfig } from '../controlplane/wiring';
import { connectZk, ZkTestClient } from '../testkit/zk-client';
import { startZooKeeper } from '../testkit/zookeeper';

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { defineBenchmark, Figures, int, num, OptionsOf } from './harness';
import { ms as roundMs } from './lib-common';

const log = (msg: string) => process.stderr.write(msg + '\n');

/** A real gc() even without --expose-gc, so RSS is measured after garbage (e.g. from populating ZooKeeper) is gone. */
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function pct(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return Number((s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? NaN).toFixed(2));
}

const ms = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;

function discovery(connectString: string): Discovery {
  return discoveryFromConfig({
    config: {
      haproxy: { configPath: '', socketPath: '', binary: 'haproxy', global: [], defaults: [], user: '', group: '' },
      serviceConfig: { type: 'zookeeper', servers: connectString, path: '/service_config' },
      controlplane: DEFAULT_CONTROLPLANE_CONFIG,
    },
  });
}

/** Creates `services` × `hosts` nodes, pipelined (node-zookeeper-client keeps many requests in flight). */
async function populate(w: ZkTestClient, services: number, hosts: number, prefix: string): Promise<void> {
  const create = (p: string, data: string) =>
    new Promise<void>((resolve, reject) =>
      w.client.create(p, Buffer.from(data), (err) => (err ? reject(err) : resolve())),
    );
  await w.put('/service_config', '');
  await w.put('/services', '');
  const batch: Promise<void>[] = [];
  for (let s = 0; s < services; s++) {
    const name = `${prefix}${s}`;
    batch.push(create(`/services/${name}`, ''));
  }
  await Promise.all(batch.splice(0));
  for (let s = 0; s < services; s++) {
    const name = `${prefix}${s}`;
    for (let h = 0; h < hosts; h++)
      batch.push(
        create(`/services/${name}/h${h}`, JSON.stringify({ address: `10.${s >> 8}.${s & 255}.${h + 1}`, port: 8000 })),
      );
    if (batch.length > 5000) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch.splice(0));
  for (let s = 0; s < services; s++) {
    const name = `${prefix}${s}`;
    batch.push(
      create(
        `/service_config/${name}`,
        JSON.stringify({ type: 'zookeeper', path: `/services/${name}`, port: 10000 + s, listen_options: ['mode tcp'] }),
      ),
    );
  }
  await Promise.all(batch);
}

/**
 * Writes `n` host changes one after another; each is timed until a snapshot carries it. With `floor`, one floor
 * sample is taken before each change, so both see the same machine (GC, JIT, ZooKeeper's own pauses).
 */
async function measureChanges(
  d: Discovery,
  w: ZkTestClient,
  n: number,
  services: number,
  hosts: number,
  prefix: string,
  floor?: { sample(): Promise<number>; samples: number[] },
): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < n; i++) {
    if (floor) floor.samples.push(await floor.sample());
    const s = i % services;
    const h = (i * 7) % hosts;
    const name = `${prefix}${s}`;
    const port = 20000 + i;
    const seen = new Promise<void>((resolve) => {
      const off = d.onSnapshot((state: DesiredState) => {
        const svc = state.services.find((x) => x.name === name);
        if (svc?.servers.some((x) => x.name === `h${h}` && x.port === port)) {
          off();
          resolve();
        }
      });
    });
    const start = process.hrtime.bigint();
    await w.put(`/services/${name}/h${h}`, JSON.stringify({ address: `10.${s >> 8}.${s & 255}.${h + 1}`, port }));
    await seen;
    latencies.push(ms(start));
    await new Promise((r) => setTimeout(r, 2));
  }
  return latencies;
}

/** The floor: setData → data-watch callback on a plain client, nothing else. One sample per call. */
async function floorSampler(connectString: string): Promise<{ sample(): Promise<number>; close(): void }> {
  const w = await connectZk(connectString);
  const watcherClient = await connectZk(connectString);
  await w.put('/floor', 'x');
  let i = 0;
  return {
    async sample() {
      let fired!: Promise<void>;
      // The getData reply means the watch is set on the server; only then write (else the write may come first).
      await new Promise<void>((armed, reject) => {
        fired = new Promise<void>((resolve) =>
          watcherClient.client.getData(
            '/floor',
            (e: Event) => {
              if (e.getType() === Event.NODE_DATA_CHANGED) resolve();
            },
            (err) => (err ? reject(err) : armed()),
          ),
        );
      });
      const start = process.hrtime.bigint();
      await new Promise<void>((resolve, reject) =>
        w.client.setData('/floor', Buffer.from(String(i++)), (err) => (err ? reject(err) : resolve())),
      );
      await fired;
      return ms(start);
    },
    close() {
      w.close();
      watcherClient.close();
    },
  };
}

const options = {
  changes: int(200, 'host changes timed at 50 services × 20 hosts, and again at the large size', 1),
  services: int(2000, 'services of the large state', 1),
  hosts: int(20, 'hosts per service of the large state', 1),
};

async function run(o: OptionsOf<typeof options>): Promise<Figures> {
  const { changes, services: bigServices, hosts: bigHosts } = o;
  const zk = await startZooKeeper();
  try {
    const w = await connectZk(zk.connectString, 10_000);
    // Latency, at a realistic small-fleet size: 50 services × 20 hosts.
    await populate(w, 50, 20, 'svc');
    let d = discovery(zk.connectString);
    d.start();
    await d.waitFor((s) => s.services.length === 50 && s.services.every((x) => x.servers.length === 20), 60_000);
    log(`discovery: 50 services × 20 hosts synced; timing ${changes} host changes`);
    const sampler = await floorSampler(zk.connectString);
    const floor: number[] = [];
    const lat = await measureChanges(d, w, changes, 50, 20, 'svc', { sample: () => sampler.sample(), samples: floor });
    sampler.close();
    log(`floor (setData → watch callback): p50 ${pct(floor, 50)} ms, p99 ${pct(floor, 99)} ms`);
    log(
      `change → snapshot: p50 ${pct(lat, 50)} ms, p99 ${pct(lat, 99)} ms (coalesce ${DEFAULT_CONTROLPLANE_CONFIG.coalesceMs} ms included)`,
    );
    await d.stop();
    await w.removeTree('/service_config');
    await w.removeTree('/services');
    await w.removeTree('/proxymgr'); // the next replica must not restore these services from their records

    // Memory at scale.
    gc();
    const rssBefore = process.memoryUsage().rss;
    const t0 = Date.now();
    await populate(w, bigServices, bigHosts, 's');
    log(`populated ${bigServices} × ${bigHosts} nodes in ${Date.now() - t0} ms`);
    const t1 = Date.now();
    d = discovery(zk.connectString);
    d.start();
    await d.waitFor(
      (s) => s.services.length === bigServices && s.services.every((x) => x.servers.length === bigHosts),
      120_000,
    );
    const syncMs = Date.now() - t1;
    gc();
    const rss = process.memoryUsage().rss;
    const heap = process.memoryUsage().heapUsed;
    log(
      `${bigServices} × ${bigHosts}: full sync ${syncMs} ms, RSS ${(rss / 2 ** 20).toFixed(1)} MB (before discovery ${(rssBefore / 2 ** 20).toFixed(1)} MB), heap ${(heap / 2 ** 20).toFixed(1)} MB`,
    );
    const bigLat = await measureChanges(d, w, 50, bigServices, bigHosts, 's');
    log(`change → snapshot at ${bigServices} × ${bigHosts}: p50 ${pct(bigLat, 50)} ms, p99 ${pct(bigLat, 99)} ms`);
    await d.stop();
    w.close();
    return {
      changes,
      p50_ms: pct(lat, 50),
      p99_ms: pct(lat, 99),
      floor_p50_ms: pct(floor, 50),
      floor_p99_ms: pct(floor, 99),
      rss_mb_2000x20: Number((rss / 2 ** 20).toFixed(1)),
      rss_mb_before_discovery: Number((rssBefore / 2 ** 20).toFixed(1)),
      full_sync_ms_2000x20: syncMs,
      p50_ms_2000x20: pct(bigLat, 50),
      p99_ms_2000x20: pct(bigLat, 99),
    };
  } finally {
    await zk.stop();
  }
}

export const benchmark = defineBenchmark({
  name: 'discovery',
  summary:
    'a host change in ZooKeeper → a new desired-state snapshot, against the raw watch latency; memory at 2,000 × 20',
  options,
  smoke: { changes: 10, services: 100, hosts: 5 },
  fields: ['changes', 'p50_ms', 'p99_ms', 'floor_p50_ms', 'floor_p99_ms', 'rss_mb_2000x20', 'full_sync_ms_2000x20'],
  run,
  targets: (r) => [
    {
      name: 'p99_ms ≤ floor_p99_ms + 10 ms',
      held: num(r.p99_ms) <= num(r.floor_p99_ms) + 10,
      value: roundMs(num(r.p99_ms) - num(r.floor_p99_ms)),
    },
  ],
});
