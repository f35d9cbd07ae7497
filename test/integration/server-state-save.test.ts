import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../../common/platform/fs';
import { errno } from '../../testkit/fake-agent';
import { ADMF_FDRAIN } from '../../agent/haproxy/servers-state';
import { Backend, startBackends } from '../../testkit/backends';
import { freePort, tally } from '../../testkit/net';
import { server, service, startTestAgent, state } from '../../testkit/agent';

jest.setTimeout(60_000);

/**
 * A failed save of the server-state file before a reload (real HAProxy, a write that fails as on a full disk): the
 * file of an earlier reload must not be loaded as the truth. Here it says `drain` for a server the agent itself
 * drained and has since readied; loaded, the agent read that drain as an operator's override and left the server
 * out for good.
 */
test("a failed server-state save does not turn the agent's own earlier drain into an operator override", async () => {
  const backends: Backend[] = await startBackends(['a', 'b']);
  let failStateSaves = false;
  const t = await startTestAgent('  drain_timeout_ms: 60000\n', {
    writeFile: async (file, content, mode) => {
      if (failStateSaves && path.basename(file) === 'server-state') throw errno('ENOSPC', 'no space left on device');
      return writeFileAtomic(file, content, mode);
    },
  });
  const stateFile = path.join(t.dir, 'server-state');
  try {
    const port = await freePort();
    const a = server('a', backends[0]!.port);
    const b = server('b', backends[1]!.port);
    const web = (servers: ReturnType<typeof server>[], listenOptions = ['mode http', 'balance roundrobin']) =>
      state([service('web', port, servers, { listenOptions })]);
    expect((await t.agent.apply(web([a, b]))).outcome).toBe('reload');
    // The agent drains b (it left the desired state); a reload saves that drain to the server-state file.
    expect((await t.agent.apply(web([a]))).commands).toContain('set server web/b state drain');
    expect((await t.agent.apply(web([a], ['mode http', 'balance leastconn']))).outcome).toBe('reload');
    expect(readFileSync(stateFile, 'utf8')).toMatch(/ web \d+ b /);
    // b is back: the agent readies it.
    const back = await t.agent.apply(web([a, b], ['mode http', 'balance leastconn']));
    expect(back.commands).toContain('set server web/b state ready');

    // The next reload's save fails.
    failStateSaves = true;
    const r = await t.agent.apply(web([a, b], ['mode http', 'balance roundrobin']));
    expect(r.outcome).toBe('reload');
    expect(existsSync(stateFile)).toBe(false); // the older save is gone, not loaded as the truth
    const bNow = (await t.runtime.serversState('web')).get('web')?.get('b');
    expect(bNow!.adminState & ADMF_FDRAIN).toBe(0);
    expect(t.agent.overrides()).toEqual([]);
    expect((await t.agent.repairDrift())?.commands ?? []).toEqual([]);
    expect((await tally(port, 6)).get('b')).toBe(3);

    // The disk is back: the next reload saves again.
    failStateSaves = false;
    expect((await t.agent.apply(web([a, b], ['mode http', 'balance leastconn']))).outcome).toBe('reload');
    expect(readFileSync(stateFile, 'utf8')).toMatch(/^1\n# be_id /);
  } finally {
    await t.close();
    await Promise.all(backends.map((x) => x.close()));
  }
});
