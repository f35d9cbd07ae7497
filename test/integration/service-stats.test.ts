import { ServiceStatsTracker } from '../../agent/haproxy/stats';
import { Backend, startBackends } from '../../testkit/backends';
import { freePort, get, tally } from '../../testkit/net';
import { server, service, startTestAgent, state } from '../../testkit/agent';

jest.setTimeout(60_000);

/**
 * Issue 11 (part): HAProxy's own per-service counters, as the agent exports them, from a real HAProxy with real
 * backends (`show stat -1 3 -1`: frontend and backend rows): requests, HAProxy's own 503s; servers DOWN from the
 * agent's show servers state; and counts that survive a reload (2.6 starts every new process at zero).
 */
describe('per-service counters from show stat (real HAProxy)', () => {
  let backends: Backend[];
  let t: Awaited<ReturnType<typeof startTestAgent>>;
  let port: number;
  let emptyPort: number;

  beforeAll(async () => {
    backends = await startBackends(['a', 'b']);
    [port, emptyPort] = [await freePort(), await freePort()];
    t = await startTestAgent();
    const closed = await freePort(); // nothing listens there: a health-checked server that is DOWN
    const r = await t.agent.apply(
      state([
        service(
          'web',
          port,
          backends.map((b) => server(b.name, b.port)),
        ),
        service('empty', emptyPort, [server('gone', closed, { options: ['check', 'inter', '100'] })]),
      ]),
    );
    expect(r.outcome).toBe('reload');
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all((backends ?? []).map((b) => b.close()));
  });

  test('requests, 5xx and servers DOWN per service; carried across a reload', async () => {
    const tracker = new ServiceStatsTracker(t.runtime);
    await tally(port, 10);
    for (let i = 0; i < 3; i++) expect((await get(emptyPort)).status).toBe(503);
    await tracker.sample(t.agent.supervisor.pid);
    let s = tracker.current();
    expect(s.get('web')!.counters.requests).toBe(10);
    expect(s.get('web')!.counters.responses5xx).toBe(0);
    expect(s.get('web')!.gauges.queue).toBe(0);
    expect(s.get('empty')!.counters.responses5xx).toBe(3);
    // Servers DOWN: from the agent's show servers state (a drift check reads it afresh), not from show stat.
    await t.agent.repairDrift();
    expect(t.agent.serverCounts().get('web')).toEqual({ total: 2, down: 0 });
    expect(t.agent.serverCounts().get('empty')).toEqual({ total: 1, down: 1 });

    // A reload (a listen option changed): the new process counts from zero; the tracker carries the 10 and the 3.
    const pid0 = t.agent.supervisor.pid;
    const r = await t.agent.apply(
      state([
        service(
          'web',
          port,
          backends.map((b) => server(b.name, b.port)),
          { listenOptions: ['mode http', 'balance roundrobin', 'option forwardfor'] },
        ),
        service('empty', emptyPort, [server('gone', await freePort(), { options: ['check', 'inter', '100'] })]),
      ]),
    );
    expect(r.outcome).toBe('reload');
    expect(t.agent.supervisor.pid).not.toBe(pid0);
    await tally(port, 4);
    expect((await get(emptyPort)).status).toBe(503);
    expect((await t.runtime.command('show stat')).split('\n').find((l) => l.startsWith('web,FRONTEND'))).toMatch(
      /^web,FRONTEND,/,
    );
    await tracker.sample(t.agent.supervisor.pid);
    s = tracker.current();
    expect(s.get('web')!.counters.requests).toBe(14);
    expect(s.get('empty')!.counters.responses5xx).toBe(4);
  });
});
