import * as net from 'node:net';
import zookeeper from 'node-zookeeper-client';
import { DEFAULT_CONTROLPLANE_CONFIG } from '../../common/config/config';
import { silentLogger } from '../../common/platform/log';
import { DesiredState } from '../../common/protocol/types';
import { Discovery } from '../../controlplane/discovery';
import { discoveryFromConfig } from '../../controlplane/wiring';
import { ZkSessionManager } from '../../controlplane/zk/manager';
import { endpoints, testDiscovery } from '../../testkit/discovery';
import { sleep } from '../../testkit/net';
import { connectZk, ZkTestClient } from '../../testkit/zk-client';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';

let zk: ZooKeeper;
let w: ZkTestClient;
let d: Discovery | undefined;

beforeEach(async () => {
  zk = await startZooKeeper();
  w = await connectZk(zk.connectString);
  await w.put('/service_config/web', JSON.stringify({ type: 'zookeeper', path: '/services/web', port: 8080 }));
  for (const i of [1, 2, 3]) await w.put(`/services/web/h${i}`, JSON.stringify({ address: `10.0.0.${i}`, port: 80 }));
});
afterEach(async () => {
  await d?.stop();
  d = undefined;
  w?.close();
  await zk?.stop();
});

test('ZooKeeper killed for 10 s: no host dropped meanwhile; afterwards changes made while discovery was cut off are picked up', async () => {
  d = testDiscovery({ type: 'zookeeper', servers: zk.connectString, path: '/service_config' });
  const seen: DesiredState[] = [];
  d.onSnapshot((s) => seen.push(s));
  d.start();
  await d.waitFor((s) => endpoints(s).web?.length === 3);
  w.close();

  await zk.kill();
  const outageStart = Date.now();
  // The loss is visible as a fail-static warning on the service, naming the reason.
  await expect(
    waitUntil(() => (d!.errors().services.web ?? []).some((p) => p.code === 'ZK_DISCONNECTED')),
  ).resolves.toBe(true);
  expect(d.errors().services.web![0]!.message).toMatch(
    /zookeeper connection lost; keeping the 3 previous host\(s\) \(fail static\)/,
  );
  while (Date.now() - outageStart < 10_000) {
    expect(endpoints(d.current()).web).toEqual(['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80']);
    await sleep(500);
  }

  await zk.restart();
  // A second client writes as soon as ZooKeeper is back; discovery is still reconnecting (or just did) and must
  // catch up through its full resync and re-armed watches.
  w = await connectZk(zk.connectString);
  const snapshotsDuringOutage = seen.length;
  await w.put('/services/web/h4', JSON.stringify({ address: '10.0.0.4', port: 80 }));
  await w.remove('/services/web/h1');
  await w.put('/services/web/h2', JSON.stringify({ address: '10.0.0.2', port: 8080 }));
  await w.put('/service_config/api', JSON.stringify({ type: 'static', port: 8081, hosts: ['10.9.9.9:80'] }));
  const after = await d.waitFor(
    (s) => endpoints(s).web?.includes('10.0.0.4:80') === true && endpoints(s).api !== undefined,
    15_000,
  );
  expect(endpoints(after)).toEqual({ api: ['10.9.9.9:80'], web: ['10.0.0.2:8080', '10.0.0.3:80', '10.0.0.4:80'] });
  // no snapshot ever dropped a host during the outage (there was no new snapshot at all), nor afterwards
  expect(snapshotsDuringOutage).toBe(1);
  expect(Math.min(...seen.map((s) => endpoints(s).web?.length ?? 0))).toBe(3);
  expect(d.errors().services.web).toBeUndefined();

  // and watches are live again
  await w.put('/services/web/h5', JSON.stringify({ address: '10.0.0.5', port: 80 }));
  await d.waitFor((s) => endpoints(s).web?.includes('10.0.0.5:80') === true);
}, 60_000);

test('all hosts deleted at once: the previous hosts stay and a warning says why', async () => {
  d = testDiscovery({ type: 'zookeeper', servers: zk.connectString, path: '/service_config' }, { maxRemovalShare: 1 });
  d.start();
  const before = await d.waitFor((s) => endpoints(s).web?.length === 3);
  // one ZooKeeper transaction: every host node and the service's path vanish at the same instant
  await new Promise<void>((resolve, reject) =>
    w.client
      .transaction()
      .remove('/services/web/h1')
      .remove('/services/web/h2')
      .remove('/services/web/h3')
      .remove('/services/web')
      .commit((err) => (err ? reject(err) : resolve())),
  );
  await expect(waitUntil(() => (d!.errors().services.web ?? []).some((p) => p.code === 'FAIL_STATIC'))).resolves.toBe(
    true,
  );
  const warning = d.errors().services.web!.find((p) => p.code === 'FAIL_STATIC')!;
  expect(warning.message).toMatch(
    /watcher reported no hosts; keeping the 3 previous host\(s\) \(fail static\) \(zookeeper \/services\/web: path does not exist\)/,
  );
  expect(d.current()!.version).toBe(before.version);
  // hosts come back: the warning goes and the new list is taken
  await w.put('/services/web/h9', JSON.stringify({ address: '10.0.0.9', port: 80 }));
  const back = await d.waitFor((s) => endpoints(s).web?.length === 1);
  expect(endpoints(back).web).toEqual(['10.0.0.9:80']);
  expect(d.errors().services.web).toBeUndefined();
});

test('session expiry: a new session is opened, every watch re-armed and the state resynced', async () => {
  // Discovery reaches ZooKeeper through a TCP proxy the test can cut: while cut off, its session is closed by a
  // second client (the classic trick), so when the proxy lets it through again the server says "expired".
  const proxy = await startProxy(zk.port);
  const zkm = new ZkSessionManager({
    sessionTimeoutMs: 4000,
    backoffInitialMs: 50,
    log: silentLogger,
    createClient: (_cs, o) => zookeeper.createClient(`127.0.0.1:${proxy.port}`, o),
  });
  try {
    d = discoveryFromConfig({
      config: {
        haproxy: { configPath: '', socketPath: '', binary: 'haproxy', global: [], defaults: [], user: '', group: '' },
        serviceConfig: { type: 'zookeeper', servers: zk.connectString, path: '/service_config' },
        controlplane: DEFAULT_CONTROLPLANE_CONFIG,
      },
      zk: zkm,
    });
    d.start();
    await d.waitFor((s) => endpoints(s).web?.length === 3);
    const lease = zkm.acquire(zk.connectString);
    const victim = lease.session.current!;
    const oldId = victim.getSessionId().toString('hex');
    proxy.cut();
    await expireSession(zk.connectString, victim.getSessionId(), victim.getSessionPassword());
    await w.put('/services/web/h4', JSON.stringify({ address: '10.0.0.4', port: 80 })); // missed while cut off
    proxy.restore();
    await expect(
      waitUntil(
        () => lease.session.current !== undefined && lease.session.current.getSessionId().toString('hex') !== oldId,
        15_000,
      ),
    ).resolves.toBe(true);
    await d.waitFor((s) => endpoints(s).web?.includes('10.0.0.4:80') === true, 15_000);
    expect(zkm.size).toBe(1); // still one session for the ensemble
    await w.remove('/services/web/h2'); // the watches of the new session are armed
    await d.waitFor((s) => endpoints(s).web?.length === 3 && !endpoints(s).web!.includes('10.0.0.2:80'));
    lease.release();
  } finally {
    await d?.stop();
    d = undefined;
    await zkm.closeAll();
    await proxy.close();
  }
}, 30_000);

/** A TCP proxy to 127.0.0.1:target that can refuse and drop every connection (cut) and let them through again. */
async function startProxy(target: number) {
  const conns = new Set<net.Socket>();
  let open = true;
  const server = net.createServer((client) => {
    if (!open) return client.destroy();
    const upstream = net.connect(target, '127.0.0.1');
    conns.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      conns.delete(client);
      conns.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      open = false;
      for (const c of conns) c.destroy();
    },
    restore() {
      open = true;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** The classic trick: a second client joins the same session and closes it, so the server expires it. */
async function expireSession(connectString: string, id: Buffer, password: Buffer): Promise<void> {
  const c = zookeeper.createClient(connectString, { sessionTimeout: 4000, spinDelay: 100, retries: 0 });
  const cm = (c as unknown as { connectionManager: { sessionId: Buffer; sessionPassword: Buffer } }).connectionManager;
  cm.sessionId = id;
  cm.sessionPassword = password;
  await new Promise<void>((resolve) => {
    c.once('connected', () => resolve());
    c.connect();
  });
  c.close();
}

async function waitUntil(check: () => boolean, timeoutMs = 8000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return true;
    await sleep(20);
  }
  return check();
}
