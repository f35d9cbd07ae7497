import { mkdirSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { StatsSocketClient } from '../../agent/haproxy/runtime';
import { CliProcess, startCli, stopAllCli } from '../../testkit/cli';
import { eventually, freePort, sleep, tempDir } from '../../testkit/net';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';
import { connectZk } from '../../testkit/zk-client';

jest.setTimeout(240_000);

/** An HTTP backend answering with its name; `/slow?ms=N` answers after N ms. It can be stopped and started again. */
interface NamedBackend {
  readonly name: string;
  port: number;
  start(): Promise<void>;
  stop(): Promise<void>;
}

function namedBackend(name: string): NamedBackend {
  let server: http.Server | undefined;
  const b: NamedBackend = {
    name,
    port: 0,
    async start() {
      server = http.createServer((req, res) => {
        const ms = Number(/[?&]ms=(\d+)/.exec(req.url ?? '')?.[1] ?? 0);
        req.resume();
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end(`${name}\n`);
        }, ms);
      });
      server.keepAliveTimeout = 500;
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject);
        server!.listen(b.port, '127.0.0.1', () => resolve());
      });
      b.port = (server.address() as AddressInfo).port;
    },
    async stop() {
      const s = server;
      server = undefined;
      if (!s) return;
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };
  return b;
}

/** One request through an agent (a keep-alive agent, as a client pool would); resolves with the backend's name. */
function hit(ip: string, port: number, agent: http.Agent, pathname = '/'): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: ip, port, path: pathname, agent, timeout: 15_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve(res.statusCode === 200 ? body.trim() : `status ${res.statusCode}`));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function counts(ip: string, port: number, n: number): Promise<Map<string, number>> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  const out = new Map<string, number>();
  try {
    for (let i = 0; i < n; i += 4) {
      for (const name of await Promise.all([0, 1, 2, 3].map(() => hit(ip, port, agent))))
        out.set(name, (out.get(name) ?? 0) + 1);
    }
  } finally {
    agent.destroy();
  }
  return out;
}

const nerve = (b: NamedBackend, labels: Record<string, string> = {}) =>
  JSON.stringify({ host: '127.0.0.1', port: b.port, name: b.name, labels });

/**
 * Issue 12 against the real things (ZooKeeper, a control plane, two agents with HAProxy in zones east and west, real
 * HTTP backends): drain on removal, zone-aware routing, a weighted canary share, slow start — all without a reload.
 */
describe('traffic management: drain, zones, canaries, slow start (real HAProxy, ZooKeeper, backends)', () => {
  let zk: ZooKeeper;
  let zkc: Awaited<ReturnType<typeof connectZk>>;
  let tmp: ReturnType<typeof tempDir>;
  const backends = new Map<string, NamedBackend>();
  const agents: { ip: string; dir: string; proc?: CliProcess }[] = [];
  const ports = { web: 0, zoned: 0, canaried: 0, slow: 0 };
  const socketOf = (i: number) => new StatsSocketClient(path.join(agents[i]!.dir, 'haproxy.sock'));
  /** HAProxy's pid on agent i (unchanged = no reload). */
  const pidOf = async (i: number) => Number(/^Pid: (\d+)$/m.exec(await socketOf(i).command('show info'))?.[1]);
  /** A server's admin state in agent i's HAProxy (8 drain, 0 ready); undefined once HAProxy no longer has it. */
  const adminOf = async (i: number, backend: string, server: string) =>
    (await socketOf(i).serversState(backend)).get(backend)?.get(server)?.adminState;
  /** Which backends answered `n` requests through agent i, in the order they first did, joined ("east", "w1,w2"). */
  const servedBy = async (i: number, port: number, n = 8) => [...(await counts(agents[i]!.ip, port, n)).keys()].join();

  beforeAll(async () => {
    zk = await startZooKeeper();
    zkc = await connectZk(zk.connectString);
    tmp = tempDir('proxymgr-traffic-');
    for (const name of ['w1', 'w2', 'east', 'west', 'c1', 'c2', 's1', 's2', 's3', 's4', 's5', 'old', 'new']) {
      const b = namedBackend(name);
      await b.start();
      backends.set(name, b);
    }
    const be = (n: string) => backends.get(n)!;
    for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
    const service = (name: string, port: number, extra: Record<string, unknown>) =>
      zkc.put(
        `/service_config/${name}`,
        JSON.stringify({
          type: 'zookeeper',
          path: `/services/${name}`,
          port,
          listen_options: ['mode http', 'balance roundrobin'],
          ...extra,
        }),
      );
    await service('web', ports.web, { drain_timeout_ms: 5000 });
    await zkc.put('/services/web/w1', nerve(be('w1')));
    await zkc.put('/services/web/w2', nerve(be('w2')));
    await service('zoned', ports.zoned, { zone_label: 'zone', server_options: ['check inter 300 fall 1 rise 1'] });
    await zkc.put('/services/zoned/east', nerve(be('east'), { zone: 'east' }));
    await zkc.put('/services/zoned/west', nerve(be('west'), { zone: 'west' }));
    await service('canaried', ports.canaried, { canary: { labels: { canary: 'true' }, share: 0.05 } });
    await zkc.put('/services/canaried/c1', nerve(be('c1'), { canary: 'true' }));
    for (const s of ['s1', 's2', 's3']) await zkc.put(`/services/canaried/${s}`, nerve(be(s)));
    await service('slow', ports.slow, { slow_start_ms: 8000, server_options: ['check inter 500'] });
    await zkc.put('/services/slow/old', nerve(be('old')));

    const cpPort = await freePort();
    const cpConfig = path.join(tmp.dir, 'cp.yml');
    writeFileSync(
      cpConfig,
      `haproxy:
  defaults: ["mode http", "timeout connect 2s", "timeout client 20s", "timeout server 20s"]
service_config: {type: zookeeper, servers: "${zk.connectString}", path: /service_config}
controlplane: {listen: "127.0.0.1:${cpPort}"}
`,
    );
    const cp = startCli(['controlplane', '--config', cpConfig]);
    expect(await cp.waitForLog(/control plane started/)).toBe(true);
    for (const [i, zone] of ['east', 'west'].entries()) {
      const dir = path.join(tmp.dir, `agent${i}`);
      mkdirSync(dir);
      writeFileSync(
        path.join(dir, 'proxymgr.yml'),
        `haproxy: {config_path: ${dir}/haproxy.cfg, socket_path: ${dir}/haproxy.sock}
agent: {state_dir: ${dir}, node_id: agent${i}, labels: {zone: ${zone}}, controlplanes: ["127.0.0.1:${cpPort}"], admin_listen: "", bind_address: 127.0.0.${i + 1}, drift_check_interval_ms: 60000}
`,
      );
      agents.push({
        ip: `127.0.0.${i + 1}`,
        dir,
        proc: startCli(['agent', '--config', path.join(dir, 'proxymgr.yml')]),
      });
    }
    for (const a of agents) {
      expect(
        await eventually(async () => (await counts(a.ip, ports.web, 4).catch(() => new Map())).size === 2, 30_000, 200),
      ).toBe(true);
    }
  });

  afterAll(async () => {
    const hung = await stopAllCli();
    zkc?.close();
    await zk?.stop();
    for (const b of backends.values()) await b.stop();
    tmp?.cleanup();
    expect(hung).toEqual([]);
  });

  test('must show 1: a removed host drains — its long request completes, new requests avoid it — and is deleted at the deadline, without a reload', async () => {
    const a = agents[0]!;
    const pid = await pidOf(0);
    // Long requests on both hosts (round robin), then w2 leaves discovery while they run.
    const pool = new http.Agent({ keepAlive: false });
    const long = [0, 1, 2, 3].map(() => hit(a.ip, ports.web, pool, '/slow?ms=2500'));
    await sleep(300);
    await zkc.remove('/services/web/w2');
    expect(await eventually(async () => (await adminOf(0, 'web', 'w2')) === 8, 10_000, 50)).toBe(true);
    // New requests avoid it at once; the ones it is serving finish.
    const fresh = await counts(a.ip, ports.web, 40);
    expect([...fresh.keys()]).toEqual(['w1']);
    const done = await Promise.all(long);
    expect(done.sort()).toEqual(['w1', 'w1', 'w2', 'w2']);
    // The agent shows it draining, with its deadline; after the deadline it is gone from HAProxy.
    expect(await adminOf(0, 'web', 'w2')).not.toBeUndefined();
    expect(await eventually(async () => (await adminOf(0, 'web', 'w2')) === undefined, 10_000, 100)).toBe(true);
    expect(await pidOf(0)).toBe(pid);
    // It comes back (a new host with the same name): added at runtime, serving again.
    await zkc.put('/services/web/w2', nerve(backends.get('w2')!));
    expect(await eventually(async () => (await counts(a.ip, ports.web, 8)).has('w2'), 10_000, 100)).toBe(true);
    expect(await pidOf(0)).toBe(pid);
  });

  test('a host that comes back while draining is ready again at once', async () => {
    await zkc.remove('/services/web/w2');
    expect(await eventually(async () => (await adminOf(1, 'web', 'w2')) === 8, 10_000, 50)).toBe(true);
    await zkc.put('/services/web/w2', nerve(backends.get('w2')!));
    expect(await eventually(async () => (await adminOf(1, 'web', 'w2')) === 0, 10_000, 50)).toBe(true);
    expect((await counts(agents[1]!.ip, ports.web, 8)).get('w2')).toBe(4);
  });

  test('a reload while a host drains (a listen_options change) keeps it draining, and it is still deleted at its deadline', async () => {
    await zkc.remove('/services/web/w2');
    expect(await eventually(async () => (await adminOf(0, 'web', 'w2')) === 8, 10_000, 50)).toBe(true);
    const pid = await pidOf(0);
    await zkc.put(
      '/service_config/web',
      JSON.stringify({
        type: 'zookeeper',
        path: '/services/web',
        port: ports.web,
        listen_options: ['mode http', 'balance roundrobin', 'option httplog'],
        drain_timeout_ms: 5000,
      }),
    );
    expect(await eventually(async () => (await pidOf(0).catch(() => pid)) !== pid, 10_000, 100)).toBe(true);
    // The new HAProxy has it, in drain; new requests avoid it; then it goes at the deadline.
    expect(await adminOf(0, 'web', 'w2')).toBe(8);
    expect(await servedBy(0, ports.web, 20)).toBe('w1');
    expect(await eventually(async () => (await adminOf(0, 'web', 'w2')) === undefined, 10_000, 100)).toBe(true);
    await zkc.put('/services/web/w2', nerve(backends.get('w2')!));
    expect(await eventually(async () => (await counts(agents[0]!.ip, ports.web, 8)).has('w2'), 10_000, 100)).toBe(true);
  });

  test("must show 2: zone-aware — traffic stays in the agent's zone, crosses when its servers are down or removed, comes back; no reload", async () => {
    const pids = [await pidOf(0), await pidOf(1)];
    expect(await servedBy(0, ports.zoned, 20)).toBe('east');
    expect(await servedBy(1, ports.zoned, 20)).toBe('west');
    // east goes down (its health check fails): agent0's traffic crosses to west; agent1 is unaffected.
    const east = backends.get('east')!;
    await east.stop();
    expect(await eventually(async () => (await servedBy(0, ports.zoned)) === 'west', 10_000, 100)).toBe(true);
    expect(await servedBy(1, ports.zoned, 8)).toBe('west');
    await east.start();
    expect(await eventually(async () => (await servedBy(0, ports.zoned)) === 'east', 10_000, 100)).toBe(true);
    // east is removed from discovery: the same; and back.
    await zkc.remove('/services/zoned/east');
    expect(await eventually(async () => (await servedBy(0, ports.zoned)) === 'west', 10_000, 100)).toBe(true);
    await zkc.put('/services/zoned/east', nerve(east, { zone: 'east' }));
    expect(await eventually(async () => (await servedBy(0, ports.zoned)) === 'east', 10_000, 100)).toBe(true);
    expect([await pidOf(0), await pidOf(1)]).toEqual(pids);
  });

  test('must show 3: a 5 % canary share within ±2 points over 2,000 requests, before and after hosts join either side', async () => {
    const pid = await pidOf(0);
    const share = async () => {
      const c = await counts(agents[0]!.ip, ports.canaried, 2000);
      const total = [...c.values()].reduce((a, b) => a + b, 0);
      return { share: ((c.get('c1') ?? 0) + (c.get('c2') ?? 0)) / total, total, c };
    };
    const before = await share();
    expect(before.total).toBe(2000);
    expect(Math.abs(before.share - 0.05)).toBeLessThanOrEqual(0.02);
    // One more canary, two more others: the weights follow, the share stays.
    await zkc.put('/services/canaried/c2', nerve(backends.get('c2')!, { canary: 'true' }));
    await zkc.put('/services/canaried/s4', nerve(backends.get('s4')!));
    await zkc.put('/services/canaried/s5', nerve(backends.get('s5')!));
    expect(
      await eventually(async () => (await counts(agents[0]!.ip, ports.canaried, 200)).has('s5'), 10_000, 100),
    ).toBe(true);
    const after = await share();
    expect(after.c.get('c2') ?? 0).toBeGreaterThan(0);
    expect(Math.abs(after.share - 0.05)).toBeLessThanOrEqual(0.02);
    expect(await pidOf(0)).toBe(pid);
    console.log(
      `canary share: ${(before.share * 100).toFixed(2)} % (1 canary, 3 others), ${(after.share * 100).toFixed(2)} % (2 canaries, 5 others) over 2,000 requests each`,
    );
  });

  test("must show 4: slow start — a new server's share rises over the ramp instead of jumping", async () => {
    const pid = await pidOf(0);
    await zkc.put('/services/slow/new', nerve(backends.get('new')!));
    // From the moment HAProxy has it: its share in each 1 s window.
    expect(await eventually(async () => (await adminOf(0, 'slow', 'new')) === 0, 10_000, 20)).toBe(true);
    const shares: number[] = [];
    const t0 = Date.now();
    while (Date.now() - t0 < 10_000) {
      const until = Date.now() + 1000;
      let n = 0;
      let fresh = 0;
      const pool = new http.Agent({ keepAlive: true, maxSockets: 2 });
      while (Date.now() < until) {
        for (const name of await Promise.all([
          hit(agents[0]!.ip, ports.slow, pool),
          hit(agents[0]!.ip, ports.slow, pool),
        ])) {
          n++;
          if (name === 'new') fresh++;
        }
      }
      pool.destroy();
      shares.push(fresh / n);
    }
    console.log(
      `slow start: the new server's share per second: ${shares.map((s) => `${Math.round(s * 100)}%`).join(' ')}`,
    );
    // It starts low, rises, and ends near its full half (two servers of equal weight).
    expect(shares[0]!).toBeLessThan(0.25);
    expect(shares[4]!).toBeGreaterThan(shares[0]! + 0.1);
    expect(shares[shares.length - 1]!).toBeGreaterThan(0.4);
    expect(await pidOf(0)).toBe(pid);
  });
});
