import { chmodSync, copyFileSync, readlinkSync } from 'node:fs';
import * as path from 'node:path';
import { Agent } from '../../agent/agent';
import { createAgent } from '../../agent/wiring';
import { findHaproxies } from '../../agent/haproxy/orphan';
import { silentLogger } from '../../common/platform/log';
import { Backend, startBackends } from '../../testkit/backends';
import { freePort, tally, tempDir } from '../../testkit/net';
import { server, service, startTestAgent, state } from '../../testkit/agent';

jest.setTimeout(60_000);

/**
 * A real HAProxy run from a copy of the binary under another name (haproxy.path names it): the next agent finds it
 * in /proc by the binary's identity and takes it over — the same process keeps serving, nothing is reloaded.
 */
test('a HAProxy run from a binary not named haproxy is taken over by the next agent', async () => {
  const bin = tempDir('proxymgr-bin-');
  const lb = path.join(bin.dir, 'lb-2.6');
  copyFileSync('/usr/sbin/haproxy', lb);
  chmodSync(lb, 0o755);
  const backends: Backend[] = await startBackends(['a']);
  const t = await startTestAgent('', {}, `  path: ${lb}`);
  let second: Agent | undefined;
  try {
    const port = await freePort();
    const s = state([service('web', port, [server('a', backends[0]!.port)])]);
    expect((await t.agent.apply(s)).outcome).toBe('reload');
    const pid = t.agent.supervisor.pid!;
    expect(readlinkSync(`/proc/${pid}/exe`)).toBe(lb);
    expect(findHaproxies(t.config.haproxy.configPath, lb)).toEqual([pid]);
    expect(findHaproxies(t.config.haproxy.configPath, '/usr/sbin/haproxy')).toEqual([]); // another file, another name
    await t.agent.handOver();

    second = createAgent(t.config, silentLogger);
    const r = await second.apply(s);
    expect(r.outcome).toBe('nothing');
    expect(second.supervisor.pid).toBe(pid);
    expect((await tally(port, 4)).get('a')).toBe(4);
  } finally {
    await second?.stop();
    await t.close();
    await backends[0]!.close();
    bin.cleanup();
  }
});
