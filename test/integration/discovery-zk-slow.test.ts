import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { DesiredState } from '../../common/protocol/types';
import { Discovery } from '../../controlplane/discovery';
import { endpoints, testDiscovery } from '../../testkit/discovery';
import { tempDir } from '../../testkit/net';
import { SlowProxy, startSlowProxy } from '../../testkit/slow-proxy';
import { connectZk, ZkTestClient } from '../../testkit/zk-client';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';

// Issue 9a: with a ZooKeeper whose replies take longer than the children watch's quiet period (100 ms), the still
// empty child list was reported as the first full one: discovery published a state without services (every agent
// drops every listener), and host watchers a state without servers.

let zk: ZooKeeper;
let w: ZkTestClient;
let proxy: SlowProxy | undefined;
let d: Discovery | undefined;

const SERVICES = ['alpha', 'beta', 'gamma', 'delta'];
const expected: Record<string, string[]> = {};

beforeAll(async () => {
  zk = await startZooKeeper();
  w = await connectZk(zk.connectString);
  for (const [i, name] of SERVICES.entries()) {
    // No "server": the watchers use the source's ensemble, i.e. they go through the slow proxy too.
    await w.put(
      `/service_config/${name}`,
      JSON.stringify({ type: 'zookeeper', path: `/services/${name}`, port: 9000 + i }),
    );
    expected[name] = [];
    for (const h of [1, 2, 3]) {
      await w.put(`/services/${name}/h${h}`, JSON.stringify({ address: `10.0.${i}.${h}`, port: 80 }));
      expected[name].push(`10.0.${i}.${h}:80`);
    }
  }
});
afterAll(async () => {
  w?.close();
  await zk?.stop();
});
afterEach(async () => {
  await d?.stop();
  d = undefined;
  await proxy?.close();
  proxy = undefined;
});

test('replies delayed by 300 ms during start: the first snapshot holds every service and every server ZooKeeper holds', async () => {
  proxy = await startSlowProxy(zk.port, { replyDelayMs: 300 });
  // The silent-watcher timeout is not what this test is about: keep it well out of the way.
  d = testDiscovery(
    { type: 'zookeeper', servers: proxy.connectString, path: '/service_config' },
    { initialSyncTimeoutMs: 20_000, zkSessionTimeoutMs: 6000 },
  );
  const seen: DesiredState[] = [];
  d.onSnapshot((s) => seen.push(s));
  d.start();
  await d.waitFor(
    (s) =>
      Object.keys(endpoints(s)).length === SERVICES.length && Object.values(endpoints(s)).every((e) => e.length === 3),
    15_000,
  );
  expect(seen.length).toBeGreaterThan(0);
  expect(endpoints(seen[0])).toEqual(expected);
  expect(seen.length).toBe(1);
});

test('host watchers alone (service configs from a file): the first snapshot has every server, none put in maint by a partial report', async () => {
  proxy = await startSlowProxy(zk.port, { replyDelayMs: 300 });
  const tmp = tempDir('proxymgr-slow-');
  try {
    const services = Object.fromEntries(
      SERVICES.map((name, i) => [
        name,
        { type: 'zookeeper', server: proxy!.connectString, path: `/services/${name}`, port: 9000 + i },
      ]),
    );
    writeFileSync(path.join(tmp.dir, 'services.yml'), JSON.stringify(services));
    d = testDiscovery(
      { type: 'file', path: path.join(tmp.dir, 'services.yml') },
      // A file-source control plane lists the ensembles its watchers may name.
      { initialSyncTimeoutMs: 20_000, zkSessionTimeoutMs: 6000, watcherEnsembles: [{ servers: proxy.connectString }] },
    );
    const seen: DesiredState[] = [];
    d.onSnapshot((s) => seen.push(s));
    d.start();
    await d.waitFor((s) => Object.values(endpoints(s)).flat().length === 12, 15_000);
    expect(endpoints(seen[0])).toEqual(expected);
  } finally {
    await d?.stop();
    d = undefined;
    tmp.cleanup();
  }
});

test('a reconnect through the slow proxy resyncs without reporting less, and a host added meanwhile arrives', async () => {
  proxy = await startSlowProxy(zk.port, { replyDelayMs: 0 });
  d = testDiscovery(
    { type: 'zookeeper', servers: proxy.connectString, path: '/service_config' },
    { initialSyncTimeoutMs: 20_000, zkSessionTimeoutMs: 6000 },
  );
  const seen: DesiredState[] = [];
  d.onSnapshot((s) => seen.push(s));
  d.start();
  await d.waitFor((s) => Object.values(endpoints(s)).flat().length === 12, 15_000);
  proxy.setDelay(300);
  proxy.cutAll(); // the session resumes through the (now slow) proxy and every watch resyncs in full
  await w.put('/services/alpha/h4', JSON.stringify({ address: '10.0.0.4', port: 80 }));
  try {
    await d.waitFor((s) => endpoints(s).alpha?.length === 4, 15_000);
    for (const s of seen)
      for (const name of SERVICES) expect(endpoints(s)[name]).toEqual(expect.arrayContaining(expected[name]!));
  } finally {
    await w.remove('/services/alpha/h4');
  }
});
