import { ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { HaproxySupervisor } from '../../agent/haproxy/process';
import type { RuntimeApi } from '../../agent/ports';
import { silentLogger } from '../../common/platform/log';
import { sleep } from '../../testkit/net';

jest.setTimeout(30_000);

/** `sleep 300` started with pid `want` (the kernel's ns_last_pid, root only); undefined when something took it first. */
async function spawnWithPid(want: number): Promise<ChildProcess | undefined> {
  for (let attempt = 0; attempt < 50; attempt++) {
    writeFileSync('/proc/sys/kernel/ns_last_pid', String(want - 1));
    const c = spawn('sleep', ['300'], { stdio: 'ignore' });
    if (c.pid === want) return c;
    c.kill('SIGKILL');
    await sleep(5);
  }
  return undefined;
}

const exited = (c: ChildProcess) =>
  c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r));

// An adopted HAProxy is not the agent's child: it is held by a pidfd, so once it has exited (and been reaped), a
// process that reuses its pid is never signalled. (Held by number, stop() sent the newcomer SIGTERM.)
describe('an adopted pid reused by another process', () => {
  const started: ChildProcess[] = [];
  afterAll(() => {
    for (const c of started) c.kill('SIGKILL');
  });

  test('stop() does not signal the process that now has the pid', async () => {
    const adopted = spawn('sleep', ['300'], { stdio: 'ignore' });
    started.push(adopted);
    const pid = adopted.pid!;
    const s = new HaproxySupervisor({
      binary: 'haproxy',
      configPath: '/dev/null',
      runtime: { pid: async () => 0 } as unknown as RuntimeApi,
      log: silentLogger,
    });
    s.adopt(pid, []);

    adopted.kill('SIGKILL');
    await exited(adopted); // reaped: the pid is free
    const newcomer = await spawnWithPid(pid);
    if (!newcomer) throw new Error(`could not start a process with pid ${pid} (another one took it 50 times)`);
    started.push(newcomer);

    await s.stop();
    await sleep(200);
    expect({ exitCode: newcomer.exitCode, signal: newcomer.signalCode }).toEqual({ exitCode: null, signal: null });
  });
});
