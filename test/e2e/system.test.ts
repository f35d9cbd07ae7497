import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  AgentAdminClient,
  ControlPlaneAdminClient,
  ListAgentsResponse,
  StatusResponse,
} from '../../common/gen/proxymgr/v1/admin';
import { Backend, startBackends } from '../../testkit/backends';
import { bufCurl, CliProcess, startCli, stopAllCli } from '../../testkit/cli';
import { startLoad } from '../../testkit/load';
import { eventually, freePort, sleep, tally, tempDir } from '../../testkit/net';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';
import { connectZk } from '../../testkit/zk-client';

jest.setTimeout(180_000);

/**
 * The whole system from the built CLI: a real ZooKeeper with service configs and host nodes in the original
 * ProxyMgr format, a control plane, two agents each with its own HAProxy (127.0.0.1 and 127.0.0.2, same port),
 * real HTTP backends.
 */
describe('ZooKeeper → control plane → gRPC → agents → HAProxy → backends', () => {
  let zk: ZooKeeper;
  let zkc: Awaited<ReturnType<typeof connectZk>>;
  let backends: Backend[];
  let tmp: ReturnType<typeof tempDir>;
  let cp: CliProcess;
  let cpPort: number;
  let cpConfig: string;
  const agents: {
    name: string;
    ip: string;
    config: string;
    adminPort: number;
    metricsPort: number;
    proc?: CliProcess;
  }[] = [];
  let cpMetricsPort: number;
  let webPort: number;

  const hostNode = (b: Backend) => JSON.stringify({ address: '127.0.0.1', port: b.port });
  const json = (v: unknown) => JSON.stringify(v);
  let apiPort: number;
  const agentAdmin = (i: number) =>
    new AgentAdminClient(`127.0.0.1:${agents[i]!.adminPort}`, grpc.credentials.createInsecure());
  const status = (i: number) =>
    new Promise<StatusResponse>((resolve, reject) => {
      const c = agentAdmin(i);
      c.status({}, (err, res) => {
        c.close();
        if (err) reject(err);
        else resolve(res);
      });
    });
  const listAgents = () =>
    new Promise<ListAgentsResponse>((resolve, reject) => {
      const c = new ControlPlaneAdminClient(`127.0.0.1:${cpPort}`, grpc.credentials.createInsecure());
      c.listAgents({}, (err, res) => {
        c.close();
        if (err) reject(err);
        else resolve(res);
      });
    });
  const served = async (ip: string, port: number) => [...(await tally(port, 6, ip)).keys()].sort().join(',');
  const allServe = (expected: string, port = webPort) =>
    eventually(async () => {
      for (const a of agents) if ((await served(a.ip, port)) !== expected) return false;
      return true;
    }, 15_000);

  beforeAll(async () => {
    [zk, backends] = await Promise.all([startZooKeeper(), startBackends(['a', 'b', 'c', 'd'])]);
    zkc = await connectZk(zk.connectString);
    tmp = tempDir('proxymgr-e2e-');
    webPort = await freePort();
    cpPort = await freePort();
    cpMetricsPort = await freePort();
    await zkc.put(
      '/service_config/web',
      json({
        type: 'zookeeper',
        server: zk.connectString,
        path: '/services/web',
        port: webPort,
        listen_options: ['mode http'],
        server_options: ['check inter 2000'],
      }),
    );
    await zkc.put('/services/web/a', hostNode(backends[0]!));
    await zkc.put('/services/web/b', hostNode(backends[1]!));
    cpConfig = path.join(tmp.dir, 'cp.yml');
    writeFileSync(
      cpConfig,
      `haproxy:
  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]
service_config:
  type: zookeeper
  servers: ${zk.connectString}
  path: /service_config
controlplane:
  listen: 127.0.0.1:${cpPort}
  metrics_listen: 127.0.0.1:${cpMetricsPort}
`,
    );
    for (const [i, ip] of ['127.0.0.1', '127.0.0.2'].entries()) {
      const dir = path.join(tmp.dir, `agent${i}`);
      mkdirSync(dir);
      const adminPort = await freePort();
      const metricsPort = await freePort();
      const config = path.join(dir, 'proxymgr.yml');
      writeFileSync(
        config,
        `haproxy:
  config_path: ${dir}/haproxy.cfg
  socket_path: ${dir}/haproxy.sock
agent:
  state_dir: ${dir}
  node_id: agent${i}
  labels: {zone: z${i}}
  controlplanes: ["127.0.0.1:${cpPort}"]
  admin_listen: 127.0.0.1:${adminPort}
  bind_address: ${ip}
  drift_check_interval_ms: 1000
  metrics_listen: 127.0.0.1:${metricsPort}
`,
      );
      agents.push({ name: `agent${i}`, ip, config, adminPort, metricsPort });
    }
  });

  afterAll(async () => {
    const hung = await stopAllCli();
    zkc?.close();
    await zk?.stop();
    await Promise.all((backends ?? []).map((b) => b.close()));
    tmp?.cleanup();
    expect(hung).toEqual([]);
  });

  test('1. service configs and host nodes in the original format → both agents route traffic', async () => {
    cp = startCli(['controlplane', '--config', cpConfig]);
    expect(await cp.waitForLog(/control plane started/)).toBe(true);
    for (const a of agents) a.proc = startCli(['agent', '--config', a.config]);
    expect(await allServe('a,b')).toBe(true);
    // HAProxy serves before the agent's ACK reaches the control plane: wait for both ACKs, then show the whole list.
    const acked = async () => {
      const l = await listAgents();
      return l.agents.length === 2 && l.agents.every((a) => a.runningVersion === l.desiredVersion);
    };
    expect(await eventually(acked, 10_000)).toBe(true);
    const list = await listAgents();
    expect(list.agents.map((a) => [a.nodeId, a.connected, a.runningVersion === list.desiredVersion])).toEqual([
      ['agent0', true, true],
      ['agent1', true, true],
    ]);
  });

  test('2. host removed / added → no reload; new service → one reload per agent, zero failed connections', async () => {
    const before = await Promise.all([status(0), status(1)]);
    const load = startLoad(webPort, 8, '127.0.0.2');
    await zkc.remove('/services/web/b');
    expect(await allServe('a')).toBe(true);
    await zkc.put('/services/web/c', hostNode(backends[2]!));
    expect(await allServe('a,c')).toBe(true);
    const mid = await Promise.all([status(0), status(1)]);
    expect(mid.map((s) => s.reloads)).toEqual(before.map((s) => s.reloads));

    apiPort = await freePort();
    await zkc.put(
      '/service_config/api',
      json({
        type: 'zookeeper',
        server: zk.connectString,
        path: '/services/api',
        port: apiPort,
        listen_options: ['mode http'],
      }),
    );
    await zkc.put('/services/api/d', hostNode(backends[3]!));
    expect(await allServe('d', apiPort)).toBe(true);
    await sleep(300);
    const result = await load.stop();
    const after = await Promise.all([status(0), status(1)]);
    // On a mismatch the diff shows each agent's reload reasons.
    const reloadReasons = async (i: number) =>
      new Promise<string[]>((resolve, reject) => {
        const c = agentAdmin(i);
        c.recentActions({ limit: 200 }, (err, res) => {
          c.close();
          if (err) reject(err);
          else resolve(res.actions.filter((a) => a.kind === 'reload').map((a) => a.reason));
        });
      });
    expect(
      await Promise.all(
        after.map(async (s, i) => ({
          reloads: s.reloads - before[i]!.reloads,
          reasons: (await reloadReasons(i)).slice(-(s.reloads - before[i]!.reloads)),
        })),
      ),
    ).toEqual([
      { reloads: 1, reasons: ['reload: new service api'] },
      { reloads: 1, reasons: ['reload: new service api'] },
    ]);
    expect(result.ok).toBeGreaterThan(50);
    expect({ refused: result.refused, reset: result.reset, empty: result.empty, other: result.other }).toEqual({
      refused: 0,
      reset: 0,
      empty: 0,
      other: 0,
    });
  });

  test('3. control plane killed: traffic continues, changes made meanwhile arrive after its restart; an agent restarted meanwhile serves its cache', async () => {
    await cp.kill();
    expect(await served('127.0.0.1', webPort)).toBe('a,c');
    await zkc.put('/services/web/b', hostNode(backends[1]!));
    await sleep(500);
    expect(await served('127.0.0.2', webPort)).toBe('a,c'); // nobody to tell the agents yet

    // Agent 0 restarted while no control plane answers: it serves the state it cached.
    expect(await agents[0]!.proc!.stop()).toBe(0);
    agents[0]!.proc = startCli(['agent', '--config', agents[0]!.config]);
    expect(await agents[0]!.proc.waitForLog(/serving the cached desired state/)).toBe(true);
    expect(await eventually(async () => (await served('127.0.0.1', webPort)) === 'a,c', 10_000)).toBe(true);

    cp = startCli(['controlplane', '--config', cpConfig]);
    expect(await allServe('a,b,c', webPort)).toBe(true);
  });

  test("4. a service config HAProxy rejects → agents apply the rest, name the service with HAProxy's message, keep serving; the admin API shows it", async () => {
    await zkc.put(
      '/service_config/api',
      json({
        type: 'zookeeper',
        server: zk.connectString,
        path: '/services/api',
        port: apiPort,
        listen_options: ['mode http', 'timeout server soon'],
      }),
    );
    expect(
      await eventually(async () => {
        const list = await listAgents();
        // A partial apply: the version is ACKed, the service HAProxy refused is left out and named.
        return list.agents.every(
          (a) =>
            /applied without service\(s\) api: .*unexpected character 's' in 'timeout server'/.test(a.lastError) &&
            a.runningVersion === list.desiredVersion,
        );
      }, 15_000),
    ).toBe(true);
    const list = await listAgents();
    expect(list.agents[0]!.lastError).toMatch(/service api/);
    expect(await served('127.0.0.1', webPort)).toBe('a,b,c');
    expect(await served('127.0.0.2', webPort)).toBe('a,b,c');
  });

  test('5. buf curl lists and calls the methods of both processes; health answers SERVING', async () => {
    const cpList = await bufCurl(['--list-methods', `http://127.0.0.1:${cpPort}`]);
    expect(cpList.stderr).toBe('');
    expect(cpList.stdout).toContain('proxymgr.v1.ControlPlaneAdmin/ListAgents');
    expect(cpList.stdout).toContain('proxymgr.v1.AgentStream/Stream');
    expect(cpList.stdout).toContain('grpc.health.v1.Health/Check');
    const agentList = await bufCurl(['--list-methods', `http://127.0.0.1:${agents[1]!.adminPort}`]);
    expect(agentList.stdout).toContain('proxymgr.v1.AgentAdmin/HaproxyState');

    const services = await bufCurl([`http://127.0.0.1:${cpPort}/proxymgr.v1.ControlPlaneAdmin/ListServices`]);
    const parsed = JSON.parse(services.stdout) as { services: { name: string; servers: { name: string }[] }[] };
    expect(
      parsed.services
        .find((s) => s.name === 'web')
        ?.servers.map((s) => s.name)
        .sort(),
    ).toEqual(['a', 'b', 'c']);
    const agentsOut = JSON.parse(
      (await bufCurl([`http://127.0.0.1:${cpPort}/proxymgr.v1.ControlPlaneAdmin/ListAgents`])).stdout,
    ) as { agents: { nodeId: string; labels: Record<string, string> }[] };
    expect(agentsOut.agents.map((a) => a.labels.zone)).toEqual(['z0', 'z1']);
    const state = JSON.parse(
      (
        await bufCurl([
          '-d',
          '{"node_id":"agent1"}',
          `http://127.0.0.1:${cpPort}/proxymgr.v1.ControlPlaneAdmin/GetAgentState`,
        ])
      ).stdout,
    ) as { services: unknown[] };
    expect(state.services.length).toBeGreaterThanOrEqual(1);

    const live = JSON.parse(
      (await bufCurl([`http://127.0.0.1:${agents[1]!.adminPort}/proxymgr.v1.AgentAdmin/HaproxyState`])).stdout,
    ) as { servers: { backend: string; name: string; adminState: string }[] };
    expect(
      live.servers
        .filter((s) => s.backend === 'web' && s.adminState === 'ready')
        .map((s) => s.name)
        .sort(),
    ).toEqual(['a', 'b', 'c']);
    const actions = JSON.parse(
      (
        await bufCurl([
          '-d',
          '{"limit":100}',
          `http://127.0.0.1:${agents[1]!.adminPort}/proxymgr.v1.AgentAdmin/RecentActions`,
        ])
      ).stdout,
    ) as { actions: { reason: string }[] };
    expect(actions.actions.map((a) => a.reason)).toContain('server web/b is no longer in the desired state: draining');

    for (const port of [cpPort, agents[0]!.adminPort]) {
      const health = await bufCurl([`http://127.0.0.1:${port}/grpc.health.v1.Health/Check`]);
      expect(JSON.parse(health.stdout)).toEqual({ status: 'SERVING' });
    }
  });

  test('Prometheus metrics of both processes count what happened', async () => {
    const metrics = async (port: number) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const cp = await metrics(cpMetricsPort);
    expect(cp).toMatch(/^proxymgr_cp_connected_agents 2$/m);
    expect(cp).toMatch(/^proxymgr_cp_partial_acks_total [1-9]/m);
    expect(cp).toMatch(/^proxymgr_cp_acks_total\{method="runtime"\} [1-9]/m);
    expect(cp).toMatch(/^proxymgr_cp_desired_version\{version="[0-9a-f]+"\} 1$/m);
    const agent = await metrics(agents[1]!.metricsPort);
    expect(agent).toMatch(/^proxymgr_agent_reloads_total\{reason="new_service"\} 1$/m);
    expect(agent).toMatch(/^proxymgr_agent_runtime_commands_total\{kind="set_state_drain"\} [1-9]/m);
    expect(agent).toMatch(/^proxymgr_agent_servers_draining\{deadline="yes"\} \d+$/m);
    expect(agent).toMatch(/^proxymgr_agent_left_out_total\{kind="service"\} [1-9]/m); // the api service of test 4
    expect(agent).toMatch(/^proxymgr_agent_haproxy_up 1$/m);
    // HAProxy's own per-service counters (show stat, carried across the reload of test 2), labelled by service.
    expect(Number(/^proxymgr_agent_service_requests_total\{service="web"\} (\d+)$/m.exec(agent)?.[1])).toBeGreaterThan(
      0,
    );
    expect(agent).toMatch(/^proxymgr_agent_service_servers\{service="web"\} [1-9]/m);
    expect(agent).toMatch(/^proxymgr_agent_service_servers_down\{service="web"\} 0$/m);
    // The standard process and Node.js metrics, in both processes; and both expositions pass promtool's lint.
    for (const m of [cp, agent]) {
      expect(m).toMatch(/^process_cpu_seconds_total \d/m);
      expect(m).toMatch(/^nodejs_heap_size_used_bytes \d/m);
      const lint = spawnSync('promtool', ['check', 'metrics'], { input: m, encoding: 'utf8' });
      expect(`${lint.status} ${lint.stdout}${lint.stderr}`.trim()).toBe('0');
    }
  });
});
