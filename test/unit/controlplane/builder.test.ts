import { buildDesiredState, buildDesiredStateChecked, canonicalJson } from '../../../controlplane/builder';
import { Coalescer } from '../../../controlplane/coalescer';
import type { Clock } from '../../../common/platform/clock';
import { applyFailStatic, removalBudget } from '../../../controlplane/fail-static';
import { Host, ServiceConfig } from '../../../controlplane/types';

const haproxy = { global: ['maxconn 1000'], defaults: ['timeout connect 5s'] };
const config = (name: string, port: number): ServiceConfig => ({
  name,
  port,
  bindAddress: '0.0.0.0',
  listenOptions: ['mode http'],
  serverOptions: ['check inter 2000'],
  watcher: { type: 'zookeeper', path: `/services/${name}` },
});
const host = (name: string, address = '10.0.0.1', port = 80, weight = 1): Host => ({
  name,
  address,
  port,
  weight,
  options: [],
});

describe('buildDesiredState', () => {
  test('services and servers sorted, fields mapped, content-hash version', () => {
    const s = buildDesiredState({
      haproxy,
      services: [
        { config: config('web', 8080), hosts: [host('b', '10.0.0.2'), host('a')] },
        { config: config('api', 8081), hosts: [] },
      ],
    });
    expect(s.services.map((x) => x.name)).toEqual(['api', 'web']);
    expect(s.services[1]).toEqual({
      name: 'web',
      port: 8080,
      bindAddress: '0.0.0.0',
      listenOptions: ['mode http'],
      serverOptions: ['check inter 2000'],
      servers: [
        { name: 'a', address: '10.0.0.1', port: 80, weight: 1, options: [] },
        { name: 'b', address: '10.0.0.2', port: 80, weight: 1, options: [] },
      ],
      hosts: 'reported',
    });
    expect(s.version).toMatch(/^[0-9a-f]{32}$/);
    expect(s.haproxy).toEqual(haproxy);
  });

  test('equal inputs in any order give the same version; any change gives another', () => {
    const a = buildDesiredState({
      haproxy,
      services: [
        { config: config('web', 8080), hosts: [host('a'), host('b', '10.0.0.2')] },
        { config: config('x', 1), hosts: [] },
      ],
    });
    const b = buildDesiredState({
      haproxy: { ...haproxy },
      services: [
        { config: config('x', 1), hosts: [] },
        { config: config('web', 8080), hosts: [host('b', '10.0.0.2'), host('a')] },
      ],
    });
    expect(b.version).toBe(a.version);
    const c = buildDesiredState({
      haproxy,
      services: [
        { config: config('web', 8080), hosts: [host('a'), host('b', '10.0.0.2', 80, 2)] },
        { config: config('x', 1), hosts: [] },
      ],
    });
    expect(c.version).not.toBe(a.version);
    const d = buildDesiredState({
      haproxy: { ...haproxy, global: ['maxconn 2000'] },
      services: [
        { config: config('web', 8080), hosts: [host('a'), host('b', '10.0.0.2')] },
        { config: config('x', 1), hosts: [] },
      ],
    });
    expect(d.version).not.toBe(a.version);
  });

  test('duplicate names get address:port suffixes; exact duplicates collapse', () => {
    const s = buildDesiredState({
      haproxy,
      services: [
        { config: config('web', 8080), hosts: [host('n', '10.0.0.2'), host('n', '10.0.0.1'), host('n', '10.0.0.1')] },
      ],
    });
    expect(s.services[0]!.servers.map((x) => x.name)).toEqual(['n_10.0.0.1:80', 'n_10.0.0.2:80']);
  });

  test('two services on one port: the one already running keeps it and the problem is reported', () => {
    const first = buildDesiredState({ haproxy, services: [{ config: config('old', 80), hosts: [] }] });
    const r = buildDesiredStateChecked({
      haproxy,
      services: [
        { config: config('aaa', 80), hosts: [] },
        { config: config('old', 80), hosts: [] },
      ],
      previous: first,
    });
    expect(r.state.services.map((s) => s.name)).toEqual(['old']);
    expect(r.problems[0]).toMatchObject({ service: 'aaa', message: 'port 80 is already used by service old' });
  });

  test('canonicalJson sorts keys at every level', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[2,{"y":2,"z":1}]},"b":1}',
    );
  });
});

describe('fail static', () => {
  const prev = [host('a'), host('b'), host('c'), host('d')];
  test('an empty report keeps the previous hosts with a warning', () => {
    const r = applyFailStatic(prev, []);
    expect(r.hosts).toBe(prev);
    expect(r.warning).toMatch(/watcher reported no hosts; keeping the 4 previous host\(s\)/);
  });
  test('no previous hosts: the report is taken as is', () => {
    expect(applyFailStatic(undefined, []).hosts).toEqual([]);
  });
  test('removals beyond the cap are held back', () => {
    const r = applyFailStatic(prev, [host('a')], 0.5);
    expect(r.hosts.map((h) => h.name).sort()).toEqual(['a', 'd']);
    expect(r.heldBack).toBe(1);
    expect(r.warning).toMatch(
      /3 of 4 host\(s\) removed exceeds max_removal_share 0.5 for this step; removing 2 now, holding back 1 \(d\)/,
    );
    const next = applyFailStatic(r.hosts, [host('a')], 0.5);
    expect(next.heldBack).toBe(0);
    expect(next.warning).toBeUndefined();
    expect(next.hosts.map((h) => h.name)).toEqual(['a']);
  });
  test("a step's remaining budget overrides the share; at least one removal per step, so small services can shrink", () => {
    const r = applyFailStatic(prev, [host('a'), host('b'), host('c')], 0.5, 0);
    expect(r.hosts.map((h) => h.name).sort()).toEqual(['a', 'b', 'c', 'd']);
    expect(r.heldBack).toBe(1);
    expect(removalBudget(2, 0.4)).toBe(1);
    expect(removalBudget(10, 0.25)).toBe(2);
    expect(removalBudget(10, 1)).toBe(10);
  });
});

describe('Coalescer', () => {
  function fakeClock() {
    let now = 0;
    let timers: { at: number; fn: () => void; id: number }[] = [];
    let id = 0;
    const clock: Clock = {
      now: () => now,
      setTimeout: (fn, ms) => {
        timers.push({ at: now + ms, fn, id: ++id });
        return id;
      },
      clearTimeout: (h) => (timers = timers.filter((t) => t.id !== h)),
    };
    const advance = (ms: number) => {
      const end = now + ms;
      for (;;) {
        const next = timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
        if (!next) break;
        now = next.at;
        timers = timers.filter((t) => t !== next);
        next.fn();
      }
      now = end;
    };
    return { clock, advance };
  }

  test('a burst gives one flush after the quiet delay', () => {
    const { clock, advance } = fakeClock();
    const flushes: number[] = [];
    const c = new Coalescer(() => flushes.push(clock.now()), 5, 100, clock);
    c.poke();
    advance(3);
    c.poke();
    advance(3);
    c.poke();
    advance(20);
    expect(flushes).toEqual([11]);
  });

  test('a steady stream cannot starve: a flush at least every maxDelay', () => {
    const { clock, advance } = fakeClock();
    const flushes: number[] = [];
    const c = new Coalescer(() => flushes.push(clock.now()), 5, 100, clock);
    for (let i = 0; i < 250; i++) {
      c.poke();
      advance(2);
    }
    expect(flushes).toEqual([100, 200, 300, 400, 500]);
  });
});
