/**
 * `npm run demo`: the whole system on one machine. A local ZooKeeper, a control plane, two agents (each with its
 * own HAProxy, on 127.0.0.1 and 127.0.0.2), three sample HTTP backends registered in ZooKeeper in the original
 * ProxyMgr format. Prints what to curl and what to `buf curl`, shows traffic flowing, stops cleanly on Ctrl-C.
 * `--duration S` stops by itself after S seconds (used by the smoke test).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { startBackends } from '../test/helpers/backends';
import { freePort, get, sleep, tempDir } from '../test/helpers/net';
import { startZooKeeper } from '../test/helpers/zookeeper';
import { connectZk } from '../test/helpers/zk-client';

const CLI = path.join(__dirname, '..', 'bin', 'proxymgr.js');

async function portOr(preferred: number, host = '127.0.0.1'): Promise<number> {
  const free = await new Promise<boolean>((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(preferred, host, () => s.close(() => resolve(true)));
  });
  return free ? preferred : freePort(host);
}

async function main(): Promise<void> {
  const durationArg = process.argv.indexOf('--duration');
  const duration = durationArg > 0 ? Number(process.argv[durationArg + 1]) : 0;
  const tmp = tempDir('proxymgr-demo-');
  const children: ChildProcess[] = [];
  const say = (line: string) => console.log(line);
  let stopping = false;

  const zk = await startZooKeeper();
  const backends = await startBackends(['backend-a', 'backend-b', 'backend-c']);
  const zkc = await connectZk(zk.connectString);
  const cpPort = await portOr(7000);
  const webPort = await portOr(8080);
  const adminPorts = [await portOr(7101), await portOr(7102)];
  const ips = ['127.0.0.1', '127.0.0.2'];

  // The original ProxyMgr's layout: one node per service under /service_config, one per host under its path.
  await zkc.put(
    '/service_config/web',
    JSON.stringify({ type: 'zookeeper', server: zk.connectString, path: '/services/web', port: webPort, listen_options: ['mode http', 'balance roundrobin'], server_options: ['check inter 2000'] }),
  );
  for (const b of backends) await zkc.put(`/services/web/${b.name}`, JSON.stringify({ address: '127.0.0.1', port: b.port }));

  const log = (name: string, proc: ChildProcess) => {
    const file = path.join(tmp.dir, `${name}.log`);
    const out: Buffer[] = [];
    proc.stderr?.on('data', (c: Buffer) => out.push(c));
    proc.on('exit', (code, signal) => {
      writeFileSync(file, Buffer.concat(out));
      if (!stopping) say(`!! ${name} exited (${code ?? signal}); its log: ${file}`);
    });
  };
  const cpConfig = path.join(tmp.dir, 'controlplane.yml');
  writeFileSync(
    cpConfig,
    `haproxy:
  defaults: ["mode http", "timeout connect 2s", "timeout client 30s", "timeout server 30s"]
service_config:
  type: zookeeper
  servers: ${zk.connectString}
  path: /service_config
controlplane:
  listen: 127.0.0.1:${cpPort}
`,
  );
  const cp = spawn(process.execPath, [CLI, 'controlplane', '--config', cpConfig], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(cp);
  log('controlplane', cp);
  for (const [i, ip] of ips.entries()) {
    const dir = path.join(tmp.dir, `agent${i + 1}`);
    mkdirSync(dir);
    const config = path.join(dir, 'proxymgr.yml');
    writeFileSync(
      config,
      `haproxy:
  config_path: ${dir}/haproxy.cfg
  socket_path: ${dir}/haproxy.sock
agent:
  state_dir: ${dir}
  node_id: agent${i + 1}
  labels: {demo: "true"}
  controlplanes: ["127.0.0.1:${cpPort}"]
  admin_listen: 127.0.0.1:${adminPorts[i]}
  bind_address: ${ip}
`,
    );
    const agent = spawn(process.execPath, [CLI, 'agent', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(agent);
    log(`agent${i + 1}`, agent);
  }

  const stop = async () => {
    if (stopping) return;
    stopping = true;
    say('\nstopping: agents, control plane, ZooKeeper, backends ...');
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGTERM');
          }),
      ),
    );
    zkc.close();
    await zk.stop();
    await Promise.all(backends.map((b) => b.close()));
    say(`stopped; logs were in ${tmp.dir}`);
    tmp.cleanup();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());

  const buf = 'npx buf curl --protocol grpc --http2-prior-knowledge';
  say(`
ProxyMgr demo (state and logs in ${tmp.dir})
  ZooKeeper      ${zk.connectString}   /service_config/web, /services/web/{backend-a,backend-b,backend-c}
  control plane  127.0.0.1:${cpPort}
  agent1         HAProxy on 127.0.0.1:${webPort}, admin 127.0.0.1:${adminPorts[0]}
  agent2         HAProxy on 127.0.0.2:${webPort}, admin 127.0.0.1:${adminPorts[1]}

Try:
  curl http://127.0.0.1:${webPort}/          curl http://127.0.0.2:${webPort}/
  ${buf} --list-methods http://127.0.0.1:${cpPort}
  ${buf} http://127.0.0.1:${cpPort}/proxymgr.v1.ControlPlaneAdmin/ListAgents
  ${buf} http://127.0.0.1:${cpPort}/proxymgr.v1.ControlPlaneAdmin/ListServices
  ${buf} http://127.0.0.1:${adminPorts[0]}/proxymgr.v1.AgentAdmin/HaproxyState
  ${buf} -d '{"limit":20}' http://127.0.0.1:${adminPorts[0]}/proxymgr.v1.AgentAdmin/RecentActions
Ctrl-C stops everything.
`);

  // Wait until both agents serve before showing traffic.
  for (const ip of ips) {
    for (let t = 0; t < 150 && !stopping; t++) {
      if (await get(webPort, ip, 500).then((r) => r.status === 200, () => false)) break;
      await sleep(100);
    }
  }
  const started = Date.now();
  let round = 0;
  while (!stopping) {
    const parts: string[] = [];
    for (const [i, ip] of ips.entries()) {
      const seen: string[] = [];
      for (let k = 0; k < 6; k++) {
        try {
          seen.push((await get(webPort, ip, 1000)).body.trim().replace('backend-', ''));
        } catch {
          seen.push('-');
        }
      }
      parts.push(`agent${i + 1} ${ip}:${webPort} → ${seen.join(' ')}`);
    }
    say(`traffic  ${parts.join('   |   ')}`);
    round++;
    // Every so often show a host change at work: backend-c leaves and comes back (no reload either time).
    if (round % 5 === 2) {
      await zkc.remove('/services/web/backend-c');
      say('zookeeper: removed /services/web/backend-c');
    } else if (round % 5 === 4) {
      await zkc.put('/services/web/backend-c', JSON.stringify({ address: '127.0.0.1', port: backends[2]!.port }));
      say('zookeeper: re-created /services/web/backend-c');
    }
    if (duration > 0 && Date.now() - started > duration * 1000) break;
    await sleep(2000);
  }
  await stop();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
