import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { CliProcess, startCli, stopAllCli } from '../../testkit/cli';
import { eventually, freePort, tempDir } from '../../testkit/net';

jest.setTimeout(300_000);

const SERVICES = 4000;

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}
const SERVERS = 20;

/**
 * Issue 10, must show 2: a 4,000 services × 20 servers state (80,000 servers; its full push is about 4.5 MiB, over
 * grpc-js's default 4 MiB receive limit, which agents now raise on purpose) reaches an agent through the control
 * plane's first sync and serves traffic; a host change after it is a delta of one service, applied at runtime.
 * Every server of every service points at one real backend, on 20 loopback addresses.
 */
describe(`a ${SERVICES} × ${SERVERS} state end to end (built CLI, real HAProxy)`, () => {
  let tmp: ReturnType<typeof tempDir>;
  let backend: http.Server;
  let backendPort: number;
  let cp: CliProcess;
  let agent: CliProcess;
  let servicesFile: string;
  const ports: number[] = [];

  const services = (hostsOf: (i: number) => string[]) =>
    Object.fromEntries(
      ports.map((port, i) => [
        `svc${String(i).padStart(4, '0')}`,
        {
          type: 'static',
          port,
          hosts: hostsOf(i),
          listen_options: listenOptions(i),
          server_options: ['inter 2000', 'rise 2', 'fall 3'],
        },
      ]),
    );
  /** What a real service config carries (about 250 bytes): with it the full push is over grpc-js's 4 MiB default. */
  const listenOptions = (i: number) => [
    'mode http',
    'balance roundrobin',
    'option httpchk GET /health',
    'http-check expect status 200',
    'option forwardfor',
    `http-response set-header X-Service svc${String(i).padStart(4, '0')}`,
    'timeout server 30s',
    'retries 2',
    'option redispatch',
    'option http-server-close',
  ];
  const allHosts = () => Array.from({ length: SERVERS }, (_, j) => `127.0.1.${j + 1}:${backendPort}`);

  const get = (port: number) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 5000 }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
    });

  beforeAll(async () => {
    tmp = tempDir('proxymgr-large-');
    backend = http.createServer((req, res) => res.end(`backend via ${req.socket.localAddress}`));
    await new Promise<void>((resolve) => backend.listen(0, '0.0.0.0', resolve));
    backendPort = (backend.address() as AddressInfo).port;
    // Below the ephemeral range (32768+): 4,000 ports taken from it would collide with the outgoing connections of
    // tests running at the same time, and a service whose port was taken meanwhile is left out. Above 28000: the
    // other tests' freePort slices end there (testkit/net.ts).
    for (let p = 28_000; ports.length < SERVICES; p++) {
      if (p >= 32_768) throw new Error(`fewer than ${SERVICES} free ports between 28000 and 32767`);
      if (await isFree(p)) ports.push(p);
    }
    servicesFile = path.join(tmp.dir, 'services.json');
    writeFileSync(servicesFile, JSON.stringify(services(allHosts)));
    const cpPort = await freePort();
    const cpConfig = path.join(tmp.dir, 'cp.yml');
    writeFileSync(
      cpConfig,
      `haproxy:
  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]
service_config: {type: file, path: ${servicesFile}}
controlplane: {listen: "127.0.0.1:${cpPort}", file_poll_ms: 200, max_removal_share: 1}
`,
    );
    const dir = path.join(tmp.dir, 'agent');
    mkdirSync(dir);
    const agentConfig = path.join(dir, 'proxymgr.yml');
    writeFileSync(
      agentConfig,
      `haproxy: {config_path: ${dir}/haproxy.cfg, socket_path: ${dir}/haproxy.sock}
agent: {state_dir: ${dir}, node_id: big, controlplanes: ["127.0.0.1:${cpPort}"], admin_listen: "", bind_address: 127.0.0.1}
`,
    );
    cp = startCli(['controlplane', '--config', cpConfig]);
    expect(await cp.waitForLog(/control plane started/, 60_000)).toBe(true);
    agent = startCli(['agent', '--config', agentConfig]);
  });

  afterAll(async () => {
    const hung = await stopAllCli();
    await new Promise((resolve) => backend?.close(resolve));
    tmp?.cleanup();
    expect(hung).toEqual([]);
  });

  test('the first sync (a full push over 4 MiB) is applied, and every sampled service serves', async () => {
    expect(await agent.waitForLog(/"outcome":"reload"[^\n]*update: reload/, 120_000)).toBe(true);
    const push = cp
      .logs()
      .split('\n')
      .find((l) => l.includes('pushed desired state'));
    const { kind, bytes } = JSON.parse(push!) as { kind: string; bytes: number };
    expect(kind).toBe('full');
    expect(bytes).toBeGreaterThan(4 * 1024 * 1024);
    // The first answer, or (when the first start was refused as transient — on a loaded machine HAProxy with 80,000
    // servers may not answer its admin channel within 10 s — and a retry of the agent's own succeeded) the answer
    // after the retry: the control plane logs that one as "ACK again after a retry".
    expect(await eventually(() => /"msg":"ACK( again after a retry)?"/.test(cp.logs()), 30_000)).toBe(true);
    for (const i of [0, 1, 1234, 2999, SERVICES - 1]) {
      const r = await get(ports[i]!);
      expect(r.status).toBe(200);
      expect(r.body).toMatch(/^backend via 127\.0\.1\.\d+$/);
    }
  });

  test('a host change is a delta of one service (a few KiB), applied at runtime without a reload', async () => {
    const marks = { cp: cp.logs().length, agent: agent.logs().length };
    // Atomically (a 4 MB file written in place could be polled half-written).
    writeFileSync(
      `${servicesFile}.tmp`,
      JSON.stringify(services((i) => (i === 1234 ? allHosts().slice(0, 1) : allHosts()))),
    );
    renameSync(`${servicesFile}.tmp`, servicesFile);
    expect(await eventually(() => /"outcome":"runtime"/.test(agent.logs().slice(marks.agent)), 30_000)).toBe(true);
    const pushes = cp
      .logs()
      .slice(marks.cp)
      .split('\n')
      .filter((l) => l.includes('pushed desired state'))
      .map((l) => JSON.parse(l) as { kind: string; bytes: number });
    expect(pushes.length).toBeGreaterThanOrEqual(1);
    for (const p of pushes) {
      expect(p.kind).toBe('delta');
      expect(p.bytes).toBeLessThan(4096);
    }
    expect(agent.logs().slice(marks.agent)).not.toMatch(/haproxy reloaded/);
    const bodies = new Set<string>();
    for (let k = 0; k < 6; k++) bodies.add((await get(ports[1234]!)).body);
    expect([...bodies]).toEqual(['backend via 127.0.1.1']);
  });
});
