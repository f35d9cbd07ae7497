import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Agent } from '../../agent/agent';
import { createAgent } from '../../agent/wiring';
import { alive } from '../../agent/haproxy/orphan';
import { silentLogger } from '../../common/platform/log';
import { Backend, startBackends } from '../../testkit/backends';
import { eventually, freePort } from '../../testkit/net';
import { server, service, startTestAgent, state } from '../../testkit/agent';

jest.setTimeout(60_000);

/**
 * The admin channel across agents (real HAProxy): the next agent copies the agent's end from the keeper and changes
 * the adopted HAProxy at runtime; with the keeper gone it has no channel, so reads go to the read-only socket and the
 * first change reloads once — after which the new process has a channel again.
 */
describe('the admin channel outlives the agent through its keeper', () => {
  let backends: Backend[];
  let t: Awaited<ReturnType<typeof startTestAgent>>;
  const others: Agent[] = [];

  beforeAll(async () => {
    backends = await startBackends(['a', 'b']);
  });
  afterAll(async () => {
    for (const a of others) await a.stop().catch(() => undefined);
    await t?.close();
    await Promise.all((backends ?? []).map((b) => b.close()));
  });

  test('kept: runtime changes on the adopted HAProxy; keeper gone: one seamless reload, then runtime again', async () => {
    t = await startTestAgent();
    const port = await freePort();
    const at = (wa: number) =>
      state([service('web', port, [server('a', backends[0]!.port, { weight: wa }), server('b', backends[1]!.port)])]);
    expect((await t.agent.apply(at(1))).outcome).toBe('reload');
    const pid = t.agent.supervisor.pid!;
    const record = () =>
      JSON.parse(readFileSync(path.join(t.dir, 'admin-channel.json'), 'utf8')) as {
        haproxyPid: number;
        keeperPid: number;
      };
    expect(record().haproxyPid).toBe(pid);
    expect(alive(record().keeperPid)).toBe(true);
    await t.agent.handOver();

    // 1. The keeper runs: the next agent takes the channel over and changes a weight at runtime.
    const second = createAgent(t.config, silentLogger);
    others.push(second);
    expect((await second.apply(at(1))).outcome).toBe('nothing');
    expect(second.channels!.connected).toBe(true);
    const r = await second.apply(at(3));
    expect(r.outcome).toBe('runtime');
    expect(r.commands).toEqual(['set server web/a weight 3']);
    expect(second.supervisor.pid).toBe(pid);
    await second.handOver();

    // 2. The keeper is gone: reads still work (the read-only socket), the first change reloads once.
    const keeper = record().keeperPid;
    process.kill(keeper, 'SIGKILL');
    expect(await eventually(() => !alive(keeper), 5000)).toBe(true);
    const third = createAgent(t.config, silentLogger);
    others.push(third);
    expect((await third.apply(at(3))).outcome).toBe('nothing');
    expect(third.channels!.connected).toBe(false);
    expect((await third.runtime.serversState('web')).get('web')?.get('a')?.weight).toBe(3);
    const fallback = await third.apply(at(5));
    expect(fallback.outcome).toBe('reload');
    expect(fallback.reasons.map((x) => x.text).join('; ')).toMatch(/no admin channel to the running HAProxy/);
    expect(third.supervisor.pid).not.toBe(pid);
    expect(third.channels!.connected).toBe(true);
    expect(record().haproxyPid).toBe(third.supervisor.pid);
    const again = await third.apply(at(7));
    expect(again.outcome).toBe('runtime');
    expect(await eventually(() => !alive(pid), 10_000)).toBe(true);
  });
});
