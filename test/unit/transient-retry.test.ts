import { HaproxyConfigError, ProxyMgrError } from '../../common/platform/errors';
import { ApplyResult } from '../../agent/agent';
import { RETRY_MAX_ATTEMPTS, RETRY_MAX_MS } from '../../agent/retry';
import { fakeAgent } from '../../testkit/fake-agent';
import { server, service, state } from '../../testkit/agent';

// Transient failures retry the held state with backoff (1 s, 2 s, 4 s … at the fake agent's jitter of 0.5);
// permanent ones wait for the next version.

const web = service('web', 8001, [server('a', 9001)]);
const api = service('api', 8002, [server('x', 9100)]);

/** Lets the promise chain a timer started settle. */
async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
}

/** Advances the fake clock in 50 ms steps (a reload waits on it) until `cond`, for at most `ms`. */
async function within(f: ReturnType<typeof fakeAgent>, ms: number, cond: () => boolean): Promise<void> {
  for (let waited = 0; !cond() && waited <= ms; waited += 50) {
    await f.clock.advanceAsync(50);
    await settle();
  }
  if (!cond()) throw new Error(`not reached within ${ms} ms of the fake clock`);
}

describe('transient failures retry the held state', () => {
  test('a service left out because its port was taken comes up once the port is free, and the retry is answered', async () => {
    const f = fakeAgent();
    const retried: ApplyResult[] = [];
    f.agent.onRetried((r) => retried.push(r));
    f.sockets.busy.add(8002);
    const desired = state([web, api]);
    const r = await f.agent.apply(desired);
    expect(r.problems).toEqual([expect.objectContaining({ service: 'api', transient: true })]);
    expect(f.agent.retry).toMatchObject({ attempt: 1, at: f.clock.now() + 1000 });

    await f.clock.advanceAsync(1000); // still taken: the next waits twice as long
    await settle();
    expect(retried).toHaveLength(1);
    expect(f.agent.retry).toMatchObject({ attempt: 2, at: f.clock.now() + 2000 });

    f.sockets.busy.delete(8002);
    await f.clock.advanceAsync(1999);
    await settle();
    expect(retried).toHaveLength(1);
    await within(f, 1000, () => retried.length === 2);
    expect(retried[1]).toMatchObject({ version: desired.version, outcome: 'reload', problems: [] });
    expect(f.agent.current?.services.map((s) => s.name).sort()).toEqual(['api', 'web']);
    expect(f.agent.retry).toBeUndefined();
    expect(f.agent.retries).toBe(2);
  });

  test('a haproxy -c that could not run is retried; a NACK is not the last word', async () => {
    const f = fakeAgent();
    const retried: ApplyResult[] = [];
    f.agent.onRetried((r) => retried.push(r));
    f.check.failWith = () =>
      new ProxyMgrError('HAPROXY_CHECK_FAILED', 'haproxy -c was killed (SIGKILL) after 30000 ms');
    const r = await f.agent.apply(state([web]));
    expect(r.outcome).toBe('rejected');
    f.check.failWith = undefined;
    await within(f, 2000, () => retried.length === 1);
    expect(retried.map((x) => x.outcome)).toEqual(['reload']);
  });

  test('a state that keeps failing is retried RETRY_MAX_ATTEMPTS times, then waits for the next version', async () => {
    const f = fakeAgent();
    const retried: ApplyResult[] = [];
    f.agent.onRetried((r) => retried.push(r));
    f.sockets.busy.add(8002);
    await f.agent.apply(state([web, api]));
    for (let i = 0; i < 15 && f.agent.retry; i++) {
      await f.clock.advanceAsync(RETRY_MAX_MS);
      await settle();
    }
    expect(retried).toHaveLength(RETRY_MAX_ATTEMPTS);
    expect(f.agent.retry).toBeUndefined();
  });

  test('HAProxy rejecting the config is permanent: no retry', async () => {
    const f = fakeAgent();
    f.check.failWith = () =>
      new HaproxyConfigError('haproxy -c rejected the configuration: bad', '[ALERT] bad', [], ['bad']);
    const r = await f.agent.apply(state([web]));
    expect(r.outcome).toBe('rejected');
    expect(f.agent.retry).toBeUndefined();
  });

  test('a new version replaces the pending retry (and starts from the base delay again)', async () => {
    const f = fakeAgent();
    const retried: ApplyResult[] = [];
    f.agent.onRetried((r) => retried.push(r));
    f.sockets.busy.add(8002);
    await f.agent.apply(state([web, api]));
    expect(f.agent.retry).toBeDefined();
    await f.agent.apply(state([web]));
    expect(f.agent.retry).toBeUndefined();
    await f.clock.advanceAsync(5000);
    await settle();
    expect(retried).toEqual([]);
  });
});

describe('drift checks while an apply is held up', () => {
  test('ticks do not pile up: one check waits at most, and a new one queues once it ran', async () => {
    const f = fakeAgent();
    await f.agent.apply(state([web]));
    const held = f.agent.apply(state([web, api])); // the queue is busy: drift checks wait behind it
    const checks = Array.from({ length: 100 }, () => f.agent.repairDrift());
    expect(new Set(checks).size).toBe(1);
    await held;
    await checks[0];
    expect(f.agent.repairDrift()).not.toBe(checks[0]);
  });
});
