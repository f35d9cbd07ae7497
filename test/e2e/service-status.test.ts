import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Backend, startBackends } from '../../testkit/backends';
import { screenshotElement } from '../../testkit/chromium';
import { bufCurl, CliProcess, runCli, startCli, stopAllCli } from '../../testkit/cli';
import { eventually, freePort, tempDir } from '../../testkit/net';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';
import { connectZk } from '../../testkit/zk-client';

jest.setTimeout(150_000);

/** Where the transcripts and screenshots are kept (gitignored; absent in a fresh clone until a test makes it). */
const ARTIFACTS = path.join(__dirname, '..', '..', 'test-results');

interface ServiceJson {
  name: string;
  desiredVersion?: string;
  agentsTotal?: number;
  refused?: number;
  byMethod?: Record<string, number>;
  agents?: {
    nodeId: string;
    runningVersion?: string;
    method?: string;
    desiredVersion?: string;
    refusedVersion?: string;
    refusal?: string;
    unknown?: boolean;
  }[];
}

/**
 * Per-service applied status from the built CLI: a real ZooKeeper, a control plane with rollouts (preflight off, no
 * auto-rollback), three agents each with its own HAProxy (127.0.0.1 … 127.0.0.3, same ports), real backends. The
 * services first come by reload, a host change by runtime, and then a service-config change HAProxy refuses reaches
 * the canary only: `ctl service web` shows the canary's refusal with HAProxy's own message (and the version it keeps
 * running) and the other agents running the service by runtime.
 */
describe('ctl service NAME: which agents run which version of a service, how, and who refused it', () => {
  let zk: ZooKeeper;
  let zkc: Awaited<ReturnType<typeof connectZk>>;
  let backends: Backend[];
  let tmp: ReturnType<typeof tempDir>;
  let cp: CliProcess | undefined;
  let cpPort: number;
  let metricsPort: number;
  let webPort: number;
  const agents: { id: string; config: string; proc?: CliProcess }[] = [];

  const webConfig = (extra: string[] = []) =>
    JSON.stringify({
      type: 'zookeeper',
      path: '/services/web',
      port: webPort,
      listen_options: ['mode http', ...extra],
    });
  const host = (b: Backend) => JSON.stringify({ address: '127.0.0.1', port: b.port });
  const ctl = (...args: string[]) => runCli(['ctl', '--controlplane', `127.0.0.1:${cpPort}`, ...args]);
  const service = async (name: string): Promise<ServiceJson> => {
    const r = await ctl('service', name, '--json');
    if (r.code !== 0) throw new Error(`ctl service ${name}: ${r.code} ${r.stderr}`);
    return JSON.parse(r.stdout) as ServiceJson;
  };
  async function until(pred: (s: ServiceJson) => boolean, what: string): Promise<ServiceJson> {
    let last: ServiceJson | undefined;
    const ok = await eventually(async () => pred((last = await service('web'))), 30_000, 200);
    if (!ok) throw new Error(`${what}; last: ${JSON.stringify(last, null, 1)}`);
    return last!;
  }

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    [zk, backends] = await Promise.all([startZooKeeper(), startBackends(['a', 'b', 'c'])]);
    zkc = await connectZk(zk.connectString);
    tmp = tempDir('proxymgr-svcstatus-');
    webPort = await freePort();
    cpPort = await freePort();
    metricsPort = await freePort();
    await zkc.put('/service_config/web', webConfig());
    await zkc.put('/services/web/a', host(backends[0]!));
    const cpConfig = path.join(tmp.dir, 'cp.yml');
    writeFileSync(
      cpConfig,
      `haproxy:
  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]
service_config: {type: zookeeper, servers: "${zk.connectString}", path: /service_config}
controlplane: {listen: "127.0.0.1:${cpPort}", metrics_listen: "127.0.0.1:${metricsPort}"}
rollout: {bake_ms: 60000, max_nacks: 0, auto_rollback: false, preflight: {enabled: false}}
`,
    );
    cp = startCli(['controlplane', '--config', cpConfig]);
    for (let i = 0; i < 3; i++) {
      const dir = path.join(tmp.dir, `agent${i}`);
      mkdirSync(dir);
      const config = path.join(dir, 'proxymgr.yml');
      writeFileSync(
        config,
        `haproxy: {config_path: ${dir}/haproxy.cfg, socket_path: ${dir}/haproxy.sock}
agent:
  state_dir: ${dir}
  node_id: agent${i}
  controlplanes: ["127.0.0.1:${cpPort}"]
  admin_listen: ""
  bind_address: 127.0.0.${i + 1}
`,
      );
      agents.push({ id: `agent${i}`, config });
    }
    expect(await cp.waitForLog(/control plane started/)).toBe(true);
    for (const a of agents) a.proc = startCli(['agent', '--config', a.config]);
  });

  afterAll(async () => {
    const hung = await stopAllCli();
    zkc?.close();
    await zk?.stop();
    await Promise.all((backends ?? []).map((b) => b.close()));
    tmp?.cleanup();
    expect(hung).toEqual([]);
  });

  test('the first state: every agent runs the desired version of web, brought by a reload', async () => {
    const s = await until(
      (x) =>
        x.agents?.length === 3 && x.agents.every((a) => a.runningVersion === x.desiredVersion && a.method === 'reload'),
      'all three agents on web by reload',
    );
    expect(s.agentsTotal).toBe(3);
    expect(s.byMethod).toEqual({ reload: 3 });
    expect(s.refused ?? 0).toBe(0);
  });

  test('a host change: a new version of web on every agent, by the runtime API', async () => {
    const before = (await service('web')).desiredVersion;
    await zkc.put('/services/web/b', host(backends[1]!));
    const s = await until(
      (x) =>
        x.desiredVersion !== before &&
        x.agents?.length === 3 &&
        x.agents.every((a) => a.runningVersion === x.desiredVersion && a.method === 'runtime'),
      'all three agents on the new web by runtime',
    );
    expect(s.byMethod).toEqual({ runtime: 3 });
  });

  interface ChangeJson {
    id: string;
    service: string;
    source: string;
    what: string;
    sourceTime: string;
    sourceTimeKind: string;
    expected?: number;
    applied?: number;
    refused?: number;
    p50Ms?: number;
    p99Ms?: number;
    maxMs?: number;
    behind?: string[];
  }
  interface ChangesJson {
    changes?: ChangeJson[];
    oldestUnappliedSeconds?: number;
    histogramLeMs?: number[];
    histogramCounts?: number[];
  }
  const changes = async (): Promise<ChangesJson> => {
    const r = await ctl('changes', '--json');
    if (r.code !== 0) throw new Error(`ctl changes: ${r.code} ${r.stderr}`);
    return JSON.parse(r.stdout) as ChangesJson;
  };
  /** The newest change of web that `what` describes, once every agent that should run it applied it. */
  async function appliedChange(what: RegExp): Promise<ChangeJson> {
    let last: ChangesJson | undefined;
    const find = (l: ChangesJson | undefined) => l?.changes?.find((c) => c.service === 'web' && what.test(c.what));
    const ok = await eventually(
      async () => {
        const c = find((last = await changes()));
        return c !== undefined && (c.applied ?? 0) === (c.expected ?? 0) && (c.expected ?? 0) > 0;
      },
      30_000,
      200,
    );
    if (!ok) throw new Error(`no applied change of web ${what}; last: ${JSON.stringify(last, null, 1)}`);
    return find(last)!;
  }

  test('the host change traced: ctl changes and ctl change ID, the admin API by reflection, and Prometheus', async () => {
    const c = await appliedChange(/^hosts \+1 -0 \(1 → 2\)$/);
    expect(c.source).toBe('zookeeper');
    expect(c.sourceTimeKind).toBe('source'); // ZooKeeper's mtime of the new node
    expect(c.expected).toBe(3);
    expect(c.applied).toBe(3);
    expect(c.refused ?? 0).toBe(0);
    expect(c.p99Ms).toBeGreaterThan(0);
    expect(c.maxMs).toBeGreaterThanOrEqual(c.p99Ms!);
    expect(c.behind ?? []).toEqual([]);

    const text = await ctl('changes');
    expect(text.code).toBe(0);
    writeFileSync(path.join(ARTIFACTS, 'ctl-changes.txt'), text.stdout);
    const row = text.stdout.split('\n').find((l) => l.startsWith(c.id + ' '));
    expect(row).toMatch(/ web +zookeeper +\S+ \S+ source +hosts \+1 -0 \(1 → 2\) +3\/3 agents applied +\d/);
    expect(text.stdout).toMatch(/^every change is applied by the connected agents that should run it$/m);

    const one = await ctl('change', c.id, '--json');
    expect(one.code).toBe(0);
    const detail = JSON.parse(one.stdout) as {
      change: ChangeJson;
      agents: { nodeId: string; state: string; method?: string; propagationMs?: number; connected?: boolean }[];
    };
    expect(detail.change.id).toBe(c.id);
    expect(detail.agents.map((a) => a.nodeId).sort()).toEqual(['agent0', 'agent1', 'agent2']);
    for (const a of detail.agents) {
      expect(a.state).toBe('applied');
      expect(a.method).toBe('runtime');
      expect(a.propagationMs).toBeGreaterThan(0);
      expect(a.connected).toBe(true);
    }
    const oneText = await ctl('change', c.id);
    expect(oneText.stdout).toMatch(/^ {2}3\/3 agents applied; source → applied p50 /m);
    expect(oneText.stdout).toMatch(/^agent\d +applied +runtime +\d/m);
    const unknown = await ctl('change', 'no-such-change');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no change "no-such-change" is traced/);

    // The same through reflection (a real gRPC client).
    const listed = await bufCurl([
      '-d',
      '{"limit":10}',
      `http://127.0.0.1:${cpPort}/proxymgr.v1.ControlPlaneAdmin/ListChanges`,
    ]);
    expect(listed.code).toBe(0);
    const viaReflection = (JSON.parse(listed.stdout) as ChangesJson).changes?.find((x) => x.id === c.id);
    expect(viaReflection).toMatchObject({ source: 'zookeeper', sourceTimeKind: 'source', expected: 3, applied: 3 });
    const got = await bufCurl([
      '-d',
      JSON.stringify({ id: c.id }),
      `http://127.0.0.1:${cpPort}/proxymgr.v1.ControlPlaneAdmin/GetChange`,
    ]);
    expect((JSON.parse(got.stdout) as { agents: { method: string }[] }).agents.map((a) => a.method)).toEqual([
      'runtime',
      'runtime',
      'runtime',
    ]);

    // Prometheus: one sample per agent and change, by method; nothing left unapplied; and promtool reads it.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const runtime = /^proxymgr_cp_change_propagation_seconds_bucket\{le="\+Inf",method="runtime"\} (\d+)$/m.exec(
      metrics,
    );
    expect(Number(runtime?.[1])).toBeGreaterThanOrEqual(3);
    expect(metrics).toMatch(/^proxymgr_cp_change_propagation_seconds_count\{method="runtime"\} \d+$/m);
    expect(metrics).toMatch(/^proxymgr_cp_change_oldest_unapplied_seconds 0$/m);
    const lint = spawnSync('promtool', ['check', 'metrics'], { input: metrics, encoding: 'utf8' });
    expect(`${lint.status} ${lint.stdout}${lint.stderr}`.trim()).toBe('0');
  });

  test('a host removal is timed from when discovery saw it (ZooKeeper keeps no time of a deleted node); the status page draws both', async () => {
    await zkc.remove('/services/web/b');
    const c = await appliedChange(/^hosts \+0 -1 \(2 → 1\)$/);
    expect(c.source).toBe('zookeeper');
    expect(c.sourceTimeKind).toBe('observed');
    expect(c.expected).toBe(3);
    expect(c.applied).toBe(3);

    const json = (await (await fetch(`http://127.0.0.1:${metricsPort}/status.json`)).json()) as {
      changes: ChangesJson;
    };
    expect(json.changes.changes?.find((x) => x.id === c.id)).toMatchObject({ applied: 3, expected: 3 });
    expect(json.changes.histogramCounts?.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(6);
    expect(json.changes.oldestUnappliedSeconds ?? 0).toBe(0);

    // The page's changes section as a real browser renders it (kept for a look; gitignored).
    const shot = path.join(ARTIFACTS, 'status-page-changes.png');
    const { dom, height } = await screenshotElement(`http://127.0.0.1:${metricsPort}/`, '#changes', shot);
    expect(statSync(shot).size).toBeGreaterThan(10_000);
    expect(height).toBeGreaterThan(200);
    expect(dom).toMatch(/<svg id="propagation-chart"[^>]*role="img"/);
    expect((dom.match(/<rect class="bucket"/g) ?? []).length).toBe(13);
    expect(dom).toMatch(/<td class="nowrap good">3\/3 applied<\/td>/);
    expect(dom).toMatch(/<p id="oldest-unapplied">[^<]*<b class="good">none<\/b>/);
    expect(dom).toContain('<p class="empty" id="none-behind">none</p>');
  });

  test("a change HAProxy refuses reaches the canary: ctl service web shows its refusal with HAProxy's message, the others run web by runtime", async () => {
    const running = (await service('web')).desiredVersion!;
    await zkc.put('/service_config/web', webConfig(['timeout server soon']));
    const s = await until(
      (x) => (x.refused ?? 0) === 1 && (x.agents ?? []).length === 3,
      'one agent refuses the new web',
    );
    const [canary, ...others] = s.agents!;
    expect(canary!.refusedVersion).toBeTruthy();
    expect(canary!.refusedVersion).not.toBe(running);
    expect(canary!.desiredVersion).toBe(canary!.refusedVersion); // released to it as the rollout's canary
    expect(canary!.refusal).toMatch(/unexpected character 's' in 'timeout server'/);
    // It keeps the version it ran, brought by the runtime API.
    expect(canary!.runningVersion).toBe(running);
    expect(canary!.method).toBe('runtime');
    for (const a of others) {
      expect(a.refusedVersion ?? '').toBe('');
      expect(a.runningVersion).toBe(running);
      expect(a.desiredVersion).toBe(running); // not released to them: the rollout halted
      expect(a.method).toBe('runtime');
    }
    expect(s.byMethod).toEqual({ runtime: 3 });

    // The change trace follows it to the canary once the rollout releases it there (after the change was recorded),
    // with HAProxy's message; the other agents were never sent it.
    const traced = (await changes()).changes?.find((c) => c.service === 'web' && c.what === 'config');
    expect(traced).toMatchObject({ source: 'config', sourceTimeKind: 'observed', expected: 1, refused: 1 });
    expect(traced!.applied ?? 0).toBe(0);
    const refusals = (traced as { refusals?: { nodeId: string; message: string }[] }).refusals ?? [];
    expect(refusals.map((r) => r.nodeId)).toEqual([canary!.nodeId]);
    expect(refusals[0]!.message).toMatch(/unexpected character 's' in 'timeout server'/);
    const changesText = (await ctl('changes')).stdout;
    writeFileSync(path.join(ARTIFACTS, 'ctl-changes-refused.txt'), changesText);
    expect(changesText).toMatch(/ config +0\/1 agents applied, 1 refused /);
    expect(changesText).toMatch(/^refused:\n.*\n\S+ +web +agent\d +.*unexpected character 's' in 'timeout server'/m);

    // The table an operator reads.
    const text = await ctl('service', 'web');
    expect(text.code).toBe(0);
    writeFileSync(path.join(ARTIFACTS, 'ctl-service-web.txt'), text.stdout);
    const lines = text.stdout.split('\n');
    expect(text.stdout).toMatch(/^service web /);
    expect(text.stdout).toMatch(/refused 1/);
    const row = lines.find((l) => l.startsWith(canary!.nodeId))!;
    expect(row).toMatch(/runtime .*refused .*unexpected character 's' in 'timeout server'/);
    for (const a of others) expect(lines.find((l) => l.startsWith(a.nodeId))).toMatch(/ runtime .* current/);

    // The same through reflection (a real gRPC client) and on the status page.
    const viaReflection = JSON.parse(
      (await bufCurl(['-d', '{"name":"web"}', `http://127.0.0.1:${cpPort}/proxymgr.v1.ControlPlaneAdmin/GetService`]))
        .stdout,
    ) as ServiceJson;
    expect(viaReflection.refused).toBe(1);
    const json = (await (await fetch(`http://127.0.0.1:${metricsPort}/status.json`)).json()) as {
      serviceStatus: { name: string; refused: number; agents: number; refusal?: { nodeId: string; message: string } }[];
    };
    const web = json.serviceStatus.find((r) => r.name === 'web')!;
    expect(web.agents).toBe(3);
    expect(web.refused).toBe(1);
    expect(web.refusal?.nodeId).toBe(canary!.nodeId);
    expect(web.refusal?.message).toMatch(/unexpected character 's' in 'timeout server'/);
    const page = await (await fetch(`http://127.0.0.1:${metricsPort}/`)).text();
    expect(page).toContain('<section id="applied">');
    expect(page).toMatch(/unexpected character &#39;s&#39; in &#39;timeout server&#39;/);
    // As a real browser renders it (kept for a look; gitignored).
    const profile = tempDir('proxymgr-chromium-');
    try {
      await promisify(execFile)(
        '/usr/bin/chromium',
        [
          '--headless=new',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-dev-shm-usage',
          '--no-first-run',
          `--user-data-dir=${profile.dir}`,
          `--screenshot=${path.join(ARTIFACTS, 'status-page-applied.png')}`,
          '--window-size=1280,1100',
          `http://127.0.0.1:${metricsPort}/`,
        ],
        { timeout: 60_000 },
      );
    } finally {
      profile.cleanup();
    }
  });

  test('hostile names: a name no service can have is refused with INVALID_ARGUMENT, an unknown one NOT_FOUND', async () => {
    const bad = await ctl('service', 'x'.repeat(300) + '\u001b[31m');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/is not a service name/);
    expect(bad.stderr).not.toContain('\u001b');
    const unknown = await ctl('service', 'nope');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/no service "nope"/);
  });
});
