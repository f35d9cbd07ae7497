import { Discovery } from '../../controlplane/discovery';
import { endpoints, service, testDiscovery } from '../../testkit/discovery';
import { connectZk, ZkTestClient } from '../../testkit/zk-client';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';

const README_CONFIG = (server: string) =>
  JSON.stringify({
    type: 'zookeeper',
    server,
    path: '/services/testservice',
    port: 8080,
    listen_options: ['mode http'],
    server_options: ['check inter 2000'],
  });

let zk: ZooKeeper;
let w: ZkTestClient;
let d: Discovery | undefined;

beforeAll(async () => {
  zk = await startZooKeeper();
  w = await connectZk(zk.connectString);
});
afterAll(async () => {
  w?.close();
  await zk?.stop();
});
afterEach(async () => {
  await d?.stop();
  d = undefined;
  await w.removeTree('/service_config');
  await w.removeTree('/services');
  await w.removeTree('/proxymgr'); // the known hosts (and configs) a test's replica persisted: the next starts afresh
});

test('the original ProxyMgr layout gives the expected snapshot and follows host and service nodes live', async () => {
  await w.put('/service_config/testservice', README_CONFIG(zk.connectString));
  await w.put('/services/testservice/host1', '{"address":"1.2.3.4","port":8080}');
  await w.put('/services/testservice/host2', '{"address":"1.2.3.5","port":8080}');
  d = testDiscovery({ type: 'zookeeper', servers: zk.connectString, path: '/service_config' }, {}, ['maxconn 100']);
  d.start();

  const first = await d.waitFor((s) => endpoints(s).testservice?.length === 2);
  expect(first.haproxy).toEqual({ global: ['maxconn 100'], defaults: ['timeout connect 5s'] });
  expect(first.services).toEqual([
    {
      name: 'testservice',
      port: 8080,
      bindAddress: '0.0.0.0',
      listenOptions: ['mode http'],
      serverOptions: ['check inter 2000'],
      servers: [
        { name: 'host1', address: '1.2.3.4', port: 8080, weight: 1, options: [] },
        { name: 'host2', address: '1.2.3.5', port: 8080, weight: 1, options: [] },
      ],
      hosts: 'reported',
    },
  ]);
  expect(first.version).toMatch(/^[0-9a-f]{32}$/);

  // host added, changed, deleted
  await w.put('/services/testservice/host3', '{"address":"1.2.3.6","port":8081}');
  await d.waitFor((s) => endpoints(s).testservice?.includes('1.2.3.6:8081') === true);
  await w.put('/services/testservice/host1', '{"address":"1.2.3.4","port":9090}');
  await d.waitFor((s) => endpoints(s).testservice?.includes('1.2.3.4:9090') === true);
  await w.remove('/services/testservice/host2');
  const afterHosts = await d.waitFor((s) => endpoints(s).testservice?.length === 2);
  expect(endpoints(afterHosts).testservice).toEqual(['1.2.3.4:9090', '1.2.3.6:8081']);

  // service changed, added, deleted
  await w.put('/service_config/testservice', README_CONFIG(zk.connectString).replace('"mode http"', '"mode tcp"'));
  await d.waitFor((s) => service(s, 'testservice')?.listenOptions[0] === 'mode tcp');
  await w.put('/services/other/a', '{"address":"10.0.0.1","port":80}');
  await w.put('/service_config/other', JSON.stringify({ type: 'zookeeper', path: '/services/other', port: 8090 }));
  const withOther = await d.waitFor((s) => service(s, 'other') !== undefined);
  expect(endpoints(withOther).other).toEqual(['10.0.0.1:80']); // appears together with its hosts, in one snapshot
  await w.remove('/service_config/other');
  const final = await d.waitFor((s) => service(s, 'other') === undefined);
  expect(final.services.map((s) => s.name)).toEqual(['testservice']);
  expect(d.errors()).toEqual({ source: [], services: {} });
});

test('Nerve-format host nodes work, with name, weight and haproxy_server_options', async () => {
  await w.put(
    '/service_config/web',
    JSON.stringify({ type: 'zookeeper', path: '/nerve/services/web/services', port: 8100 }),
  );
  await w.put(
    '/nerve/services/web/services/i-0abc_web_0000000001',
    '{"host":"10.1.0.1","port":3000,"name":"i-0abc","weight":5,"haproxy_server_options":"backup","labels":{"az":"us-east-1a"}}',
  );
  await w.put('/nerve/services/web/services/i-0def_web_0000000002', '{"host":"10.1.0.2","port":3000,"name":"i-0def"}');
  d = testDiscovery({ type: 'zookeeper', servers: zk.connectString, path: '/service_config' });
  d.start();
  const s = await d.waitFor((x) => service(x, 'web')?.servers.length === 2);
  expect(service(s, 'web')!.servers).toEqual([
    { name: 'i-0abc', address: '10.1.0.1', port: 3000, weight: 5, options: ['backup'] },
    { name: 'i-0def', address: '10.1.0.2', port: 3000, weight: 1, options: [] },
  ]);
  await w.removeTree('/nerve');
});

test('malformed service configs and host nodes give clear errors and leave everything else as it was', async () => {
  await w.put('/service_config/good', JSON.stringify({ type: 'zookeeper', path: '/services/good', port: 9001 }));
  await w.put('/services/good/h1', '{"address":"10.0.0.1","port":80}');
  await w.put(
    '/service_config/victim',
    JSON.stringify({ type: 'zookeeper', path: '/services/victim', port: 9002, listen_options: ['mode http'] }),
  );
  await w.put('/services/victim/h1', '{"address":"10.0.0.2","port":80}');
  d = testDiscovery({ type: 'zookeeper', servers: zk.connectString, path: '/service_config' });
  d.start();
  const base = await d.waitFor((s) => s.services.length === 2 && s.services.every((x) => x.servers.length === 1));
  const victimBefore = service(base, 'victim');

  const cases: [string, string | Buffer, RegExp][] = [
    [
      'malformed JSON',
      '{"type":"zookeeper", "port": ',
      /^not valid JSON: .*; keeping its previous version/, // (its place, the node's path, is the problem's `where`)
    ],
    [
      'wrong types',
      JSON.stringify({ type: 'zookeeper', path: '/services/victim', port: 9002, listen_options: 'mode http' }),
      /listen_options: expected a list of strings, got string "mode http"/,
    ],
    [
      'unknown watcher type',
      JSON.stringify({ type: 'eureka', path: '/services/victim', port: 9002 }),
      /type: unknown watcher type "eureka"/,
    ],
    [
      'out-of-range port',
      JSON.stringify({ type: 'zookeeper', path: '/services/victim', port: 70000 }),
      /port: expected an integer 1-65535, got number 70000/,
    ],
    ['1 MB node', Buffer.alloc(1_000_000, 'x'), /1000000 bytes is larger than the limit of 65536 bytes/],
  ];
  for (const [what, data, message] of cases) {
    await w.put('/service_config/victim', data);
    const ok = await waitUntil(() => (d!.errors().services.victim ?? []).some((p) => message.test(p.message)));
    expect({ what, ok, errors: ok ? 'matched' : d.errors() }).toEqual({ what, ok: true, errors: 'matched' });
    const p = d.errors().services.victim!.find((x) => message.test(x.message))!;
    expect(p.code).toBe('SERVICE_CONFIG_INVALID');
    expect(p.where).toBe('zookeeper /service_config/victim');
    // everything else as it was: same snapshot, previous version of the victim kept
    expect(d.current()!.version).toBe(base.version);
    expect(service(d.current(), 'victim')).toEqual(victimBefore);
    expect(d.errors().services.good).toBeUndefined();
  }

  // the other service keeps following its hosts meanwhile, and a malformed host node is skipped, named by its path
  await w.put('/services/good/h2', '{"address":"10.0.0.3"}');
  await w.put('/services/good/h3', '{"address":"10.0.0.4","port":80}');
  const next = await d.waitFor((s) => endpoints(s).good?.length === 2);
  expect(endpoints(next)).toEqual({ good: ['10.0.0.1:80', '10.0.0.4:80'], victim: ['10.0.0.2:80'] });
  expect(d.errors().services.good).toEqual([
    expect.objectContaining({
      code: 'HOST_INVALID',
      where: 'zookeeper /services/good/h2',
      message: expect.stringMatching(/malformed host node skipped: port: expected an integer/),
    }),
  ]);

  // fixing the config clears the error and applies the new version
  await w.put('/service_config/victim', JSON.stringify({ type: 'zookeeper', path: '/services/victim', port: 9003 }));
  await d.waitFor((s) => service(s, 'victim')?.port === 9003);
  expect(d.errors().services.victim).toBeUndefined();
});

async function waitUntil(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return check();
}

test("the removal cap: at most max_removal_share of a service's hosts go in one step, the rest after removal_step_ms", async () => {
  await w.put('/service_config/testservice', README_CONFIG(zk.connectString));
  for (const i of [1, 2, 3, 4])
    await w.put(`/services/testservice/h${i}`, JSON.stringify({ address: `10.0.0.${i}`, port: 80 }));
  d = testDiscovery(
    { type: 'zookeeper', servers: zk.connectString, path: '/service_config' },
    { maxRemovalShare: 0.5, removalStepMs: 500 },
  );
  const seen: string[][] = [];
  d.onSnapshot((s) => seen.push(endpoints(s).testservice ?? []));
  d.start();
  await d.waitFor((s) => endpoints(s).testservice?.length === 4);
  const removedAt = Date.now();
  for (const i of [1, 2, 3]) await w.remove(`/services/testservice/h${i}`);
  await d.waitFor((s) => endpoints(s).testservice?.length === 1, 5000);
  expect(Date.now() - removedAt).toBeGreaterThanOrEqual(450);
  // Every step took at most half of the hosts there were: 4 → (≥ 2) → … → 1, never straight from 4 to 1.
  const sizes = seen.map((s) => s.length);
  for (let i = 1; i < sizes.length; i++) expect(sizes[i]!).toBeGreaterThanOrEqual(Math.floor(sizes[i - 1]! / 2));
  expect(sizes).toContain(2);
  expect(endpoints(d.current()).testservice).toEqual(['10.0.0.4:80']);
});
