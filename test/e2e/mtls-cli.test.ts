import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Backend, startBackends } from '../../testkit/backends';
import { makeCertificates } from '../../testkit/certs';
import { CliProcess, startCli, stopAllCli } from '../../testkit/cli';
import { eventually, freePort, get, sleep, tempDir } from '../../testkit/net';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';
import { CLI } from '../../testkit/cli';
import { spawnSync } from 'node:child_process';

jest.setTimeout(60_000);

/** The built CLI with mTLS: a control plane that requires client certificates, agents with and without one. */
describe('mTLS end to end (built CLI, real HAProxy)', () => {
  const tmp = tempDir('proxymgr-mtls-e2e-');
  let backend: Backend;
  let cp: CliProcess;
  let cpPort: number;
  let webPort: number;
  let certs: ReturnType<typeof makeCertificates>;
  let zk: ZooKeeper;

  beforeAll(async () => {
    certs = makeCertificates(tmp.dir);
    zk = await startZooKeeper(); // rollouts keep their state there; `ctl` talks to the Rollout service over mTLS
    [backend] = (await startBackends(['tls-backend'])) as [Backend];
    [cpPort, webPort] = [await freePort(), await freePort()];
    const services = path.join(tmp.dir, 'services');
    mkdirSync(services);
    writeFileSync(
      path.join(services, 'web.json'),
      JSON.stringify({
        type: 'static',
        port: webPort,
        listen_options: ['mode http'],
        hosts: [`127.0.0.1:${backend.port}`],
      }),
    );
    const cfg = path.join(tmp.dir, 'cp.yml');
    writeFileSync(
      cfg,
      `haproxy: {defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]}
service_config: {type: file, path: ${services}}
controlplane:
  listen: 127.0.0.1:${cpPort}
  tls: {ca: ${certs.ca}, cert: ${certs.serverCert}, key: ${certs.serverKey}, require_client_cert: true}
rollout: {zookeeper: "${zk.connectString}", replica_id: cp0}
`,
    );
    cp = startCli(['controlplane', '--config', cfg]);
    expect(await cp.waitForLog(/control plane started/)).toBe(true);
  });
  afterAll(async () => {
    const hung = await stopAllCli();
    await backend?.close();
    await zk?.stop();
    tmp.cleanup();
    expect(hung).toEqual([]);
  });

  function agentConfig(name: string, ip: string, tls: string): string {
    const dir = path.join(tmp.dir, name);
    mkdirSync(dir);
    const file = path.join(dir, 'proxymgr.yml');
    writeFileSync(
      file,
      `haproxy: {config_path: ${dir}/haproxy.cfg, socket_path: ${dir}/haproxy.sock}
agent:
  state_dir: ${dir}
  node_id: ${name}
  controlplanes: ["127.0.0.1:${cpPort}"]
  admin_listen: ""
  bind_address: ${ip}
  tls: ${tls}
`,
    );
    return file;
  }

  test('an agent with a certificate from the CA serves traffic; one without, or with a foreign one, is refused', async () => {
    const good = startCli([
      'agent',
      '--config',
      agentConfig('good', '127.0.0.1', `{ca: ${certs.ca}, cert: ${certs.agentCert}, key: ${certs.agentKey}}`),
    ]);
    const none = startCli(['agent', '--config', agentConfig('none', '127.0.0.2', `{ca: ${certs.ca}}`)]);
    const rogue = startCli([
      'agent',
      '--config',
      agentConfig('rogue', '127.0.0.3', `{ca: ${certs.ca}, cert: ${certs.rogueCert}, key: ${certs.rogueKey}}`),
    ]);
    expect(await eventually(async () => (await get(webPort, '127.0.0.1')).body === 'tls-backend\n', 15_000)).toBe(true);
    expect(await good.waitForLog(/connected to control plane/)).toBe(true);

    for (const refused of [none, rogue]) {
      expect(await refused.waitForLog(/control plane stream ended; keeping the current state and reconnecting/)).toBe(
        true,
      );
      expect(refused.logs()).not.toMatch(/connected to control plane/);
    }
    await sleep(500);
    await expect(get(webPort, '127.0.0.2', 1000)).rejects.toThrow(/ECONNREFUSED/);
    await expect(get(webPort, '127.0.0.3', 1000)).rejects.toThrow(/ECONNREFUSED/);
    expect(await cp.waitForLog(/"node_id":"good"[^\n]*agent connected/)).toBe(true);
    expect(cp.logs()).not.toMatch(/"node_id":"(none|rogue)"[^\n]*agent connected/);
  });

  test('proxymgr ctl reaches the Rollout service with a client certificate, and is refused without one', () => {
    const ctl = (...args: string[]) =>
      spawnSync(
        process.execPath,
        [
          CLI,
          'ctl',
          '--controlplane',
          `127.0.0.1:${cpPort}`,
          '--timeout-ms',
          '5000',
          ...args,
          'rollout',
          'status',
          '--json',
        ],
        { encoding: 'utf8', timeout: 20_000 },
      );
    const ok = ctl('--cacert', certs.ca, '--cert', certs.agentCert, '--key', certs.agentKey);
    expect(ok.stderr).toBe(''); // not even Node's DEP0123 about TLS to an IP literal
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ leader: 'cp0' });
    const refused = ctl('--cacert', certs.ca);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/proxymgr ctl: .*UNAVAILABLE|proxymgr ctl: .*No connection established/);
  });
});
