import { ChildProcess, spawn as realSpawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { backoffMs } from '../../common/platform/backoff';
import { FakeClock } from '../../testkit/fake-clock';
import { silentLogger } from '../../common/platform/log';
import { HaproxySupervisor } from '../../agent/haproxy/process';
import type { RuntimeApi } from '../../agent/ports';
import { reconnectDelay } from '../../agent/sources/grpc';

describe('backoffMs', () => {
  const seq = (n: number, f: (i: number) => number) => Array.from({ length: n }, (_, i) => f(i));

  test('doubles from the base and is capped; without jitter it is exact', () => {
    expect(seq(6, (i) => backoffMs(i, { baseMs: 100, maxMs: 1000 }))).toEqual([100, 200, 400, 800, 1000, 1000]);
    expect(backoffMs(-1, { baseMs: 100, maxMs: 1000 })).toBe(100);
    expect(backoffMs(10_000, { baseMs: 0, maxMs: 1000 })).toBe(0);
  });

  test('equal jitter spreads over [step/2, step]; centered over [step/2, 3·step/2)', () => {
    const at = (r: number) => () => r;
    expect(
      [0, 0.5, 0.999].map((r) => backoffMs(2, { baseMs: 100, maxMs: 10_000, jitter: 'equal', random: at(r) })),
    ).toEqual([200, 300, 400]);
    expect(
      [0, 0.5, 0.999].map((r) => backoffMs(2, { baseMs: 100, maxMs: 10_000, jitter: 'centered', random: at(r) })),
    ).toEqual([200, 400, 600]);
    expect(backoffMs(30, { baseMs: 100, maxMs: 1000, jitter: 'equal', random: at(0.999) })).toBe(1000); // never past the cap
  });

  test("the gRPC source's reconnect delay keeps its ±50 % jitter around the capped step", () => {
    expect(reconnectDelay(0, 200, 10_000, () => 0.5)).toBe(200);
    expect(reconnectDelay(3, 200, 10_000, () => 0)).toBe(800);
    expect(reconnectDelay(50, 200, 10_000, () => 0.999)).toBe(14_990);
  });
});

describe('FakeClock', () => {
  test('runs due timers in time order (ties in the order set), including timers set by a callback', () => {
    const clock = new FakeClock(1000);
    const ran: string[] = [];
    clock.setTimeout(() => ran.push(`b@${clock.now()}`), 20);
    clock.setTimeout(() => {
      ran.push(`a@${clock.now()}`);
      clock.setTimeout(() => ran.push(`c@${clock.now()}`), 5);
    }, 10);
    clock.setTimeout(() => ran.push(`d@${clock.now()}`), 20);
    const never = clock.setTimeout(() => ran.push('cleared'), 1);
    clock.clearTimeout(never);
    clock.clearTimeout(undefined);
    clock.advance(9);
    expect(ran).toEqual([]);
    clock.advance(100);
    expect(ran).toEqual(['a@1010', 'c@1015', 'b@1020', 'd@1020']);
    expect(clock.now()).toBe(1109);
    expect(clock.pending).toBe(0);
  });
});

describe('HaproxySupervisor restart backoff on a fake clock', () => {
  /** A child process that runs until the test ends it. */
  class FakeChild extends EventEmitter {
    exitCode: number | null = null;
    signalCode: NodeJS.Signals | null = null;
    readonly stdout = null;
    readonly stderr = null;
    constructor(readonly pid: number) {
      super();
    }
    kill(): boolean {
      this.die(null, 'SIGTERM');
      return true;
    }
    unref(): void {}
    die(code: number | null, signal: NodeJS.Signals | null = null): void {
      if (this.exitCode !== null || this.signalCode !== null) return;
      this.exitCode = code;
      this.signalCode = signal;
      this.emit('exit', code, signal);
    }
  }

  /**
   * A supervisor on a fake clock whose spawns are FakeChild processes numbered from `firstPid`; the newest child
   * answers on the "stats socket" `answerAfterMs` after its spawn (at once by default). `argsOf` records each argv.
   */
  const supervisorOnFakes = (firstPid: number, restartMaxMs?: number, answerAfterMs = 0) => {
    const clock = new FakeClock();
    const children: FakeChild[] = [];
    const spawnedAt = new Map<number, number>();
    const argsOf = new Map<number, string[]>();
    const spawn = (_cmd: string, args: string[]) => {
      const c = new FakeChild(firstPid + children.length);
      children.push(c);
      spawnedAt.set(c.pid, clock.now());
      argsOf.set(c.pid, args);
      return c as unknown as ChildProcess;
    };
    const runtime = {
      pid: async () => {
        const c = children[children.length - 1];
        return c && clock.now() >= spawnedAt.get(c.pid)! + answerAfterMs ? c.pid : 0;
      },
    } as unknown as RuntimeApi;
    const s = new HaproxySupervisor({
      binary: 'haproxy',
      configPath: '/dev/null',
      runtime,
      log: silentLogger,
      spawn,
      clock,
      restartBaseMs: 100,
      ...(restartMaxMs !== undefined ? { restartMaxMs } : {}),
    });
    return { clock, children, argsOf, s };
  };

  test('restarts after base·2^(n-1) per consecutive crash; a process that ran 10 s resets the count', async () => {
    const { clock, children, s } = supervisorOnFakes(100, 1000);
    const restarted: number[] = [];
    s.on('restarted', (pid: number) => restarted.push(pid));
    await s.startOrReload([]);
    expect(children).toHaveLength(1);

    const crashAndWait = async (delay: number) => {
      children[children.length - 1]!.die(1);
      const before = children.length;
      await clock.advanceAsync(delay - 1);
      expect(children).toHaveLength(before); // still waiting
      await clock.advanceAsync(1);
      await new Promise((r) => setImmediate(r));
      expect(children).toHaveLength(before + 1);
      expect(s.running).toBe(true);
    };
    await crashAndWait(100);
    await crashAndWait(200);
    await crashAndWait(400);
    expect(restarted).toEqual([101, 102, 103]);

    await clock.advanceAsync(10_001); // ran long enough: the next crash is a first one again
    await crashAndWait(100);

    await s.stop();
    expect(clock.pending).toBe(0);
  });

  test('launches run one at a time: a crash restart and an apply never leave two generations accepting', async () => {
    // A new process answers 50 ms after it was spawned.
    const { clock, children, argsOf, s } = supervisorOnFakes(300, undefined, 50);
    const alive = () => children.filter((c) => c.exitCode === null && c.signalCode === null).map((c) => c.pid);
    const settle = async (ms: number) => {
      for (let i = 0; i < ms / 10; i++) await clock.advanceAsync(10);
    };
    const first = s.startOrReload([]);
    await settle(60);
    expect(await first).toBe(300);

    // Crashed; its restart starts at 100 ms and is still waiting for its process to answer when an apply arrives.
    children[0]!.die(1);
    await settle(120);
    expect(children.map((c) => c.pid)).toEqual([300, 301]); // the restart's process, not answering yet
    const apply = s.startOrReload([]);
    await settle(200);
    expect(await apply).toBe(302);
    // The apply waited for the restart, then reloaded it: one generation accepts, the restarted one soft-stops.
    expect(argsOf.get(302)).toEqual(['-db', '-f', '/dev/null', '-sf', '301']);
    expect(alive()).toEqual([302]);
    expect(s.pid).toBe(302);
    await settle(10_000);
    expect(children).toHaveLength(3); // and no late restart
    await s.stop();
  });

  test('an adopted HAProxy (not our child) is watched on the clock: when it dies, it is restarted after the backoff', async () => {
    const { clock, children, s } = supervisorOnFakes(200);
    // A real process stands in for the HAProxy a previous agent left (the watch reads /proc).
    const orphan = realSpawn('sleep', ['30'], { stdio: 'ignore' });
    const exited = new Promise((r) => orphan.once('exit', r));
    try {
      s.adopt(orphan.pid!, [7]);
      expect(s.adoptedPid).toBe(orphan.pid);
      await clock.advanceAsync(2000);
      expect(children).toHaveLength(0); // alive: nothing to do
      orphan.kill('SIGKILL');
      await exited;
      await clock.advanceAsync(500); // the next look sees it gone: a restart is due after 100 ms
      expect(children).toHaveLength(0);
      await clock.advanceAsync(100);
      await new Promise((r) => setImmediate(r));
      expect(children).toHaveLength(1);
      expect(s.running).toBe(true);
      expect(s.adoptedPid).toBeUndefined();
      await s.stop();
      expect(clock.pending).toBe(0);
    } finally {
      orphan.kill('SIGKILL'); // (already gone unless an expectation failed first)
    }
  });
});
