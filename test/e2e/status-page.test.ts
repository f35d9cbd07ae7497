import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { Backend, startBackends } from '../../testkit/backends';
import { CliProcess, runCli, startCli, stopAllCli } from '../../testkit/cli';
import { eventually, freePort, get, sleep, tempDir } from '../../testkit/net';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';
import { connectZk } from '../../testkit/zk-client';

jest.setTimeout(180_000);

const CHROMIUM = '/usr/bin/chromium';
/** Where the screenshot is kept (gitignored). */
const ARTIFACTS = path.join(__dirname, '..', '..', 'test-results');
const execFileAsync = promisify(execFile);

/**
 * Runs Chromium without blocking this worker's event loop. A spawnSync here froze the test's own ZooKeeper client
 * and load for as long as Chromium ran (10–20 s on 2 busy cores): its 5 s session expired, and the next write failed
 * with CONNECTION_LOSS.
 */
async function runChromium(args: string[]): Promise<string> {
  try {
    return (await execFileAsync(CHROMIUM, args, { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 })).stdout;
  } catch (err) {
    const e = err as { code?: number; signal?: string; stderr?: string };
    throw new Error(`chromium ${args.join(' ')} exited ${e.code ?? e.signal}: ${e.stderr ?? String(err)}`);
  }
}

/** The page as a real headless Chromium renders it (DOM after load), and a screenshot of it. */
async function chromium(url: string, screenshot?: string): Promise<string> {
  const profile = tempDir('proxymgr-chromium-');
  const args = [
    '--headless=new',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-dev-shm-usage',
    '--no-first-run',
    '--user-data-dir=' + profile.dir,
  ];
  try {
    if (screenshot) await runChromium([...args, `--screenshot=${screenshot}`, '--window-size=1280,1000', url]);
    return await runChromium([...args, '--dump-dom', url]);
  } finally {
    profile.cleanup();
  }
}

/**
 * Issue 11: the control plane's status page in a real headless Chromium, against a real fleet (ZooKeeper, control
 * plane with rollouts, two agents with HAProxy): a running rollout with its waves, and the canary's NACK (a new
 * service whose port is taken on that host; preflight off, or it would have stopped the rollout before wave 1) with
 * its message; then a rollout's preflight and its canary wave's traffic gate with the figures.
 */
describe('the status page in Chromium (ZooKeeper, control plane, 2 agents, HAProxy)', () => {
  let zk: ZooKeeper;
  let zkc: Awaited<ReturnType<typeof connectZk>>;
  let backends: Backend[];
  let tmp: ReturnType<typeof tempDir>;
  let cp: CliProcess;
  let cpPort: number;
  let webPort: number;
  let metricsPort: number;
  let blocker: net.Server | undefined;
  const agents: CliProcess[] = [];

  beforeAll(async () => {
    [zk, backends] = await Promise.all([startZooKeeper(), startBackends(['a', 'b'])]);
    zkc = await connectZk(zk.connectString);
    tmp = tempDir('proxymgr-status-page-');
    [webPort, cpPort] = [await freePort(), await freePort()];
    metricsPort = await freePort();
    await zkc.put(
      '/service_config/web',
      JSON.stringify({ type: 'zookeeper', path: '/services/web', port: webPort, listen_options: ['mode http'] }),
    );
    for (const b of backends)
      await zkc.put(`/services/web/${b.name}`, JSON.stringify({ address: '127.0.0.1', port: b.port }));
    const cpConfig = path.join(tmp.dir, 'cp.yml');
    writeFileSync(
      cpConfig,
      `haproxy:
  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]
service_config: {type: zookeeper, servers: "${zk.connectString}", path: /service_config}
controlplane: {listen: "127.0.0.1:${cpPort}", metrics_listen: "127.0.0.1:${metricsPort}"}
rollout: {replica_id: cp0, waves: [1, "100%"], bake_ms: 120000, max_nacks: 1, auto_rollback: false, preflight: false, gate: {min_requests: 20, sample_ms: 500}}
`,
    );
    cp = startCli(['controlplane', '--config', cpConfig]);
    expect(await cp.waitForLog(/control plane started/)).toBe(true);
    for (let i = 0; i < 2; i++) {
      const dir = path.join(tmp.dir, `agent${i}`);
      mkdirSync(dir);
      writeFileSync(
        path.join(dir, 'proxymgr.yml'),
        `haproxy: {config_path: ${dir}/haproxy.cfg, socket_path: ${dir}/haproxy.sock}
agent: {state_dir: ${dir}, node_id: agent${i}, labels: {zone: z${i}}, controlplanes: ["127.0.0.1:${cpPort}"], admin_listen: "", bind_address: 127.0.0.${i + 1}}
`,
      );
      agents.push(startCli(['agent', '--config', path.join(dir, 'proxymgr.yml')]));
    }
  });

  afterAll(async () => {
    const hung = await stopAllCli();
    blocker?.close();
    zkc?.close();
    await zk?.stop();
    await Promise.all((backends ?? []).map((b) => b.close()));
    tmp?.cleanup();
    expect(hung).toEqual([]);
  });

  const json = async () =>
    (await (await fetch(`http://127.0.0.1:${metricsPort}/status.json`)).json()) as {
      rollout: { rollout?: { state: string; waves?: { nacked?: number }[] } };
      agents: { agents: { nodeId: string; state: string }[] };
    };

  test('a running rollout with its waves and the canary NACK, rendered by Chromium; a screenshot is kept', async () => {
    expect(
      await eventually(
        async () => (await json()).agents.agents.filter((a) => a.state === 'SYNCED').length === 2,
        30_000,
      ),
    ).toBe(true);
    // The canary (agent0, node-id order) cannot bind the new service's port on its address: it is taken there.
    const apiPort = await freePort();
    blocker = net.createServer();
    await new Promise<void>((resolve) => blocker!.listen(apiPort, '127.0.0.1', resolve));
    await zkc.put(
      '/service_config/api',
      JSON.stringify({ type: 'zookeeper', path: '/services/web', port: apiPort, listen_options: ['mode http'] }),
    );
    expect(await eventually(async () => ((await json()).rollout.rollout?.waves?.[0]?.nacked ?? 0) === 1, 30_000)).toBe(
      true,
    );

    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = path.join(ARTIFACTS, 'status-page.png');
    const dom = await chromium(`http://127.0.0.1:${metricsPort}/`, shot);
    expect(existsSync(shot) && statSync(shot).size).toBeGreaterThan(10_000);
    expect(dom).toMatch(/<span class="rstate running" id="rollout-state">RUNNING<\/span>/);
    // The waves table: wave 1 (the canary, one NACK) started; wave 2 (100%) pending until the bake ends.
    expect(dom).toMatch(
      /<table class="waves">.*<td>1<\/td><td>1<\/td><td>agent0<\/td><td>0<\/td><td class="bad">1<\/td>/s,
    );
    expect(dom).toMatch(/<td>-<\/td><td>100%<\/td><td><\/td><td><\/td><td><\/td><td>pending<\/td>/);
    // The agents table: both agents, agent0's error naming the service and the bind failure.
    expect(dom).toMatch(
      /<td>agent0<\/td><td class="state NACKED">NACKED<\/td>.*<td class="error">applied without service\(s\) api: [^<]*Address already in use<\/td>/s,
    );
    expect(dom).toMatch(/<td>agent1<\/td><td class="state SYNCED">SYNCED<\/td>/);
    // HAProxy's counters as each agent reported them with its last ACK: requests / 5xx over its services.
    expect(dom).toMatch(/<td>agent1<\/td>(<td[^>]*>[^<]*<\/td>){5}<td(?: class="bad")?>\d+ \/ \d+<\/td>/);
    expect(dom).toMatch(/<td>zone=z1<\/td>/);
    // Services with their hosts.
    expect(dom).toMatch(/<td>web<\/td><td>0\.0\.0\.0:\d+<\/td><td>2<\/td>/);
    // It reloads itself.
    expect(dom).toMatch(/<meta http-equiv="refresh" content="2">/);
    // /metrics is still there next to it.
    expect(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()).toMatch(
      /^proxymgr_cp_connected_agents 2$/m,
    );
  });

  test("the next rollout: its preflight and the canary wave's traffic gate with its figures, while traffic flows", async () => {
    const ctl = (...args: string[]) => runCli(['ctl', '--controlplane', `127.0.0.1:${cpPort}`, 'rollout', ...args]);
    expect((await ctl('abort')).code).toBe(0);
    blocker?.close();
    blocker = undefined;
    expect((await ctl('policy', '--next', '--preflight', 'on')).code).toBe(0);
    // Steady traffic through both agents, so the gate has figures to show.
    let running = true;
    const load = [1, 2].map(async (i) => {
      while (running) await Promise.all([get(webPort, `127.0.0.${i}`, 2000).catch(() => undefined), sleep(20)]);
    });
    try {
      await zkc.put(
        '/service_config/web',
        JSON.stringify({
          type: 'zookeeper',
          path: '/services/web',
          port: webPort,
          listen_options: ['mode http', 'http-response set-header X-Rev 2'],
        }),
      );
      let last: unknown;
      const figures = async () => {
        const r = (await json()).rollout.rollout as
          | { state: string; preflight?: { passed?: number }; waves?: { gate?: { figures?: { metric: string }[] } }[] }
          | undefined;
        last = r;
        // Ratios are judged (and shown) once the canary served min_requests; gauges from its first report.
        return (
          r?.state === 'running' &&
          (r.preflight?.passed ?? 0) === 2 &&
          (r.waves?.[0]?.gate?.figures ?? []).some((f) => f.metric === 'http_5xx')
        );
      };
      if (!(await eventually(figures, 30_000, 200)))
        throw new Error(`no gate figures; last rollout: ${JSON.stringify(last)}`);
      const dom = await chromium(`http://127.0.0.1:${metricsPort}/`, path.join(ARTIFACTS, 'status-page-gate.png'));
      expect(dom).toMatch(
        /<p id="preflight">Preflight: 2 passed · <span class="">0 failed<\/span> · 0 unanswered<\/p>/,
      );
      expect(dom).toMatch(/<p class="gate" id="gate-1">Wave 1 traffic gate: <b class="">PENDING<\/b>/);
      // The figures table: all services, the 5xx share of the new revision against the stable agent and its own before.
      expect(dom).toMatch(
        /<table class="gate">.*<td>all services<\/td><td>http_5xx<\/td><td>0%<\/td><td>0%<\/td><td>(0%|-)<\/td><td>\+5%<\/td><td>\d+<\/td><td>ok<\/td>/s,
      );
      expect(dom).toMatch(/traffic gate on \(min 20 requests; 5xx \+5%/);
    } finally {
      running = false;
      await Promise.all(load);
    }
  });
});
