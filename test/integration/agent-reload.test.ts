import { Backend, startBackends } from '../../testkit/backends';
import { eventually, freePort, sleep, tally } from '../../testkit/net';
import { startLoad } from '../../testkit/load';
import { server, service, startTestAgent, state } from '../../testkit/agent';

jest.setTimeout(120_000);

describe('agent owns the listening sockets: reloads and crashes refuse nothing', () => {
  let backends: Backend[];
  let t: Awaited<ReturnType<typeof startTestAgent>>;
  let port: number;
  const servers = () => backends.map((b) => server(b.name, b.port));

  beforeAll(async () => {
    backends = await startBackends(['a', 'b']);
    port = await freePort();
    t = await startTestAgent();
    const r = await t.agent.apply(state([service('web', port, servers())]));
    expect(r.outcome).toBe('reload');
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all((backends ?? []).map((b) => b.close()));
  });

  test('5. 50 reloads under 16 clients opening fresh connections: 0 refused, 0 reset', async () => {
    const load = startLoad(port, 16);
    await sleep(200);
    const reloadsBefore = t.agent.counters.reloads;
    for (let i = 0; i < 50; i++) {
      // Alternating a listen option changes the shape each time: one real reload per step.
      const opts = ['mode http', 'balance roundrobin', `http-response set-header X-Gen ${i}`];
      const r = await t.agent.apply(state([service('web', port, servers(), { listenOptions: opts })]));
      expect(r.outcome).toBe('reload');
      await sleep(20);
    }
    await sleep(300);
    const result = await load.stop();
    expect(t.agent.counters.reloads - reloadsBefore).toBe(50);
    expect(result.ok).toBeGreaterThan(1000);
    expect({
      refused: result.refused,
      reset: result.reset,
      empty: result.empty,
      other: result.other,
      errors: result.errors,
    }).toEqual({
      refused: 0,
      reset: 0,
      empty: 0,
      other: 0,
      errors: [],
    });
  });

  test('6. kill -9 of HAProxy: back within a second, no connection refused meanwhile', async () => {
    const load = startLoad(port, 16);
    await sleep(200);
    const victim = t.agent.supervisor.pid!;
    const killedAt = Date.now();
    process.kill(victim, 'SIGKILL');
    const back = await eventually(
      () => t.agent.supervisor.pid !== undefined && t.agent.supervisor.pid !== victim,
      1000,
      5,
    );
    const backAfterMs = Date.now() - killedAt;
    await sleep(500);
    const result = await load.stop();
    expect(back).toBe(true);
    expect(backAfterMs).toBeLessThan(1000);
    expect(t.agent.supervisor.restarts).toBe(1);
    expect(result.refused).toBe(0);
    // Requests the killed process had already accepted die with it (reset or empty reply); connections made
    // during the gap wait in the backlog and are served by the new process.
    expect(result.reset + result.empty).toBeLessThanOrEqual(16);
    expect(result.ok).toBeGreaterThan(100);
    expect((await tally(port, 4)).size).toBe(2);
  });
});

describe('server states survive a reload (server-state-file)', () => {
  test('a server health checks found DOWN is still DOWN in the new process, not assumed UP', async () => {
    const [live] = await startBackends(['live']);
    const deadPort = await freePort(); // nothing listens here
    const port = await freePort();
    const t = await startTestAgent();
    try {
      const opts = { serverOptions: ['check inter 100 fall 1 rise 1'] };
      const servers = [server('live', live!.port), server('dead', deadPort)];
      await t.agent.apply(state([service('web', port, servers, opts)]));
      const dead = async () => (await t.runtime.serversState()).get('web')?.get('dead')?.operState;
      expect(await eventually(async () => (await dead()) === 0, 5000, 20)).toBe(true);

      const r = await t.agent.apply(
        state([
          service('web', port, servers, {
            ...opts,
            listenOptions: ['mode http', 'balance roundrobin', 'option redispatch'],
          }),
        ]),
      );
      expect(r.outcome).toBe('reload');
      // Read at once from the new process: the saved state says DOWN; without it the server would start UP.
      expect(await dead()).toBe(0);
      const counts = await tally(port, 10);
      expect(counts.get('live')).toBe(10);
    } finally {
      await t.close();
      await live!.close();
    }
  });
});
