import * as net from 'node:net';
import { Registry } from 'prom-client';
import { eventually, freePort, sleep } from '../../testkit/net';
import { server, service, startTestAgent, state } from '../../testkit/agent';
import { reloadMetrics } from '../../agent/reload-metrics';
import { reloadStatsPb } from '../../agent/admin';
import { clientConnections } from '../../agent/haproxy/proc-connections';

jest.setTimeout(120_000);

/** A TCP echo server: a connection through HAProxy stays open as long as the client keeps it. */
async function echoServer(): Promise<{ port: number; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    s.pipe(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: (srv.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        srv.close(() => r());
      }),
  };
}

/** A client connection through HAProxy that has echoed once (so HAProxy holds it to the backend), and its end. */
async function hold(port: number): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  const socket = net.connect({ port, host: '127.0.0.1' });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  await new Promise<void>((resolve, reject) => {
    socket.once('data', () => resolve());
    socket.once('close', () => reject(new Error('closed before the echo')));
    socket.write('ping\n');
  });
  return { socket, closed };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('reload accounting with real HAProxy: old generations counted, bounded and timed', () => {
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let t: Awaited<ReturnType<typeof startTestAgent>>;
  const held: { socket: net.Socket; closed: Promise<void>; pid: number }[] = [];

  beforeAll(async () => {
    echo = await echoServer();
    // hard-stop-after far beyond the test: only the agent's bound stops an old generation here.
    t = await startTestAgent('  max_old_generations: 2\n  hard_stop_after_ms: 600000\n');
  });
  afterAll(async () => {
    for (const h of held) h.socket.destroy();
    await t?.close();
    await echo?.close();
  });

  test('long-lived connections across 4 reloads: 2 old generations at most, the oldest stopped, durations reported', async () => {
    const registry = new Registry();
    reloadMetrics(registry, t.agent.supervisor);
    const port = await freePort();
    const tcp = (gen: number) =>
      state([
        service('echo', port, [server('e1', echo.port)], {
          listenOptions: ['mode tcp', 'timeout client 10m', 'timeout server 10m', `description gen${gen}`],
        }),
      ]);
    expect((await t.agent.apply(tcp(0))).outcome).toBe('reload'); // the first start
    const generations: number[] = [];
    const appliedAt: number[] = [];
    for (let gen = 1; gen <= 4; gen++) {
      // A connection held open on the generation about to be replaced.
      const h = await hold(port);
      held.push({ ...h, pid: t.agent.supervisor.pid! });
      expect((await t.agent.apply(tcp(gen))).outcome).toBe('reload');
      appliedAt.push(Date.now());
      const stats = t.agent.supervisor.reloadStats!();
      generations.push(stats.oldGenerations.filter((g) => !g.stopped).length);
    }
    // Old generations alive after each reload: one more each time until the bound (2) stops the oldest.
    expect(generations).toEqual([1, 2, 2, 2]);
    const stats = t.agent.supervisor.reloadStats!();
    expect(stats.reloads).toBe(4);
    expect(stats.maxOldGenerations).toBe(2);
    expect(stats.generationsStopped).toBe(2);
    // The two oldest generations were stopped with their connection cut: each client sees its connection end.
    await held[0]!.closed;
    await held[1]!.closed;
    expect(await eventually(() => !alive(held[0]!.pid) && !alive(held[1]!.pid))).toBe(true);
    expect(stats.connectionsCut).toBe(2); // one held client connection on each, counted from /proc before the stop
    // The two newer old generations still finish their connections.
    expect(alive(held[2]!.pid) && alive(held[3]!.pid)).toBe(true);
    expect(clientConnections(held[2]!.pid)).toBe(1);
    const pb = reloadStatsPb(t.agent.supervisor)!;
    expect(pb.oldGenerations.map((g) => [g.pid, g.stopped])).toEqual(
      expect.arrayContaining([
        [held[2]!.pid, false],
        [held[3]!.pid, false],
      ]),
    );
    // Closing their connections lets them exit: every reload completes, each lasting at least from its apply until
    // the connection held on its old generation was closed.
    await sleep(50);
    const closedAt = Date.now();
    held[2]!.socket.destroy();
    held[3]!.socket.destroy();
    expect(await eventually(() => t.agent.supervisor.reloadStats!().completed === 4)).toBe(true);
    const done = reloadStatsPb(t.agent.supervisor)!;
    expect(done.oldGenerations).toEqual([]);
    expect(done.recent).toBe(4);
    expect(done.maxDurationMs).toBeGreaterThanOrEqual(closedAt - appliedAt[3]!);
    const metrics = await registry.metrics();
    expect(metrics).toMatch(/^proxymgr_agent_reload_duration_seconds_count 4$/m);
    expect(metrics).toMatch(/^proxymgr_agent_haproxy_old_generations 0$/m);
    expect(metrics).toMatch(/^proxymgr_agent_haproxy_generations_stopped_total 2$/m);
    expect(metrics).toMatch(/^proxymgr_agent_haproxy_connections_cut_total 2$/m);
  });
});
