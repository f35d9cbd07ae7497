/**
 * `npm run demo`: the whole system on one machine. A local ZooKeeper, a control plane with rollouts, four agents
 * (each with its own HAProxy, on 127.0.0.1 … 127.0.0.4), three sample HTTP backends registered in ZooKeeper in the
 * original ProxyMgr format, and steady client traffic through every agent. Shows traffic and host churn, then a
 * config change rolled out in waves (canary first, each wave judged by the traffic gate), then a change that
 * breaks traffic, which the gate halts at the canary and rolls back. After the host churn it prints `ctl changes`: the
 * control plane's own trace of each host change, applied by how many agents and how fast. Prints what to curl, `ctl` and `buf curl`,
 * and the status page's URL; stops cleanly on Ctrl-C. `--duration S` stops by itself once both rollouts are done
 * and S seconds have passed (used by the smoke test).
 */
import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { RolloutClient, RolloutStatus } from '../common/gen/proxymgr/v1/rollout';
import { ControlPlaneAdminClient, ListChangesResponse } from '../common/gen/proxymgr/v1/admin';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { startBackends } from '../testkit/backends';
import { freePort, get, sleep, tempDir } from '../testkit/net';
import { startZooKeeper } from '../testkit/zookeeper';
import { connectZk } from '../testkit/zk-client';

const CLI = path.join(__dirname, '..', 'bin', 'proxymgr.js');

async function portOr(preferred: number, host = '127.0.0.1'): Promise<number> {
  const free = await new Promise<boolean>((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(preferred, host, () => s.close(() => resolve(true)));
  });
  return free ? preferred : freePort(host);
}

/** The bake of each wave (short, so the demo shows every wave within a minute). */
const BAKE_MS = 4000;

/**
 * A client sending a request every 50 ms through one agent; `take()` says what came back since the last call:
 * "12 ok (a b c)" or "3 ok, 9 x 503".
 */
function startClients(port: number, host: string) {
  let ok = 0;
  const bad = new Map<string, number>();
  const backends = new Set<string>();
  const agent = new http.Agent({ keepAlive: false });
  let running = true;
  const one = () =>
    new Promise<void>((resolve) => {
      const req = http.get({ host, port, path: '/', agent, timeout: 2000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          if (res.statusCode === 200) {
            ok++;
            backends.add(body.trim().replace('backend-', ''));
          } else bad.set(String(res.statusCode), (bad.get(String(res.statusCode)) ?? 0) + 1);
          resolve();
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err: NodeJS.ErrnoException) => {
        bad.set(err.code ?? 'error', (bad.get(err.code ?? 'error') ?? 0) + 1);
        resolve();
      });
    });
  const loop = (async () => {
    while (running) {
      await Promise.all([one(), sleep(50)]);
    }
  })();
  return {
    take(): string {
      const parts = [`${ok} ok (${[...backends].sort().join(' ')})`, ...[...bad].map(([k, n]) => `${n} x ${k}`)];
      ok = 0;
      bad.clear();
      backends.clear();
      return parts.join(', ');
    },
    async stop(): Promise<void> {
      running = false;
      await loop;
      agent.destroy();
    },
  };
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
  const statusPort = await portOr(7080);
  const webPort = await portOr(8080);
  const ips = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4'];
  const adminPorts: number[] = [];
  for (const [i] of ips.entries()) adminPorts.push(await portOr(7101 + i));

  // The original ProxyMgr's layout: one node per service under /service_config, one per host under its path.
  const webConfig = (extra: string[] = []) =>
    JSON.stringify({
      type: 'zookeeper',
      server: zk.connectString,
      path: '/services/web',
      port: webPort,
      listen_options: ['mode http', 'balance roundrobin', ...extra],
      server_options: ['check inter 2000'],
    });
  await zkc.put('/service_config/web', webConfig());
  for (const b of backends)
    await zkc.put(`/services/web/${b.name}`, JSON.stringify({ address: '127.0.0.1', port: b.port }));

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
  metrics_listen: 127.0.0.1:${statusPort}
rollout:
  waves: [1, "50%", "100%"]
  bake_ms: ${BAKE_MS}
  gate: {min_requests: 20, sample_ms: 1000}
`,
  );
  const cp = spawn(process.execPath, [CLI, 'controlplane', '--config', cpConfig], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
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
  labels: {demo: "true", zone: ${i % 2 === 0 ? 'east' : 'west'}}
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
  const ctl = `node ${path.relative(process.cwd(), CLI) || CLI} ctl --controlplane 127.0.0.1:${cpPort}`;
  say(`
ProxyMgr demo (state and logs in ${tmp.dir})
  ZooKeeper      ${zk.connectString}   /service_config/web, /services/web/{backend-a,backend-b,backend-c}
  control plane  127.0.0.1:${cpPort}   status page http://127.0.0.1:${statusPort}/  (and /metrics)
${ips.map((ip, i) => `  agent${i + 1}         HAProxy on ${ip}:${webPort}, admin 127.0.0.1:${adminPorts[i]}`).join('\n')}

Try:
  open http://127.0.0.1:${statusPort}/ in a browser (rollout waves, traffic gates, agents, services; refreshes itself)
  curl http://127.0.0.1:${webPort}/          curl http://127.0.0.2:${webPort}/
  ${ctl} agents                 ${ctl} agent agent1
  ${ctl} changes                ${ctl} change ID
  ${ctl} rollout status         ${ctl} rollout plan         ${ctl} rollout history
  ${buf} --list-methods http://127.0.0.1:${cpPort}
  ${buf} http://127.0.0.1:${cpPort}/proxymgr.v1.ControlPlaneAdmin/ListServices
  ${buf} http://127.0.0.1:${adminPorts[0]}/proxymgr.v1.AgentAdmin/HaproxyState
Ctrl-C stops everything.
`);

  // Wait until every agent serves before showing traffic.
  for (const ip of ips) {
    for (let t = 0; t < 150 && !stopping; t++) {
      if (
        await get(webPort, ip, 500).then(
          (r) => r.status === 200,
          () => false,
        )
      )
        break;
      await sleep(100);
    }
  }
  // Steady client traffic through every agent (what the traffic gates judge): a request every 50 ms per agent.
  const traffic = ips.map((ip) => startClients(webPort, ip));
  const line = () => traffic.map((t, i) => `agent${i + 1} ${t.take()}`).join('  |  ');
  const rollouts = new RolloutClient(`127.0.0.1:${cpPort}`, grpc.credentials.createInsecure());
  const rolloutStatus = () =>
    new Promise<RolloutStatus>((resolve, reject) => rollouts.status({}, (err, s) => (err ? reject(err) : resolve(s))));

  /** Prints a rollout as it happens, until it finishes (or the demo stops). */
  const follow = async (before: string): Promise<RolloutStatus | undefined> => {
    const printed = new Set<string>();
    const once = (key: string, text: string) => {
      if (!printed.has(key)) say(text);
      printed.add(key);
    };
    for (let t = 0; t < 120 && !stopping; t++) {
      const s = await rolloutStatus().catch(() => undefined);
      const r = s?.rollout;
      if (s && r && r.id !== before) {
        once(`start ${r.id}`, `rollout  ${r.id}: ${r.fromRevision} -> ${r.toRevision} (${r.changes.join('; ')})`);
        if (r.preflight?.completedAt)
          once(
            'preflight',
            `rollout  preflight on every agent: ${r.preflight.passed} passed, ${r.preflight.failed} failed`,
          );
        for (const w of r.waves) {
          once(`wave ${w.index}`, `rollout  wave ${w.index} (${w.spec}) released to ${w.agents.join(', ')}`);
          const last = r.pendingWaves.length === 0 && w.index === r.waves.length;
          if (w.ackedAt)
            once(
              `ack ${w.index}`,
              last
                ? `rollout  wave ${w.index} ACKed (the last wave: no bake)`
                : `rollout  wave ${w.index} ACKed; baking ${r.policy?.bakeMs ?? 0} ms while the traffic gate watches`,
            );
          if (w.gate && w.gate.verdict !== 'pending')
            once(`gate ${w.index}`, `rollout  wave ${w.index} gate ${w.gate.verdict.toUpperCase()}: ${w.gate.reason}`);
        }
        if (!['running', 'paused'].includes(r.state)) {
          say(`rollout  ${r.state.toUpperCase()}: ${r.reason}`);
          return s;
        }
      }
      say(`traffic  ${line()}`);
      await sleep(1000);
    }
    return undefined;
  };
  const lastId = async () => (await rolloutStatus().catch(() => undefined))?.rollout?.id ?? '';

  const started = Date.now();
  // Host churn: backend-c leaves and comes back (no reload either time; every agent at once).
  for (let round = 1; round <= 5 && !stopping; round++) {
    say(`traffic  ${line()}`);
    if (round === 2) {
      await zkc.remove('/services/web/backend-c');
      say('zookeeper: removed /services/web/backend-c (it drains: requests it serves finish, new ones go elsewhere)');
    } else if (round === 4) {
      await zkc.put('/services/web/backend-c', JSON.stringify({ address: '127.0.0.1', port: backends[2]!.port }));
      say('zookeeper: re-created /services/web/backend-c');
    }
    if (round === 2 || round === 4) {
      // The next line counts from here: requests already on their way (and the few ms the change takes to reach
      // every agent) belong to the line before.
      await sleep(300);
      line();
    }
    await sleep(2000);
  }
  if (!stopping) await showChanges(`127.0.0.1:${cpPort}`, `${ctl} changes`, say);
  if (!stopping) {
    say('\nzookeeper: /service_config/web gets a response header (a config change: rolled out in waves, canary first)');
    const before = await lastId();
    await zkc.put('/service_config/web', webConfig(['http-response set-header X-Demo v2']));
    await follow(before);
  }
  if (!stopping) {
    say('\nzookeeper: /service_config/web gets a rule that answers 503 (HAProxy accepts it; traffic breaks)');
    const before = await lastId();
    await zkc.put(
      '/service_config/web',
      webConfig(['http-response set-header X-Demo v2', 'http-request return status 503']),
    );
    await follow(before);
    say(`see it: ${ctl} rollout status   ${ctl} rollout history   http://127.0.0.1:${statusPort}/\n`);
  }
  while (!stopping && !(duration > 0 && Date.now() - started > duration * 1000)) {
    say(`traffic  ${line()}`);
    await sleep(2000);
  }
  rollouts.close();
  await Promise.all(traffic.map((t) => t.stop()));
  await stop();
}

/**
 * Prints `ctl changes` once the control plane's trace has the two host changes and every agent that should run them
 * answered (they take milliseconds; the wait, at most 10 s, is for a loaded machine).
 */
async function showChanges(address: string, shown: string, say: (line: string) => void): Promise<void> {
  const admin = new ControlPlaneAdminClient(address, grpc.credentials.createInsecure());
  const list = () =>
    new Promise<ListChangesResponse>((resolve, reject) =>
      admin.listChanges({ limit: 10 }, (err, r) => (err ? reject(err) : resolve(r))),
    );
  for (let t = 0; t < 50; t++) {
    const r = await list().catch(() => undefined);
    if (r && r.changes.length >= 2 && r.changes.every((c) => c.applied + c.refused >= c.expected)) break;
    await sleep(200);
  }
  admin.close();
  const out = await new Promise<string>((resolve) =>
    execFile(process.execPath, [CLI, 'ctl', '--controlplane', address, 'changes'], (err, stdout, stderr) =>
      resolve(err ? `${stdout}${stderr}(ctl failed: ${err.message})` : stdout),
    ),
  );
  say(`\nthe change trace: each host change, source → applied on every agent that should run it\n$ ${shown}`);
  say(out.trimEnd());
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
