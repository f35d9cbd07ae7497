/**
 * The agent stream's Stats rate limit over real gRPC, on a fake clock: a Stats message sooner than
 * minStatsIntervalMs after the stream's last accepted one is dropped and counted, the stream stays up, and what is
 * accepted is stamped with the control plane's clock (the traffic gates measure real elapsed time by it).
 */
import * as grpc from '@grpc/grpc-js';
import { FakeClock } from '../../testkit/fake-clock';
import { AgentStreamClient, ControlMessage, Hello } from '../../common/gen/proxymgr/v1/stream';
import { eventually, sleep } from '../../testkit/net';
import { startStreamServer } from '../../testkit/stream-server';

jest.setTimeout(30_000);

const counters = (requests: number) => [
  {
    service: 'web',
    requests,
    responses5xx: 0,
    sessions: 0,
    connectionErrors: 0,
    responseErrors: 0,
    retries: 0,
    serversDown: 0,
    servers: 1,
    queue: 0,
    rtimeMs: 0,
  },
];

test('Stats faster than the minimum interval are dropped and counted; the stream stays up; accepted ones carry the control-plane clock', async () => {
  const clock = new FakeClock(1_000_000);
  const s = await startStreamServer({ newStreamsPerSecond: 100, pushesPerSecond: 100, minStatsIntervalMs: 100 }, clock);
  const client = new AgentStreamClient(`127.0.0.1:${s.port}`, grpc.credentials.createInsecure());
  const call = client.stream();
  let error: grpc.ServiceError | undefined;
  call.on('data', (_m: ControlMessage) => undefined);
  call.on('error', (e: grpc.ServiceError) => (error = e));
  try {
    call.write({ hello: Hello.fromPartial({ nodeId: 'flood', agentVersion: 't', haproxyVersion: 't' }) });
    expect(await eventually(() => s.registry.get('flood') !== undefined)).toBe(true);
    const dropped0 = s.stats.statsDropped;
    // 500 Stats at one instant of the control plane's clock: the first is taken, the rest dropped.
    for (let i = 1; i <= 500; i++) call.write({ stats: { counters: counters(i * 1_000_000), runningVersion: '' } });
    expect(await eventually(() => s.stats.statsDropped - dropped0 === 499)).toBe(true);
    const rec = s.registry.get('flood')!;
    expect(rec.counters?.[0]?.requests).toBe(1_000_000);
    expect(rec.countersAt?.getTime()).toBe(1_000_000);
    // 100 ms later (by the fake clock) the next one is taken; the stream never closed.
    clock.advance(100);
    call.write({ stats: { counters: counters(7), runningVersion: '' } });
    expect(await eventually(() => s.registry.get('flood')?.counters?.[0]?.requests === 7)).toBe(true);
    expect(s.registry.get('flood')!.countersAt?.getTime()).toBe(1_000_100);
    await sleep(50);
    expect(error).toBeUndefined();
    expect(s.stats.statsDropped - dropped0).toBe(499);
  } finally {
    call.cancel();
    client.close();
    s.close();
  }
});
