import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { ControlPlaneConfig, DEFAULT_CONTROLPLANE_CONFIG } from '../../common/config/config';
import { Discovery } from '../../controlplane/discovery';
import { discoveryFromConfig } from '../../controlplane/wiring';
import { endpoints } from '../../testkit/discovery';
import { eventually, sleep, tempDir } from '../../testkit/net';
import { RecordingProxy, startRecordingProxy } from '../../testkit/recording-proxy';
import { connectZk, ZkTestClient } from '../../testkit/zk-client';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';

jest.setTimeout(90_000);

/**
 * Credentials go only where the operator sent them, against a real ZooKeeper: every "ensemble" below is a recording
 * proxy in front of it, which answers like ZooKeeper (so a client goes on to send its credentials) and keeps a copy
 * of every byte it was sent — an attacker's server. The service-config ensemble's recorder shows the password does
 * travel when it should; the others show where it does not.
 */
describe('ZooKeeper credentials per ensemble', () => {
  const MAIN = 'proxymgr:main-secret-pw-7f3a';
  const OTHER = 'team-b:other-secret-pw-91c2';
  let zk: ZooKeeper;
  let zkc: ZkTestClient;
  let tmp: ReturnType<typeof tempDir>;
  const recorders: RecordingProxy[] = [];
  const discoveries: Discovery[] = [];

  beforeAll(async () => {
    [zk, tmp] = [await startZooKeeper(), tempDir('proxymgr-zkcred-')];
    zkc = await connectZk(zk.connectString);
    writeFileSync(path.join(tmp.dir, 'main.digest'), MAIN + '\n', { mode: 0o600 });
    writeFileSync(path.join(tmp.dir, 'other.digest'), OTHER + '\n', { mode: 0o600 });
    await zkc.put('/services/web/h1', JSON.stringify({ address: '10.0.0.1', port: 80 }));
  });
  afterAll(async () => {
    for (const d of discoveries) await d.stop();
    for (const r of recorders) await r.close();
    zkc?.close();
    await zk?.stop();
    tmp?.cleanup();
  });

  async function recorder(relay = true): Promise<RecordingProxy> {
    const r = await startRecordingProxy(relay ? zk.port : undefined);
    recorders.push(r);
    return r;
  }

  function discovery(root: string, servers: string, controlplane: Partial<ControlPlaneConfig>): Discovery {
    const d = discoveryFromConfig({
      config: {
        haproxy: {
          configPath: '/dev/null',
          socketPath: '/dev/null',
          binary: 'haproxy',
          global: [],
          defaults: [],
          user: '',
          group: '',
        },
        serviceConfig: { type: 'zookeeper', servers, path: `${root}/service_config` },
        controlplane: {
          ...DEFAULT_CONTROLPLANE_CONFIG,
          zkSessionTimeoutMs: 4000,
          initialSyncTimeoutMs: 2000,
          zkDigestFile: path.join(tmp.dir, 'main.digest'),
          ...controlplane,
        },
      },
    });
    discoveries.push(d);
    return d;
  }

  const watcher = (server: string, port = 8080) =>
    JSON.stringify({ type: 'zookeeper', server, path: '/services/web', port });
  const has = (r: RecordingProxy, secret: string) => r.received().includes(Buffer.from(secret));

  test('a watcher naming a foreign server is refused (service and server named) and that server hears nothing', async () => {
    const own = await recorder();
    const foreign = await recorder(false);
    await zkc.put('/t1/service_config/good', JSON.stringify({ type: 'zookeeper', path: '/services/web', port: 8080 }));
    await zkc.put('/t1/service_config/evil', watcher(foreign.connectString, 8081));
    await zkc.put('/t1/service_config/mixed', watcher(`${own.connectString},${foreign.connectString}`, 8082));
    const d = discovery('/t1', own.connectString, {});
    d.start();
    const s = await d.waitFor((x) => endpoints(x).good?.length === 1, 15_000);
    expect(Object.keys(endpoints(s))).toEqual(['good']);
    const errors = d.errors().services;
    expect(errors.evil?.[0]?.message).toContain(
      `service evil: zookeeper watcher refused for server ${foreign.connectString}`,
    );
    expect(errors.mixed?.[0]?.message).toContain(
      `service mixed: zookeeper watcher refused for server ${foreign.connectString}`,
    );
    // The positive control: the service-config ensemble got the password; the foreign one not even a connection.
    expect(has(own, MAIN)).toBe(true);
    await sleep(500);
    expect(foreign.connections).toBe(0);
    expect(foreign.received().length).toBe(0);
  });

  test('a listed ensemble gets its own digest_file only; one listed without credentials gets none', async () => {
    const own = await recorder();
    const teamB = await recorder();
    const open = await recorder();
    await zkc.put('/t2/service_config/b', watcher(teamB.connectString));
    await zkc.put('/t2/service_config/o', watcher(open.connectString, 8081));
    const d = discovery('/t2', own.connectString, {
      watcherEnsembles: [
        { servers: teamB.connectString, digestFile: path.join(tmp.dir, 'other.digest') },
        { servers: open.connectString },
      ],
    });
    d.start();
    const s = await d.waitFor((x) => endpoints(x).b?.length === 1 && endpoints(x).o?.length === 1, 15_000);
    expect(endpoints(s)).toEqual({ b: ['10.0.0.1:80'], o: ['10.0.0.1:80'] });
    expect(d.errors().services).toEqual({});
    expect(await eventually(() => has(own, MAIN) && has(teamB, OTHER), 5000)).toBe(true);
    // Each recorder read the watcher's path (it was used), and no password that is not its own.
    for (const r of [teamB, open]) {
      expect(r.received().includes(Buffer.from('/services/web'))).toBe(true);
      expect(has(r, MAIN)).toBe(false);
    }
    expect(has(open, OTHER)).toBe(false);
    expect(has(own, OTHER)).toBe(false);
  });

  test('a change of the server to a foreign one is refused and the service keeps its previous watcher and hosts', async () => {
    const own = await recorder();
    const foreign = await recorder(false);
    await zkc.put('/t3/service_config/web', JSON.stringify({ type: 'zookeeper', path: '/services/web', port: 8080 }));
    const d = discovery('/t3', own.connectString, {});
    d.start();
    await d.waitFor((x) => endpoints(x).web?.length === 1, 15_000);
    await zkc.put('/t3/service_config/web', watcher(foreign.connectString));
    expect(
      await eventually(
        () => (d.errors().services.web?.[0]?.message ?? '').includes(`refused for server ${foreign.connectString}`),
        10_000,
      ),
    ).toBe(true);
    expect(d.errors().services.web?.[0]?.message).toContain('keeping its previous version');
    expect(endpoints(d.current())).toEqual({ web: ['10.0.0.1:80'] });
    expect(foreign.connections).toBe(0);
  });
});
