import { ChildProcess, spawn } from 'node:child_process';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { silentLogger } from '../../common/platform/log';
import { ProxyMgrError } from '../../common/platform/errors';
import { checkConfig } from '../../agent/haproxy/config-check';
import { HaproxySupervisor, SpawnFn } from '../../agent/haproxy/process';
import type { RuntimeApi } from '../../agent/ports';
import { eventually, tempDir } from '../../testkit/net';

jest.setTimeout(15_000);

/** Issue 9 i: a `haproxy -c` that never ends, and a HAProxy that never answers on its stats socket. */
describe('haproxy -c and readiness time out (fake binaries)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let hang: string;
  beforeAll(() => {
    tmp = tempDir();
    // Stands in for a haproxy that hangs: records its pid, then sleeps (exec: the pid stays the sleeper's).
    hang = path.join(tmp.dir, 'hang.sh');
    writeFileSync(hang, `#!/bin/sh\necho $$ >> ${tmp.dir}/pids\nexec sleep 30\n`);
    chmodSync(hang, 0o755);
  });
  afterAll(() => tmp.cleanup());
  const gone = (pid: number) => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  };

  test('haproxy -c that does not finish is killed and rejected after its timeout', async () => {
    const started = Date.now();
    const err = await checkConfig(hang, '/nonexistent.cfg', '', [], { timeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ProxyMgrError);
    expect((err as ProxyMgrError).code).toBe('HAPROXY_CHECK_FAILED');
    expect((err as Error).message).toMatch(/haproxy -c did not finish within 300 ms/);
    expect(Date.now() - started).toBeLessThan(3000);
    const pid = Number(readFileSync(path.join(tmp.dir, 'pids'), 'utf8').trim().split('\n').pop());
    expect(await eventually(() => gone(pid), 2000)).toBe(true);
  });

  describe('supervisor', () => {
    let children: ChildProcess[];
    let answering: () => number | undefined;
    let sup: HaproxySupervisor | undefined;
    const runtime: RuntimeApi = {
      command: async () => '',
      serversState: async () => new Map(),
      pid: async () => {
        const pid = answering();
        if (pid === undefined) throw new Error('connect ENOENT');
        return pid;
      },
    };
    const recordingSpawn: SpawnFn = (cmd, args, opts) => {
      const child = spawn(cmd, args, opts);
      children.push(child);
      return child;
    };
    beforeEach(() => {
      children = [];
      answering = () => children[children.length - 1]?.pid;
    });
    afterEach(async () => {
      await sup?.stop();
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    });

    test('a reload whose new process never answers: it is killed, and the running config is started again (its -sf may have soft-stopped the old one)', async () => {
      sup = new HaproxySupervisor({
        binary: hang,
        configPath: '/x.cfg',
        runtime,
        log: silentLogger,
        spawn: recordingSpawn,
        readyTimeoutMs: 300,
      });
      const first = await sup.startOrReload([]);
      answering = () => first; // the new process never takes over the stats socket
      const restarted = new Promise<number>((resolve) => sup!.once('restarted', resolve));
      await expect(sup.startOrReload([])).rejects.toThrow(/did not answer on the stats socket within 300 ms/);
      expect(sup.running).toBe(false); // used to stay 'starting' forever; then trusted a possibly soft-stopped process
      expect(await eventually(() => children[1]!.signalCode === 'SIGKILL', 2000)).toBe(true);

      // A fresh start that soft-stops the old one the moment it listens (-sf), and answers.
      answering = () => children[children.length - 1]?.pid;
      expect(await restarted).toBe(children[2]!.pid);
      expect(children[2]!.spawnargs.slice(-2)).toEqual(['-sf', String(children[0]!.pid)]);
      expect(sup.running).toBe(true);
      expect(sup.pid).toBe(children[2]!.pid);
      expect(
        await eventually(() => children[0]!.signalCode === 'SIGUSR1' || children[0]!.exitCode !== null, 2000),
      ).toBe(true);
    });

    test('a first start that never answers leaves the supervisor stopped, and a later start works', async () => {
      sup = new HaproxySupervisor({
        binary: hang,
        configPath: '/x.cfg',
        runtime,
        log: silentLogger,
        spawn: recordingSpawn,
        readyTimeoutMs: 300,
      });
      answering = () => undefined;
      await expect(sup.startOrReload([])).rejects.toThrow(/within 300 ms \(the next start waits up to 600 ms\)/);
      expect(sup.running).toBe(false);
      // The next start may take twice as long: this one answers only after 450 ms.
      const slowFrom = Date.now() + 450;
      answering = () => (Date.now() >= slowFrom ? children[children.length - 1]?.pid : undefined);
      const pid = await sup.startOrReload([]);
      expect(pid).toBe(children[1]!.pid);
      expect(children[1]!.spawnargs).not.toContain('-sf'); // nothing to soft-stop: the first one was killed
      expect(sup.running).toBe(true);
    });

    test('the readiness deadline doubles after each start that ran out of it (up to 8×) and is reset by one that answered', async () => {
      sup = new HaproxySupervisor({
        binary: hang,
        configPath: '/x.cfg',
        runtime,
        log: silentLogger,
        spawn: recordingSpawn,
        readyTimeoutMs: 50,
      });
      answering = () => undefined;
      for (const [within, next] of [
        [50, 100],
        [100, 200],
        [200, 400],
        [400, 400],
      ])
        await expect(sup.startOrReload([])).rejects.toThrow(
          `within ${within} ms (the next start waits up to ${next} ms)`,
        );
      answering = () => children[children.length - 1]?.pid;
      await sup.startOrReload([]);
      answering = () => undefined;
      await expect(sup.startOrReload([])).rejects.toThrow('within 50 ms (the next start waits up to 100 ms)');
    });

    test('spawn throwing (EAGAIN, EMFILE …) rejects with HAPROXY_START_FAILED; what ran keeps running', async () => {
      let fail = false;
      const flaky: SpawnFn = (cmd, args, opts) => {
        if (fail) throw Object.assign(new Error('spawn EAGAIN'), { code: 'EAGAIN' });
        return recordingSpawn(cmd, args, opts);
      };
      sup = new HaproxySupervisor({
        binary: hang,
        configPath: '/x.cfg',
        runtime,
        log: silentLogger,
        spawn: flaky,
        readyTimeoutMs: 300,
      });
      const first = await sup.startOrReload([]);
      fail = true;
      const err = await sup.startOrReload([]).catch((e: unknown) => e);
      expect((err as ProxyMgrError).code).toBe('HAPROXY_START_FAILED');
      expect((err as Error).message).toMatch(/EAGAIN/);
      expect(sup.running).toBe(true);
      expect(sup.pid).toBe(first);
    });
  });
});
