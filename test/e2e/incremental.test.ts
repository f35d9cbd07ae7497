import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadConfig } from '../../common/config/config';
import { ControlPlaneAdminClient, ListAgentsResponse } from '../../common/gen/proxymgr/v1/admin';
import { silentLogger } from '../../common/platform/log';
import { fromProto } from '../../common/protocol/state-codec';
import { DesiredState } from '../../common/protocol/types';
import { resolveHaproxyIdentity } from '../../agent/haproxy/privileges';
import { renderHaproxyConfig } from '../../agent/haproxy/render';
import { StatsSocketClient } from '../../agent/haproxy/runtime';
import { ADMF_FMAINT } from '../../agent/haproxy/servers-state';
import { Backend, startBackends } from '../../testkit/backends';
import { CLI, CliProcess, startCli, stopAllCli } from '../../testkit/cli';
import { eventually, freePort, sleep, tally, tempDir } from '../../testkit/net';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';
import { connectZk } from '../../testkit/zk-client';

jest.setTimeout(240_000);

interface Agent {
  readonly id: string;
  readonly ip: string;
  readonly dir: string;
  readonly config: string;
  proc?: CliProcess;
}

/**
 * Issue 10, must show 1: incremental pushes converge to exactly the full desired state. A real ZooKeeper, a control
 * plane with rollouts, two agents with their own HAProxy. After host changes, service changes (each a rollout),
 * a control-plane restart and an agent restart, each agent's haproxy.cfg is byte for byte what the full desired
 * state (the control plane's GetAgentState: what a full resync would send) renders to, and HAProxy's own
 * `show servers state` has every desired server ready at its address, port and weight and nothing else in service.
 * The logs show that the changes went as deltas (and a reconnect as a delta from what the agent declared), not as
 * full states, and that no agent ever had to ask for a resync.
 */
describe('incremental pushes converge to the full desired state (ZooKeeper, control plane, 2 agents, HAProxy)', () => {
  let zk: ZooKeeper;
  let zkc: Awaited<ReturnType<typeof connectZk>>;
  let backends: Backend[];
  let tmp: ReturnType<typeof tempDir>;
  let cp: CliProcess | undefined;
  let cpPort: number;
  let metricsPort: number;
  let cpConfig: string;
  let webPort: number;
  let apiPort: number;
  const agents: Agent[] = [];
  /** Control-plane logs of every run (the restart starts a new process). */
  const cpLogs: string[] = [];

  const host = (b: Backend) => JSON.stringify({ address: '127.0.0.1', port: b.port });
  const webConfig = (rev: string) =>
    JSON.stringify({
      type: 'zookeeper',
      path: '/services/web',
      port: webPort,
      listen_options: ['mode http', `http-response set-header X-Rev ${rev}`],
      server_options: ['check inter 2000'],
    });

  const admin = <T>(fn: (c: ControlPlaneAdminClient, cb: (err: grpc.ServiceError | null, res: T) => void) => void) =>
    new Promise<T>((resolve, reject) => {
      const c = new ControlPlaneAdminClient(`127.0.0.1:${cpPort}`, grpc.credentials.createInsecure());
      fn(c, (err, res) => {
        c.close();
        if (err) reject(err);
        else resolve(res);
      });
    });
  const desiredFor = async (nodeId: string): Promise<DesiredState> =>
    fromProto(await admin((c, cb) => c.getAgentState({ nodeId }, cb)));
  const listAgents = () => admin<ListAgentsResponse>((c, cb) => c.listAgents({}, cb));
  type RolloutStatus = { stableRevision: string; rollout?: { id: string; state: string; toRevision: string } };
  const rolloutCtl = (...args: string[]) =>
    new Promise<RolloutStatus>((resolve, reject) =>
      execFile(
        process.execPath,
        [CLI, 'ctl', '--controlplane', `127.0.0.1:${cpPort}`, 'rollout', ...args, '--json'],
        { timeout: 30_000 },
        (err, stdout) =>
          err ? reject(new Error(err.message, { cause: err })) : resolve(JSON.parse(stdout) as RolloutStatus),
      ),
    );
  const rolloutStatus = () => rolloutCtl('status');

  /** What the agent renders for the full desired state: agent.bind_address applied, its own paths and user. */
  function expectedConfig(a: Agent, desired: DesiredState): string {
    const config = loadConfig(a.config);
    const localized = { ...desired, services: desired.services.map((s) => ({ ...s, bindAddress: a.ip })) };
    return renderHaproxyConfig(localized, {
      socketPath: config.haproxy.socketPath,
      ...(config.haproxy.socketLevel ? { socketLevel: config.haproxy.socketLevel } : {}),
      serverStateFile: path.join(config.agent.stateDir, 'server-state'),
      hardStopAfterMs: config.agent.hardStopAfterMs,
      ...resolveHaproxyIdentity(config, silentLogger),
    });
  }

  /** Differences between HAProxy's live servers and the desired state (empty when they agree). */
  async function liveDifferences(a: Agent, desired: DesiredState): Promise<string[]> {
    const live = await new StatsSocketClient(loadConfig(a.config).haproxy.socketPath).serversState();
    const out: string[] = [];
    for (const s of desired.services) {
      const servers = live.get(s.name);
      if (!servers) {
        out.push(`${s.name}: no backend`);
        continue;
      }
      const wanted = new Set(s.servers.map((v) => v.name));
      for (const v of s.servers) {
        const cur = servers.get(v.name);
        if (!cur) out.push(`${s.name}/${v.name}: missing`);
        else if (
          cur.address !== v.address ||
          cur.port !== v.port ||
          cur.weight !== v.weight ||
          (cur.adminState & ADMF_FMAINT) !== 0
        ) {
          out.push(
            `${s.name}/${v.name}: ${cur.address}:${cur.port} weight ${cur.weight} admin ${cur.adminState}, desired ${v.address}:${v.port} weight ${v.weight} ready`,
          );
        }
      }
      for (const cur of servers.values())
        if (!wanted.has(cur.name) && (cur.adminState & ADMF_FMAINT) === 0)
          out.push(`${s.name}/${cur.name}: in service but not desired`);
    }
    for (const name of live.keys())
      if (!desired.services.some((s) => s.name === name)) out.push(`${name}: backend not desired`);
    return out;
  }

  /**
   * Every agent runs the control plane's desired state for it (ACKed), its haproxy.cfg is that state's render, and
   * HAProxy's servers match it. Returns the desired states.
   */
  async function expectConverged(): Promise<DesiredState[]> {
    const states: DesiredState[] = [];
    for (const a of agents) {
      let desired: DesiredState | undefined;
      let problem = '';
      const ok = await eventually(async () => {
        desired = await desiredFor(a.id);
        const info = (await listAgents()).agents.find((x) => x.nodeId === a.id);
        if (!info?.connected || info.runningVersion !== desired.version) {
          problem = `${a.id} runs ${info?.runningVersion}, desired ${desired.version}`;
          return false;
        }
        const cfg = readFileSync(path.join(a.dir, 'haproxy.cfg'), 'utf8');
        if (cfg !== expectedConfig(a, desired)) {
          problem = `${a.id}: haproxy.cfg differs from the full desired state's render`;
          return false;
        }
        const diffs = await liveDifferences(a, desired);
        problem = diffs.join('; ');
        return diffs.length === 0;
      }, 30_000);
      if (!ok) throw new Error(`${a.id} did not converge: ${problem}`);
      states.push(desired!);
    }
    return states;
  }

  const allCpLogs = () => [...cpLogs, cp?.logs() ?? ''].join('\n');
  /** The control plane's pushes to `node` (kind: delta, full, protocol 0) since `mark` lines of the current log. */
  function pushKinds(node: string, logs: string): string[] {
    return logs
      .split('\n')
      .filter((l) => l.includes('pushed desired state') && l.includes(`"node_id":"${node}"`))
      .map((l) => (JSON.parse(l) as { kind: string }).kind);
  }

  async function startCp(): Promise<void> {
    cp = startCli(['controlplane', '--config', cpConfig]);
    expect(await cp.waitForLog(/control plane started/)).toBe(true);
  }

  async function waitForRolloutToFinish(): Promise<void> {
    // A service-config change becomes a rollout; wait until it has completed and every agent runs the stable revision.
    let last: unknown;
    const ok = await eventually(
      async () => {
        const s = await rolloutStatus();
        last = s.rollout;
        return s.rollout === undefined || s.rollout.state === 'completed';
      },
      60_000,
      200,
    );
    if (!ok) throw new Error(`the rollout did not complete; last: ${JSON.stringify(last, null, 1)}`);
  }

  beforeAll(async () => {
    [zk, backends] = await Promise.all([startZooKeeper(), startBackends(['a', 'b', 'c', 'd'])]);
    zkc = await connectZk(zk.connectString);
    tmp = tempDir('proxymgr-incremental-');
    [webPort, apiPort, cpPort, metricsPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    await zkc.put('/service_config/web', webConfig('v1'));
    await zkc.put('/services/web/a', host(backends[0]!));
    await zkc.put('/services/web/b', host(backends[1]!));
    cpConfig = path.join(tmp.dir, 'cp.yml');
    writeFileSync(
      cpConfig,
      `haproxy:
  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]
service_config: {type: zookeeper, servers: "${zk.connectString}", path: /service_config}
controlplane: {listen: "127.0.0.1:${cpPort}", metrics_listen: "127.0.0.1:${metricsPort}"}
rollout: {bake_ms: 200, replica_id: cp0}
`,
    );
    for (let i = 0; i < 2; i++) {
      const dir = path.join(tmp.dir, `agent${i}`);
      mkdirSync(dir);
      const config = path.join(dir, 'proxymgr.yml');
      writeFileSync(
        config,
        // socket_level admin: the test plays an operator changing a server by hand (safe here: the agent runs as
        // root and HAProxy as its own user, which cannot open the socket).
        `haproxy: {config_path: ${dir}/haproxy.cfg, socket_path: ${dir}/haproxy.sock, socket_level: admin}
agent:
  state_dir: ${dir}
  node_id: agent${i}
  controlplanes: ["127.0.0.1:${cpPort}"]
  admin_listen: ""
  bind_address: 127.0.0.${i + 1}
  drift_check_interval_ms: 60000
  write_delay_ms: 100
  drain_timeout_ms: 0  # removed servers are deleted at once: what HAProxy has is the desired state
`,
      );
      agents.push({ id: `agent${i}`, ip: `127.0.0.${i + 1}`, dir, config });
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

  test('first sync: a full push each, then the state served', async () => {
    await startCp();
    for (const a of agents) a.proc = startCli(['agent', '--config', a.config]);
    await expectConverged();
    for (const a of agents) expect(pushKinds(a.id, allCpLogs())[0]).toBe('full');
    for (const a of agents) expect([...(await tally(webPort, 6, a.ip)).keys()].sort()).toEqual(['a', 'b']);
  });

  test('host changes: deltas only; both agents equal the full state', async () => {
    const before = agents.map((a) => pushKinds(a.id, allCpLogs()).length);
    await zkc.put('/services/web/c', host(backends[2]!));
    await zkc.remove('/services/web/a');
    await sleep(300);
    await zkc.put('/services/web/a', JSON.stringify({ address: '127.0.0.1', port: backends[0]!.port, weight: 3 }));
    await expectConverged();
    for (const [i, a] of agents.entries()) {
      const kinds = pushKinds(a.id, allCpLogs()).slice(before[i]);
      expect(kinds.length).toBeGreaterThan(0);
      expect(kinds.every((k) => k === 'delta')).toBe(true);
    }
  });

  test('service changes (added, changed, removed), each a rollout: deltas; equal to the full state after each', async () => {
    await zkc.put(
      '/service_config/api',
      JSON.stringify({ type: 'zookeeper', path: '/services/api', port: apiPort, listen_options: ['mode http'] }),
    );
    await zkc.put('/services/api/d', host(backends[3]!));
    await waitForRolloutToFinish();
    await expectConverged();
    for (const a of agents) expect([...(await tally(apiPort, 4, a.ip)).keys()]).toEqual(['d']);

    await zkc.put('/service_config/web', webConfig('v2'));
    await waitForRolloutToFinish();
    const states = await expectConverged();
    expect(states[0]!.services.find((s) => s.name === 'web')!.listenOptions).toContain(
      'http-response set-header X-Rev v2',
    );

    await zkc.remove('/services/api/d');
    await zkc.remove('/service_config/api');
    // A removal waits for an operator (a removed service leaves no traffic to judge): resumed, it goes in waves.
    let paused: RolloutStatus['rollout'];
    expect(
      await eventually(async () => (paused = (await rolloutStatus()).rollout)?.state === 'paused', 20_000, 200),
    ).toBe(true);
    expect((await rolloutCtl('resume', '--id', paused!.id)).rollout?.state).toBe('running');
    await waitForRolloutToFinish();
    const after = await expectConverged();
    expect(after[0]!.services.map((s) => s.name)).toEqual(['web']);
    for (const a of agents)
      expect(
        pushKinds(a.id, allCpLogs())
          .slice(1)
          .every((k) => k === 'delta'),
      ).toBe(true);
  });

  test('control-plane restart: agents declare what they hold; a change made meanwhile arrives as a delta, not a full state', async () => {
    cpLogs.push(cp!.logs());
    expect(await cp!.stop()).toBe(0);
    await zkc.put('/services/web/d', host(backends[3]!));
    await startCp();
    await expectConverged();
    const logs = cp!.logs();
    for (const a of agents) {
      expect(logs).toMatch(
        new RegExp(
          `"node_id":"${a.id}"[^\\n]*"base_resources":1[^\\n]*agent connected|agent connected[^\\n]*"base_resources":1`,
        ),
      );
      expect(pushKinds(a.id, logs)).toEqual(['delta']);
    }
  });

  test('agent restart (hand-over, then start): the cache is declared, a change made meanwhile arrives as a delta; no reload', async () => {
    const a = agents[0]!;
    expect(await a.proc!.stop('SIGUSR2')).toBe(0);
    const mark = cp!.logs().length;
    await zkc.remove('/services/web/b');
    await sleep(500);
    a.proc = startCli(['agent', '--config', a.config]);
    expect(await a.proc.waitForLog(/took over the HAProxy the previous agent left running/)).toBe(true);
    await expectConverged();
    expect(pushKinds(a.id, cp!.logs().slice(mark))).toEqual(['delta']);
    expect(a.proc.logs()).not.toMatch(/haproxy (started|reloaded)/);
  });

  test('no agent ever asked for a resync; the metrics say so too', async () => {
    expect(allCpLogs()).not.toMatch(/asks for a full resync/);
    for (const a of agents) expect(a.proc!.logs()).not.toMatch(/asking for a full resync/);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^proxymgr_cp_pushes_total\{kind="delta"\} [1-9]/m);
    expect(metrics).toMatch(/^proxymgr_cp_resyncs_total 0$/m);
    expect(metrics).toMatch(/^proxymgr_cp_push_encodings_total\{result="encoded"\} [1-9]/m);
  });

  test('ctl agent NODE: wanted, ACKed and what HAProxy has (from the agent), with one agent drifted by hand', async () => {
    const run = (...args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(
          process.execPath,
          [CLI, 'ctl', '--controlplane', `127.0.0.1:${cpPort}`, ...args],
          { timeout: 30_000 },
          (err, stdout, stderr) => resolve({ code: err ? 1 : 0, stdout, stderr }),
        ),
      );
    // Drift agent0's HAProxy behind the agent's back (drift repair runs once a minute here).
    const a0 = agents[0]!;
    const runtime = new StatsSocketClient(loadConfig(a0.config).haproxy.socketPath);
    const web = (await desiredFor(a0.id)).services.find((s) => s.name === 'web')!;
    const victim = web.servers[0]!;
    await runtime.command(`set server web/${victim.name} weight 9`);
    const drifted = await run('agent', a0.id);
    expect(drifted.code).toBe(0);
    expect(drifted.stdout).toMatch(new RegExp(`^agent ${a0.id} +SYNCED`, 'm'));
    expect(drifted.stdout).toMatch(/^HAProxy \(from the agent\): \d+ servers in 1 backends; 1 difference\(s\)$/m);
    expect(drifted.stdout).toMatch(
      new RegExp(
        `^web +${victim.name} +${victim.address}:${victim.port} w${victim.weight} +${victim.address}:${victim.port} w9 ready \\w+ +! weight 9, wanted ${victim.weight}$`,
        'm',
      ),
    );
    const json = JSON.parse((await run('agent', a0.id, '--json')).stdout) as {
      agent: { state: string };
      desired: { version: string };
      haproxy: { backend: string; name: string; weight: number }[];
    };
    expect(json.desired.version).toBe((await desiredFor(a0.id)).version);
    expect(json.haproxy.find((s) => s.backend === 'web' && s.name === victim.name)?.weight).toBe(9);
    // The other agent has not drifted; an unknown node is a clear error.
    expect((await run('agent', agents[1]!.id)).stdout).toMatch(/; 0 difference\(s\)$/m);
    const unknown = await run('agent', 'nobody');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no agent with node_id "nobody"/);
    await runtime.command(`set server web/${victim.name} weight ${victim.weight}`);

    // HAProxy's own per-service counters reach the control plane with the next ACK (and every 10 s).
    const counted = async () => {
      const v = JSON.parse((await run('agent', a0.id, '--json')).stdout) as {
        agent: { counters?: { service: string; requests?: string | number }[] };
      };
      return Number(v.agent.counters?.find((c) => c.service === 'web')?.requests ?? 0);
    };
    const before = await counted(); // from earlier ACKs (the traffic of the first tests), or 0
    await tally(webPort, 6, a0.ip);
    await zkc.put('/services/web/d', JSON.stringify({ address: '127.0.0.1', port: backends[3]!.port, weight: 2 }));
    expect(await eventually(async () => (await counted()) >= before + 6, 15_000)).toBe(true);
    expect((await run('agent', a0.id)).stdout).toMatch(
      /^Traffic \(HAProxy's counters since the agent started, reported \d+s ago\):$/m,
    );
  });

  test('ctl agents: both SYNCED on what the control plane wants them to run; a stopped agent is DISCONNECTED', async () => {
    const ctl = (...args: string[]) =>
      new Promise<{ code: number; stdout: string }>((resolve) =>
        execFile(
          process.execPath,
          [CLI, 'ctl', '--controlplane', `127.0.0.1:${cpPort}`, 'agents', ...args],
          { timeout: 30_000 },
          (err, stdout) => resolve({ code: err ? 1 : 0, stdout }),
        ),
      );
    const listed = JSON.parse((await ctl('--json')).stdout) as {
      agents: { nodeId: string; state: string; runningVersion: string; desiredVersion: string }[];
    };
    expect(listed.agents.map((a) => [a.nodeId, a.state]).sort()).toEqual([
      ['agent0', 'SYNCED'],
      ['agent1', 'SYNCED'],
    ]);
    for (const a of listed.agents) expect(a.runningVersion).toBe((await desiredFor(a.nodeId)).version);
    const text = (await ctl()).stdout;
    expect(text).toMatch(/^2 agents: 2 SYNCED, 0 STALE, 0 NACKED, 0 DISCONNECTED$/m);
    expect(text).toMatch(/^agent0 +SYNCED +[0-9a-f]{12} /m); // the revision it runs (rollouts are on)
    expect(await agents[1]!.proc!.stop()).toBe(0);
    expect(await eventually(async () => /^agent1 +DISCONNECTED /m.test((await ctl()).stdout), 10_000)).toBe(true);
  });
});
