import { ServiceCounters } from '../../common/gen/proxymgr/v1/counters';
import { Logger } from '../../common/platform/log';
import { MAX_COUNTED_SERVICES } from '../../common/protocol/resources';
import { DesiredState } from '../../common/protocol/types';
import { ApplyResult } from '../../agent/agent';
import { GrpcStateSource } from '../../agent/sources/grpc';
import { eventually } from '../../testkit/net';
import { startStreamServer } from '../../testkit/stream-server';
import { server, service, state } from '../../testkit/agent';

jest.setTimeout(120_000);

/**
 * A large fleet's state over a real grpc-js connection to the control plane's agent stream, whose receive limit is
 * grpc-js's 4 MiB: the agent's hello (every service it holds) and its counters (one entry per service) would be
 * larger, the stream would end, and every reconnect would end the same way. The agent fits them to the limit.
 */
describe('messages of a large fleet fit the control plane receive limit', () => {
  /** A realistic long service name of a large fleet. */
  const name = (i: number) => `team-payments-eu-west-checkout-backend-${String(i).padStart(6, '0')}`;
  const big = (n: number): DesiredState =>
    state(Array.from({ length: n }, (_, i) => service(name(i), 10_000 + (i % 50_000), [server('a', 8080)])));
  const counter = (service: string): ServiceCounters => ({
    service,
    requests: 1_000_000,
    responses5xx: 3,
    sessions: 1_000_000,
    connectionErrors: 7,
    responseErrors: 1,
    retries: 2,
    serversDown: 1,
    servers: 20,
    queue: 0,
    rtimeMs: 0,
  });
  const apply = async (s: DesiredState): Promise<ApplyResult> => ({
    version: s.version,
    outcome: 'runtime',
    reasons: [],
    commands: [],
    problems: [],
    durationMs: 1,
  });
  function capture(lines: string[]): Logger {
    return {
      debug: () => undefined,
      info: () => undefined,
      warn: (fields, msg) => void lines.push(`${msg} ${JSON.stringify(fields)}`),
      error: (fields, msg) => void lines.push(`${msg} ${JSON.stringify(fields)}`),
      child: () => capture(lines),
    };
  }

  test('a hello declaring 80,000 services held: the stream stays up and the full state is applied and ACKed', async () => {
    const s = await startStreamServer();
    const fleet = big(80_000);
    s.set(fleet);
    const lines: string[] = [];
    let applied = '';
    const src = new GrpcStateSource({
      addresses: [`127.0.0.1:${s.port}`],
      nodeId: 'big-hello',
      labels: {},
      agentVersion: 'test',
      haproxyVersion: 'test',
      runningVersion: () => applied,
      initialState: () => fleet, // its disk cache after a restart: declared in the hello
      log: capture(lines),
      backoffBaseMs: 50,
      backoffMaxMs: 200,
    });
    try {
      await src.start(async (st) => {
        applied = st.version;
        return apply(st);
      });
      expect(await eventually(() => s.registry.get('big-hello')?.lastAckedVersion === fleet.version, 60_000)).toBe(
        true,
      );
      expect(src.lastError).toBe('');
      expect(src.stats.cut).toBeGreaterThanOrEqual(1);
      expect(lines.join('\n')).toMatch(
        /cut to fit its receive limit .*hello: the 80000 services held .* are not declared .*full state/,
      );
    } finally {
      await src.stop();
      s.close();
    }
  });

  test('an ACK carrying counters of 60,000 services: the control plane gets the ACK and the first counters by name', async () => {
    const s = await startStreamServer();
    const small = state([service('web', 10_001, [server('a', 8080)])]);
    s.set(small);
    const lines: string[] = [];
    const counters = Array.from({ length: 60_000 }, (_, i) => counter(`${'x'.repeat(60)}-${name(60_000 - i)}`));
    const src = new GrpcStateSource({
      addresses: [`127.0.0.1:${s.port}`],
      nodeId: 'big-counters',
      labels: {},
      agentVersion: 'test',
      haproxyVersion: 'test',
      runningVersion: () => '',
      counters: async () => counters,
      log: capture(lines),
      backoffBaseMs: 50,
      backoffMaxMs: 200,
    });
    try {
      await src.start(apply);
      expect(await eventually(() => s.registry.get('big-counters')?.lastAckedVersion === small.version, 30_000)).toBe(
        true,
      );
      const got = s.registry.get('big-counters')!.counters ?? [];
      expect(got).toHaveLength(MAX_COUNTED_SERVICES);
      const expected = counters
        .map((c) => c.service)
        .sort()
        .slice(0, MAX_COUNTED_SERVICES);
      expect(got.map((c) => c.service)).toEqual(expected);
      expect(src.lastError).toBe('');
      expect(lines.join('\n')).toMatch(/ack: counters of 50000 of 60000 services left out/);
    } finally {
      await src.stop();
      s.close();
    }
  });
});
