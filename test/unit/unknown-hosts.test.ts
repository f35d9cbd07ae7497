import { fakeAgent } from '../../testkit/fake-agent';
import { server, service, state } from '../../testkit/agent';

// Unknown is not empty: the agent takes a service it runs with servers to none only when the control plane says
// discovery reported it empty.

const web = (hosts: 'reported' | 'unknown' | undefined, ...servers: ReturnType<typeof server>[]) =>
  service('web', 8001, servers, hosts ? { hosts } : {});

describe('an update without servers for a running service', () => {
  test.each([
    ['unknown', /cannot read its hosts \(unknown, not empty\); keeping the 2 server\(s\) HAProxy runs/],
    [undefined, /does not say discovery reported none; keeping the 2 server\(s\) HAProxy runs/],
  ] as const)('hosts %s: the servers HAProxy runs are kept, and the ACK says why', async (hosts, says) => {
    const f = fakeAgent();
    await f.agent.apply(state([web('reported', server('a', 9001), server('b', 9002))]));
    const r = await f.agent.apply(state([web(hosts)]));

    expect(r.outcome).toBe('nothing');
    expect(r.commands).toEqual([]);
    expect(r.problems).toEqual([{ where: 'service web', message: expect.stringMatching(says) }]);
    expect(f.agent.lastProblems).toEqual(r.problems); // the agent's status says so too
    expect([...(f.runtime.backends.get('web')?.keys() ?? [])].sort()).toEqual(['a', 'b']);
    // What the agent caches (and a restarted agent serves) still has them.
    expect(f.agent.current?.services[0]?.servers.map((v) => v.name)).toEqual(['a', 'b']);
  });

  test('every host refused by the target policy (link-local addresses) is not an affirmative empty: kept', async () => {
    const f = fakeAgent();
    await f.agent.apply(state([web('reported', server('a', 9001), server('b', 9002))]));
    const linkLocal = (name: string, port: number) => server(name, port, { address: '169.254.10.1' });
    const r = await f.agent.apply(state([web('reported', linkLocal('c', 9003), linkLocal('d', 9004))]));

    expect(r.commands).toEqual([]);
    expect(r.problems.map((p) => p.where)).toContain('service web');
    expect([...(f.runtime.backends.get('web')?.keys() ?? [])].sort()).toEqual(['a', 'b']);
  });

  test("hosts 'reported' with none is an affirmative empty: the servers drain", async () => {
    const f = fakeAgent();
    await f.agent.apply(state([web('reported', server('a', 9001))]));
    const r = await f.agent.apply(state([web('reported')]));

    expect(r.outcome).toBe('runtime');
    expect(r.commands).toContain('set server web/a state drain');
    expect(r.problems).toEqual([]);
  });

  test("'unknown' with the control plane's last known hosts applies them (they are its best knowledge)", async () => {
    const f = fakeAgent();
    await f.agent.apply(state([web('reported', server('a', 9001))]));
    const r = await f.agent.apply(state([web('unknown', server('a', 9001), server('c', 9003))]));

    expect(r.outcome).toBe('runtime');
    expect(r.commands).toContain('add server web/c 127.0.0.1:9003 weight 1');
    expect(r.problems).toEqual([]);
  });

  test('a service the agent does not run yet starts without servers (nothing to keep)', async () => {
    const f = fakeAgent();
    const r = await f.agent.apply(state([web('unknown')]));
    expect(r.outcome).toBe('reload');
    expect(r.problems).toEqual([]);
  });
});
