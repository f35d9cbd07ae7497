import { plan, staticAlgorithm } from '../../agent/runtime-plan';
import { RuntimeServer, RuntimeState } from '../../agent/haproxy/servers-state';
import { server, service, state } from '../../testkit/agent';
import { Service } from '../../common/protocol/types';

function actualOf(services: Service[], override: Record<string, Partial<RuntimeServer>> = {}): RuntimeState {
  return new Map(
    services.map((s) => [
      s.name,
      new Map(
        s.servers.map((v) => [
          v.name,
          {
            backend: s.name,
            name: v.name,
            address: v.address,
            port: v.port,
            weight: v.weight,
            adminState: 0,
            operState: 2,
            ...override[`${s.name}/${v.name}`],
          },
        ]),
      ),
    ]),
  );
}

describe('plan (pure)', () => {
  const web = service('web', 8080, [server('a', 9001), server('b', 9002)]);
  const running = state([web]);

  test('nothing running: start', () => {
    expect(plan(running, undefined, undefined).reloadReasons.map((r) => r.text)).toEqual([
      'start: no HAProxy is running',
    ]);
  });

  test('same state: nothing to do', () => {
    expect(plan(running, running, actualOf([web]))).toEqual({ reloadReasons: [], actions: [] });
  });

  test('reload reasons are data: a kind for metrics, a sentence for logs and ACKs', () => {
    const g = { ...state([web]), haproxy: { global: ['maxconn 100'], defaults: [] } };
    expect(plan(running, undefined, undefined).reloadReasons).toEqual([
      { kind: 'start', text: 'start: no HAProxy is running' },
    ]);
    expect(plan(g, running, actualOf([web])).reloadReasons.map((r) => r.kind)).toEqual(['global', 'defaults']);
    const extra = service('api', 8081, []);
    expect(plan(state([web, extra]), running, actualOf([web])).reloadReasons.map((r) => r.kind)).toEqual([
      'new_service',
    ]);
    expect(
      plan(
        state([{ ...web, listenOptions: ['mode http', 'option httplog'] }]),
        running,
        actualOf([web]),
      ).reloadReasons.map((r) => r.kind),
    ).toEqual(['listen_options']);
  });

  test('removed server → drain, with a reason', () => {
    const p = plan(state([{ ...web, servers: [server('a', 9001)] }]), running, actualOf([web]));
    expect(p.reloadReasons.map((r) => r.text)).toEqual([]);
    expect(p.actions.map((a) => [a.command, a.reason, a.kind])).toEqual([
      ['set server web/b state drain', 'server web/b is no longer in the desired state: draining', 'drain'],
    ]);
  });

  test('a removed server the agent drains (held) is not sent drain again, nor once in maint (being deleted); it comes back with ready', () => {
    const holds = new Map([['web', new Map([['b', 'draining' as const]])]]);
    const without = state([{ ...web, servers: [server('a', 9001)] }]);
    for (const adminState of [8, 1])
      expect(plan(without, running, actualOf([web], { 'web/b': { adminState } }), holds).actions).toEqual([]);
    // Found ready although draining (HAProxy restarted without the state): drained again.
    expect(plan(without, running, actualOf([web]), holds).actions.map((a) => [a.command, a.reason])).toEqual([
      ['set server web/b state drain', 'server web/b is draining: HAProxy restarted without its drain state'],
    ]);
    // Desired again: ready (the agent stops holding it).
    expect(
      plan(running, running, actualOf([web], { 'web/b': { adminState: 8 } })).actions.map((a) => a.command),
    ).toEqual(['set server web/b state ready']);
  });

  test('a removed server an operator had in maint is drained by the agent too (so that it is deleted in time)', () => {
    const actual = actualOf([web], { 'web/b': { adminState: 1 } });
    expect(
      plan(state([{ ...web, servers: [server('a', 9001)] }]), running, actual).actions.map((a) => a.command),
    ).toEqual(['set server web/b state drain']);
    expect(plan(running, running, actual).actions.map((a) => a.command)).toEqual(['set server web/b state ready']);
  });

  test('new server → add server with every keyword spelled out, enable health when checked, ready; before removals', () => {
    const checked = { ...web, serverOptions: ['check inter 2000'] };
    const p = plan(
      state([{ ...checked, servers: [server('b', 9002), server('c', 9003, { options: ['backup'] })] }]),
      state([checked]),
      actualOf([checked]),
    );
    expect(p.reloadReasons.map((r) => r.text)).toEqual([]);
    expect(p.actions.map((a) => a.command)).toEqual([
      'add server web/c 127.0.0.1:9003 weight 1 check inter 2000 backup',
      'enable health web/c',
      'set server web/c state ready',
      'set server web/a state drain',
    ]);
  });

  test('weight and address changes are runtime commands', () => {
    const p = plan(
      state([{ ...web, servers: [server('a', 9001, { weight: 7 }), server('b', 9005, { address: '127.0.0.2' })] }]),
      running,
      actualOf([web]),
    );
    expect(p.actions.map((a) => [a.command, a.reason])).toEqual([
      ['set server web/a weight 7', 'weight of web/a 1 → 7'],
      ['set server web/b addr 127.0.0.2 port 9005', 'address of web/b 127.0.0.1:9002 → 127.0.0.2:9005'],
    ]);
  });

  test.each([
    ['listen_options', { listenOptions: ['mode tcp'] }, 'reload: listen_options of web changed'],
    ['server_options', { serverOptions: ['check'] }, 'reload: server_options of web changed'],
    ['port', { port: 8081 }, 'reload: listen address of web changed 127.0.0.1:8080 → 127.0.0.1:8081'],
  ])('%s change → reload with its reason', (_what, change, reason) => {
    const p = plan(state([{ ...web, ...change }]), running, actualOf([web]));
    expect(p.reloadReasons.map((r) => r.text)).toEqual([reason]);
    expect(p.actions).toEqual([]);
  });

  test('new and removed services, globals and defaults → reload', () => {
    const api = service('api', 8081, []);
    expect(plan(state([web, api]), running, actualOf([web])).reloadReasons.map((r) => r.text)).toEqual([
      'reload: new service api',
    ]);
    expect(plan(state([]), running, actualOf([web])).reloadReasons.map((r) => r.text)).toEqual([
      'reload: service web removed',
    ]);
    const g = { ...running, haproxy: { global: ['maxconn 10'], defaults: ['mode tcp'] } };
    expect(plan(g, running, actualOf([web])).reloadReasons.map((r) => r.text)).toEqual([
      'reload: haproxy global section changed',
      'reload: haproxy defaults section changed',
    ]);
  });

  test('balance source cannot take dynamic servers or runtime weights: reload, saying why', () => {
    const src = { ...web, listenOptions: ['mode tcp', 'balance source'] };
    const r = state([src]);
    expect(
      plan(state([{ ...src, servers: [...src.servers, server('c', 9003)] }]), r, actualOf([src])).reloadReasons.map(
        (r) => r.text,
      ),
    ).toEqual(['reload: new server web/c (balance source cannot take dynamic servers)']);
    expect(
      plan(
        state([{ ...src, servers: [server('a', 9001, { weight: 3 }), server('b', 9002)] }]),
        r,
        actualOf([src]),
      ).reloadReasons.map((r) => r.text),
    ).toEqual(['reload: weight of web/a changed and balance source only takes 0% or 100% at runtime']);
  });

  test('hostname addresses cannot be added at runtime on 2.6', () => {
    const p = plan(
      state([{ ...web, servers: [...web.servers, server('c', 80, { address: 'db.example.com' })] }]),
      running,
      actualOf([web]),
    );
    expect(p.reloadReasons.map((r) => r.text)).toEqual([
      'reload: new server web/c (address db.example.com is a hostname; add server takes IP literals on HAProxy 2.6)',
    ]);
  });

  test('operator overrides (issue 9 l): left in drain/maint, weights still applied; re-applied when found ready', () => {
    const overrides = new Map([['web', new Map([['b', 'drain' as const]])]]);
    const drained = actualOf([web], { 'web/b': { adminState: 8 } });
    expect(plan(running, running, drained, overrides).actions).toEqual([]);
    const heavier = state([{ ...web, servers: [server('a', 9001), server('b', 9002, { weight: 5 })] }]);
    expect(plan(heavier, running, drained, overrides).actions.map((a) => a.command)).toEqual([
      'set server web/b weight 5',
    ]);
    // Ready although held: HAProxy restarted from a server-state file older than the override.
    expect(plan(running, running, actualOf([web]), overrides).actions.map((a) => [a.command, a.kind])).toEqual([
      ['set server web/b state drain', 'override'],
    ]);
    // Taken out of the desired state: the agent's drain (which ends in its deletion), whatever the override.
    expect(
      plan(state([{ ...web, servers: [server('a', 9001)] }]), running, drained, overrides).actions.map(
        (a) => a.command,
      ),
    ).toEqual(['set server web/b state drain']);
  });

  test('a new dynamic server with agent-check gets its agent check enabled', () => {
    const p = plan(
      state([
        { ...web, servers: [...web.servers, server('c', 9003, { options: ['agent-check', 'agent-port 7000'] })] },
      ]),
      running,
      actualOf([web]),
    );
    expect(p.actions.map((a) => a.command)).toEqual([
      'add server web/c 127.0.0.1:9003 weight 1 agent-check agent-port 7000',
      'enable agent web/c',
      'set server web/c state ready',
    ]);
  });

  test('staticAlgorithm reads defaults, listen_options and hash-type', () => {
    expect(staticAlgorithm(service('x', 1, [], { listenOptions: ['balance static-rr'] }), [])).toBe(
      'balance static-rr',
    );
    expect(staticAlgorithm(service('x', 1, [], { listenOptions: [] }), ['balance source'])).toBe('balance source');
    expect(
      staticAlgorithm(service('x', 1, [], { listenOptions: ['balance uri', 'hash-type consistent'] }), []),
    ).toBeUndefined();
    expect(staticAlgorithm(service('x', 1, [], { listenOptions: ['balance leastconn'] }), [])).toBeUndefined();
  });
});

describe("plan with skipSame (runtime applies planned against the agent's own cache)", () => {
  const web = service('web', 8080, [server('a', 9001), server('b', 9002)]);
  const api = service('api', 8081, [server('x', 9003)]);
  const running = state([api, web]);
  /** Everything HAProxy could differ in for web: a weight, an admin state, a server missing, one too many. */
  const drifted = () => {
    const actual = new Map(actualOf([api, web], { 'web/a': { weight: 7 }, 'web/b': { adminState: 1 } }));
    const live = new Map(actual.get('web'));
    live.set('z', {
      backend: 'web',
      name: 'z',
      address: '127.0.0.1',
      port: 9009,
      weight: 1,
      adminState: 0,
      operState: 2,
    });
    actual.set('web', live);
    return actual;
  };

  test("caller's contract: a desired service that is the very object running holds is skipped, even when actual differs for it", () => {
    expect(plan(state([api, web]), running, drifted(), undefined, true)).toEqual({ reloadReasons: [], actions: [] });
    const missing = actualOf([api, { ...web, servers: [server('a', 9001)] }]); // b not in HAProxy at all
    expect(plan(state([api, web]), running, missing, undefined, true)).toEqual({ reloadReasons: [], actions: [] });
  });

  test('a changed copy is planned normally, drift included, next to a skipped same object', () => {
    const api2 = { ...api, servers: [server('x', 9003, { weight: 4 })] };
    const actual = drifted();
    actual.set('api', new Map([['x', { ...actual.get('api')!.get('x')!, adminState: 1 }]]));
    expect(plan(state([api2, web]), running, actual, undefined, true).actions.map((a) => a.command)).toEqual([
      'set server api/x state ready',
      'set server api/x weight 4',
    ]);
    // An equal copy of web (not the object running holds) gets its drift found.
    expect(plan(state([api, { ...web }]), running, drifted(), undefined, true).actions.map((a) => a.command)).toEqual([
      'set server web/b state ready',
      'set server web/a weight 1',
      'set server web/z state drain',
    ]);
  });

  test('without skipSame, drift in a service that is the very object running holds is still found (drift repair)', () => {
    expect(plan(state([api, web]), running, drifted()).actions.map((a) => a.command)).toEqual([
      'set server web/b state ready',
      'set server web/a weight 1',
      'set server web/z state drain',
    ]);
    expect(plan(state([api, web]), running, drifted(), undefined, false).actions).toHaveLength(3);
  });

  test('skipSame still sees changed globals, removed services and new services', () => {
    const g = { ...running, haproxy: { global: ['maxconn 10'], defaults: running.haproxy.defaults } };
    expect(plan(g, running, actualOf([api, web]), undefined, true).reloadReasons.map((r) => r.text)).toEqual([
      'reload: haproxy global section changed',
    ]);
    expect(plan(state([web]), running, actualOf([api, web]), undefined, true).reloadReasons.map((r) => r.text)).toEqual(
      ['reload: service api removed'],
    );
    expect(
      plan(
        state([api, web, service('new', 8090, [])]),
        running,
        actualOf([api, web]),
        undefined,
        true,
      ).reloadReasons.map((r) => r.text),
    ).toEqual(['reload: new service new']);
  });
});
