import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { ApplyResult } from '../../agent/agent';
import { GrpcStateSource } from '../../agent/sources/grpc';
import { silentLogger } from '../../common/platform/log';
import { DesiredState } from '../../common/protocol/types';
import { clientCertificate, makeCertificates } from '../../testkit/certs';
import { bufCurl, CLI, CliProcess, SCHEMA, startCli, stopAllCli } from '../../testkit/cli';
import { eventually, freePort, sleep, tempDir } from '../../testkit/net';
import { connectZk, ZkTestClient } from '../../testkit/zk-client';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';

jest.setTimeout(120_000);

/**
 * Who may do what on the control plane, with the built CLI, real ZooKeeper and real gRPC clients (`proxymgr ctl`,
 * `buf curl`, the agent's stream client): replica cp0 speaks mTLS (identities from client certificates), replica
 * cp1 plaintext (identities from bearer tokens); both share one rollout in ZooKeeper.
 */
describe('authentication and authorization (built CLI, real ZooKeeper)', () => {
  const tmp = tempDir('proxymgr-auth-e2e-');
  let zk: ZooKeeper;
  let zkc: ZkTestClient;
  let certs: ReturnType<typeof makeCertificates>;
  const cert: Record<string, { cert: string; key: string }> = {};
  const token: Record<string, string> = {};
  const cps: { proc: CliProcess; port: number }[] = [];
  const sources: GrpcStateSource[] = [];
  let webPort: number;

  const webConfig = (timeout: string) =>
    JSON.stringify({
      type: 'static',
      port: webPort,
      listen_options: ['mode tcp', `timeout server ${timeout}`],
      hosts: ['127.0.0.1:9001'],
    });

  beforeAll(async () => {
    certs = makeCertificates(tmp.dir);
    for (const cn of ['ops-alice', 'viewer-bob', 'agent-1', 'agent-2']) cert[cn] = clientCertificate(tmp.dir, cn);
    for (const name of ['ops', 'view', 'edge']) {
      token[name] = path.join(tmp.dir, `${name}.token`);
      writeFileSync(token[name], `${name}-${'0123456789abcdef'.repeat(2)}\n`, { mode: 0o600 });
    }
    writeFileSync(path.join(tmp.dir, 'wrong.token'), `wrong-${'0123456789abcdef'.repeat(2)}\n`, { mode: 0o600 });
    zk = await startZooKeeper();
    zkc = await connectZk(zk.connectString);
    webPort = await freePort();
    await zkc.put('/service_config/web', webConfig('30s'));
    const auth = `auth:
  clients:
    - {name: ops, cert: {cn: "ops-*"}, roles: [operator]}
    - {name: viewers, cert: {cn: "viewer-*"}, roles: [viewer]}
    - {name: agents, cert: {cn: "agent-*"}, roles: [agent], node_ids: ["{cn}"]}
    - {name: ci, token_file: ${token.ops}, roles: [operator]}
    - {name: dash, token_file: ${token.view}, roles: [viewer]}
    - {name: edge-agents, token_file: ${token.edge}, roles: [agent], node_ids: ["edge-*"]}
`;
    for (const [i, tls] of [
      `  tls: {ca: ${certs.ca}, cert: ${certs.serverCert}, key: ${certs.serverKey}, require_client_cert: true}\n`,
      '',
    ].entries()) {
      const port = await freePort();
      const file = path.join(tmp.dir, `cp${i}.yml`);
      writeFileSync(
        file,
        `service_config: {type: zookeeper, servers: "${zk.connectString}", path: /service_config}
controlplane:
  listen: 127.0.0.1:${port}
  metrics_listen: 127.0.0.1:0
${tls}rollout: {waves: [1, "100%"], bake_ms: 600000, replica_id: cp${i}}
${auth}`,
      );
      const proc = startCli(['controlplane', '--config', file]);
      expect(await proc.waitForLog(/control plane started/)).toBe(true);
      cps.push({ proc, port });
    }
  });
  afterAll(async () => {
    await Promise.all(sources.map((s) => s.stop()));
    const hung = await stopAllCli();
    zkc?.close();
    await zk?.stop();
    tmp.cleanup();
    expect(hung).toEqual([]);
  });

  /** A real agent stream client that ACKs every push without applying it. */
  function agent(
    cp: number,
    nodeId: string,
    creds: { tls?: { ca: string; cert: string; key: string }; token?: string },
  ) {
    const received: DesiredState[] = [];
    const source = new GrpcStateSource({
      addresses: [`127.0.0.1:${cps[cp]!.port}`],
      nodeId,
      labels: {},
      agentVersion: 'test',
      haproxyVersion: 'none',
      runningVersion: () => received.at(-1)?.version ?? '',
      ...creds,
      log: silentLogger,
      backoffBaseMs: 100,
      backoffMaxMs: 300,
    });
    sources.push(source);
    void source.start(async (state): Promise<ApplyResult> => {
      received.push(state);
      return { version: state.version, outcome: 'runtime', reasons: [], commands: [], problems: [], durationMs: 0 };
    });
    return { source, received };
  }

  const ctl = (cp: number, creds: string[], ...args: string[]) => {
    const r = spawnSync(
      process.execPath,
      [
        CLI,
        'ctl',
        '--controlplane',
        `127.0.0.1:${cps[cp]!.port}`,
        '--timeout-ms',
        '5000',
        ...creds,
        'rollout',
        ...args,
        '--json',
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    return {
      code: r.status,
      stdout: r.stdout,
      stderr: r.stderr,
      json: () => JSON.parse(r.stdout.trim().split('\n').at(-1)!),
    };
  };
  const withCert = (cn: string) => ['--cacert', certs.ca, '--cert', cert[cn]!.cert, '--key', cert[cn]!.key];
  const curlTls = (cn: string, method: string, body = '{}') =>
    bufCurl(
      [
        '--schema',
        SCHEMA,
        '--cacert',
        certs.ca,
        '--cert',
        cert[cn]!.cert,
        '--key',
        cert[cn]!.key,
        '-d',
        body,
        `https://127.0.0.1:${cps[0]!.port}/proxymgr.v1.${method}`,
      ],
      { tls: true },
    );

  test('an operator certificate pauses and promotes a rollout; viewer and agent certificates get PERMISSION_DENIED from buf curl; every mutating call is audited', async () => {
    const a1 = agent(0, 'agent-1', { tls: { ca: certs.ca, ...cert['agent-1']! } });
    const a2 = agent(0, 'agent-2', { tls: { ca: certs.ca, ...cert['agent-2']! } });
    expect(await eventually(() => a1.received.length > 0 && a2.received.length > 0, 20_000)).toBe(true);
    const stable = ctl(0, withCert('viewer-bob'), 'status');
    expect(stable.code).toBe(0);
    const v1 = stable.json().stableRevision as string;
    expect(v1).not.toBe('');

    await zkc.put('/service_config/web', webConfig('31s'));
    let status: { rollout?: { id: string; state: string; toRevision: string; waves?: { ackedAt?: string }[] } } = {};
    expect(
      await eventually(
        () => {
          status = ctl(0, withCert('viewer-bob'), 'status').json();
          return (
            status.rollout?.state === 'running' &&
            status.rollout.toRevision !== v1 &&
            !!status.rollout.waves?.[0]?.ackedAt
          );
        },
        20_000,
        200,
      ),
    ).toBe(true);
    const id = status.rollout!.id;

    const viewerPause = await curlTls('viewer-bob', 'Rollout/Pause', JSON.stringify({ rollout_id: id }));
    expect(viewerPause.code).not.toBe(0);
    expect(viewerPause.stderr).toMatch(/permission_denied/i);
    expect(viewerPause.stderr).toMatch(
      /viewers .*may not call \/proxymgr.v1.Rollout\/Pause: it needs the operator role/,
    );
    const agentPromote = await curlTls('agent-1', 'Rollout/Promote');
    expect(agentPromote.stderr).toMatch(/permission_denied/i);
    const agentReads = await curlTls('agent-1', 'ControlPlaneAdmin/ListAgents');
    expect(agentReads.stderr).toMatch(/permission_denied/i);
    const viewerReads = await curlTls('viewer-bob', 'ControlPlaneAdmin/ListAgents');
    expect(viewerReads.code).toBe(0);
    expect(viewerReads.stdout).toMatch(/agent-1/);
    const viewerCtl = ctl(0, withCert('viewer-bob'), 'promote');
    expect(viewerCtl.code).toBe(1);
    expect(viewerCtl.stderr).toMatch(/^proxymgr ctl: PERMISSION_DENIED: viewers/);
    expect(ctl(0, withCert('viewer-bob'), 'status').json().rollout.state).toBe('running'); // nothing changed

    const paused = ctl(0, withCert('ops-alice'), 'pause', '--id', id);
    expect(paused.stderr).toBe('');
    expect(paused.json().rollout.state).toBe('paused');
    const promoted = ctl(0, withCert('ops-alice'), 'promote', '--id', id);
    expect(promoted.code).toBe(0);
    expect(
      await eventually(
        () => ctl(0, withCert('viewer-bob'), 'status').json().rollout.state === 'completed',
        20_000,
        200,
      ),
    ).toBe(true);
    expect(a2.received.at(-1)!.version).toBe(a1.received.at(-1)!.version);

    const audit = cps[0]!.proc
      .logs()
      .split('\n')
      .filter((l) => l.includes('"audit":true'));
    expect(audit.some((l) => /"method":"\/proxymgr.v1.Rollout\/Pause".*"identity":"ops".*"result":"OK"/.test(l))).toBe(
      true,
    );
    expect(
      audit.some((l) => /"method":"\/proxymgr.v1.Rollout\/Promote".*"identity":"ops".*"result":"OK"/.test(l)),
    ).toBe(true);
    expect(
      audit.some((l) =>
        /"method":"\/proxymgr.v1.Rollout\/Pause".*"identity":"viewers".*"code":"PERMISSION_DENIED"/.test(l),
      ),
    ).toBe(true);
  });

  test('an agent certificate whose hello claims another node id is refused; nothing is pushed to it', async () => {
    const impostor = agent(0, 'agent-2', { tls: { ca: certs.ca, ...cert['agent-1']! } });
    expect(await eventually(() => /PERMISSION_DENIED/.test(impostor.source.lastError), 10_000)).toBe(true);
    expect(impostor.source.lastError).toMatch(/agents \(cert CN=agent-1\) may not stream as node_id "agent-2"/);
    await sleep(300);
    expect(impostor.received).toEqual([]);
    expect(cps[0]!.proc.logs()).toMatch(/"identity":"agents"[^\n]*"node_id":"agent-2"[^\n]*node id not allowed/);
    // An operator certificate is not an agent either.
    const opsAgent = agent(0, 'ops-alice', { tls: { ca: certs.ca, ...cert['ops-alice']! } });
    expect(await eventually(() => /PERMISSION_DENIED/.test(opsAgent.source.lastError), 10_000)).toBe(true);
    expect(opsAgent.received).toEqual([]);
  });

  test('bearer tokens where TLS is off: operator token works, viewer token is denied, a wrong or missing one is UNAUTHENTICATED; token agents stream only as their node ids', async () => {
    const ok = ctl(1, ['--token-file', token.ops!], 'policy', '--next', '--bake-ms', '1000');
    expect(ok.stderr).toBe('');
    expect(ok.json().nextPolicy.bakeMs).toBe(1000);
    const viewer = ctl(1, ['--token-file', token.view!], 'policy', '--next', '--bake-ms', '1');
    expect(viewer.stderr).toMatch(
      /PERMISSION_DENIED: dash \(token; roles viewer\) may not call \/proxymgr.v1.Rollout\/SetPolicy/,
    );
    expect(ctl(1, ['--token-file', token.view!], 'status').code).toBe(0);
    const wrong = ctl(1, ['--token-file', path.join(tmp.dir, 'wrong.token')], 'status');
    expect(wrong.stderr).toMatch(
      /UNAUTHENTICATED: unknown caller: no client certificate; the bearer token matches no auth.clients token_file/,
    );
    expect(wrong.stderr).not.toMatch(/wrong-0123/);
    const none = ctl(1, [], 'status');
    expect(none.stderr).toMatch(/UNAUTHENTICATED: .*no bearer token/);
    // buf curl with a header, the way an operator scripts it
    const curl = await bufCurl([
      '--schema',
      SCHEMA,
      '-H',
      `Authorization: Bearer ${'view-' + '0123456789abcdef'.repeat(2)}`,
      '-d',
      '{}',
      `http://127.0.0.1:${cps[1]!.port}/proxymgr.v1.Rollout/Abort`,
    ]);
    expect(curl.stderr).toMatch(/permission_denied/i);

    const edge = agent(1, 'edge-7', { token: 'edge-' + '0123456789abcdef'.repeat(2) });
    expect(await eventually(() => edge.received.length > 0, 15_000)).toBe(true);
    const stolen = agent(1, 'agent-1', { token: 'edge-' + '0123456789abcdef'.repeat(2) });
    expect(await eventually(() => /PERMISSION_DENIED/.test(stolen.source.lastError), 10_000)).toBe(true);
    expect(stolen.received).toEqual([]);
    expect(cps[1]!.proc.logs()).not.toMatch(/0123456789abcdef0123456789abcdef/); // tokens are never logged
  });

  test('metrics count mutating calls and refusals; refused agent streams never reach the registry', async () => {
    const metricsPort = Number(/"metrics_port":(\d+)/.exec(cps[0]!.proc.logs())![1]);
    // /metrics, the status page and its JSON are reads behind the viewer role (bearer tokens: plain HTTP here).
    const bearer = (file: string) => ({ authorization: `Bearer ${readFileSync(file, 'utf8').trim()}` });
    const http = (p: string, headers: Record<string, string> = {}) =>
      fetch(`http://127.0.0.1:${metricsPort}${p}`, { headers });
    for (const p of ['/metrics', '/', '/status.json']) {
      const none = await http(p);
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toBe('Bearer');
      expect(await none.text()).toMatch(/unknown caller: no client certificate; no bearer token/);
      const agentToken = await http(p, bearer(token.edge!));
      expect(agentToken.status).toBe(403);
      expect(await agentToken.text()).toMatch(/needs the viewer role/);
      expect((await http(p, bearer(token.view!))).status).toBe(200);
    }
    expect(await (await http('/', bearer(token.view!))).text()).toMatch(/<h1>ProxyMgr control plane/);
    const metrics = await (await http('/metrics', bearer(token.view!))).text();
    expect(metrics).toMatch(
      /proxymgr_cp_mutating_calls_total\{method="\/proxymgr.v1.Rollout\/Pause",identity="ops",result="OK"\} 1/,
    );
    expect(metrics).toMatch(
      /proxymgr_cp_mutating_calls_total\{method="\/proxymgr.v1.Rollout\/Pause",identity="viewers",result="PERMISSION_DENIED"\} 1/,
    );
    expect(metrics).toMatch(
      /proxymgr_cp_auth_denied_total\{method="\/proxymgr.v1.ControlPlaneAdmin\/ListAgents",code="PERMISSION_DENIED"\} 1/,
    );
    // The HTTP refusals above, one of each per path (labels bounded to the known paths).
    for (const p of ['/metrics', '/', '/status.json']) {
      expect(metrics).toContain(`proxymgr_cp_auth_denied_total{method="HTTP ${p}",code="UNAUTHENTICATED"} 1`);
      expect(metrics).toContain(`proxymgr_cp_auth_denied_total{method="HTTP ${p}",code="PERMISSION_DENIED"} 1`);
    }
    const listed = execFileSync(
      path.join(__dirname, '..', '..', 'node_modules', '.bin', 'buf'),
      [
        'curl',
        '--protocol',
        'grpc',
        '--schema',
        SCHEMA,
        '--cacert',
        certs.ca,
        '--cert',
        cert['viewer-bob']!.cert,
        '--key',
        cert['viewer-bob']!.key,
        '-d',
        '{}',
        `https://127.0.0.1:${cps[0]!.port}/proxymgr.v1.ControlPlaneAdmin/ListAgents`,
      ],
      { encoding: 'utf8' },
    );
    const ids = (JSON.parse(listed) as { agents: { nodeId: string }[] }).agents.map((a) => a.nodeId);
    expect(ids).toEqual(['agent-1', 'agent-2']); // not "ops-alice", and the impostor did not replace agent-2
  });
});

/**
 * Without an auth section, a mutating call from a real non-loopback address is refused: the client runs in a
 * network namespace joined to the host by a veth pair (198.51.100.0/24, TEST-NET-2), the control plane listens on
 * the host end only. (Loopback acceptance without auth is what the rollout e2e's `ctl` calls rely on.)
 */
describe('without authentication: mutating calls from loopback only (real non-loopback peer in a network namespace)', () => {
  const tmp = tempDir('proxymgr-noauth-e2e-');
  const ns = `pmauth${process.pid % 100000}`;
  const [hostIf, nsIf] = [`vpa${process.pid % 100000}`, `ppa${process.pid % 100000}`];
  let cp: CliProcess | undefined;
  let port = 0;
  let netns = false;
  const sh = (...args: string[]) => execFileSync(args[0]!, args.slice(1), { stdio: 'pipe' });

  beforeAll(async () => {
    try {
      sh('ip', 'netns', 'add', ns);
      sh('ip', 'link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf);
      sh('ip', 'link', 'set', nsIf, 'netns', ns);
      sh('ip', 'addr', 'add', '198.51.100.1/24', 'dev', hostIf);
      sh('ip', 'link', 'set', hostIf, 'up');
      sh('ip', 'netns', 'exec', ns, 'ip', 'addr', 'add', '198.51.100.2/24', 'dev', nsIf);
      sh('ip', 'netns', 'exec', ns, 'ip', 'link', 'set', nsIf, 'up');
      sh('ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
      netns = true;
    } catch (err) {
      throw new Error(`cannot create network namespace ${ns} (needs root and iproute2): ${(err as Error).message}`);
    }
    port = await freePort('198.51.100.1');
    const file = path.join(tmp.dir, 'cp.yml');
    writeFileSync(
      file,
      `service_config: {type: file, path: ${tmp.dir}/services}\ncontrolplane: {listen: "198.51.100.1:${port}"}\n`,
    );
    mkdirSync(path.join(tmp.dir, 'services'));
    cp = startCli(['controlplane', '--config', file]);
    expect(await cp.waitForLog(/control plane started/)).toBe(true);
  });
  afterAll(async () => {
    await cp?.stop();
    if (netns) {
      spawnSync('ip', ['netns', 'del', ns]);
      spawnSync('ip', ['link', 'del', hostIf]);
    }
    tmp.cleanup();
  });

  test('the control plane warns at start; a mutating call from 198.51.100.2 is PERMISSION_DENIED, a read is answered', async () => {
    expect(cp!.logs()).toMatch(/no auth section in proxymgr.yml: agent streams are unauthenticated/);
    const inNs = { wrap: ['ip', 'netns', 'exec', ns] };
    const pause = await bufCurl(
      ['--schema', SCHEMA, '-d', '{}', `http://198.51.100.1:${port}/proxymgr.v1.Rollout/Pause`],
      inNs,
    );
    expect(pause.stderr).toMatch(/permission_denied/i);
    expect(pause.stderr).toMatch(/accepted from loopback only, not from 198.51.100.2/);
    const read = await bufCurl(
      ['--schema', SCHEMA, '-d', '{}', `http://198.51.100.1:${port}/proxymgr.v1.ControlPlaneAdmin/ListServices`],
      inNs,
    );
    expect(read.stderr).toBe('');
    expect(read.code).toBe(0);
    // The same call from the host's own (non-loopback) address is refused too: only loopback counts.
    const fromHost = await bufCurl([
      '--schema',
      SCHEMA,
      '-d',
      '{}',
      `http://198.51.100.1:${port}/proxymgr.v1.Rollout/Abort`,
    ]);
    expect(fromHost.stderr).toMatch(/not from 198.51.100.1/);
    expect(cp!.logs()).toMatch(/"audit":true[^\n]*"method":"\/proxymgr.v1.Rollout\/Pause"[^\n]*"peer":"198.51.100.2"/);
  });
});

/** The agent's own admin server (AgentAdmin, health, reflection) takes the same auth section. */
describe("the agent's admin server (built CLI, real HAProxy)", () => {
  const tmp = tempDir('proxymgr-agent-auth-e2e-');
  let agent: CliProcess | undefined;
  let adminPort = 0;
  const viewToken = `view-${'0123456789abcdef'.repeat(2)}`;

  beforeAll(async () => {
    writeFileSync(path.join(tmp.dir, 'view.token'), viewToken, { mode: 0o600 });
    const state = path.join(tmp.dir, 'state.json');
    writeFileSync(
      state,
      JSON.stringify({
        services: [
          {
            name: 'web',
            port: await freePort(),
            bind_address: '127.0.0.1',
            servers: [{ name: 'a', address: '127.0.0.1', port: 9 }],
          },
        ],
      }),
    );
    adminPort = await freePort();
    const cfg = path.join(tmp.dir, 'agent.yml');
    writeFileSync(
      cfg,
      `haproxy: {config_path: ${tmp.dir}/haproxy.cfg, socket_path: ${tmp.dir}/haproxy.sock}
agent: {state_dir: ${tmp.dir}/state, admin_listen: "127.0.0.1:${adminPort}"}
auth:
  clients:
    - {name: dashboards, token_file: view.token, roles: [viewer]}
`,
    );
    agent = startCli(['agent', '--config', cfg, '--state', state]);
    expect(await agent.waitForLog(/agent started/)).toBe(true);
  });
  afterAll(async () => {
    await agent?.stop();
    tmp.cleanup();
  });

  test('a viewer token reads AgentAdmin/Status; no token is UNAUTHENTICATED; reflection needs the token too', async () => {
    const url = `http://127.0.0.1:${adminPort}/proxymgr.v1.AgentAdmin/Status`;
    const ok = await bufCurl(['--schema', SCHEMA, '-H', `Authorization: Bearer ${viewToken}`, '-d', '{}', url]);
    expect(ok.stderr).toBe('');
    expect(ok.stdout).toMatch(/"haproxyRunning": true/);
    const none = await bufCurl(['--schema', SCHEMA, '-d', '{}', url]);
    expect(none.stderr).toMatch(/unauthenticated/i);
    expect(none.stderr).toMatch(/no bearer token/);
    const reflection = await bufCurl(['--list-methods', `http://127.0.0.1:${adminPort}`]);
    expect(reflection.code).not.toBe(0);
    const reflected = await bufCurl([
      '--reflect-header',
      `Authorization: Bearer ${viewToken}`,
      '--list-methods',
      `http://127.0.0.1:${adminPort}`,
    ]);
    expect(reflected.stdout).toMatch(/proxymgr.v1.AgentAdmin\/Status/);
  });
});
