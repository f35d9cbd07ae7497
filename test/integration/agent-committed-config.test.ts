import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Backend, startBackends } from '../../testkit/backends';
import { eventually, freePort, tally, tempDir } from '../../testkit/net';
import { server, service, startTestAgent, state } from '../../testkit/agent';

jest.setTimeout(60_000);

// A launch that fails must not leave haproxy.cfg unlike what runs: a crash restart pairs the file with the fds of
// the process that runs. Real HAProxy behind a wrapper that refuses to start (but passes `haproxy -c`) while a
// marker file exists and the config has a section w.
describe('a failed launch, then a crash: the restart runs the committed config on its own fds', () => {
  const tmp = tempDir('proxymgr-committed-');
  const marker = path.join(tmp.dir, 'fail-launches');
  let backends: Backend[];
  let t: Awaited<ReturnType<typeof startTestAgent>>;

  beforeAll(async () => {
    const haproxy = execFileSync('sh', ['-c', 'command -v haproxy'], { encoding: 'utf8' }).trim();
    const wrapper = path.join(tmp.dir, 'haproxy');
    writeFileSync(
      wrapper,
      `#!/bin/sh
case " $* " in *" -c "*) ;; *) if [ -e '${marker}' ] && grep -q '^listen w$' "$3"; then echo '[ALERT] (test) launch refused' >&2; exit 1; fi;; esac
exec '${haproxy}' "$@"
`,
    );
    chmodSync(wrapper, 0o755);
    backends = await startBackends(['w', 'x', 'y']);
    t = await startTestAgent('', {}, `  path: ${wrapper}`);
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all((backends ?? []).map((b) => b.close()));
    tmp.cleanup();
  });

  test('same number of listeners in another order: no port is cross-wired after the crash', async () => {
    const [w, x, y] = backends;
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
    const first = state([service('x', p1, [server('x', x!.port)]), service('y', p2, [server('y', y!.port)])]);
    expect((await t.agent.apply(first)).outcome).toBe('reload');
    const cfg = t.config.haproxy.configPath;
    const running = readFileSync(cfg, 'utf8');

    // y goes, w comes: two listeners again, w (sorting first) now at fd@4 where x was.
    writeFileSync(marker, '');
    const second = state([service('w', p3, [server('w', w!.port)]), service('x', p1, [server('x', x!.port)])]);
    const r = await t.agent.apply(second);
    expect(r.outcome).toBe('rejected');
    expect(readFileSync(cfg, 'utf8')).toBe(running); // put back at once
    // (A failed reload starts the running config again: its -sf may have soft-stopped the old process. The retries
    // of the second state keep failing: the wrapper refuses every config with w.)
    expect(await eventually(() => t.agent.supervisor.pid !== undefined, 10_000)).toBe(true);
    expect(readFileSync(cfg, 'utf8')).toBe(running);

    const pid = t.agent.supervisor.pid!;
    process.kill(pid, 'SIGKILL');
    expect(await eventually(() => t.agent.supervisor.pid !== undefined && t.agent.supervisor.pid !== pid, 10_000)).toBe(
      true,
    );
    // p1 still reaches x and p2 still reaches y (before: w's section on x's socket, or a crash loop on fd@k).
    expect([...(await tally(p1, 4)).keys()]).toEqual(['x']);
    expect([...(await tally(p2, 4)).keys()]).toEqual(['y']);
    expect(existsSync(cfg)).toBe(true);
    rmSync(marker);
  });
});
