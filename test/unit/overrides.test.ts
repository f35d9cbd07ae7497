import { OverrideTracker } from '../../agent/overrides';
import { RuntimeState } from '../../agent/haproxy/servers-state';
import { server, service, state } from '../../testkit/agent';

/** Issue 9 l: which drain/maint states are an operator's (pure; see docs/agent-faults.md). */
describe('OverrideTracker', () => {
  const desired = state([service('web', 80, [server('a', 1), server('b', 2)])]);
  const actual = (admin: Record<string, number>): RuntimeState =>
    new Map([
      [
        'web',
        new Map(
          ['a', 'b'].map((n) => [
            n,
            {
              backend: 'web',
              name: n,
              address: '127.0.0.1',
              port: 1,
              weight: 1,
              adminState: admin[n] ?? 0,
              operState: 2,
            },
          ]),
        ),
      ],
    ]);

  test("drain/maint of a server never seen ready is the agent's to fix; after it was seen ready, an override", () => {
    const t = new OverrideTracker();
    expect(t.observe(actual({ b: 1 }), desired)).toEqual([]); // e.g. restored maint of a returning server
    expect(t.list()).toEqual([]);
    t.observe(actual({}), desired);
    expect(t.observe(actual({ b: 8 }), desired)).toEqual([
      { server: 'web/b', what: expect.stringMatching(/found in drain/) },
    ]);
    expect(t.list()).toEqual([{ server: 'web/b', state: 'drain' }]);
    t.observe(actual({ b: 1 }), desired);
    expect(t.list()).toEqual([{ server: 'web/b', state: 'maint' }]);
    expect(t.observe(actual({}), desired)).toEqual([{ server: 'web/b', what: expect.stringMatching(/ready again/) }]);
    expect(t.list()).toEqual([]);
  });

  test('after a crash restart: no new override from restored states, known ones kept even when found ready', () => {
    const t = new OverrideTracker();
    t.observe(actual({}), desired);
    t.observe(actual({ a: 8 }), desired);
    t.restarted();
    t.observe(actual({ b: 8 }), desired); // b restored from an old file; a lost its drain
    expect(t.list()).toEqual([{ server: 'web/a', state: 'drain' }]);
  });

  test("after a takeover: a desired server found in drain is an override at once; one found in maint is the agent's to ready", () => {
    const t = new OverrideTracker();
    t.adopted();
    expect(t.observe(actual({ a: 8, b: 1 }), desired)).toEqual([
      { server: 'web/a', what: expect.stringMatching(/found in drain/) },
    ]);
    expect(t.list()).toEqual([{ server: 'web/a', state: 'drain' }]);
    const u = new OverrideTracker();
    u.observe(actual({ a: 8 }), desired); // without a takeover: not an override
    expect(u.list()).toEqual([]);
  });

  test("the agent's own drain (removal) ends an override and the seen-ready memory", () => {
    const t = new OverrideTracker();
    t.observe(actual({}), desired);
    t.observe(actual({ b: 8 }), desired);
    t.applied({ kind: 'drain', backend: 'web', server: 'b', command: '', ok: /x/, reason: '' });
    expect(t.list()).toEqual([]);
    expect(t.observe(actual({ b: 1 }), desired)).toEqual([]); // back in the desired state, still in maint or drain: the agent readies it
  });
});
