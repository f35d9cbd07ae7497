import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import zookeeper, { ACL, Client } from 'node-zookeeper-client';
import { DEFAULT_CONTROLPLANE_CONFIG } from '../../common/config/config';
import { Logger, silentLogger } from '../../common/platform/log';
import { discoveryFromConfig } from '../../controlplane/wiring';
import { HaStore } from '../../controlplane/ha/ha-store';
import { ALL, ReplicaTraffic } from '../../controlplane/rollout/gate';
import { Revision } from '../../controlplane/rollout/revision';
import { loadZkDigest, permsOf, ZkDigest } from '../../controlplane/zk/digest';
import { ZkSession } from '../../controlplane/zk/session';
import { endpoints } from '../../testkit/discovery';
import { eventually, sleep, tempDir } from '../../testkit/net';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';
import { startSlowProxy } from '../../testkit/slow-proxy';
import { connectZk, ZkTestClient } from '../../testkit/zk-client';

jest.setTimeout(90_000);

/**
 * controlplane.zk_digest_file against a real ZooKeeper: the control plane's own nodes (rollout document, revisions,
 * agent status, leader election, each replica's traffic sums for the rollout gates) are writable only with its credentials and readable by everyone; replicas sharing
 * the credentials cooperate; nodes left open by an earlier version are fixed; discovery reads digest-protected
 * service configs.
 */
describe('ZooKeeper digest authentication and ACLs', () => {
  let zk: ZooKeeper;
  let tmp: ReturnType<typeof tempDir>;
  let digest: ZkDigest;
  let intruder: ZkTestClient;
  /** A client with the control plane's credentials: ZooKeeper shows digest ids in getACL only to clients with ADMIN. */
  let admin: ZkTestClient;
  const stores: HaStore[] = [];
  let lines: string[] = [];

  function capturingLogger(bound: object = {}): Logger {
    const rec = (level: string) => (fields: object, msg: string) =>
      void lines.push(JSON.stringify({ level, ...bound, ...fields, msg }));
    return {
      debug: () => undefined,
      info: rec('info'),
      warn: rec('warn'),
      error: rec('error'),
      child: (f) => capturingLogger({ ...bound, ...f }),
    };
  }

  function store(
    replicaId: string,
    root: string,
    withDigest: ZkDigest | undefined,
    log: Logger = silentLogger,
  ): { s: HaStore; leading: () => boolean } {
    let leader = false;
    const s = new HaStore(
      {
        servers: zk.connectString,
        root,
        replicaId,
        sessionTimeoutMs: 4000,
        log,
        ...(withDigest ? { digest: withDigest } : {}),
      },
      { leadership: (l) => (leader = l) },
    );
    stores.push(s);
    s.start();
    return { s, leading: () => leader };
  }

  /** The outcome of one request: 'OK' or the error's name (NO_AUTH, NODE_EXISTS, …). */
  const op = (fn: (cb: (err: unknown) => void) => void) =>
    new Promise<string>((resolve) => fn((err) => resolve(err ? String((err as { name?: string }).name) : 'OK')));
  const getACL = (c: Client, p: string) =>
    new Promise<ACL[]>((resolve, reject) => c.getACL(p, (err, acls) => (err ? reject(err) : resolve(acls))));
  const aclText = (acls: ACL[]) => acls.map((a) => `${a.id.scheme}:${a.id.id}:${permsOf(a)}`).sort();
  const children = (c: Client, p: string) =>
    new Promise<string[]>((resolve, reject) => c.getChildren(p, (err, ch) => (err ? reject(err) : resolve(ch))));
  const rev = (id: string): Revision => ({ id, haproxy: { global: [], defaults: [] }, services: [] });
  /** One replica's traffic sums as the publisher writes them: the rollout gates add every replica's up. */
  const traffic = (replica: string): ReplicaTraffic => ({
    epoch: `epoch-${replica}`,
    at: 1,
    rollout: 'r1',
    sums: { aaaaaaaaaaaa: { [ALL]: [100, 0, 0] } },
    gauges: {},
    baseline: { [ALL]: [100, 0, 0] },
    baselineGauges: {},
  });

  beforeAll(async () => {
    zk = await startZooKeeper();
    tmp = tempDir('proxymgr-zkacl-');
    const file = path.join(tmp.dir, 'zk.digest');
    writeFileSync(file, 'proxymgr:correct-horse-battery\n', { mode: 0o600 });
    digest = loadZkDigest(file, silentLogger);
    intruder = await connectZk(zk.connectString);
    admin = await connectZk(zk.connectString);
    admin.client.addAuthInfo('digest', digest.authInfo());
  });
  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
    intruder?.close();
    admin?.close();
    await zk?.stop();
    tmp?.cleanup();
  });

  test('others can read but not change the rollout document, revisions, agent status, leader election or traffic sums; a second replica with the credentials takes over', async () => {
    const root = '/acl/proxymgr';
    const a = store('cp-a', root, digest);
    expect(await eventually(a.leading, 10_000)).toBe(true);
    await a.s.putRevision(rev('aaaaaaaaaaaa'));
    a.s.putAgent({
      nodeId: 'agent-1',
      labels: {},
      replica: 'cp-a',
      runningVersion: 'v1',
      runningRevision: 'aaaaaaaaaaaa',
      connectedAt: 1,
    });
    await a.s.update((d) => ({ ...d, stable: 'aaaaaaaaaaaa', seq: d.seq + 1 }));
    a.s.putTraffic(traffic('cp-a'));
    const c = intruder.client;
    expect(await eventually(async () => (await children(c, `${root}/agents`)).includes('agent-1'))).toBe(true);
    expect(await eventually(async () => (await children(c, `${root}/traffic`)).includes('cp-a'))).toBe(true);

    // every node the control plane created: full rights for its digest, READ for the world
    const want = aclText(digest.acls());
    expect(want).toEqual([`digest:${digest.id}:31`, 'world:anyone:1']);
    const leaderNodes = await children(c, `${root}/leader`);
    for (const p of [
      '/acl',
      root,
      `${root}/rollout`,
      `${root}/revisions`,
      `${root}/revisions/aaaaaaaaaaaa`,
      `${root}/agents`,
      `${root}/agents/agent-1`,
      `${root}/leader`,
      `${root}/leader/${leaderNodes[0]}`,
      `${root}/traffic`,
      `${root}/traffic/cp-a`,
    ]) {
      expect({ p, acl: aclText(await getACL(admin.client, p)) }).toEqual({ p, acl: want });
    }
    // (to others ZooKeeper shows the digest id without its hash)
    expect(aclText(await getACL(c, root))).toEqual(['digest:proxymgr:x:31', 'world:anyone:1']);

    // an unauthenticated client reads everything …
    const data = await new Promise<Buffer>((resolve, reject) =>
      c.getData(`${root}/rollout`, (err, d) => (err ? reject(err) : resolve(d))),
    );
    expect(JSON.parse(data.toString()).stable).toBe('aaaaaaaaaaaa');
    expect(await op((cb) => c.getData(`${root}/revisions/aaaaaaaaaaaa`, cb))).toBe('OK');
    // … and changes nothing
    expect(
      await op((cb) => c.setData(`${root}/rollout`, Buffer.from('{"stable":"evil","history":[],"seq":99}'), -1, cb)),
    ).toBe('NO_AUTH');
    expect(await op((cb) => c.remove(`${root}/revisions/aaaaaaaaaaaa`, -1, cb))).toBe('NO_AUTH');
    expect(await op((cb) => c.create(`${root}/revisions/bbbbbbbbbbbb`, Buffer.from('{}'), cb))).toBe('NO_AUTH');
    expect(await op((cb) => c.remove(`${root}/agents/agent-1`, -1, cb))).toBe('NO_AUTH');
    expect(await op((cb) => c.setData(`${root}/agents/agent-1`, Buffer.from('{}'), -1, cb))).toBe('NO_AUTH');
    expect(
      await op((cb) =>
        c.create(`${root}/leader/n_`, Buffer.from('intruder'), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL, cb),
      ),
    ).toBe('NO_AUTH');
    expect(await op((cb) => c.remove(`${root}/leader/${leaderNodes[0]}`, -1, cb))).toBe('NO_AUTH');
    expect(
      await op((cb) =>
        c.setACL(`${root}/rollout`, [new zookeeper.ACL(31, new zookeeper.Id('world', 'anyone'))], -1, cb),
      ),
    ).toBe('NO_AUTH');
    expect(await op((cb) => c.remove(`${root}/rollout`, -1, cb))).toBe('NO_AUTH');
    // Traffic sums steer the rollout gates: forged ones (a replica's overwritten, another replica's made up, a
    // replica's removed so its figures drop out) could pass a bad canary or fail a good one.
    const forged = Buffer.from(JSON.stringify({ ...traffic('cp-a'), sums: { aaaaaaaaaaaa: { [ALL]: [1e9, 0, 0] } } }));
    expect(await op((cb) => c.getData(`${root}/traffic/cp-a`, cb))).toBe('OK');
    expect(await op((cb) => c.setData(`${root}/traffic/cp-a`, forged, -1, cb))).toBe('NO_AUTH');
    expect(await op((cb) => c.remove(`${root}/traffic/cp-a`, -1, cb))).toBe('NO_AUTH');
    expect(await op((cb) => c.create(`${root}/traffic/cp-forged`, forged, cb))).toBe('NO_AUTH');
    expect(await op((cb) => c.create(`${root}/traffic/cp-forged`, forged, zookeeper.CreateMode.EPHEMERAL, cb))).toBe(
      'NO_AUTH',
    );
    expect(
      await op((cb) =>
        c.setACL(`${root}/traffic`, [new zookeeper.ACL(31, new zookeeper.Id('world', 'anyone'))], -1, cb),
      ),
    ).toBe('NO_AUTH');
    expect(await op((cb) => c.remove(`${root}/traffic`, -1, cb))).toBe('NO_AUTH');
    // … so the gates read exactly what the replica wrote
    expect([...(await a.s.readTraffic()).entries()]).toEqual([['cp-a', traffic('cp-a')]]);

    // other credentials are no better
    const other = await connectZk(zk.connectString);
    try {
      other.client.addAuthInfo('digest', Buffer.from('proxymgr:wrong-password'));
      expect(await op((cb) => other.client.setData(`${root}/rollout`, Buffer.from('{}'), -1, cb))).toBe('NO_AUTH');
    } finally {
      other.close();
    }

    // a second replica with the same credentials joins the election, writes, and leads once the first one is gone
    const b = store('cp-b', root, digest);
    expect(await eventually(async () => (await children(c, `${root}/leader`)).length === 2, 10_000)).toBe(true);
    expect(b.leading()).toBe(false);
    expect(await eventually(() => b.s.doc?.stable === 'aaaaaaaaaaaa')).toBe(true);
    b.s.putAgent({
      nodeId: 'agent-2',
      labels: {},
      replica: 'cp-b',
      runningVersion: 'v1',
      runningRevision: 'aaaaaaaaaaaa',
      connectedAt: 2,
    });
    await b.s.putRevision(rev('cccccccccccc'));
    expect(
      await eventually(async () => (await children(c, `${root}/agents`)).sort().join() === 'agent-1,agent-2'),
    ).toBe(true);
    await a.s.close();
    expect(await eventually(b.leading, 15_000)).toBe(true);
    await b.s.update((d) => ({ ...d, stable: 'cccccccccccc', seq: d.seq + 1 }));
    expect(b.s.doc?.stable).toBe('cccccccccccc');

    // after a ZooKeeper restart the client reconnects and re-authenticates by itself: writes still pass
    await zk.kill();
    await zk.restart();
    expect(
      await eventually(async () => {
        try {
          await b.s.update((d) => ({ ...d, seq: d.seq + 1 }));
          return true;
        } catch {
          return false;
        }
      }, 20_000),
    ).toBe(true);
    await b.s.close();
    // The test's own clients may have lost their sessions to the restart (node-zookeeper-client never recovers an
    // expired one, and every later request would wait forever): the next tests get fresh ones.
    intruder.close();
    admin.close();
    intruder = await connectZk(zk.connectString);
    admin = await connectZk(zk.connectString);
    admin.client.addAuthInfo('digest', digest.authInfo());
  });

  test('every new session authenticates before its first request: after a lost session too', async () => {
    expect(await op((cb) => admin.client.create('/authcheck', Buffer.from('0'), digest.acls(), cb))).toBe('OK');
    // Through a proxy that can cut every connection: a session lost for longer than it can be resumed is replaced.
    const proxy = await startSlowProxy(zk.port, { replyDelayMs: 0 });
    const session = new ZkSession(proxy.connectString, {
      sessionTimeoutMs: 2000,
      backoffInitialMs: 50,
      log: silentLogger,
      digest,
    });
    const fresh: Client[] = [];
    session.subscribe({
      connected: (client, { newSession }) => void (newSession && fresh.push(client)),
      disconnected: () => undefined,
    });
    session.start();
    try {
      expect(await eventually(() => fresh.length === 1)).toBe(true);
      expect(await op((cb) => fresh[0]!.setData('/authcheck', Buffer.from('1'), -1, cb))).toBe('OK');
      // Nothing gets through for 6 s (3 × the session timeout): ZooKeeper expires the session, the client gives up.
      proxy.setDelay(60_000, 60_000);
      await sleep(6000);
      proxy.setDelay(0, 0);
      proxy.cutAll();
      expect(await eventually(() => fresh.length === 2, 20_000)).toBe(true);
      expect(fresh[1]).not.toBe(fresh[0]);
      expect(await op((cb) => fresh[1]!.setData('/authcheck', Buffer.from('2'), -1, cb))).toBe('OK');
    } finally {
      await session.close();
      await proxy.close();
    }
  });

  test('upgrading from open ACLs: the nodes an earlier control plane left open get the digest ACLs, and it is logged', async () => {
    const root = '/upgrade';
    const old = store('cp-old', root, undefined, capturingLogger());
    expect(await eventually(old.leading, 10_000)).toBe(true);
    await old.s.putRevision(rev('dddddddddddd'));
    expect(
      lines.some((l) => l.includes('controlplane.zk_digest_file is not set') && l.includes('writable by anyone')),
    ).toBe(true);
    await old.s.close();
    const c = intruder.client;
    expect(aclText(await getACL(c, `${root}/revisions/dddddddddddd`))).toEqual(['world:anyone:31']);
    // While the ACLs were open, someone planted traffic sums and an agent status of their own (persistent nodes).
    const planted = Buffer.from(JSON.stringify({ ...traffic('cp-forged'), sums: { x: { [ALL]: [1e9, 1e9, 0] } } }));
    expect(await op((cb) => c.create(`${root}/traffic/cp-forged`, planted, cb))).toBe('OK');
    expect(await op((cb) => c.create(`${root}/agents/forged-agent`, Buffer.from('{}'), cb))).toBe('OK');

    lines = [];
    const next = store('cp-new', root, digest, capturingLogger());
    expect(await eventually(next.leading, 10_000)).toBe(true);
    const want = aclText(digest.acls());
    for (const p of [
      root,
      `${root}/rollout`,
      `${root}/revisions`,
      `${root}/revisions/dddddddddddd`,
      `${root}/agents`,
      `${root}/leader`,
      `${root}/traffic`,
    ]) {
      expect({ p, acl: aclText(await getACL(admin.client, p)) }).toEqual({ p, acl: want });
    }
    const fixedLogs = lines.filter((l) => l.includes('had an ACL that let others change it'));
    expect(fixedLogs.map((l) => JSON.parse(l).path).sort()).toEqual(
      [
        root,
        `${root}/agents`,
        `${root}/leader`,
        `${root}/revisions`,
        `${root}/revisions/dddddddddddd`,
        `${root}/rollout`,
        `${root}/traffic`,
      ].sort(),
    );
    // The planted nodes are removed (replicas write only ephemeral nodes there, and write them again).
    expect(
      lines
        .filter((l) => l.includes('removed a ZooKeeper node others could change'))
        .map((l) => JSON.parse(l).path)
        .sort(),
    ).toEqual([`${root}/agents/forged-agent`, `${root}/traffic/cp-forged`]);
    expect(await children(c, `${root}/traffic`)).not.toContain('cp-forged');
    expect([...(await next.s.readTraffic()).keys()]).not.toContain('cp-forged');
    expect(lines.some((l) => l.includes('set the ACL of 7 ZooKeeper node(s)'))).toBe(true);
    expect(lines.join('\n')).not.toContain('correct-horse-battery');
    expect(await op((cb) => c.setData(`${root}/rollout`, Buffer.from('{}'), -1, cb))).toBe('NO_AUTH');
    await next.s.close();
  });

  test('a node someone else pre-created without giving us ADMIN cannot be secured: the replica refuses to lead', async () => {
    const root = '/hijack/proxymgr';
    // The intruder creates the rollout document first, writable by anyone and without ADMIN for anybody.
    await new Promise<void>((resolve, reject) =>
      intruder.client.mkdirp(root, (err) => (err ? reject(err) : resolve())),
    );
    const open = [
      new zookeeper.ACL(
        zookeeper.Permission.READ |
          zookeeper.Permission.WRITE |
          zookeeper.Permission.CREATE |
          zookeeper.Permission.DELETE,
        new zookeeper.Id('world', 'anyone'),
      ),
    ];
    expect(
      await op((cb) =>
        intruder.client.create(`${root}/rollout`, Buffer.from('{"stable":"","history":[],"seq":0}'), open, cb),
      ),
    ).toBe('OK');
    const h = store('cp-h', root, digest, capturingLogger());
    expect(
      await eventually(
        () => lines.some((l) => /refusing to lead rollouts/.test(l) && l.includes(`${root}/rollout`)),
        10_000,
      ),
    ).toBe(true);
    await sleep(2000);
    expect(h.leading()).toBe(false);
    expect(await children(intruder.client, `${root}/leader`)).toEqual([]); // it did not even stand
  });

  test('discovery authenticates too: service configs and hosts readable only with the digest are served', async () => {
    // The operator's layout: writers have their own digest, the control plane's digest may only read.
    const writer = await connectZk(zk.connectString);
    writer.client.addAuthInfo('digest', Buffer.from('deployer:deployer-pw'));
    const deployerId = `deployer:${createHash('sha1').update('deployer:deployer-pw').digest('base64')}`;
    const acl = [
      new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('digest', deployerId)),
      new zookeeper.ACL(zookeeper.Permission.READ, new zookeeper.Id('digest', digest.id)),
    ];
    const create = (p: string, data?: string) => op((cb) => writer.client.create(p, Buffer.from(data ?? ''), acl, cb));
    try {
      for (const p of ['/secured', '/secured/service_config', '/secured/services', '/secured/services/web'])
        expect(await create(p)).toBe('OK');
      expect(
        await create(
          '/secured/service_config/web',
          JSON.stringify({ type: 'zookeeper', path: '/secured/services/web', port: 8080 }),
        ),
      ).toBe('OK');
      expect(await create('/secured/services/web/h1', JSON.stringify({ address: '10.0.0.1', port: 80 }))).toBe('OK');
      // nobody else can read them
      expect(await op((cb) => intruder.client.getData('/secured/service_config/web', cb))).toBe('NO_AUTH');

      const config = (withDigest: boolean) => ({
        haproxy: {
          configPath: '/dev/null',
          socketPath: '/dev/null',
          binary: 'haproxy',
          global: [],
          defaults: [],
          user: '',
          group: '',
        },
        serviceConfig: { type: 'zookeeper' as const, servers: zk.connectString, path: '/secured/service_config' },
        controlplane: {
          ...DEFAULT_CONTROLPLANE_CONFIG,
          zkSessionTimeoutMs: 4000,
          initialSyncTimeoutMs: 2000,
          ...(withDigest ? { zkDigestFile: digest.file } : {}),
        },
      });
      const d = discoveryFromConfig({ config: config(true) });
      lines = [];
      const without = discoveryFromConfig({ config: config(false), log: capturingLogger() });
      d.start();
      without.start();
      try {
        const s = await d.waitFor((x) => endpoints(x).web?.length === 1, 15_000);
        expect(endpoints(s)).toEqual({ web: ['10.0.0.1:80'] });
        // without the digest: nothing is read (ZooKeeper says NO_AUTH, logged), nothing is served
        expect(
          await eventually(
            () => lines.some((l) => l.includes('NO_AUTH') && l.includes('/secured/service_config')),
            15_000,
          ),
        ).toBe(true);
        expect(without.current()).toBeUndefined();
      } finally {
        await d.stop();
        await without.stop();
      }
    } finally {
      writer.close();
    }
  });
});
