import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { RuntimeApiError } from '../../common/platform/errors';
import type { RuntimeApi } from '../../agent/ports';
import { Backend, startBackends } from '../../testkit/backends';
import { freePort, get } from '../../testkit/net';
import { server, service, startTestAgent, state } from '../../testkit/agent';

jest.setTimeout(60_000);

/**
 * Issue 9 i: when `show servers state` could not be read right after a successful reload, the agent NACKed a
 * config that was running (and kept reporting the old version). The reload stands; the missing runtime pass is
 * a warning that drift repair makes up for.
 */
describe('a failure after a successful reload (real HAProxy, a runtime API that fails on demand)', () => {
  let backends: Backend[];
  let t: Awaited<ReturnType<typeof startTestAgent>>;
  let port: number;
  let failStateReads = false;

  beforeAll(async () => {
    backends = await startBackends(['a']);
    port = await freePort();
    let real: () => RuntimeApi = () => {
      throw new Error('no agent yet');
    };
    const runtime: RuntimeApi = {
      command: (cmd) => real().command(cmd),
      pid: () => real().pid(),
      serversState: (be) =>
        failStateReads
          ? Promise.reject(new RuntimeApiError('runtime API: "show servers state": no reply within 5000 ms'))
          : real().serversState(be),
    };
    t = await startTestAgent('', { runtime });
    const channels = t.agent.channels!;
    real = () => channels;
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all((backends ?? []).map((b) => b.close()));
  });

  test('the reloaded version is ACKed as running, with a warning; drift repair finishes the job later', async () => {
    const web = service('web', port, [server('a', backends[0]!.port)]);
    expect((await t.agent.apply(state([web]))).outcome).toBe('reload');
    const pid = t.agent.supervisor.pid;

    failStateReads = true;
    const v2 = state([{ ...web, listenOptions: [...web.listenOptions, 'http-response set-header X-V 2'] }]);
    const r = await t.agent.apply(v2);
    expect(r.outcome).toBe('reload');
    expect(r.error).toBeUndefined();
    expect(r.problems.map((p) => `${p.where}: ${p.message}`).join('\n')).toMatch(
      /after the reload.*show servers state/,
    );
    expect(t.agent.current?.version).toBe(v2.version);
    expect(t.agent.supervisor.pid).not.toBe(pid);
    expect(readFileSync(path.join(t.config.haproxy.configPath), 'utf8')).toMatch(/X-V 2/);
    expect((await get(port)).body.trim()).toBe('a');

    failStateReads = false;
    expect((await t.agent.repairDrift())?.outcome).toBe('nothing');
  });
});
