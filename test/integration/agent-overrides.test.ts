import * as net from 'node:net';
import { ADMF_FDRAIN, ADMF_FMAINT } from '../../agent/haproxy/servers-state';
import { Backend, startBackends } from '../../testkit/backends';
import { eventually, freePort, tally } from '../../testkit/net';
import { server, service, startTestAgent, state } from '../../testkit/agent';
import { Server } from '../../common/protocol/types';

jest.setTimeout(60_000);

/**
 * Issue 9 l: drift repair used to undo an operator's `set server … state drain|maint` and HAProxy agent-check
 * states within one drift interval. An operator override is a server of the desired state that someone other than
 * the agent put in drain or maint after the agent had it ready: it is left alone until it is ready again (the
 * operator or the agent-check returned it) or the desired state takes the server out (and later brings it back).
 */
describe('operator overrides survive drift repair (real HAProxy)', () => {
  let backends: Backend[];
  let t: Awaited<ReturnType<typeof startTestAgent>>;
  let port: number;
  let agentCheck: net.Server;
  let agentCheckPort: number;
  const srv = (name: string, extra: Partial<Server> = {}) =>
    server(name, backends.find((b) => b.name === name)!.port, extra);
  const adminOf = async (name: string) => (await t.runtime.serversState('web')).get('web')?.get(name)?.adminState;

  beforeAll(async () => {
    backends = await startBackends(['a', 'b', 'c']);
    port = await freePort();
    // A HAProxy agent-check endpoint that always says "drain".
    // HAProxy may reset its agent-check connection: an unhandled socket error would fail the suite.
    agentCheck = net.createServer((s) => {
      s.on('error', () => undefined);
      s.end('drain\n');
    });
    await new Promise<void>((resolve) => agentCheck.listen(0, '127.0.0.1', resolve));
    agentCheckPort = (agentCheck.address() as net.AddressInfo).port;
    t = await startTestAgent();
    expect((await t.agent.apply(state([service('web', port, [srv('a'), srv('b')])]))).outcome).toBe('reload');
  });
  afterAll(async () => {
    await t?.close();
    await new Promise((resolve) => agentCheck?.close(resolve));
    await Promise.all((backends ?? []).map((b) => b.close()));
  });

  test('a manual drain is left alone by drift repair, shown as an override, and ends when the operator readies the server', async () => {
    await t.runtime.command('set server web/b state drain');
    for (let i = 0; i < 2; i++) {
      const r = await t.agent.repairDrift();
      expect(r?.commands ?? []).toEqual([]);
    }
    expect((await adminOf('b'))! & ADMF_FDRAIN).toBe(ADMF_FDRAIN);
    expect([...(await tally(port, 6)).keys()]).toEqual(['a']);
    expect(t.agent.overrides()).toEqual([{ server: 'web/b', state: 'drain' }]);
    expect(t.agent.recentActions().some((a) => a.kind === 'override' && /web\/b.*drain/.test(a.detail))).toBe(true);

    await t.runtime.command('set server web/b state maint');
    expect((await t.agent.repairDrift())?.commands ?? []).toEqual([]);
    expect((await adminOf('b'))! & ADMF_FMAINT).toBe(ADMF_FMAINT);
    expect(t.agent.overrides()).toEqual([{ server: 'web/b', state: 'maint' }]);

    await t.runtime.command('set server web/b state ready');
    await t.agent.repairDrift();
    expect(t.agent.overrides()).toEqual([]);
    expect((await tally(port, 6)).get('b')).toBe(3);
  });

  test('the desired state taking the server out and bringing it back ends the override', async () => {
    await t.runtime.command('set server web/b state drain');
    await t.agent.repairDrift();
    expect(t.agent.overrides()).toEqual([{ server: 'web/b', state: 'drain' }]);
    const out = await t.agent.apply(state([service('web', port, [srv('a')])]));
    // Leaving the desired state: the agent's own drain (ending in its deletion at the drain timeout).
    expect(out.commands).toEqual(['set server web/b state drain']);
    expect(t.agent.draining().map((d) => d.server)).toEqual(['web/b']);
    expect(t.agent.overrides()).toEqual([]);
    const back = await t.agent.apply(state([service('web', port, [srv('a'), srv('b')])]));
    expect(back.commands).toEqual(['set server web/b state ready']);
    expect(await adminOf('b')).toBe(0);
  });

  test('an override survives a HAProxy crash: the agent re-applies it after the restart', async () => {
    await t.runtime.command('set server web/b state drain');
    await t.agent.repairDrift();
    expect(t.agent.overrides()).toEqual([{ server: 'web/b', state: 'drain' }]);
    // The server-state file was saved before the drain: the restarted HAProxy starts with b ready.
    const restarted = new Promise((resolve) => t.agent.supervisor.once('restarted', resolve));
    process.kill(t.agent.supervisor.pid!, 'SIGKILL');
    await restarted;
    expect(await eventually(async () => ((await adminOf('b'))! & ADMF_FDRAIN) === ADMF_FDRAIN, 5000)).toBe(true);
    expect(t.agent.overrides()).toEqual([{ server: 'web/b', state: 'drain' }]);
    await t.runtime.command('set server web/b state ready');
    await t.agent.repairDrift();
    expect(t.agent.overrides()).toEqual([]);
  });

  test('an agent-check that drains a server is not fought by drift repair', async () => {
    const checked = srv('c', { options: ['agent-check', `agent-port ${agentCheckPort}`, 'agent-inter 300'] });
    await t.agent.apply(state([service('web', port, [srv('a'), srv('b'), checked])]));
    expect(await eventually(async () => ((await adminOf('c'))! & ADMF_FDRAIN) === ADMF_FDRAIN, 5000)).toBe(true);
    for (let i = 0; i < 3; i++) {
      const r = await t.agent.repairDrift();
      expect(r?.commands ?? []).not.toContain('set server web/c state ready');
    }
    expect(t.agent.overrides()).toEqual([{ server: 'web/c', state: 'drain' }]);
  });
});
