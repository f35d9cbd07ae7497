/**
 * The agent stream's session, planner and pacing without gRPC: a session writes to a fake transport, its timers
 * (answer timeout, push pacing, Stats interval) run on a FakeClock the tests move instead of waiting.
 */
import { ANONYMOUS } from '../../../common/platform/auth';
import { silentLogger } from '../../../common/platform/log';
import { PROTOCOL_VERSION } from '../../../common/protocol/resources';
import { TokenBucket } from '../../../common/platform/token-bucket';
import { DesiredState } from '../../../common/protocol/types';
import { AgentMessage, ControlMessage, Hello } from '../../../common/gen/proxymgr/v1/stream';
import { AgentStateRequests } from '../../../controlplane/grpc/agent-questions';
import { AgentSession, SessionDeps } from '../../../controlplane/grpc/agent-session';
import { connectAgent } from '../../../controlplane/grpc/hello';
import { PushPacer, StatsLimiter, STATS_DROP_LOG_EVERY_MS } from '../../../controlplane/grpc/pacing';
import { AgentStreamDefinition } from '../../../controlplane/grpc/push-encoding';
import {
  afterNack,
  afterPush,
  afterResync,
  holdingOf,
  lacks,
  msUntilOverdue,
} from '../../../controlplane/grpc/push-planner';
import { AgentRegistry } from '../../../controlplane/grpc/registry';
import { NonceSource, StreamStats } from '../../../controlplane/grpc/stream-stats';
import { FakeClock } from '../../../testkit/fake-clock';
import { HeldState } from '../../../agent/sources/held-state';
import { server, service, state } from '../../../testkit/agent';

const v1 = state([service('web', 8080, [server('a', 9001)])]);
const v2 = state([service('web', 8080, [server('a', 9001), server('b', 9002)])]);
const v3 = state([service('web', 8080, [server('b', 9002)])]);

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

/** Sessions over one desired state the test sets, sharing a pacer of `pushesPerSecond` (burst `burst`). */
function harness(opts: { pushesPerSecond?: number; burst?: number; answerTimeoutMs?: number } = {}) {
  const clock = new FakeClock(1_000_000);
  let current: DesiredState | undefined;
  const subscribers = new Set<() => void>();
  const registry = new AgentRegistry();
  const stats = new StreamStats();
  const rate = opts.pushesPerSecond ?? 100;
  const deps: SessionDeps = {
    source: {
      desiredFor: () => current,
      subscribe: (fn) => {
        subscribers.add(fn);
        return () => subscribers.delete(fn);
      },
    },
    registry,
    stateRequests: new AgentStateRequests(),
    pacer: new PushPacer(new TokenBucket(rate, opts.burst ?? rate, clock), Infinity, clock),
    clock,
    stats,
    nonces: new NonceSource('test'),
    answerTimeoutMs: opts.answerTimeoutMs ?? 30_000,
    minStatsIntervalMs: 100,
  };
  return {
    clock,
    registry,
    stats,
    set(s: DesiredState) {
      current = s;
      for (const fn of subscribers) fn();
    },
    /** A session for `hello` (protocol 0 unless it says otherwise): the pushes it wrote, decoded, and failures. */
    open(fields: Partial<Hello> & { nodeId: string }) {
      const hello = Hello.fromPartial({ agentVersion: 't', haproxyVersion: 't', ...fields });
      const pushes: NonNullable<ControlMessage['push']>[] = [];
      const failures: string[] = [];
      const session = new AgentSession(
        deps,
        {
          write: (msg) => {
            const m = ControlMessage.decode(AgentStreamDefinition.stream.responseSerialize(msg));
            if (m.push) pushes.push(m.push);
          },
          fail: (_code, details) => void failures.push(details),
        },
        connectAgent(registry, hello, '127.0.0.1:1', ANONYMOUS, false),
        hello,
        silentLogger,
      );
      session.start();
      return { session, pushes, failures, send: (m: AgentMessage) => session.receive(m) };
    },
  };
}

const ack = (p: { version: string; nonce: string }): AgentMessage => ({
  ack: {
    version: p.version,
    nonce: p.nonce,
    method: 2,
    reasons: [],
    runtimeCommands: 0,
    durationMs: 1,
    warnings: [],
    rejectedServices: [],
    counters: [],
    refusals: [],
    changes: [],
    appliedAgoMs: 0,
  },
});

describe('agent session on a fake clock', () => {
  test('flow control: a change waits for the unanswered push until answerTimeoutMs, then goes; a late answer counts', () => {
    const h = harness({ answerTimeoutMs: 1500 });
    h.set(v1);
    const a = h.open({ nodeId: 'n1' });
    expect(a.pushes.map((p) => p.version)).toEqual([v1.version]);
    h.set(v2);
    h.set(v3);
    h.clock.advance(1499);
    expect(a.pushes).toHaveLength(1); // not overdue yet
    h.clock.advance(2);
    expect(a.pushes.map((p) => p.version)).toEqual([v1.version, v3.version]); // the newest, not v2 then v3
    expect(a.pushes[1]!.nonce).not.toBe(a.pushes[0]!.nonce);
    // The first push's answer comes late: superseded, it is ignored; the second's is recorded.
    a.send(ack(a.pushes[0]!));
    expect(h.registry.get('n1')?.lastAckedVersion).toBe('');
    a.send(ack(a.pushes[1]!));
    expect(h.registry.get('n1')?.lastAckedVersion).toBe(v3.version);
    expect(h.stats.protocol0Pushes).toBe(2);
    expect(h.clock.pending).toBe(0); // no answer timer left behind
    a.session.close();
    expect(h.registry.get('n1')?.connected).toBe(false);
  });

  test('an answered push lets the next change go at once; a NACKed version is not sent again', () => {
    const h = harness();
    h.set(v1);
    const a = h.open({ nodeId: 'n1' });
    a.send({
      nack: {
        version: v1.version,
        nonce: a.pushes[0]!.nonce,
        reason: 'no',
        haproxyOutput: '',
        runningVersion: '',
        refusals: [],
      },
    });
    expect(h.registry.get('n1')?.lastError).toBe('no');
    h.set(v1);
    h.clock.advance(60_000);
    expect(a.pushes).toHaveLength(1);
    h.set(v2);
    expect(a.pushes.map((p) => p.version)).toEqual([v1.version, v2.version]);
  });

  test("pushes beyond the pacer's burst wait until the clock refills its bucket", () => {
    const h = harness({ pushesPerSecond: 10, burst: 1 });
    h.set(v1);
    const a = h.open({ nodeId: 'n1' });
    const b = h.open({ nodeId: 'n2' });
    expect([a.pushes.length, b.pushes.length]).toEqual([1, 0]);
    h.clock.advance(99);
    expect(b.pushes).toHaveLength(0);
    h.clock.advance(1);
    expect(b.pushes.map((p) => p.version)).toEqual([v1.version]);
  });

  test('Stats sooner than the minimum interval are dropped and counted; accepted ones carry the clock', () => {
    const h = harness();
    const a = h.open({ nodeId: 'n1' });
    for (let i = 1; i <= 5; i++) a.send({ stats: { counters: counters(i), runningVersion: '' } });
    expect(h.stats.statsDropped).toBe(4);
    expect(h.registry.get('n1')?.counters?.[0]?.requests).toBe(1);
    h.clock.advance(99);
    a.send({ stats: { counters: counters(6), runningVersion: '' } });
    expect(h.stats.statsDropped).toBe(5);
    h.clock.advance(1);
    a.send({ stats: { counters: counters(7), runningVersion: '' } });
    expect(h.registry.get('n1')?.counters?.[0]?.requests).toBe(7);
    expect(h.registry.get('n1')?.countersAt?.getTime()).toBe(1_000_100);
    expect(a.failures).toEqual([]);
  });

  test('protocol 2: a Resync of an unanswered delta gets one full push; of a full push, the stream fails', () => {
    const h = harness();
    h.set(v1);
    const a = h.open({ nodeId: 'n1', protocolVersion: PROTOCOL_VERSION });
    expect(a.pushes[0]!.full).toBe(true);
    a.send(ack(a.pushes[0]!));
    h.set(v2);
    expect(a.pushes[1]!.full).toBe(false);
    a.send({ resync: { nonce: a.pushes[1]!.nonce, reason: 'digest mismatch' } });
    a.send({ resync: { nonce: a.pushes[1]!.nonce, reason: 'again' } });
    expect(a.pushes.map((p) => [p.version, p.full])).toEqual([
      [v1.version, true],
      [v2.version, false],
      [v2.version, true],
    ]);
    expect([h.stats.resyncs, h.stats.fullPushes, h.stats.deltaPushes]).toEqual([1, 2, 1]);
    a.send({ resync: { nonce: a.pushes[2]!.nonce, reason: 'cannot' } });
    expect(a.failures).toEqual([`the agent could not take full push ${a.pushes[2]!.nonce}: cannot`]);
  });
});

describe('push planner (pure)', () => {
  test('protocol 0: due unless the agent runs it or NACKed it last; a push makes the NACK no longer the last word', () => {
    const h0 = holdingOf(Hello.fromPartial({ nodeId: 'n', runningVersion: v1.version }));
    expect(lacks(h0, v1)).toBe(false);
    expect(lacks(h0, v2)).toBe(true);
    const nacked = afterNack(afterPush(h0, v2), { version: v2.version, runningVersion: v1.version });
    expect(lacks(nacked, v2)).toBe(false);
    expect(lacks(nacked, v1)).toBe(false);
    expect(lacks(afterPush(nacked, v3), v2)).toBe(true);
  });

  test('protocol 2: a declared base equal to the desired state needs nothing; a Resync needs a full push', () => {
    const declared = holdingOf(Hello.fromPartial({ nodeId: 'n', ...HeldState.of(v2).hello() }));
    expect(lacks(declared, v2)).toBe(false);
    expect(lacks(declared, v1)).toBe(true);
    const sent = afterPush(holdingOf(Hello.fromPartial({ nodeId: 'n', protocolVersion: PROTOCOL_VERSION })), v2);
    expect(lacks(sent, v2)).toBe(false);
    expect(lacks(afterResync(sent), v2)).toBe(true);
  });

  test('a push is overdue answerTimeoutMs after it was sent', () => {
    expect(msUntilOverdue(1000, 1500, 2000)).toBe(500);
    expect(msUntilOverdue(1000, 1500, 2500)).toBe(0);
  });
});

describe('Stats limiter', () => {
  test('drops are logged at most every STATS_DROP_LOG_EVERY_MS, with the count since the last line', () => {
    const l = new StatsLimiter(100);
    expect(l.take(0)).toEqual({ accepted: true });
    expect(l.take(10)).toEqual({ accepted: false, logDropped: 1 });
    expect(l.take(20)).toEqual({ accepted: false });
    expect(l.take(STATS_DROP_LOG_EVERY_MS)).toEqual({ accepted: true });
    expect(l.take(STATS_DROP_LOG_EVERY_MS + 5)).toEqual({ accepted: false });
    expect(l.take(STATS_DROP_LOG_EVERY_MS + 10)).toEqual({ accepted: false, logDropped: 3 });
  });
});
