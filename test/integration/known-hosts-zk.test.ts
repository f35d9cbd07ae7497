import { gzipSync } from 'node:zlib';
import { silentLogger } from '../../common/platform/log';
import { Host } from '../../controlplane/types';
import { ZkDigest } from '../../controlplane/zk/digest';
import { ZkKnownHostsStore } from '../../controlplane/zk/known-hosts-store';
import { ZkSessionManager } from '../../controlplane/zk/manager';
import { eventually } from '../../testkit/net';
import { connectZk, ZkTestClient } from '../../testkit/zk-client';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';

jest.setTimeout(60_000);

/**
 * The last known hosts in a real ZooKeeper: what one control plane writes (coalesced, with its ACLs) the next one
 * reads back; a record someone else planted is checked like watcher input, and refused when others could write it.
 */
describe('ZkKnownHostsStore', () => {
  let zk: ZooKeeper;
  let w: ZkTestClient;
  const managers: ZkSessionManager[] = [];
  const PATH = '/proxymgr/known_hosts';
  const host = (n: number): Host => ({ name: `h${n}`, address: `10.0.0.${n}`, port: 80, weight: 1, options: [] });
  const store = (digest?: ZkDigest) => {
    const zkm = new ZkSessionManager({ sessionTimeoutMs: 4000, log: silentLogger });
    managers.push(zkm);
    return new ZkKnownHostsStore({
      zk: zkm,
      servers: zk.connectString,
      path: PATH,
      log: silentLogger,
      loadTimeoutMs: 5000,
      writeIntervalMs: 200,
      ...(digest ? { digest } : {}),
    });
  };
  const exists = (p: string) =>
    new Promise<boolean>((resolve) => w.client.exists(p, (err, stat) => resolve(!err && !!stat)));

  beforeAll(async () => {
    zk = await startZooKeeper();
    w = await connectZk(zk.connectString);
  });
  afterAll(async () => {
    for (const m of managers) await m.closeAll();
    w?.close();
    await zk?.stop();
  });

  test('written by one replica, loaded by the next; planted records and hosts are named and left out', async () => {
    const a = store();
    await a.load(); // nothing yet
    const webConfig = {
      name: 'web',
      text: '{"type":"static","port":8080}',
      origin: '/service_config/web',
      format: 'json' as const,
    };
    a.save('web', [host(1), host(2)], webConfig);
    a.save('api', [host(3)]);
    expect(await eventually(async () => (await exists(`${PATH}/web`)) && exists(`${PATH}/api`), 5000)).toBe(true);
    await a.close();

    await w.put(`${PATH}/junk`, 'not gzip');
    await w.put(
      `${PATH}/evil`,
      gzipSync(JSON.stringify({ v: 1, service: 'evil', hosts: [host(4), { name: 'x', address: 'a b', port: 1 }] })),
    );
    const b = store();
    const loaded = await b.load();
    expect(Object.fromEntries(loaded.hosts)).toEqual({ web: [host(1), host(2)], api: [host(3)], evil: [host(4)] });
    expect(Object.fromEntries(loaded.configs)).toEqual({ web: webConfig }); // the config it was served with
    expect(loaded.problems.map((p) => p.where).sort()).toEqual([
      `zookeeper ${PATH}/evil hosts[1]`,
      `zookeeper ${PATH}/junk`,
    ]);
    // a removed service keeps its record (replicas serving an older revision), marked removed
    b.remove('web');
    await b.close();
    const c = store();
    const again = await c.load();
    expect(again.hosts.get('web')).toEqual([host(1), host(2)]);
    expect(again.configs.has('web')).toBe(false); // removed: never restored by a later replica
    await c.close();
  });

  test('with zk_digest_file: records get its ACLs, and a record others could write is not believed', async () => {
    const digest = new ZkDigest('proxymgr:secret', '/etc/proxymgr/zk.digest');
    const zkm = new ZkSessionManager({
      sessionTimeoutMs: 4000,
      log: silentLogger,
      credentials: [{ servers: zk.connectString, digest }],
    });
    managers.push(zkm);
    const s = new ZkKnownHostsStore({
      zk: zkm,
      servers: zk.connectString,
      path: '/secure/known_hosts',
      digest,
      log: silentLogger,
      loadTimeoutMs: 5000,
      writeIntervalMs: 100,
    });
    // Planted while the ACLs were open (before zk_digest_file was configured): its parent stays open too.
    await w.put(
      '/secure/known_hosts/planted',
      gzipSync(JSON.stringify({ v: 1, service: 'planted', hosts: [host(7)] })),
    );
    await s.load();
    s.save('web', [host(1)]);
    expect(await eventually(() => exists('/secure/known_hosts/web'), 5000)).toBe(true);
    await s.close();
    // anyone may read it, nobody else may change it
    await expect(w.put('/secure/known_hosts/web', 'x')).rejects.toThrow(/NO_AUTH/);
    const again = new ZkKnownHostsStore({
      zk: zkm,
      servers: zk.connectString,
      path: '/secure/known_hosts',
      digest,
      log: silentLogger,
      loadTimeoutMs: 5000,
    });
    const r = await again.load();
    expect(Object.fromEntries(r.hosts)).toEqual({ web: [host(1)] });
    expect(r.problems).toEqual([
      {
        where: 'zookeeper /secure/known_hosts/planted',
        message: expect.stringMatching(/writable by others \(its ACL is not the control plane's\); not believed/),
      },
    ]);
    await again.close();
  });
});
