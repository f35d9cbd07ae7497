import * as http from 'node:http';
import { findHaproxies } from '../../agent/haproxy/orphan';
import { Backend, startBackends } from '../../testkit/backends';
import { eventually, freePort, sleep } from '../../testkit/net';
import { server, service, startTestAgent, state } from '../../testkit/agent';

jest.setTimeout(120_000);

/** One fresh connection: which HAProxy process answered (its pid, from the X-Pid header) and which backend. */
function ask(port: number): Promise<{ pid: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 3000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ pid: Number(res.headers['x-pid']), body: body.trim() }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

// HAProxy killed with -9 again and again while host changes arrive: crash restarts and applies are serialized, and
// after each launch every other generation is soft-stopped, so in the end exactly one HAProxy accepts new
// connections — the supervisor's, with the desired servers — and every older one has gone.
describe('kill -9 of HAProxy, repeatedly, while host changes arrive (real HAProxy)', () => {
  let backends: Backend[];
  let t: Awaited<ReturnType<typeof startTestAgent>>;

  afterAll(async () => {
    await t?.close();
    await Promise.all((backends ?? []).map((b) => b.close()));
  });

  test('one generation accepts, with the desired servers; no other HAProxy of this config is left', async () => {
    backends = await startBackends(['a', 'b', 'c']);
    const port = await freePort();
    t = await startTestAgent();
    const listen = ['mode http', 'balance roundrobin', 'http-response set-header X-Pid %pid'];
    const web = (...names: string[]) =>
      state([
        service(
          'web',
          port,
          backends.filter((b) => names.includes(b.name)).map((b) => server(b.name, b.port)),
          { listenOptions: listen },
        ),
      ]);
    expect(await t.agent.apply(web('a', 'b'))).toMatchObject({ outcome: 'reload', problems: [] });

    const changes = [['a'], ['a', 'c'], ['b', 'c'], ['a', 'b', 'c'], ['c'], ['a', 'b']];
    let kills = 0;
    for (let round = 0; round < 4; round++) {
      for (const [i, names] of changes.entries()) {
        const applying = t.agent.apply(web(...names));
        if (i % 2 === round % 2) {
          const pid = t.agent.supervisor.pid;
          if (pid !== undefined) {
            process.kill(pid, 'SIGKILL');
            kills++;
          }
        }
        await sleep(20 + ((round * 7 + i * 13) % 120));
        await applying;
      }
    }
    expect(kills).toBeGreaterThanOrEqual(8);
    const final = web('a', 'b');
    await t.agent.apply(final);

    const configPath = t.config.haproxy.configPath;
    expect(
      await eventually(() => {
        const pid = t.agent.supervisor.pid;
        const running = findHaproxies(configPath);
        return pid !== undefined && running.length === 1 && running[0] === pid;
      }, 20_000),
    ).toBe(true);
    const pid = t.agent.supervisor.pid!;
    const answers = [];
    for (let i = 0; i < 40; i++) answers.push(await ask(port));
    expect(new Set(answers.map((a) => a.pid))).toEqual(new Set([pid]));
    expect(new Set(answers.map((a) => a.body))).toEqual(new Set(['a', 'b']));
  });
});
