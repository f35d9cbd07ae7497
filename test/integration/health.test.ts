import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { parseConfig } from '../../common/config/config';
import {
  HealthCheckResponse,
  HealthCheckResponse_ServingStatus as S,
  HealthClient,
} from '../../common/gen/grpc/health/v1/health';
import { addHealth, Health } from '../../common/platform/grpc';
import { silentLogger } from '../../common/platform/log';
import { createAgentProcess } from '../../agent/wiring';
import { controlPlaneFromConfig } from '../../controlplane/wiring';
import { Backend, startBackends } from '../../testkit/backends';
import { eventually, freePort, sleep, tempDir } from '../../testkit/net';

jest.setTimeout(60_000);

// Issue 9k: the health service's changed() was never called, so Watch streams never heard of a change (an agent
// whose HAProxy died stayed SERVING for its watchers), and the control plane said SERVING before it knew anything.

/** A grpc-js health client watching "" on `port`; records every status it is sent. */
function watchHealth(port: number) {
  const client = new HealthClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const seen: S[] = [];
  let ended = false;
  const call = client.watch({ service: '' });
  call.on('data', (r: HealthCheckResponse) => seen.push(r.status));
  call.on('error', () => (ended = true));
  call.on('end', () => (ended = true));
  const check = () =>
    new Promise<S>((resolve, reject) =>
      client.check({ service: '' }, (err, r) => (err ? reject(err) : resolve(r.status))),
    );
  return {
    seen,
    ended: () => ended,
    check,
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

describe('addHealth (real gRPC server and client)', () => {
  let server: grpc.Server;
  let port: number;
  let up = true;
  let health: Health;
  beforeAll(async () => {
    server = new grpc.Server();
    health = addHealth(server, () => up, { pollMs: 100 });
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
  });
  afterAll(() => server?.forceShutdown());

  test('Watch gets the current status, every change (signalled or polled) once, and ends on close()', async () => {
    const w = watchHealth(port);
    try {
      expect(await eventually(() => w.seen.length === 1)).toBe(true);
      expect(w.seen).toEqual([S.SERVING]);
      up = false; // nobody signals this one: the poll finds it
      expect(await eventually(() => w.seen.length === 2, 2000)).toBe(true);
      expect(w.seen[1]).toBe(S.NOT_SERVING);
      expect(await w.check()).toBe(S.NOT_SERVING);
      up = true;
      health.changed();
      health.changed();
      expect(await eventually(() => w.seen.length === 3, 2000)).toBe(true);
      await sleep(300); // unchanged: nothing more is sent, however often changed() is called
      health.changed();
      await sleep(50);
      expect(w.seen).toEqual([S.SERVING, S.NOT_SERVING, S.SERVING]);
      health.close();
      expect(await eventually(() => w.ended(), 2000)).toBe(true);
    } finally {
      w.close();
    }
  });
});

describe('health of real processes', () => {
  let tmp: ReturnType<typeof tempDir>;
  let backends: Backend[];
  beforeAll(async () => {
    tmp = tempDir('proxymgr-health-');
    backends = await startBackends(['a']);
  });
  afterAll(async () => {
    await Promise.all((backends ?? []).map((b) => b.close()));
    tmp?.cleanup();
  });

  test('agent: HAProxy killed → Watch says NOT_SERVING, then SERVING again once the supervisor restarted it', async () => {
    const port = await freePort();
    const dir = path.join(tmp.dir, 'agent');
    const stateFile = path.join(tmp.dir, 'state.json');
    writeFileSync(
      stateFile,
      JSON.stringify({
        services: [
          {
            name: 'web',
            port,
            bind_address: '127.0.0.1',
            servers: [{ name: 'a', address: '127.0.0.1', port: backends[0]!.port }],
          },
        ],
      }),
    );
    const yml = `haproxy:\n  config_path: ${dir}/haproxy.cfg\n  socket_path: ${dir}/haproxy.sock\n  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]\nagent:\n  state_dir: ${dir}\n  admin_listen: 127.0.0.1:0\n`;
    const agent = createAgentProcess(parseConfig(yml, path.join(tmp.dir, 'agent.yml')), silentLogger, { stateFile });
    let w: ReturnType<typeof watchHealth> | undefined;
    let stopped = false;
    try {
      await agent.start();
      expect(await eventually(() => agent.agent.supervisor.pid !== undefined, 15_000)).toBe(true);
      w = watchHealth(agent.adminPort);
      expect(await eventually(() => w!.seen.at(-1) === S.SERVING, 5000)).toBe(true);
      const pid = agent.agent.supervisor.pid!;
      process.kill(pid, 'SIGKILL');
      expect(await eventually(() => w!.seen.includes(S.NOT_SERVING), 5000)).toBe(true);
      expect(await eventually(() => w!.seen.at(-1) === S.SERVING && agent.agent.supervisor.pid !== pid, 15_000)).toBe(
        true,
      );
      expect(await w.check()).toBe(S.SERVING);
      // Stopping with a Watch stream open neither hangs nor leaves the stream open.
      await Promise.race([
        agent.stop(),
        sleep(10_000).then(() => Promise.reject(new Error('agent stop hung on an open Watch stream'))),
      ]);
      stopped = true;
      expect(await eventually(() => w!.ended(), 2000)).toBe(true);
    } finally {
      w?.close();
      if (!stopped) await agent.stop();
    }
  });

  test('control plane: NOT_SERVING until discovery published its first snapshot, then SERVING (Watch told at once)', async () => {
    const file = path.join(tmp.dir, 'services.yml');
    const yml = `service_config:\n  type: file\n  path: ${file}\ncontrolplane:\n  listen: 127.0.0.1:0\n  file_poll_ms: 100\n`;
    const cp = controlPlaneFromConfig({ config: parseConfig(yml, path.join(tmp.dir, 'cp.yml')), log: silentLogger });
    let w: ReturnType<typeof watchHealth> | undefined;
    try {
      await cp.start();
      w = watchHealth(cp.port);
      expect(await eventually(() => w!.seen.length === 1)).toBe(true);
      expect(w.seen).toEqual([S.NOT_SERVING]);
      expect(await w.check()).toBe(S.NOT_SERVING);
      writeFileSync(file, JSON.stringify({ web: { type: 'static', port: 8080, hosts: ['10.0.0.1:80'] } }));
      expect(await eventually(() => w!.seen.at(-1) === S.SERVING, 10_000)).toBe(true);
      expect(await w.check()).toBe(S.SERVING);
    } finally {
      w?.close();
      await cp.stop();
    }
  });
});
