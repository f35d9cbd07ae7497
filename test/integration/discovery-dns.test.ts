import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Discovery } from '../../controlplane/discovery';
import { startDnsmasq, Dnsmasq } from '../../testkit/dnsmasq';
import { endpoints, service, testDiscovery } from '../../testkit/discovery';
import { tempDir } from '../../testkit/net';

let dns: Dnsmasq | undefined;
let d: Discovery | undefined;
const tmp = tempDir('proxymgr-dns-cfg-');

afterAll(() => tmp.cleanup());
afterEach(async () => {
  await d?.stop();
  d = undefined;
  await dns?.stop();
  dns = undefined;
});

test('A and SRV answers from dnsmasq become hosts, and changed records are followed', async () => {
  dns = await startDnsmasq(
    {
      'db.proxymgr.test': ['127.0.0.21', '127.0.0.22'],
      'web1.proxymgr.test': ['127.0.0.11'],
      'web2.proxymgr.test': ['127.0.0.12'],
    },
    [
      { name: '_http._tcp.web.proxymgr.test', target: 'web1.proxymgr.test', port: 9000, weight: 10 },
      { name: '_http._tcp.web.proxymgr.test', target: 'web2.proxymgr.test', port: 9001, weight: 30 },
    ],
  );
  const dir = path.join(tmp.dir, 'configs');
  await fsp.mkdir(dir);
  await fsp.writeFile(
    path.join(dir, 'db.json'),
    JSON.stringify({ type: 'dns', port: 5432, backends: [{ name: 'db.proxymgr.test', port: 5432 }] }),
  );
  await fsp.writeFile(
    path.join(dir, 'web.json'),
    JSON.stringify({ type: 'dns', port: 8080, backends: [{ srv: '_http._tcp.web.proxymgr.test' }] }),
  );
  d = testDiscovery(
    { type: 'file', path: dir },
    { dnsNameservers: [dns.server], dnsMinTtlMs: 100, dnsMaxTtlMs: 1000, maxRemovalShare: 1 },
  );
  d.start();

  const first = await d.waitFor((s) => endpoints(s).db?.length === 2 && endpoints(s).web?.length === 2);
  expect(service(first, 'db')!.servers).toEqual([
    { name: '127.0.0.21_5432', address: '127.0.0.21', port: 5432, weight: 1, options: [] },
    { name: '127.0.0.22_5432', address: '127.0.0.22', port: 5432, weight: 1, options: [] },
  ]);
  expect(service(first, 'web')!.servers).toEqual([
    { name: '127.0.0.11_9000', address: '127.0.0.11', port: 9000, weight: 10, options: [] },
    { name: '127.0.0.12_9001', address: '127.0.0.12', port: 9001, weight: 30, options: [] },
  ]);

  // A record changed (dnsmasq re-reads its hosts dir at once; TTL 0 → re-resolved at the 100 ms floor)
  dns.setHosts({
    'db.proxymgr.test': ['127.0.0.23'],
    'web1.proxymgr.test': ['127.0.0.13'],
    'web2.proxymgr.test': ['127.0.0.12'],
  });
  const changed = await d.waitFor(
    (s) => endpoints(s).db?.join() === '127.0.0.23:5432' && endpoints(s).web?.includes('127.0.0.13:9000') === true,
    5000,
  );
  expect(endpoints(changed).web).toEqual(['127.0.0.12:9001', '127.0.0.13:9000']);

  // SRV set changed (needs a dnsmasq restart: the short outage meanwhile must not drop anything)
  await dns.setSrv([{ name: '_http._tcp.web.proxymgr.test', target: 'web2.proxymgr.test', port: 9002 }]);
  const srvChanged = await d.waitFor((s) => endpoints(s).web?.join() === '127.0.0.12:9002', 5000);
  expect(endpoints(srvChanged).db).toEqual(['127.0.0.23:5432']);
  expect(d.errors().services).toEqual({});
});

test('a DNS outage keeps the previous hosts and says so; a name without records is named', async () => {
  dns = await startDnsmasq({ 'db.proxymgr.test': ['127.0.0.21'] });
  const dir = path.join(tmp.dir, 'configs2');
  await fsp.mkdir(dir);
  await fsp.writeFile(
    path.join(dir, 'db.json'),
    JSON.stringify({
      type: 'dns',
      port: 5433,
      backends: [
        { name: 'db.proxymgr.test', port: 5432 },
        { name: 'gone.proxymgr.test', port: 5432 },
      ],
    }),
  );
  d = testDiscovery({ type: 'file', path: dir }, { dnsNameservers: [dns.server], dnsMinTtlMs: 100, dnsMaxTtlMs: 1000 });
  d.start();
  await d.waitFor((s) => endpoints(s).db?.length === 1);
  expect(d.errors().services.db).toEqual([
    expect.objectContaining({ code: 'HOST_INVALID', where: 'dns gone.proxymgr.test', message: 'no A or AAAA records' }),
  ]);
  await dns.stop();
  dns = undefined;
  const deadline = Date.now() + 8000;
  while (!(d.errors().services.db ?? []).some((p) => p.code === 'WATCHER_FAILED') && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  const p = d.errors().services.db!.find((x) => x.code === 'WATCHER_FAILED')!;
  expect(p.message).toMatch(/dns lookup failed: .*; keeping the 1 previous host\(s\) \(fail static\)/);
  expect(endpoints(d.current()).db).toEqual(['127.0.0.21:5432']);
});
