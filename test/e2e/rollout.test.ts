import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { Backend, startBackends } from '../../testkit/backends';
import { bufCurl, CLI, CliProcess, runCli, startCli, stopAllCli } from '../../testkit/cli';
import { startLoad } from '../../testkit/load';
import { eventually, freePort, sleep, tempDir } from '../../testkit/net';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';
import { connectZk } from '../../testkit/zk-client';

jest.setTimeout(150_000);

interface Status {
  enabled: boolean;
  replica: string;
  leader: string;
  stableRevision: string;
  rollout?: {
    id: string;
    fromRevision: string;
    toRevision: string;
    state: string;
    reason: string;
    waves?: {
      index: number;
      spec: string;
      agents: string[];
      startedAt: string;
      ackedAt?: string;
      completedAt?: string;
    }[];
    preflight?: { passed?: number; failed?: number; unanswered?: number };
  };
  agents: {
    nodeId: string;
    connected: boolean;
    replica: string;
    wave?: number;
    releasedRevision: string;
    runningRevision?: string;
    status: string;
    error?: string;
    preflight?: string;
  }[];
}

/**
 * Rollouts and HA from the built CLI: a real ZooKeeper, two control-plane replicas, five agents each with its own
 * HAProxy (127.0.0.1 … 127.0.0.5, same port), real HTTP backends. Every service-config change below alters the
 * `X-Rev` response header, so which revision an agent's HAProxy runs is visible in its traffic.
 */
describe('rollouts across 2 control planes and 5 agents', () => {
  let zk: ZooKeeper;
  let zkc: Awaited<ReturnType<typeof connectZk>>;
  let backends: Backend[];
  let tmp: ReturnType<typeof tempDir>;
  const cps: { id: string; port: number; metricsPort: number; config: string; proc?: CliProcess }[] = [];
  const agents: { id: string; ip: string; config: string; proc?: CliProcess }[] = [];
  let webPort: number;
  let euPort: number;

  const webConfig = (rev: string, extra: string[] = []) =>
    JSON.stringify({
      type: 'zookeeper',
      path: '/services/web',
      port: webPort,
      listen_options: ['mode http', `http-response set-header X-Rev ${rev}`, ...extra],
    });
  const host = (b: Backend) => JSON.stringify({ address: '127.0.0.1', port: b.port });

  const ctl = (cp: number, ...args: string[]) =>
    runCli(['ctl', '--controlplane', `127.0.0.1:${cps[cp]!.port}`, 'rollout', ...args]);
  const status = async (cp = 0): Promise<Status> => JSON.parse((await ctl(cp, 'status', '--json')).stdout) as Status;
  /** The X-Rev header (the revision in traffic) and the backend of one request through an agent. */
  const hit = (ip: string, port = webPort) =>
    new Promise<{ rev: string; body: string }>((resolve, reject) => {
      const req = http.get({ host: ip, port, path: '/', agent: false, timeout: 3000 }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ rev: String(res.headers['x-rev'] ?? ''), body: body.trim() }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
    });
  const revs = async () => Promise.all(agents.map(async (a) => (await hit(a.ip)).rev));
  const backendsOf = async (ip: string) => {
    const seen = new Set<string>();
    for (let i = 0; i < 8; i++) seen.add((await hit(ip)).body);
    return [...seen].sort().join(',');
  };

  /** Polls status until `pred`, recording every status seen; checks the release invariant on each. */
  const seen: Status[] = [];
  async function until(pred: (s: Status) => boolean, timeoutMs = 20_000, cp = 0): Promise<Status> {
    let last: Status | undefined;
    const ok = await eventually(
      async () => {
        last = await status(cp);
        seen.push(last);
        return pred(last);
      },
      timeoutMs,
      100,
    );
    if (!ok) throw new Error(`condition not met; last status: ${JSON.stringify(last, null, 1)}`);
    return last!;
  }
  /** No agent ever runs the rollout's target unless a wave released it to that agent. */
  function assertOnlyReleased(statuses: Status[]): void {
    for (const s of statuses) {
      const r = s.rollout;
      if (!r || !['running', 'paused', 'halted'].includes(r.state)) continue;
      for (const a of s.agents) if (a.runningRevision === r.toRevision) expect(a.wave ?? 0).toBeGreaterThan(0);
    }
  }

  /** Every push of a version of `revision`, from both replicas' logs: which agent, when. */
  function pushesOf(revision: string): { node: string; time: number }[] {
    const out: { node: string; time: number }[] = [];
    for (const cp of cps) {
      for (const line of (cp.proc?.logs() ?? '').split('\n')) {
        if (!line.includes('pushed desired state')) continue;
        const l = JSON.parse(line) as { node_id: string; version: string; time: number };
        if (l.version.startsWith(revision + '.')) out.push({ node: l.node_id, time: l.time });
      }
    }
    return out;
  }
  /** The logs prove it: every push of the rollout's target went to an agent after its wave released it. */
  function assertPushesReleased(s: Status): void {
    const waves = s.rollout!.waves!;
    for (const p of pushesOf(s.rollout!.toRevision)) {
      const w = waves.find((x) => x.agents.includes(p.node));
      expect({ node: p.node, released: w !== undefined }).toEqual({ node: p.node, released: true });
      expect(p.time).toBeGreaterThanOrEqual(Date.parse(w!.startedAt));
    }
  }

  beforeAll(async () => {
    [zk, backends] = await Promise.all([startZooKeeper(), startBackends(['a', 'b', 'c'])]);
    zkc = await connectZk(zk.connectString);
    tmp = tempDir('proxymgr-rollout-');
    webPort = await freePort();
    euPort = await freePort();
    await zkc.put('/service_config/web', webConfig('v1'));
    await zkc.put(
      '/service_config/eu',
      JSON.stringify({
        type: 'zookeeper',
        path: '/services/web',
        port: euPort,
        listen_options: ['mode http'],
        agents: { zone: 'eu' },
      }),
    );
    await zkc.put('/services/web/a', host(backends[0]!));
    await zkc.put('/services/web/b', host(backends[1]!));
    for (const id of ['cp0', 'cp1']) {
      const port = await freePort();
      const metricsPort = await freePort();
      const config = path.join(tmp.dir, `${id}.yml`);
      writeFileSync(
        config,
        `haproxy:
  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]
service_config: {type: zookeeper, servers: "${zk.connectString}", path: /service_config}
controlplane: {listen: "127.0.0.1:${port}", metrics_listen: "127.0.0.1:${metricsPort}", zk_session_timeout_ms: 2000}
rollout: {bake_ms: 300, replica_id: ${id}, spread_by: rack}
`,
      );
      cps.push({ id, port, metricsPort, config });
    }
    for (let i = 0; i < 5; i++) {
      const dir = path.join(tmp.dir, `agent${i}`);
      mkdirSync(dir);
      const config = path.join(dir, 'proxymgr.yml');
      const order = i < 3 ? [0, 1] : [1, 0];
      writeFileSync(
        config,
        `haproxy: {config_path: ${dir}/haproxy.cfg, socket_path: ${dir}/haproxy.sock}
agent:
  state_dir: ${dir}
  node_id: agent${i}
  labels: {zone: ${i < 2 ? 'eu' : 'us'}, rack: r${(i + 1) % 2}}
  controlplanes: [${order.map((c) => `"127.0.0.1:${cps[c]!.port}"`).join(', ')}]
  admin_listen: ""
  bind_address: 127.0.0.${i + 1}
  drift_check_interval_ms: 1000
`,
      );
      agents.push({ id: `agent${i}`, ip: `127.0.0.${i + 1}`, config });
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

  test('start: the first revision reaches all 5 agents at once; the eu service only agents labelled zone=eu', async () => {
    for (const cp of cps) cp.proc = startCli(['controlplane', '--config', cp.config]);
    for (const cp of cps) expect(await cp.proc!.waitForLog(/control plane started/)).toBe(true);
    for (const a of agents) a.proc = startCli(['agent', '--config', a.config]);
    expect(await eventually(async () => (await revs()).every((r) => r === 'v1'), 20_000)).toBe(true);
    const s = await until(
      (x) => x.agents.length === 5 && x.agents.every((a) => a.connected && a.runningRevision === x.stableRevision),
    );
    expect(['cp0', 'cp1']).toContain(s.leader);
    expect(s.rollout).toBeUndefined();
    expect(new Set(s.agents.map((a) => a.replica))).toEqual(new Set(['cp0', 'cp1']));
    expect((await hit('127.0.0.1', euPort)).body).toMatch(/^[ab]$/);
    expect((await hit('127.0.0.2', euPort)).body).toMatch(/^[ab]$/);
    await expect(hit('127.0.0.3', euPort)).rejects.toThrow(/ECONNREFUSED/);
    const methods = await bufCurl(['--list-methods', `http://127.0.0.1:${cps[0]!.port}`]);
    expect(methods.stdout).toContain('proxymgr.v1.Rollout/Status');
    expect(methods.stdout).toContain('proxymgr.v1.Rollout/Abort');
    const viaReflection = JSON.parse(
      (await bufCurl([`http://127.0.0.1:${cps[1]!.port}/proxymgr.v1.Rollout/Status`])).stdout,
    ) as Status;
    expect(viaReflection.stableRevision).toBe(s.stableRevision);
  });

  test('must show 1 + 5: a service-config change rolls out wave by wave (ctl shows each wave, in order); host changes reach every agent at once meanwhile', async () => {
    expect((await ctl(1, 'policy', '--next', '--bake-ms', '1500')).code).toBe(0);
    const watch = spawn(process.execPath, [
      CLI,
      'ctl',
      '--controlplane',
      `127.0.0.1:${cps[1]!.port}`,
      'rollout',
      'status',
      '--watch',
      '--json',
      '--interval-ms',
      '100',
    ]);
    let lines = '';
    watch.stdout.on('data', (c) => (lines += c));
    await zkc.put('/service_config/web', webConfig('v2'));
    const started = await until((s) => s.rollout?.state === 'running' && (s.rollout.waves?.length ?? 0) >= 1);
    // Mid-rollout: a new host reaches all five agents — those on v1 and the canary on v2 — at once.
    const t0 = Date.now();
    await zkc.put('/services/web/c', host(backends[2]!));
    expect(
      await eventually(
        async () => (await Promise.all(agents.map((a) => backendsOf(a.ip)))).every((b) => b === 'a,b,c'),
        10_000,
      ),
    ).toBe(true);
    const hostMs = Date.now() - t0;
    const mid = await status(0);
    expect(mid.rollout!.id).toBe(started.rollout!.id);
    expect(mid.rollout!.state).toBe('running'); // the host change did not wait for the rollout
    expect((await revs()).filter((r) => r === 'v1').length).toBeGreaterThan(0);

    const done = await until((s) => s.rollout?.id === started.rollout!.id && s.rollout.state === 'completed', 30_000);
    expect(await eventually(() => watch.exitCode === 0, 5000)).toBe(true);
    expect(await revs()).toEqual(['v2', 'v2', 'v2', 'v2', 'v2']);
    const waves = done.rollout!.waves!;
    expect(waves.map((w) => [w.spec, w.agents.length])).toEqual([
      ['1', 1],
      ['50%', 2],
      ['100%', 2],
    ]);
    // spread_by: rack — racks r0 (agent1, agent3) and r1 (agent0, agent2, agent4) take turns, r0 first.
    expect(waves.map((w) => [...w.agents].sort())).toEqual([['agent1'], ['agent0', 'agent3'], ['agent2', 'agent4']]);
    for (let i = 1; i < waves.length; i++) {
      expect(Date.parse(waves[i]!.startedAt)).toBeGreaterThanOrEqual(Date.parse(waves[i - 1]!.ackedAt!) + 1500);
      expect(Date.parse(waves[i]!.startedAt)).toBeGreaterThanOrEqual(Date.parse(waves[i - 1]!.completedAt!));
    }
    expect(done.stableRevision).toBe(done.rollout!.toRevision);
    // The --watch output saw the waves appear one after another.
    const watched = lines
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Status);
    const counts = [
      ...new Set(
        watched.filter((s) => s.rollout?.id === started.rollout!.id).map((s) => s.rollout!.waves?.length ?? 0),
      ),
    ];
    expect(counts).toEqual([1, 2, 3]);
    assertOnlyReleased([...seen, ...watched]);
    assertPushesReleased(done);
    expect(new Set(pushesOf(done.rollout!.toRevision).map((p) => p.node)).size).toBe(5);
    const text = (await ctl(0, 'status')).stdout;
    expect(text).toMatch(/COMPLETED/);
    expect(text).toMatch(/WAVE\s+SPEC\s+AGENTS/);
    expect(text).toMatch(/\[#+\] 5\/5/);
    console.log(`host change reached 5 agents in ${hostMs} ms mid-rollout\n${text}`);
  });

  test("preflight: a change HAProxy rejects halts before wave 1 (no agent is sent it); ctl rollout plan and status show each agent's message", async () => {
    const stable = (await status()).stableRevision;
    await zkc.put('/service_config/web', webConfig('v3', ['timeout server soon']));
    // It halts at the first failure (max_failures 0); the answers that come after are still listed.
    const s = await until(
      (x) => x.rollout?.state === 'halted' && x.rollout.toRevision !== stable && x.rollout.preflight?.failed === 5,
    );
    expect(s.rollout!.waves ?? []).toHaveLength(0);
    expect(s.rollout!.reason).toMatch(
      /^preflight failed on \d agent\(s\), more than preflight.max_failures 0; no agent runs \w+; agent\d: .*unexpected character 's' in 'timeout server'/,
    );
    expect(s.rollout!.preflight).toMatchObject({ failed: 5 });
    expect(
      s.agents.every((a) => a.releasedRevision === stable && a.runningRevision === stable && a.preflight === 'failed'),
    ).toBe(true);
    expect(pushesOf(s.rollout!.toRevision)).toEqual([]);
    const text = (await ctl(1, 'status')).stdout;
    expect(text).toMatch(/preflight: 0 passed, 5 failed/);
    expect(text).toMatch(/unexpected character 's' in 'timeout server'/);
    const plan = JSON.parse((await ctl(0, 'plan', '--json')).stdout) as {
      toRevision: string;
      servicesChanged: string[];
      agents: { nodeId: string; preflight: string; error: string; services: string[] }[];
    };
    expect(plan.toRevision).toBe(s.rollout!.toRevision);
    expect(plan.servicesChanged).toEqual(['web']);
    expect(plan.agents).toHaveLength(5);
    for (const a of plan.agents) {
      expect(a).toMatchObject({ preflight: 'failed', services: ['web'] });
      expect(a.error).toMatch(/unexpected character 's' in 'timeout server'/);
    }
    expect((await ctl(0, 'plan')).stdout).toMatch(/services changed: web/);
    expect(await revs()).toEqual(['v2', 'v2', 'v2', 'v2', 'v2']);
    // The next rollout goes without preflight: the NACK path (next test) is what stops it then.
    expect((await ctl(0, 'policy', '--next', '--preflight', 'off')).code).toBe(0);
  });

  test('must show 2: HAProxy rejects the change → the canary NACKs, the rollout halts, nobody else gets it, ctl shows the message, the canary is restored', async () => {
    const stable = (await status()).stableRevision;
    await zkc.put('/service_config/web', webConfig('v3', ['timeout server soon', 'description nack-path']));
    const s = await until((x) => x.rollout?.state === 'rolled_back' && x.rollout.toRevision !== stable);
    const canary = s.rollout!.waves![0]!.agents[0]!;
    expect(s.rollout!.waves).toHaveLength(1);
    expect(s.rollout!.reason).toMatch(/unexpected character 's' in 'timeout server'/);
    const c = s.agents.find((a) => a.nodeId === canary)!;
    expect(c.status).toBe('nacked');
    expect(c.error).toMatch(/unexpected character 's' in 'timeout server'/);
    expect(s.agents.every((a) => a.releasedRevision === stable && a.runningRevision === stable)).toBe(true);
    assertOnlyReleased(seen);
    for (const x of seen.filter((y) => y.rollout?.id === s.rollout!.id)) {
      for (const a of x.agents) if (a.nodeId !== canary) expect(a.wave ?? 0).toBe(0);
    }
    expect([...new Set(pushesOf(s.rollout!.toRevision).map((p) => p.node))]).toEqual([canary]);
    const text = (await ctl(1, 'status')).stdout;
    expect(text).toMatch(/ROLLED_BACK/);
    expect(text).toMatch(/unexpected character 's' in 'timeout server'/);
    expect(await revs()).toEqual(['v2', 'v2', 'v2', 'v2', 'v2']); // the canary kept serving its last good state
    const history = JSON.parse((await ctl(0, 'history', '--json')).stdout) as { rollouts: { state: string }[] };
    expect(history.rollouts.map((r) => r.state).slice(0, 3)).toEqual(['rolled_back', 'superseded', 'completed']);
    // Both replicas export the rollout and who leads.
    const metrics = await Promise.all(
      cps.map(async (cp) => (await fetch(`http://127.0.0.1:${cp.metricsPort}/metrics`)).text()),
    );
    for (const m of metrics)
      expect(m).toContain(
        `proxymgr_cp_rollout{state="rolled_back",revision="${s.rollout!.toRevision}",stable="${stable}"} 1`,
      );
    expect(metrics.map((m) => /^proxymgr_cp_leader (\d)$/m.exec(m)?.[1]).sort()).toEqual(['0', '1']);
  });

  test('must show 3: pause holds the next wave, resume continues it, abort rolls everyone back', async () => {
    const stable = (await status()).stableRevision;
    // A bake long enough that the pause below (a ctl process start away) surely lands before wave 2 is due.
    expect((await ctl(1, 'policy', '--next', '--bake-ms', '2500')).code).toBe(0);
    await zkc.put('/service_config/web', webConfig('v4'));
    const s1 = await until(
      (x) => x.rollout?.state === 'running' && x.rollout.toRevision !== stable && !!x.rollout.waves?.[0]?.ackedAt,
    );
    const paused = JSON.parse((await ctl(1, 'pause', '--json')).stdout) as Status;
    expect(paused.rollout!.state).toBe('paused');
    expect(paused.rollout!.waves).toHaveLength(1);
    await sleep(3000); // beyond the 2.5 s bake
    const p = await status(0);
    expect(p.rollout!.state).toBe('paused');
    expect(p.rollout!.waves).toHaveLength(1);
    expect((await revs()).filter((r) => r === 'v4')).toHaveLength(1);
    expect((await ctl(0, 'pause')).code).toBe(1); // already paused: refused with a message

    expect(JSON.parse((await ctl(0, 'resume', '--json')).stdout).rollout.state).toBe('running');
    await until((x) => x.rollout?.id === s1.rollout!.id && (x.rollout.waves?.length ?? 0) >= 2);
    const pausedPushes = new Set(pushesOf(s1.rollout!.toRevision).map((p) => p.node));
    expect(pausedPushes.size).toBeLessThanOrEqual(3);
    const aborted = JSON.parse((await ctl(1, 'abort', '--json')).stdout) as Status;
    expect(aborted.rollout!.state).toBe('aborted');
    expect(await eventually(async () => (await revs()).every((r) => r === 'v2'), 15_000)).toBe(true);
    // Traffic shows v2 before the agents' ACKs of it are recorded: wait for those.
    const after = await until((x) => x.agents.every((a) => a.runningRevision === stable), 10_000, 1);
    expect(after.stableRevision).toBe(stable);
    assertOnlyReleased(seen);
    assertPushesReleased(aborted);
  });

  test('promote releases the rest at once (no bake); text-mode ctl status --watch draws each wave; history lists the rollouts', async () => {
    const stable = (await status()).stableRevision;
    expect((await ctl(0, 'policy', '--next', '--bake-ms', '60000')).code).toBe(0); // without promote: a minute per wave
    await zkc.put('/service_config/web', webConfig('v6'));
    const s1 = await until(
      (x) => x.rollout?.state === 'running' && x.rollout.toRevision !== stable && !!x.rollout.waves?.[0]?.ackedAt,
    );
    const watch = spawn(process.execPath, [
      CLI,
      'ctl',
      '--controlplane',
      `127.0.0.1:${cps[1]!.port}`,
      'rollout',
      'status',
      '--watch',
      '--interval-ms',
      '100',
    ]);
    let drawn = '';
    watch.stdout.on('data', (c) => (drawn += c));
    expect(await eventually(() => /RUNNING/.test(drawn), 10_000)).toBe(true);

    const promoted = await ctl(1, 'promote', '--id', s1.rollout!.id);
    expect(promoted.code).toBe(0);
    expect(promoted.stdout).toMatch(/promoted by operator/);
    const done = await until((x) => x.rollout?.id === s1.rollout!.id && x.rollout.state === 'completed', 15_000);
    expect(done.rollout!.waves!.map((w) => w.spec)).toEqual(['1', '100%']);
    expect(await revs()).toEqual(['v6', 'v6', 'v6', 'v6', 'v6']);
    assertPushesReleased(done);

    expect(await eventually(() => watch.exitCode === 0, 5000)).toBe(true);
    expect(drawn).toMatch(/\[#{6}-+\] 1\/5 agents on/); // the canary alone
    expect(drawn).toMatch(/COMPLETED[^\n]*\n(.*\n)*\[#{30}\] 5\/5 agents on/);
    expect(drawn).toMatch(/^2\s+100%\s+4\s+4\s+0/m);

    const history = (await ctl(0, 'history')).stdout.split('\n');
    expect(history[0]).toMatch(/^ROLLOUT\s+FROM\s+TO\s+STATE/);
    expect(history.slice(1, 4).map((l) => l.split(/\s+/)[3])).toEqual(['completed', 'aborted', 'rolled_back']);
  });

  test('must show 4: the leader is killed mid-rollout → the other replica completes it, agents reconnect, traffic never stops', async () => {
    const before = await status(0);
    const leader = cps.findIndex((c) => c.id === before.leader);
    const survivor = 1 - leader;
    // The bake must outlast the time this test needs to notice the canary's ACK (a ctl process per poll, up to a
    // second or two on 2 busy cores) and kill the leader. With a 1 s bake the leader itself once started wave 2
    // 434 ms before the kill: the rollout was right, the test's assumption was not.
    const bakeMs = 6000;
    expect((await ctl(survivor, 'policy', '--next', '--bake-ms', String(bakeMs))).code).toBe(0);
    const loads = agents.map((a) => startLoad(webPort, 2, a.ip, 10)); // paced: an outage, not a gap, is what counts here
    await zkc.put('/service_config/web', webConfig('v5'));
    const s = await until(
      (x) =>
        x.rollout?.state === 'running' &&
        x.rollout.toRevision !== before.stableRevision &&
        !!x.rollout.waves?.[0]?.ackedAt,
      20_000,
      survivor,
    );
    // SIGKILL: the leader runs nothing after this instant, so a wave started later was started by the survivor.
    const killedAt = Date.now();
    await cps[leader]!.proc!.kill();
    const canaryAckedAt = Date.parse(s.rollout!.waves![0]!.ackedAt!);
    if (killedAt >= canaryAckedAt + bakeMs)
      throw new Error(`the leader was killed ${killedAt - canaryAckedAt} ms after the canary's ACK, past the bake`);
    const done = await until(
      (x) => x.rollout?.id === s.rollout!.id && x.rollout.state === 'completed',
      40_000,
      survivor,
    );
    expect(done.leader).toBe(cps[survivor]!.id);
    const later = done.rollout!.waves!.slice(1);
    expect(later.length).toBeGreaterThan(0);
    for (const w of later) expect(Date.parse(w.startedAt)).toBeGreaterThan(killedAt); // driven by the survivor
    assertPushesReleased(done);
    expect(await eventually(async () => (await revs()).every((r) => r === 'v5'), 10_000)).toBe(true);
    const final = await until(
      (x) => x.agents.length === 5 && x.agents.every((a) => a.connected && a.replica === cps[survivor]!.id),
      20_000,
      survivor,
    );
    expect(final.agents.every((a) => a.runningRevision === done.rollout!.toRevision)).toBe(true);
    const results = await Promise.all(loads.map((l) => l.stop()));
    for (const r of results) {
      expect(r.ok).toBeGreaterThan(20);
      expect({ refused: r.refused, reset: r.reset, empty: r.empty, other: r.other }).toEqual({
        refused: 0,
        reset: 0,
        empty: 0,
        other: 0,
      });
    }
    assertOnlyReleased(seen);
    expect(cps[survivor]!.proc!.logs()).toMatch(/this replica leads rollouts/);
  });

  test('ZooKeeper lost mid-rollout: traffic never stops, no wave starts while the rollout state cannot be written; once it is back the rollout completes', async () => {
    const live = cps.findIndex((c) => c.proc!.proc.exitCode === null && c.proc!.proc.signalCode === null);
    const before = await status(live);
    expect((await ctl(live, 'policy', '--next', '--bake-ms', '3000')).code).toBe(0); // ZooKeeper goes well before wave 2 is due
    const was = (await revs())[0]!;
    await zkc.put('/service_config/web', webConfig('v7'));
    const s = await until(
      (x) =>
        x.rollout?.state === 'running' &&
        x.rollout.toRevision !== before.stableRevision &&
        !!x.rollout.waves?.[0]?.ackedAt,
      20_000,
      live,
    );
    const canary = s.rollout!.waves![0]!.agents;
    const loads = agents.map((a) => startLoad(webPort, 2, a.ip, 10)); // paced: an outage, not a gap, is what counts here
    await zk.kill();
    await sleep(5000); // past the 3 s bake and the control plane's 2 s ZooKeeper session timeout
    const during = await revs();
    expect(agents.filter((_, i) => during[i] === 'v7').map((a) => a.id)).toEqual(canary);
    expect(during.filter((r) => r !== 'v7')).toEqual(Array(agents.length - canary.length).fill(was)); // the rest on the stable revision

    await zk.restart();
    const done = await until((x) => x.rollout?.id === s.rollout!.id && x.rollout.state === 'completed', 40_000, live);
    expect(await eventually(async () => (await revs()).every((r) => r === 'v7'), 10_000)).toBe(true);
    const results = await Promise.all(loads.map((l) => l.stop()));
    for (const r of results) {
      expect(r.ok).toBeGreaterThan(20);
      expect({ refused: r.refused, reset: r.reset, empty: r.empty, other: r.other }).toEqual({
        refused: 0,
        reset: 0,
        empty: 0,
        other: 0,
      });
    }
    assertPushesReleased(done);
    for (const w of done.rollout!.waves!.slice(1))
      expect(Date.parse(w.startedAt)).toBeGreaterThan(Date.parse(s.rollout!.waves![0]!.ackedAt!) + 5000);
    assertOnlyReleased(seen);
  });

  test('a revision that removes a service waits for an operator (a removal leaves no traffic to judge): the service serves until promote', async () => {
    const live = cps.findIndex((c) => c.proc!.proc.exitCode === null && c.proc!.proc.signalCode === null);
    const before = await status(live);
    // This client's session did not outlive the ZooKeeper restart above.
    zkc.close();
    zkc = await connectZk(zk.connectString);
    await zkc.remove('/service_config/eu');
    const s = await until(
      (x) => x.rollout?.state === 'paused' && x.rollout.toRevision !== before.stableRevision,
      20_000,
      live,
    );
    expect(s.rollout!.reason).toMatch(/waiting for an operator: removes 1 service\(s\) \(eu\)/);
    await sleep(1000); // well past the 300 ms bake: nothing moves on its own
    const held = await status(live);
    expect(held.rollout).toMatchObject({ id: s.rollout!.id, state: 'paused' });
    expect(held.rollout!.waves ?? []).toHaveLength(0);
    expect((await hit('127.0.0.1', euPort)).body).toMatch(/^[ab]$/);
    expect((await hit('127.0.0.2', euPort)).body).toMatch(/^[ab]$/);

    expect((await ctl(live, 'promote', '--id', s.rollout!.id)).code).toBe(0);
    await until((x) => x.rollout?.id === s.rollout!.id && x.rollout.state === 'completed', 20_000, live);
    expect(
      await eventually(async () => {
        try {
          await hit('127.0.0.1', euPort);
          return false;
        } catch (err) {
          return /ECONNREFUSED/.test(String(err));
        }
      }, 10_000),
    ).toBe(true);
    expect((await hit('127.0.0.1')).rev).toBe('v7'); // the other service untouched
  });
});
