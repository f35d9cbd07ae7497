import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, Server } from 'node:net';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AgentInfo, ControlPlaneAdminClient, ListAgentsResponse } from '../../common/gen/proxymgr/v1/admin';
import { Backend, startBackends } from '../../testkit/backends';
import { CliProcess, startCli, stopAllCli } from '../../testkit/cli';
import { eventually, freePort, get, tempDir } from '../../testkit/net';

jest.setTimeout(90_000);

/**
 * A transient failure is not the last word: a service whose port another process holds for a moment is left out,
 * the agent retries the state it holds with backoff, the service comes up once the port is free, and the control
 * plane's record goes from the partial apply to SYNCED without a new version. Built CLI, real HAProxy and backends.
 */
describe('a port taken for a moment (control plane, agent, HAProxy)', () => {
  const tmp = tempDir('proxymgr-retry-e2e-');
  let backends: Backend[];
  let cpPort: number;
  let blocker: Server | undefined;

  const agentInfo = () =>
    new Promise<AgentInfo | undefined>((resolve, reject) => {
      const c = new ControlPlaneAdminClient(`127.0.0.1:${cpPort}`, grpc.credentials.createInsecure());
      c.listAgents({}, (err: grpc.ServiceError | null, res: ListAgentsResponse) => {
        c.close();
        if (err) reject(err);
        else resolve(res.agents.find((a) => a.nodeId === 'agent0'));
      });
    });

  afterAll(async () => {
    const hung = await stopAllCli();
    blocker?.close();
    await Promise.all((backends ?? []).map((b) => b.close()));
    tmp.cleanup();
    expect(hung).toEqual([]);
  });

  test('left out, retried, served: the control plane sees SYNCED once the port is free', async () => {
    backends = await startBackends(['web', 'api']);
    const [webPort, apiPort] = [await freePort(), await freePort()];
    cpPort = await freePort();
    blocker = createServer();
    await new Promise<void>((resolve) => blocker!.listen(apiPort, '127.0.0.1', resolve));

    const services = path.join(tmp.dir, 'services');
    mkdirSync(services);
    const svc = (port: number, b: Backend) =>
      JSON.stringify({ type: 'static', port, listen_options: ['mode http'], hosts: [`127.0.0.1:${b.port}`] });
    writeFileSync(path.join(services, 'web.json'), svc(webPort, backends[0]!));
    writeFileSync(path.join(services, 'api.json'), svc(apiPort, backends[1]!));
    const cpCfg = path.join(tmp.dir, 'cp.yml');
    writeFileSync(
      cpCfg,
      `haproxy: {defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]}
service_config: {type: file, path: ${services}}
controlplane: {listen: "127.0.0.1:${cpPort}"}
`,
    );
    const cp: CliProcess = startCli(['controlplane', '--config', cpCfg]);
    expect(await cp.waitForLog(/control plane started/)).toBe(true);
    const dir = path.join(tmp.dir, 'agent0');
    mkdirSync(dir);
    const agentCfg = path.join(dir, 'proxymgr.yml');
    writeFileSync(
      agentCfg,
      `haproxy: {config_path: ${dir}/haproxy.cfg, socket_path: ${dir}/haproxy.sock}
agent: {state_dir: ${dir}, node_id: agent0, controlplanes: ["127.0.0.1:${cpPort}"], admin_listen: "", bind_address: 127.0.0.1}
`,
    );
    const agent = startCli(['agent', '--config', agentCfg]);

    // web serves; api is left out (its port is taken), said to the control plane as a partial apply.
    expect(await eventually(async () => (await get(webPort, '127.0.0.1', 1000)).body === 'web\n', 20_000)).toBe(true);
    expect(await eventually(async () => (await agentInfo())?.state === 'NACKED', 10_000)).toBe(true);
    expect((await agentInfo())?.lastError).toMatch(/without service\(s\) api[^\n]*Address already in use/);
    expect(await agent.waitForLog(/transient failure; the state is applied again after a backoff/)).toBe(true);

    // The port comes free: within the backoff (1 s, 2 s, 4 s … ±50 %), api serves and the record is SYNCED.
    await new Promise<void>((resolve) => blocker!.close(() => resolve()));
    blocker = undefined;
    expect(
      await eventually(
        async () => (await get(apiPort, '127.0.0.1', 1000).catch(() => ({ body: '' }))).body === 'api\n',
        20_000,
      ),
    ).toBe(true);
    expect(await eventually(async () => (await agentInfo())?.state === 'SYNCED', 10_000)).toBe(true);
    expect((await agentInfo())?.lastError).toBe('');
    expect(cp.logs()).toMatch(/ACK again after a retry/);
  });
});
