import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { Backend, startBackends } from '../../testkit/backends';
import { bufCurl, CliProcess, runCli, startCli, stopAllCli } from '../../testkit/cli';
import { eventually, freePort, tempDir } from '../../testkit/net';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';
import { connectZk } from '../../testkit/zk-client';

jest.setTimeout(150_000);

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

    // The table an operator reads.
    const text = await ctl('service', 'web');
    expect(text.code).toBe(0);
    writeFileSync(path.join(__dirname, '..', '..', 'test-results', 'ctl-service-web.txt'), text.stdout);
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
          `--screenshot=${path.join(__dirname, '..', '..', 'test-results', 'status-page-applied.png')}`,
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
