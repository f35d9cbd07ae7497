import { readFileSync } from 'node:fs';
import { Backend, startBackends } from '../../testkit/backends';
import { freePort, get, sleep } from '../../testkit/net';
import { startLoad } from '../../testkit/load';
import { server, service, startTestAgent, state } from '../../testkit/agent';

jest.setTimeout(60_000);

/**
 * Issue 9 d: Linux refuses to bind 127.0.0.1:P while 0.0.0.0:P is bound (and the reverse). A service that changes
 * its bind_address on the same port used to be dropped with EADDRINUSE, and the agent ACKed. The old socket is now
 * closed first, inside the reload, and the service serves on its new address.
 */
describe('a bind_address change on the same port (real HAProxy)', () => {
  let backends: Backend[];
  let t: Awaited<ReturnType<typeof startTestAgent>>;
  let port: number;
  let apiPort: number;

  beforeAll(async () => {
    backends = await startBackends(['a', 'api']);
    port = await freePort();
    apiPort = await freePort();
    t = await startTestAgent();
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all((backends ?? []).map((b) => b.close()));
  });

  const web = (bindAddress: string) => service('web', port, [server('a', backends[0]!.port)], { bindAddress });
  const api = () => service('api', apiPort, [server('api', backends[1]!.port)]);
  const body = async (host: string) => (await get(port, host)).body.trim();

  test('0.0.0.0 → 127.0.0.1 → 0.0.0.0: no problem reported, the service serves on the new address only', async () => {
    const r1 = await t.agent.apply(state([web('0.0.0.0'), api()]));
    expect(r1.outcome).toBe('reload');
    expect(await body('127.0.0.2')).toBe('a'); // the wildcard answers on any loopback address

    // Another service is served without a failure while web moves (two reloads, both seamless for api).
    const load = startLoad(apiPort, 4);
    await sleep(100);
    const r2 = await t.agent.apply(state([web('127.0.0.1'), api()]));
    expect(r2.problems).toEqual([]);
    expect(r2.outcome).toBe('reload');
    expect(r2.reasons.map((x) => x.text).join('\n')).toMatch(
      /listen address of web changed 0\.0\.0\.0:\d+ → 127\.0\.0\.1:\d+/,
    );
    expect(t.agent.current?.services.find((s) => s.name === 'web')?.bindAddress).toBe('127.0.0.1');
    expect(await body('127.0.0.1')).toBe('a');
    await expect(get(port, '127.0.0.2')).rejects.toThrow(/ECONNREFUSED/);

    const r3 = await t.agent.apply(state([web('0.0.0.0'), api()]));
    expect(r3.problems).toEqual([]);
    expect(r3.outcome).toBe('reload');
    expect(await body('127.0.0.2')).toBe('a');
    expect(await body('127.0.0.1')).toBe('a');
    await sleep(100);
    const result = await load.stop();
    expect(result.ok).toBeGreaterThan(20);
    expect(result).toMatchObject({ refused: 0, reset: 0, empty: 0, other: 0 });
    expect(readFileSync(t.config.haproxy.configPath, 'utf8')).toMatch(/listen web\n {4}bind fd@\d+/);
  });
});
