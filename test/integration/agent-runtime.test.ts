import { readFileSync } from 'node:fs';
import { Backend, startBackends } from '../../testkit/backends';
import { eventually, freePort, get, tally } from '../../testkit/net';
import { server, service, startTestAgent, state } from '../../testkit/agent';

jest.setTimeout(60_000);

describe('agent with a real HAProxy: runtime API first, reload only for shape changes', () => {
  let backends: Backend[];
  let t: Awaited<ReturnType<typeof startTestAgent>>;
  let port: number;

  beforeAll(async () => {
    backends = await startBackends(['a', 'b', 'c', 'd']);
    port = await freePort();
    t = await startTestAgent();
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all((backends ?? []).map((b) => b.close()));
  });

  const [A, B, C] = [0, 1, 2];
  const srv = (i: number, extra = {}) => server(backends[i]!.name, backends[i]!.port, extra);
  const pid = () => t.agent.supervisor.pid;

  test('1. traffic reaches the backends through the handed-off socket', async () => {
    const r = await t.agent.apply(state([service('web', port, [srv(A), srv(B)])]));
    expect(r.outcome).toBe('reload');
    expect(r.reasons.map((x) => x.text)).toEqual(['start: no HAProxy is running']);
    const counts = await tally(port, 20);
    expect(counts.get('a')).toBe(10);
    expect(counts.get('b')).toBe(10);
    // The config binds the fd, not the port: the socket is the agent's.
    expect(readFileSync(t.config.haproxy.configPath, 'utf8')).toMatch(/bind fd@4/);
  });

  test('2. a removed server gets no traffic, without a reload; it comes back, still without one', async () => {
    const before = pid();
    const reloads = t.agent.counters.reloads;
    const r = await t.agent.apply(state([service('web', port, [srv(A)])]));
    expect(r.outcome).toBe('runtime');
    expect(r.commands).toEqual(['set server web/b state drain']);
    expect(r.reasons.map((x) => x.text)).toEqual(['server web/b is no longer in the desired state: draining']);
    expect(pid()).toBe(before);
    expect(t.agent.counters.reloads).toBe(reloads);
    expect([...(await tally(port, 10)).keys()]).toEqual(['a']);
    await t.agent.flushFiles(); // haproxy.cfg follows a runtime change within agent.write_delay_ms
    // Draining until agent.drain_timeout_ms: it stays in the file (a reload keeps it draining) until it is deleted.
    expect(readFileSync(t.config.haproxy.configPath, 'utf8')).toMatch(/server b /);

    const back = await t.agent.apply(state([service('web', port, [srv(A), srv(B)])]));
    expect(back.outcome).toBe('runtime');
    expect(back.commands).toEqual(['set server web/b state ready']);
    expect(pid()).toBe(before);
    expect((await tally(port, 10)).get('b')).toBe(5);
    await t.agent.flushFiles();
    expect(readFileSync(t.config.haproxy.configPath, 'utf8')).toMatch(/server b 127\.0\.0\.1:\d+ weight 1/);
  });

  test('3. a new server, a weight change and an address change apply without a reload', async () => {
    const before = pid();
    const reloads = t.agent.counters.reloads;

    const added = await t.agent.apply(state([service('web', port, [srv(A), srv(B), srv(C)])]));
    expect(added.outcome).toBe('runtime');
    expect(added.commands[0]).toMatch(/^add server web\/c 127\.0\.0\.1:\d+ weight 1$/);
    expect(added.commands).toContain('set server web/c state ready');
    expect((await tally(port, 30)).get('c')).toBe(10);

    const weighted = await t.agent.apply(
      state([service('web', port, [srv(A, { weight: 3 }), srv(B, { weight: 0 }), srv(C, { weight: 0 })])]),
    );
    expect(weighted.outcome).toBe('runtime');
    expect(weighted.reasons.map((x) => x.text)).toContain('weight of web/a 1 → 3');
    expect([...(await tally(port, 12)).keys()]).toEqual(['a']);

    // Server "a" moves to backend d's port: same name, new address.
    const moved = await t.agent.apply(
      state([service('web', port, [server('a', backends[3]!.port), srv(B, { weight: 0 }), srv(C, { weight: 0 })])]),
    );
    expect(moved.outcome).toBe('runtime');
    expect(moved.commands).toEqual([
      `set server web/a addr 127.0.0.1 port ${backends[3]!.port}`,
      'set server web/a weight 1',
    ]);
    expect([...(await tally(port, 6)).keys()]).toEqual(['d']);

    expect(pid()).toBe(before);
    expect(t.agent.counters.reloads).toBe(reloads);
    await t.agent.flushFiles();
    const cfg = readFileSync(t.config.haproxy.configPath, 'utf8');
    expect(cfg).toContain(`server a 127.0.0.1:${backends[3]!.port} weight 1`);
    expect(cfg).toMatch(/server c 127\.0\.0\.1:\d+ weight 0/);
  });

  test('4. a new service and a changed listen_options each cause exactly one reload', async () => {
    const base = [server('a', backends[0]!.port), srv(B)];
    await t.agent.apply(state([service('web', port, base)]));
    const port2 = await freePort();
    const reloads = t.agent.counters.reloads;
    const before = pid();

    const r = await t.agent.apply(state([service('web', port, base), service('api', port2, [srv(C)])]));
    expect(r.outcome).toBe('reload');
    expect(r.reasons.map((x) => x.text)).toEqual(['reload: new service api']);
    expect(t.agent.counters.reloads).toBe(reloads + 1);
    expect(pid()).not.toBe(before);
    expect((await get(port2)).body).toBe('c\n');
    expect(await eventually(async () => (await get(port)).status === 200)).toBe(true);

    const r2 = await t.agent.apply(
      state([
        service('web', port, base, {
          listenOptions: ['mode http', 'balance roundrobin', 'http-response set-header X-Via proxymgr'],
        }),
        service('api', port2, [srv(C)]),
      ]),
    );
    expect(r2.reasons.map((x) => x.text)).toEqual(['reload: listen_options of web changed']);
    expect(t.agent.counters.reloads).toBe(reloads + 2);
    // The same state again: nothing to do.
    const r3 = await t.agent.apply(
      state([
        service('web', port, base, {
          listenOptions: ['mode http', 'balance roundrobin', 'http-response set-header X-Via proxymgr'],
        }),
        service('api', port2, [srv(C)]),
      ]),
    );
    expect(r3.outcome).toBe('nothing');
    expect(t.agent.counters.reloads).toBe(reloads + 2);
  });

  test("drift repair puts back a weight changed by hand, but leaves an operator's maint alone (an override)", async () => {
    await t.runtime.command('set server web/a weight 9');
    const r = await t.agent.repairDrift();
    expect(r?.outcome).toBe('runtime');
    expect(r?.commands).toEqual(['set server web/a weight 1']);
    expect(t.agent.recentActions().at(-1)?.reason).toBe('drift: weight of web/a 9 → 1');

    await t.runtime.command('set server web/a state maint');
    const r2 = await t.agent.repairDrift();
    expect(r2?.outcome).toBe('nothing');
    expect(t.agent.overrides()).toEqual([{ server: 'web/a', state: 'maint' }]);
    await t.runtime.command('set server web/a state ready');
    await t.agent.repairDrift();
    expect(t.agent.overrides()).toEqual([]);
  });
});
