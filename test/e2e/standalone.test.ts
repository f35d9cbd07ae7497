import { writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Backend, startBackends } from '../../testkit/backends';
import { CLI, startCli, stopAllCli } from '../../testkit/cli';
import { eventually, freePort, tally, tempDir } from '../../testkit/net';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';
import { connectZk } from '../../testkit/zk-client';
import { spawnSync } from 'node:child_process';

jest.setTimeout(60_000);

/**
 * `proxymgr standalone` with a proxymgr.yml in the original ProxyMgr's format (only its paths point into a temp
 * dir) and the original ZooKeeper layout: discovery and one agent in one process, no gRPC in between.
 */
describe('proxymgr standalone: the original proxymgr.yml on one host', () => {
  let zk: ZooKeeper;
  let backends: Backend[];
  const tmp = tempDir('proxymgr-standalone-');

  beforeAll(async () => {
    [zk, backends] = await Promise.all([startZooKeeper(), startBackends(['a', 'b'])]);
  });
  afterAll(async () => {
    const hung = await stopAllCli();
    await zk?.stop();
    await Promise.all((backends ?? []).map((b) => b.close()));
    tmp.cleanup();
    expect(hung).toEqual([]);
  });

  test('service config and host nodes in ZooKeeper → traffic; a removed host stops getting it without a reload', async () => {
    const port = await freePort();
    const zkc = await connectZk(zk.connectString);
    await zkc.put(
      '/service_config/testservice',
      JSON.stringify({
        type: 'zookeeper',
        server: zk.connectString,
        path: '/services/testservice',
        port,
        listen_options: ['mode http'],
        server_options: ['check inter 2000'],
      }),
    );
    for (const b of backends)
      await zkc.put(`/services/testservice/${b.name}`, JSON.stringify({ address: '127.0.0.1', port: b.port }));
    const cfg = path.join(tmp.dir, 'proxymgr.yml');
    writeFileSync(
      cfg,
      `---
haproxy:
  config_path: ${tmp.dir}/haproxy.cfg
  socket_path: ${tmp.dir}/stats.sock

service_config:
  type: zookeeper
  servers: ${zk.connectString}
  path: /service_config

# The one addition: keep the agent's cache and server-state file out of /var/lib/proxymgr (the default).
agent:
  state_dir: ${tmp.dir}
`,
    );
    // The default admin port (127.0.0.1:7001) may be taken on a test machine: the agent must run regardless.
    const blocker = net.createServer().listen(7001, '127.0.0.1');
    await new Promise((r) => blocker.once('listening', r).once('error', r));
    try {
      const proc = startCli(['standalone', '--config', cfg]);
      expect(await eventually(async () => (await tally(port, 4)).size === 2, 20_000)).toBe(true);
      await zkc.remove('/services/testservice/b');
      expect(await eventually(async () => [...(await tally(port, 4)).keys()].join() === 'a', 10_000)).toBe(true);
      // HAProxy acts on the command before the agent logs it: wait for the line rather than expect it already there.
      expect(await proc.waitForLog(/server testservice\/b is no longer in the desired state/)).toBe(true);
      expect(proc.logs().match(/haproxy (started|reloaded)/g)).toEqual(['haproxy started']);
      expect(await proc.stop()).toBe(0);
    } finally {
      blocker.close();
      zkc.close();
    }
  });

  test('a bad proxymgr.yml: a clear error naming the file and the key, exit 1', () => {
    const cfg = path.join(tmp.dir, 'bad.yml');
    writeFileSync(cfg, 'service_config:\n  type: zookeeper\n  servers: localhost\n  path: /service_config\n');
    const r = spawnSync(process.execPath, [CLI, 'standalone', '--config', cfg], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`${cfg}: service_config.servers: "localhost" is not host:port`);
  });
});
