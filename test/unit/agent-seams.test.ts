import { HaproxyConfigError } from '../../common/platform/errors';
import { listenOrder } from '../../agent/haproxy/render';
import * as planModule from '../../agent/runtime-plan';
import { errno, fakeAgent } from '../../testkit/fake-agent';
import { server, service, state } from '../../testkit/agent';

// The Agent on fakes only (supervisor, sockets, haproxy -c, state dir, runtime API, clock): its decisions and its
// timing in milliseconds, without HAProxy. test/integration/agent-*.test.ts check the same paths on a real one.

const web = (...servers: ReturnType<typeof server>[]) => service('web', 8001, servers);
const api = service('api', 8002, [server('x', 9100)]);

/** Lets promise chains started by a timer (drift repair) settle; fails after `turns` turns of the event loop. */
async function until(cond: () => boolean, turns = 200): Promise<void> {
  for (let i = 0; i < turns && !cond(); i++) await new Promise((r) => setImmediate(r));
  if (!cond()) throw new Error('condition not reached');
}

describe('Agent on fakes', () => {
  test('a first apply checks and starts HAProxy on the sockets of its services, in listen order', async () => {
    const f = fakeAgent();
    const desired = state([web(server('a', 9001)), api]);
    const r = await f.agent.apply(desired);

    expect(r.outcome).toBe('reload');
    expect(r.reasons.map((x) => x.text)).toEqual(['start: no HAProxy is running']);
    const fds = listenOrder(desired).map((s) => f.sockets.open.get(`${s.bindAddress}|${s.port}`));
    expect(fds).toHaveLength(2);
    expect(f.supervisor.starts).toEqual([{ fds, pid: expect.any(Number) }]);
    expect(f.check.calls).toEqual([{ configFile: `${f.config.haproxy.configPath}.candidate`, fds }]);
    expect(f.files.files.get(f.config.haproxy.configPath)).toMatch(
      /listen web\n\s+bind fd@5\n[\s\S]*server a 127\.0\.0\.1:9001 weight 1/,
    );
    expect(f.agent.current?.version).toBe(desired.version);
    expect(f.agent.state).toBe('running');
    expect(f.agent.counters.reloads).toBe(1);
  });

  test('a host change goes through runtime commands, without a check or a reload', async () => {
    const f = fakeAgent();
    await f.agent.apply(state([web(server('a', 9001))]));
    const next = state([web(server('a', 9001, { weight: 5 }), server('b', 9002))]);
    const r = await f.agent.apply(next);

    expect(r.outcome).toBe('runtime');
    expect(r.commands).toEqual([
      'add server web/b 127.0.0.1:9002 weight 1',
      'set server web/b state ready',
      'set server web/a weight 5',
    ]);
    expect(f.supervisor.starts).toHaveLength(1);
    expect(f.check.calls).toHaveLength(1);
    expect(f.runtime.backends.get('web')?.get('b')).toMatchObject({ adminState: 0, weight: 1 });
    expect(f.files.files.get(f.config.haproxy.configPath)).not.toContain('server b'); // written within agent.write_delay_ms
    f.clock.advance(f.config.agent.writeDelayMs);
    await f.agent.flushFiles();
    expect(f.files.files.get(f.config.haproxy.configPath)).toContain('server b 127.0.0.1:9002 weight 1');
    expect(f.agent.current?.version).toBe(next.version);
  });

  test('a config haproxy -c rejects is refused as a whole, and the last good state keeps running', async () => {
    const f = fakeAgent();
    const good = state([web(server('a', 9001))]);
    await f.agent.apply(good);
    const cfg = f.files.files.get(f.config.haproxy.configPath);
    f.check.failWith = (text) =>
      text.includes('maxconn')
        ? new HaproxyConfigError(
            'haproxy -c rejected the configuration (global/defaults): bad',
            '[ALERT] bad',
            [],
            ['bad'],
          )
        : undefined;
    const bad = state(
      [web(server('a', 9001))],
      ['mode http', 'timeout connect 2s', 'timeout client 10s', 'timeout server 10s', 'maxconn 10'],
    );
    const r = await f.agent.apply(bad);

    expect(r.outcome).toBe('rejected');
    expect(r.error).toBeInstanceOf(HaproxyConfigError);
    expect(f.agent.current?.version).toBe(good.version);
    expect(f.supervisor.starts).toHaveLength(1);
    expect(f.files.files.get(f.config.haproxy.configPath)).toBe(cfg);
    expect(f.agent.counters.rejected).toBe(1);
    // A later change of hosts still goes through on the good state's shape.
    expect((await f.agent.apply(state([web(server('a', 9001), server('b', 9002))]))).outcome).toBe('runtime');
  });

  test('drift repair runs on the clock: nothing before the interval, a repair at it, and again at the next', async () => {
    const f = fakeAgent(1000);
    await f.agent.apply(state([web(server('a', 9001))]));
    f.agent.startDriftRepair();
    f.runtime.tamper('web', 'a', { weight: 7 });

    await f.clock.advanceAsync(999);
    expect(f.runtime.commands.filter((c) => c.startsWith('set server'))).toEqual([]);
    await f.clock.advanceAsync(1);
    await until(() => f.agent.counters.driftRepairs === 1);
    expect(f.runtime.commands.at(-1)).toBe('set server web/a weight 1');
    expect(f.agent.recentActions().at(-1)).toMatchObject({
      trigger: 'drift',
      kind: 'runtime',
      reason: 'drift: weight of web/a 7 → 1',
    });

    f.runtime.tamper('web', 'a', { weight: 3 });
    await f.clock.advanceAsync(1000);
    await until(() => f.agent.counters.driftRepairs === 2);
    expect(f.runtime.backends.get('web')?.get('a')?.weight).toBe(1);
    await f.agent.stop();
    expect(f.clock.pending).toBe(0); // the drift timer is gone
  });

  test('a crash restart of HAProxy is followed by a drift repair at once', async () => {
    const f = fakeAgent();
    await f.agent.apply(state([web(server('a', 9001))]));
    await f.agent.apply(state([web(server('a', 9001), server('b', 9002))])); // b is added at runtime only …
    f.files.files.set(
      f.config.haproxy.configPath,
      f.files.files.get(f.config.haproxy.configPath)!.replace(/.*server b .*\n/, ''),
    ); // … and a stale file lacks it
    f.supervisor.crashAndRestart();
    await until(() => f.runtime.backends.get('web')?.get('b')?.adminState === 0);
    expect(f.runtime.commands.slice(-2)).toEqual([
      'add server web/b 127.0.0.1:9002 weight 1',
      'set server web/b state ready',
    ]);
  });

  test('a file that cannot be written is reported in the result, not thrown, and what ran keeps running', async () => {
    const f = fakeAgent();
    const good = state([web(server('a', 9001))]);
    await f.agent.apply(good);
    f.files.failWith = (file) =>
      file === f.config.haproxy.configPath ? errno('ENOSPC', 'no space left on device') : undefined;

    // A runtime change stands (HAProxy runs it); haproxy.cfg is written later, and its failure is reported with
    // every apply until a write succeeds.
    const grown = state([web(server('a', 9001), server('b', 9002))]);
    const r = await f.agent.apply(grown);
    expect(r.outcome).toBe('runtime');
    expect(f.agent.current?.version).toBe(grown.version);
    await f.agent.flushFiles();
    expect(f.agent.counters.errors).toBe(1);
    const again = await f.agent.apply(state([web(server('a', 9001), server('b', 9002), server('c', 9003))]));
    expect(again.outcome).toBe('runtime');
    expect(again.problems.map((p) => `${p.where}: ${p.message}`).join('\n')).toMatch(
      /haproxy\.cfg: cannot write .*ENOSPC/,
    );

    // A reload that cannot write its config is refused, before HAProxy is touched.
    const moved = await f.agent.apply(state([service('web', 8003, [server('a', 9001)])]));
    expect(moved.outcome).toBe('rejected');
    expect(moved.error?.code).toBe('IO_FAILED');
    expect(f.supervisor.starts).toHaveLength(1);
    expect(f.agent.counters.errors).toBeGreaterThanOrEqual(2);

    // Once the disk is back, the pending content is written: the file holds what HAProxy runs.
    f.files.failWith = undefined;
    await f.agent.flushFiles();
    expect(f.files.files.get(f.config.haproxy.configPath)).toMatch(/server c 127\.0\.0\.1:9003/);
  });

  test('a port another process holds leaves that service out, reported; the rest starts', async () => {
    const f = fakeAgent();
    f.sockets.busy.add(8002);
    const r = await f.agent.apply(state([web(server('a', 9001)), api]));
    expect(r.outcome).toBe('reload');
    expect(r.problems).toEqual([
      expect.objectContaining({ service: 'api', message: expect.stringContaining('EADDRINUSE') }),
    ]);
    expect(f.supervisor.starts[0]?.fds).toHaveLength(1);
  });
});

describe('Agent lifecycle', () => {
  test('idle until the first apply; stop is awaited once: a second stop returns the same promise', async () => {
    const f = fakeAgent();
    expect(f.agent.state).toBe('idle');
    await f.agent.apply(state([web(server('a', 9001))]));
    const first = f.agent.stop();
    expect(f.agent.state).toBe('stopping');
    expect(f.agent.stop()).toBe(first);
    await first;
    expect(f.agent.state).toBe('stopped');
    expect(f.supervisor.stops).toBe(1);
    expect(f.sockets.open.size).toBe(0);
  });

  test('after stop, an apply is refused with a clear error (not thrown), and nothing starts again', async () => {
    const f = fakeAgent();
    await f.agent.stop();
    const r = await f.agent.apply(state([web(server('a', 9001))]));
    expect(r.outcome).toBe('rejected');
    expect(r.error?.code).toBe('LIFECYCLE_INVALID');
    expect(r.error?.message).toBe('agent: cannot apply a desired state: it is stopped');
    expect(f.supervisor.starts).toHaveLength(0);
    expect(await f.agent.repairDrift()).toBeUndefined();
    expect(() => f.agent.startDriftRepair()).toThrow('agent: cannot start drift repair: it is stopped');
    await expect(f.agent.handOver()).rejects.toThrow('agent: cannot hand over: it is stopped');
  });

  test('a hand-over leaves HAProxy to the next agent: stop afterwards stops nothing, applies are refused', async () => {
    const f = fakeAgent();
    await f.agent.apply(state([web(server('a', 9001))]));
    f.agent.startDriftRepair();
    const handing = f.agent.handOver();
    expect(f.agent.handOver()).toBe(handing);
    await handing;
    expect(f.agent.state).toBe('handed-over');
    expect(f.supervisor.handOvers).toBe(1);
    expect(f.clock.pending).toBe(0);
    await f.agent.stop();
    expect(f.supervisor.stops).toBe(0);
    expect((await f.agent.apply(state([web(server('b', 9002))]))).error?.message).toBe(
      'agent: cannot apply a desired state: it is handed-over',
    );
  });
});

describe('Agent on fakes: taking over from a previous agent', () => {
  const handOverWithDrain = async () => {
    const first = fakeAgent();
    await first.agent.apply(state([web(server('a', 9001), server('b', 9002))]));
    first.clock.advance(5000);
    const left = state([web(server('a', 9001))]);
    expect((await first.agent.apply(left)).commands).toEqual(['set server web/b state drain']);
    const pid = first.supervisor.pid!;
    await first.agent.handOver(); // writes haproxy.cfg (with b and its drain) before leaving
    return { first, left, pid };
  };

  test('a server draining when the previous agent handed over goes on draining: adopted without a reload, deleted at its deadline', async () => {
    const { first, left, pid } = await handOverWithDrain();
    const deadline = first.agent.draining()[0]!.deadline!;
    const next = fakeAgent(1000, { ...first, haproxyPid: pid });
    const r = await next.agent.apply(left); // the cached state, as the restarted agent applies it first

    expect(next.supervisor.adoptions).toEqual([{ pid, fds: [...first.sockets.open.values()] }]);
    expect(next.supervisor.starts).toEqual([]); // no reload: the config HAProxy runs is the one this agent writes
    expect(r.outcome).toBe('nothing'); // what runs is what is wanted: b stays in drain
    expect(r.commands).toEqual([]);
    expect(next.agent.draining()).toEqual([{ server: 'web/b', since: deadline - 30_000, deadline }]);
    expect(next.runtime.backends.get('web')?.get('b')?.adminState).toBe(8);

    next.clock.advance(deadline - next.clock.now() - 1);
    expect(next.runtime.backends.get('web')?.has('b')).toBe(true);
    await next.clock.advanceAsync(1);
    await until(() => !next.runtime.backends.get('web')?.has('b'));
    expect(next.agent.draining()).toEqual([]);
    await next.clock.advanceAsync(next.config.agent.writeDelayMs);
    await next.agent.flushFiles();
    const cfg = next.files.files.get(next.config.haproxy.configPath)!;
    expect(cfg).not.toContain('server b ');
    expect(cfg).not.toContain('# draining');
    expect(next.stopped).toEqual([]);
    await next.agent.stop();
  });

  test("killed (kill -9) within write_delay_ms of a removal: the next agent reads the drain from the journal, not as an operator's", async () => {
    const first = fakeAgent();
    await first.agent.apply(state([web(server('a', 9001), server('b', 9002))]));
    await first.clock.advanceAsync(first.config.agent.writeDelayMs);
    await first.agent.flushFiles(); // haproxy.cfg (and, in the agent process, the state cache) say a and b
    await first.agent.apply(state([web(server('a', 9001))])); // b drains in HAProxy; the files are not written yet
    expect(first.runtime.backends.get('web')?.get('b')?.adminState).toBe(8);
    expect(first.files.files.get(`${first.config.agent.stateDir}/agent-drains.json`)).toBe('["web/b"]\n');

    const next = fakeAgent(1000, { ...first, haproxyPid: first.supervisor.pid! });
    const r = await next.agent.apply(state([web(server('a', 9001), server('b', 9002))])); // the stale cache
    expect(next.supervisor.starts).toEqual([]); // the files match each other: adopted without a reload
    expect(next.agent.overrides()).toEqual([]); // b's drain was the agent's own, not an operator's
    expect(r.commands).toEqual(['set server web/b state ready']); // what the cached state says, until told otherwise
    // The control plane says b is gone: it drains again (and, desired again later, would be readied again).
    expect((await next.agent.apply(state([web(server('a', 9001))]))).commands).toEqual([
      'set server web/b state drain',
    ]);
    await next.agent.stop();
  });

  test('an operator drain on a desired server is still an override after a takeover (it is not in the journal)', async () => {
    const first = fakeAgent();
    await first.agent.apply(state([web(server('a', 9001), server('b', 9002))]));
    await first.runtime.command('set server web/b state drain'); // an operator, on the stats socket
    const pid = first.supervisor.pid!;
    await first.agent.handOver();
    const next = fakeAgent(1000, { ...first, haproxyPid: pid });
    const r = await next.agent.apply(state([web(server('a', 9001), server('b', 9002))]));
    expect(next.agent.overrides()).toEqual([{ server: 'web/b', state: 'drain' }]);
    expect(r.commands).toEqual([]);
    expect(next.runtime.backends.get('web')?.get('b')?.adminState).toBe(8);
    await next.agent.stop();
  });

  test('a config that does not match (here: the previous agent was killed before writing it) is reloaded, without the unknown drains', async () => {
    const { first, left, pid } = await handOverWithDrain();
    const file = first.config.haproxy.configPath;
    // A config this agent would not write (here: a line it never writes, and a trailer entry it would write
    // differently): neither the adoption without a reload nor the drains it names are taken.
    first.files.files.set(
      file,
      first.files.files.get(file)!.replace('"backend":"web"', '"backend":"web","note":"x"') + 'extra\n',
    );
    const next = fakeAgent(1000, { ...first, haproxyPid: pid });
    const r = await next.agent.apply(left);
    // Adopted, its shape unknown (so it reloads), but a crash restart before that reload gets the file's listeners
    // in the order the adopted HAProxy holds them.
    expect(next.supervisor.adoptions).toEqual([{ pid, fds: [...next.sockets.inherited.values()] }]);
    expect(r.outcome).toBe('reload');
    expect(next.agent.draining()).toEqual([]);
    await next.agent.stop();
  });
});

describe('Agent on fakes: a config file newer than the HAProxy that runs', () => {
  test('the sockets for a crash restart are paired with the file by address, never by the fd numbers the process holds', async () => {
    // The previous agent ran b (fd@4, :8002) and c (fd@5, :8003), then wrote a file for zz (:8002) and aa (:8003)
    // — aa sorts first: fd@4 is :8003 there — and was killed before launching it.
    const first = fakeAgent();
    await first.agent.apply(state([service('b', 8002, [server('x', 9002)]), service('c', 8003, [server('y', 9003)])]));
    const pid = first.supervisor.pid!;
    const renderer = fakeAgent();
    await renderer.agent.apply(
      state([service('zz', 8002, [server('x', 9002)]), service('aa', 8003, [server('y', 9003)])]),
    );
    const newer = renderer.files.files.get(renderer.config.haproxy.configPath)!;
    expect(newer).toMatch(/# listener fd@4 127\.0\.0\.1:8003\nlisten aa\n/);
    first.files.files.set(first.config.haproxy.configPath, newer);

    const next = fakeAgent(1000, { ...first, haproxyPid: pid });
    await next.agent.apply(state([service('b', 8002, [server('x', 9002)])]));
    const [p8002, p8003] = [first.sockets.open.get('127.0.0.1|8002'), first.sockets.open.get('127.0.0.1|8003')];
    // Held at fd 4 (:8002) and fd 5 (:8003) by the process; the file needs :8003 at fd@4.
    expect(next.supervisor.adoptions).toEqual([{ pid, fds: [p8003, p8002] }]);
  });
});

describe('Agent on fakes: what runs after runtime changes (mergeRunning)', () => {
  const db = service('db', 8003, [server('d1', 9200), server('d2', 9201)]);
  const setServer = (cmds: readonly string[]) => cmds.filter((c) => !c.startsWith('show '));

  /** Every plan the agent makes, with whether each desired service is the very object `running` holds. */
  function watchPlans() {
    const calls: { same: Record<string, boolean>; skipSame: boolean | undefined }[] = [];
    const real = planModule.plan;
    const spy = jest.spyOn(planModule, 'plan').mockImplementation((desired, running, actual, overrides, skipSame) => {
      const byName = new Map((running?.services ?? []).map((s) => [s.name, s]));
      calls.push({
        same: Object.fromEntries(desired.services.map((s) => [s.name, byName.get(s.name) === s])),
        skipSame,
      });
      return real(desired, running, actual, overrides, skipSame);
    });
    return { calls, restore: () => spy.mockRestore() };
  }

  test('runtime changes to one service, then another, then none: commands only for the changed service; unchanged services stay the objects HAProxy runs', async () => {
    const f = fakeAgent();
    const plans = watchPlans();
    try {
      expect((await f.agent.apply(state([api, db, web(server('a', 9001), server('b', 9002))]))).outcome).toBe('reload');

      const web1 = web(server('a', 9001, { weight: 5 }), server('b', 9002));
      const r1 = await f.agent.apply(state([api, db, web1]));
      expect(r1.outcome).toBe('runtime');
      expect(r1.commands).toEqual(['set server web/a weight 5']);

      const db2 = { ...db, servers: [...db.servers, server('d3', 9202)] };
      const second = state([api, db2, web1]);
      const sent = f.runtime.commands.length;
      const r2 = await f.agent.apply(second);
      expect(r2.outcome).toBe('runtime');
      expect(r2.commands).toEqual(['add server db/d3 127.0.0.1:9202 weight 1', 'set server db/d3 state ready']);
      expect(setServer(f.runtime.commands.slice(sent))).toEqual(r2.commands);
      // Planned against the agent's cache, with web1 (changed by the apply before) and api already HAProxy's objects.
      expect(plans.calls.at(-1)).toEqual({ same: { api: true, db: false, web: true }, skipSame: true });

      const before = f.runtime.commands.length;
      const r3 = await f.agent.apply(second);
      expect(r3.outcome).toBe('nothing');
      expect(r3.commands).toEqual([]);
      expect(f.runtime.commands.slice(before)).toEqual([]); // not even a read: planned against the cache
      expect(plans.calls.at(-1)).toEqual({ same: { api: true, db: true, web: true }, skipSame: true });

      // An equal state made of new objects is planned server by server against the cache, and is nothing too.
      const r4 = await f.agent.apply(structuredClone(second));
      expect(r4.outcome).toBe('nothing');
      expect(f.runtime.commands.slice(before)).toEqual([]);
      expect(f.supervisor.starts).toHaveLength(1);
      expect(f.runtime.backends.get('web')?.get('a')?.weight).toBe(5);
      expect(f.runtime.backends.get('db')?.get('d3')).toMatchObject({ adminState: 0 });
    } finally {
      plans.restore();
      await f.agent.stop();
    }
  });

  test('drain timeout: maint, sessions shut down, deleted (retried while HAProxy says connections remain); the config file loses it', async () => {
    const f = fakeAgent();
    try {
      await f.agent.apply(state([api, web(server('a', 9001), server('b', 9002), server('c', 9003))]));
      const drainMs = f.config.agent.drainTimeoutMs;
      // b leaves; c leaves a second later with a service-level drain timeout of 5 s (its service config's).
      await f.agent.apply(state([api, web(server('a', 9001), server('c', 9003))]));
      await f.clock.advanceAsync(1000);
      await f.agent.apply(state([api, { ...web(server('a', 9001)), drainTimeoutMs: 5000 }]));
      expect(f.agent.draining().map((d) => [d.server, d.deadline! - d.since!])).toEqual([
        ['web/b', drainMs],
        ['web/c', 5000],
      ]);
      f.runtime.busy.set('web/c', 2);
      f.runtime.commands.length = 0;
      await f.clock.advanceAsync(5000); // c's deadline: maint, shutdown, del refused twice, then deleted
      await f.clock.advanceAsync(2100);
      const attempt = ['set server web/c state maint', 'shutdown sessions server web/c', 'del server web/c'];
      expect(f.runtime.commands.filter((c) => c.includes('web/c'))).toEqual([...attempt, ...attempt, ...attempt]);
      expect(f.runtime.backends.get('web')?.has('c')).toBe(false);
      expect(f.runtime.backends.get('web')?.get('b')?.adminState).toBe(8); // still draining
      await f.clock.advanceAsync(drainMs);
      expect(f.runtime.backends.get('web')?.has('b')).toBe(false);
      expect(f.agent.draining()).toEqual([]);
      await f.agent.flushFiles();
      const cfg = f.files.files.get(f.config.haproxy.configPath) ?? '';
      expect(cfg).toMatch(/server a 127\.0\.0\.1:9001/);
      expect(cfg).not.toMatch(/server [bc] /);
      // a comes and goes again: a new drain, and the next apply plans without the deleted servers.
      const r = await f.agent.apply(state([api, web(server('a', 9001), server('b', 9002))]));
      expect(r.outcome).toBe('runtime');
      expect(r.commands).toEqual(['add server web/b 127.0.0.1:9002 weight 1', 'set server web/b state ready']);
    } finally {
      await f.agent.stop();
    }
  });

  test('a reload while servers drain keeps them in the config and in drain', async () => {
    const f = fakeAgent();
    try {
      await f.agent.apply(state([api, web(server('a', 9001), server('b', 9002))]));
      await f.agent.apply(state([api, web(server('a', 9001))]));
      // A shape change (listen options): a reload. b stays in the new config, and drains on.
      const r = await f.agent.apply(
        state([api, { ...web(server('a', 9001)), listenOptions: ['mode http', 'option httplog'] }]),
      );
      expect(r.outcome).toBe('reload');
      expect(f.files.files.get(f.config.haproxy.configPath) ?? '').toMatch(/server b 127\.0\.0\.1:9002/);
      expect(f.runtime.backends.get('web')?.get('b')?.adminState).toBe(8);
      expect(f.agent.draining().map((d) => d.server)).toEqual(['web/b']);
    } finally {
      await f.agent.stop();
    }
  });

  test('a removed server drains until its deadline; when the service changes again and the server comes back, it is set ready', async () => {
    const f = fakeAgent();
    try {
      await f.agent.apply(state([api, web(server('a', 9001), server('b', 9002))]));
      const r1 = await f.agent.apply(state([api, web(server('a', 9001))]));
      expect(r1.commands).toEqual(['set server web/b state drain']);
      expect(f.runtime.backends.get('web')?.get('b')?.adminState).toBe(8);
      expect(f.agent.draining()).toEqual([
        { server: 'web/b', since: expect.any(Number), deadline: expect.any(Number) },
      ]);

      // The service changes again without b: b keeps draining, and is not sent drain again.
      const r2 = await f.agent.apply(state([api, web(server('a', 9001, { weight: 3 }))]));
      expect(r2.outcome).toBe('runtime');
      expect(r2.commands).toEqual(['set server web/a weight 3']);

      // b comes back as it was: HAProxy still has it (draining), so it is set ready, with no add and no reload.
      const r3 = await f.agent.apply(state([api, web(server('a', 9001, { weight: 3 }), server('b', 9002))]));
      expect(r3.outcome).toBe('runtime');
      expect(r3.commands).toEqual(['set server web/b state ready']);
      expect(f.runtime.backends.get('web')?.get('b')?.adminState).toBe(0);
      expect(f.agent.draining()).toEqual([]);
      expect(f.supervisor.starts).toHaveLength(1);
    } finally {
      await f.agent.stop();
    }
  });

  test('a held server that comes back with other options needs a reload (HAProxy holds it with its old options)', async () => {
    const f = fakeAgent();
    try {
      await f.agent.apply(state([api, web(server('a', 9001), server('b', 9002))]));
      await f.agent.apply(state([api, web(server('a', 9001))]));
      await f.agent.apply(state([api, web(server('a', 9001, { weight: 3 }))]));
      const r = await f.agent.apply(
        state([api, web(server('a', 9001, { weight: 3 }), server('b', 9002, { options: ['backup'] }))]),
      );
      expect(r.outcome).toBe('reload');
      expect(r.reasons.map((x) => x.text)).toEqual(['reload: options of server web/b changed']);
      expect(f.supervisor.starts).toHaveLength(2);
      expect(f.files.files.get(f.config.haproxy.configPath)).toContain('server b 127.0.0.1:9002 weight 1 backup');
    } finally {
      await f.agent.stop();
    }
  });
});
