import { HeldState, PushMismatch } from '../../agent/sources/held-state';
import { Delta, diff, fullDelta, PROTOCOL_VERSION, resourceSet } from '../../common/protocol/resources';
import { toProto } from '../../common/protocol/state-codec';
import { DesiredState, Server, Service } from '../../common/protocol/types';
import { Push } from '../../common/gen/proxymgr/v1/stream';
import { deltaToPush } from '../../controlplane/grpc/push-encoding';
import { HTTP_DEFAULTS, server, service, state } from '../../testkit/agent';

let nonces = 0;
/** A delta as the agent receives it: encoded by the control plane's code, with a nonce, over the wire. */
function wire(d: Delta): Push {
  const p = deltaToPush(d);
  p.nonce = `nonce-${++nonces}`;
  return Push.decode(Push.encode(p).finish());
}
const deltaPush = (from: DesiredState, to: DesiredState) => wire(diff(resourceSet(from), to));
const fullPush = (to: DesiredState) => wire(fullDelta(to));

const byName = (a: Service, b: Service) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
const sorted = (services: readonly Service[]) => [...services].sort(byName);

/** What the agent holds equals `target` exactly: version, globals, and services (sorted by name). */
function expectHolds(got: DesiredState, target: DesiredState) {
  expect(got.version).toBe(target.version);
  expect(got.haproxy).toEqual(target.haproxy);
  expect(got.services).toEqual(sorted(target.services));
  expect(got.services.map((s) => s.name)).toEqual(sorted(target.services).map((s) => s.name));
}

/** Deterministic pseudo-random numbers (mulberry32). */
function rng(seed: number) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const web = service('web', 8080, [server('a', 9001), server('b', 9002)]);
const api = service('api', 8081, [server('a', 9101)]);
const db = service('db', 5432, [server('p', 5433, { weight: 0 })], {
  listenOptions: ['mode tcp'],
  bindAddress: '0.0.0.0',
});

describe('HeldState: deltas from diff() rebuild the target exactly', () => {
  test('a long random sequence of changes (servers, services added, removed, renamed, globals) ends where the control plane is', () => {
    const rand = rng(42);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    let nextName = 0;
    const newService = (): Service =>
      service(
        `svc${++nextName}`,
        10_000 + nextName,
        Array.from({ length: 1 + Math.floor(rand() * 4) }, (_, i) =>
          server(`s${i}`, 20_000 + i, { weight: Math.floor(rand() * 3) }),
        ),
      );

    let current = state([web, api, db, newService(), newService()]);
    const held = new HeldState();
    expectHolds(held.take(fullPush(current)), current);
    const counts = { servers: 0, added: 0, removed: 0, renamed: 0, globals: 0, none: 0 };

    for (let step = 0; step < 80; step++) {
      let services = [...current.services];
      let defaults = current.haproxy.defaults;
      const kind = pick(['servers', 'servers', 'added', 'removed', 'renamed', 'globals', 'none'] as const);
      if (kind === 'servers' && services.length > 0) {
        const i = Math.floor(rand() * services.length);
        const s = services[i]!;
        const servers: Server[] = [...s.servers.filter(() => rand() < 0.7), server(`n${step}`, 30_000 + step)];
        services[i] = { ...s, servers };
      } else if (kind === 'added') {
        services.splice(Math.floor(rand() * (services.length + 1)), 0, newService());
      } else if (kind === 'removed' && services.length > 1) {
        services.splice(Math.floor(rand() * services.length), 1);
      } else if (kind === 'renamed' && services.length > 0) {
        const i = Math.floor(rand() * services.length);
        services[i] = { ...services[i]!, name: `renamed${step}` };
      } else if (kind === 'globals') {
        defaults = [...HTTP_DEFAULTS, `timeout queue ${step}s`];
      }
      if (rand() < 0.2) services = services.reverse(); // order of services in the state does not matter
      counts[kind]++;
      const next = state(services, [...defaults]);
      const got = held.take(deltaPush(current, next));
      expectHolds(got, next);
      expect(held.version).toBe(next.version);
      current = next;
    }
    // The sequence exercised every kind of change.
    for (const n of Object.values(counts)) expect(n).toBeGreaterThan(0);
    // And what it holds now is what it declares in a hello.
    expect(held.hello().baseResources).toEqual(Object.fromEntries(resourceSet(current).resources));
    expect(held.hello().baseGlobalsVersion).toBe(resourceSet(current).globalsVersion);
  });

  test('weights of 0, default bind addresses and options survive the trip', () => {
    const s1 = state([db, web]);
    const held = new HeldState();
    expectHolds(held.take(fullPush(s1)), s1);
    const s2 = state([
      { ...db, servers: [server('p', 5433, { weight: 0, options: ['backup'] }), server('q', 5434, { weight: 0 })] },
      web,
    ]);
    const got = held.take(deltaPush(s1, s2));
    expectHolds(got, s2);
    expect(got.services.find((s) => s.name === 'db')!.servers.map((v) => v.weight)).toEqual([0, 0]);
  });
});

describe('HeldState: unchanged services keep their identity', () => {
  test('across a delta that changes one service (same names) and across one that adds and removes services', () => {
    const v1 = state([web, api, db]);
    const held = new HeldState();
    const got1 = held.take(fullPush(v1));
    const [api1, db1, web1] = got1.services; // sorted by name
    expect([api1!.name, db1!.name, web1!.name]).toEqual(['api', 'db', 'web']);

    const web2 = { ...web, servers: [server('a', 9001)] };
    const v2 = state([web2, api, db]);
    const got2 = held.take(deltaPush(v1, v2));
    expect(got2.services[0]).toBe(api1);
    expect(got2.services[1]).toBe(db1);
    expect(got2.services[2]).not.toBe(web1);
    expect(got2.services[2]).toEqual(web2);
    // The state taken before is not changed under the agent's feet (states are immutable).
    expect(got2.services).not.toBe(got1.services);
    expect(got1.services[2]).toBe(web1);
    expect(got1.services[2]).toEqual(web);

    const cache = service('cache', 6379, [server('r', 6380)]);
    const v3 = state([web2, cache, db]); // api removed, cache added
    const got3 = held.take(deltaPush(v2, v3));
    expectHolds(got3, v3);
    expect(got3.services.find((s) => s.name === 'db')).toBe(db1);
    expect(got3.services.find((s) => s.name === 'web')).toBe(got2.services[2]);

    // Only the globals change: every service object is kept.
    const v4 = state([web2, cache, db], [...HTTP_DEFAULTS, 'option httplog']);
    const got4 = held.take(deltaPush(v3, v4));
    expectHolds(got4, v4);
    got4.services.forEach((s, i) => expect(s).toBe(got3.services[i]));
  });
});

describe('HeldState: pushes that do not fit', () => {
  const v1 = state([web, api, db]);
  const v2 = state([{ ...web, port: 8090 }, api, db]);
  const v3 = state([{ ...web, port: 8091 }, api]);

  function holding(s: DesiredState): HeldState {
    const held = new HeldState();
    held.take(fullPush(s));
    expect(held.version).toBe(s.version);
    return held;
  }

  function expectCleared(held: HeldState) {
    expect(held.version).toBe('');
    expect(held.hello()).toEqual({
      protocolVersion: PROTOCOL_VERSION,
      baseVersion: '',
      baseResources: {},
      baseGlobalsVersion: '',
    });
  }

  test('a delta built on another version (a push was lost) throws PushMismatch and clears what is held', () => {
    const held = holding(v1);
    const skipped = deltaPush(v2, v3); // the push v1 → v2 was lost
    expect(() => held.take(skipped)).toThrow(PushMismatch);
    expectCleared(held);
    // Nothing to build on now: only a full push is taken.
    expect(() => held.take(deltaPush(v1, v2))).toThrow(/holds nothing/);
    expectHolds(held.take(fullPush(v3)), v3);
  });

  test('the mismatch message says the push was lost or came out of order, and names the versions', () => {
    const held = holding(v1);
    const push = deltaPush(v2, v3);
    let err: unknown;
    try {
      held.take(push);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PushMismatch);
    expect((err as Error).message).toMatch(/lost or came out of order/);
    expect((err as Error).message).toContain(v2.version);
    expect((err as Error).message).toContain(v1.version);
    expect((err as Error).message).toContain(push.nonce);
    expectCleared(held);
  });

  test('a wrong digest throws PushMismatch and clears what is held', () => {
    const held = holding(v1);
    const push = deltaPush(v1, v2);
    push.digest = resourceSet(v1).digest; // the control plane says the result is something else
    expect(() => held.take(push)).toThrow(PushMismatch);
    expect(() => held.take({ ...deltaPush(v1, v2), digest: resourceSet(v1).digest })).toThrow(/holds nothing/);
    expectCleared(held);
  });

  test('a resource that does not hash to what the agent holds is caught by the digest', () => {
    // The agent's copy of `web` differs from the control plane's (its cache was edited): the control plane's delta
    // does not touch web, so the result's digest differs.
    const held = HeldState.of(state([{ ...web, port: 1 }, api, db]));
    const stale = held.version;
    const target = state([web, api, { ...db, port: 5440 }]);
    const push = wire({ ...diff(resourceSet(v1), target), baseVersion: stale });
    expect(() => held.take(push)).toThrow(/digest/);
    expectCleared(held);
  });

  test('a full push with a wrong digest throws too', () => {
    const held = new HeldState();
    expect(() => held.take({ ...fullPush(v1), digest: resourceSet(v2).digest })).toThrow(PushMismatch);
    expectCleared(held);
  });

  test('removing a service the agent does not hold throws PushMismatch', () => {
    const held = holding(v1);
    const push = deltaPush(v1, v2);
    push.removed.push('ghost');
    expect(() => held.take(push)).toThrow(PushMismatch);
    expect(() => held.take(deltaPush(v1, v2))).toThrow(PushMismatch); // cleared
    expectCleared(held);
  });

  test('the mismatch for a removal of an unknown service names it (it is caught before the digest check)', () => {
    const held = holding(v1);
    // A consistent push except that it removes a name the agent never had.
    const push = deltaPush(v1, v3);
    push.removed.push('never-had');
    expect(() => held.take(push)).toThrow(/never-had/);
    expectCleared(held);
  });

  test('an upserted resource whose service is missing or misnamed throws PushMismatch', () => {
    const held = holding(v1);
    const push = deltaPush(v1, v2);
    push.upserted[0]!.service = undefined;
    expect(() => held.take(push)).toThrow(PushMismatch);
    const held2 = holding(v1);
    const push2 = deltaPush(v1, v2);
    push2.upserted[0]!.name = 'api';
    expect(() => held2.take(push2)).toThrow(PushMismatch);
  });
});

describe('HeldState: full pushes, protocol-0 pushes, hello', () => {
  test('a full push replaces everything held, whatever it was', () => {
    const held = new HeldState();
    held.take(fullPush(state([web, api, db])));
    const other = state([service('only', 7000, [server('x', 7001)])], ['mode tcp']);
    const got = held.take(fullPush(other));
    expectHolds(got, other);
    expect(held.hello().baseResources).toEqual(Object.fromEntries(resourceSet(other).resources));
    expect(held.hello().baseGlobalsVersion).toBe(resourceSet(other).globalsVersion);
    // And a delta built on it applies.
    const next = state([service('only', 7000, [server('x', 7002)])], ['mode tcp']);
    expectHolds(held.take(deltaPush(other, next)), next);
  });

  test('a full push is taken after a mismatch, whatever version it names', () => {
    const held = new HeldState();
    held.take(fullPush(state([web])));
    expect(() => held.take(deltaPush(state([api]), state([db])))).toThrow(PushMismatch);
    const s = state([api, db]);
    expectHolds(held.take(fullPush(s)), s);
  });

  test('a protocol-0 push (push.state set) is taken whole, and later deltas build on it', () => {
    const held = HeldState.of(state([web]));
    const s = state([api, db, web], ['mode tcp']);
    const push = Push.fromPartial({ version: s.version, nonce: 'p0', state: toProto(s) });
    const got = held.take(push);
    expect(got.version).toBe(s.version);
    expect(got.haproxy).toEqual(s.haproxy);
    expect(sorted(got.services)).toEqual(sorted(s.services));
    expect(held.version).toBe(s.version);
    expect(held.hello().baseResources).toEqual(Object.fromEntries(resourceSet(s).resources));
    const next = state([api, web], ['mode tcp']);
    expectHolds(held.take(deltaPush(s, next)), next);
  });

  test('hello() of HeldState.of(state) declares exactly resourceSet(state)', () => {
    const s = state([web, api, db]);
    const h = HeldState.of(s).hello();
    const set = resourceSet(s);
    expect(h.protocolVersion).toBe(PROTOCOL_VERSION);
    expect(h.baseVersion).toBe(s.version);
    expect(h.baseResources).toEqual(Object.fromEntries(set.resources));
    expect(Object.keys(h.baseResources).sort()).toEqual(['api', 'db', 'web']);
    expect(h.baseGlobalsVersion).toBe(set.globalsVersion);
    // And a delta the control plane builds from that declaration applies to it.
    const held = HeldState.of(s);
    const next = state([web, { ...api, port: 1 }]);
    expectHolds(held.take(deltaPush(s, next)), next);
  });

  test('HeldState.of(undefined) holds nothing and declares no base', () => {
    const held = HeldState.of(undefined);
    expect(held.version).toBe('');
    expect(held.hello()).toEqual({
      protocolVersion: PROTOCOL_VERSION,
      baseVersion: '',
      baseResources: {},
      baseGlobalsVersion: '',
    });
    expect(() => held.take(deltaPush(state([web]), state([api])))).toThrow(PushMismatch);
  });
});
