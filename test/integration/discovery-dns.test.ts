import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Discovery } from '../../controlplane/discovery';
import { startDnsmasq, Dnsmasq } from '../../testkit/dnsmasq';
import { FailingDns, startFailingDns } from '../../testkit/failing-dns';
import { endpoints, service, testDiscovery } from '../../testkit/discovery';
import { tempDir } from '../../testkit/net';

let dns: Dnsmasq | undefined;
let primary: FailingDns | undefined;
let d: Discovery | undefined;
const tmp = tempDir('proxymgr-dns-cfg-');

afterAll(() => tmp.cleanup());
afterEach(async () => {
  await d?.stop();
  d = undefined;
  await dns?.stop();
  dns = undefined;
  await primary?.stop();
  primary = undefined;
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

/** Service configs `db` (db.proxymgr.test, A records only) and `gone` (a name without records) in a new directory. */
async function dbAndGone(name: string): Promise<string> {
  const dir = path.join(tmp.dir, name);
  await fsp.mkdir(dir);
  const config = (port: number, host: string) =>
    JSON.stringify({ type: 'dns', port, backends: [{ name: host, port: 5432 }] });
  await fsp.writeFile(path.join(dir, 'db.json'), config(5434, 'db.proxymgr.test'));
  await fsp.writeFile(path.join(dir, 'gone.json'), config(5435, 'gone.proxymgr.test'));
  return dir;
}

for (const failure of ['servfail', 'silent'] as const) {
  test(`a nameserver that fails (${failure}) before one that says "no such name": hosts unknown, not an empty list; records from the later one count`, async () => {
    dns = await startDnsmasq({ 'db.proxymgr.test': ['127.0.0.21'] });
    primary = await startFailingDns(failure);
    d = testDiscovery(
      { type: 'file', path: await dbAndGone(`configs-${failure}`) },
      { dnsNameservers: [primary.server, dns.server], dnsMinTtlMs: 100, dnsMaxTtlMs: 1000 },
    );
    d.start();
    // A silent primary costs each question its timeout (2 tries) before the fallback is asked: on a loaded machine
    // the watcher's first report can come after initial_sync_timeout_ms (hosts unknown, "did not report"), so wait
    // for the lookup's own verdict. Polled, not waited for as a snapshot: the verdict changes the problem but not
    // the snapshot (the service stays unknown with no servers).
    const verdict = () =>
      endpoints(d!.current()).db?.length === 1 &&
      (d!.errors().services.gone ?? []).some((p) => p.message.includes('dns lookup failed'));
    const deadline = Date.now() + 20_000;
    while (!verdict() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(verdict()).toBe(true);
    const s = d.current()!;
    // Failover: the fallback's A records are used (its "no AAAA" does not hold back a name it has A records for).
    expect(service(s, 'db')).toMatchObject({
      hosts: 'reported',
      servers: [expect.objectContaining({ address: '127.0.0.21' })],
    });
    // The fallback's NXDOMAIN while the primary cannot answer is not "no hosts": no agent empties the service.
    expect(service(s, 'gone')).toMatchObject({ hosts: 'unknown', servers: [] });
    expect(d.errors().services.gone).toEqual([
      expect.objectContaining({
        code: 'WATCHER_FAILED',
        message: expect.stringMatching(
          new RegExp(
            `hosts unknown: dns lookup failed: gone\\.proxymgr\\.test: ${dns.server} answered no records, not believed while ${primary.server} \\(listed before it\\) fails`,
          ),
        ),
      }),
    ]);
  });
}

test('"no such name" from the first nameserver is an answer, whatever a later one would say: no hosts', async () => {
  dns = await startDnsmasq({ 'db.proxymgr.test': ['127.0.0.21'] });
  primary = await startFailingDns('servfail');
  d = testDiscovery(
    { type: 'file', path: await dbAndGone('configs-first') },
    { dnsNameservers: [dns.server, primary.server], dnsMinTtlMs: 100, dnsMaxTtlMs: 1000 },
  );
  d.start();
  const s = await d.waitFor((x) => endpoints(x).db?.length === 1 && service(x, 'gone')?.hosts === 'reported');
  expect(service(s, 'gone')!.servers).toEqual([]);
  expect(d.errors().services.gone).toEqual([
    expect.objectContaining({ code: 'HOST_INVALID', where: 'dns gone.proxymgr.test', message: 'no A or AAAA records' }),
  ]);
});
