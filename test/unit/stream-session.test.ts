/**
 * The agent's side of the stream without gRPC: a StreamSession writes to a fake transport, its stats interval runs
 * on a FakeClock the tests move instead of waiting, and applies finish when a test says so.
 */
import { HaproxyConfigError } from '../../common/platform/errors';
import { Logger, silentLogger } from '../../common/platform/log';
import { diff, fullDelta, PROTOCOL_VERSION, resourceSet } from '../../common/protocol/resources';
import { toProto } from '../../common/protocol/state-codec';
import { DesiredState } from '../../common/protocol/types';
import { ServiceCounters } from '../../common/gen/proxymgr/v1/counters';
import { AgentMessage, ApplyMethod, ControlMessage, Push } from '../../common/gen/proxymgr/v1/stream';
import { ApplyResult } from '../../agent/results';
import { HeldAcrossStreams } from '../../agent/sources/held-state';
import { helloOf, STATS_INTERVAL_MS, statsIntervalOf } from '../../agent/sources/stream-messages';
import { SessionDeps, SourceStats, StreamHooks, StreamSession } from '../../agent/sources/stream-session';
import { deltaToPush } from '../../controlplane/grpc/push-encoding';
import { FakeClock } from '../../testkit/fake-clock';
import { server, service, state } from '../../testkit/agent';

const v1 = state([service('web', 8080, [server('a', 9001)])]);
const v2 = state([service('web', 8080, [server('a', 9001), server('b', 9002)])]);
const v3 = state([service('web', 8080, [server('b', 9002)])]);

let nonces = 0;
const wire = (p: Push): ControlMessage => ({ push: { ...p, nonce: `nonce-${++nonces}` } });
const fullPush = (to: DesiredState) => wire(deltaToPush(fullDelta(to)));
const deltaPush = (from: DesiredState, to: DesiredState) => wire(deltaToPush(diff(resourceSet(from), to)));

const counters = (requests: number): ServiceCounters[] => [
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

const applied = (s: DesiredState, extra: Partial<ApplyResult> = {}): ApplyResult => ({
  version: s.version,
  outcome: 'runtime',
  reasons: [{ kind: 'add', text: 'server b added' }],
  commands: ['add server web/b'],
  problems: [],
  durationMs: 3,
  ...extra,
});

/** Flushes resolved promises (an apply that finished, counters read) without moving the clock. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A session over a fake transport; each apply waits until the test resolves it (`finish`). */
function harness(hooks: Partial<StreamHooks> = {}, holding = new HeldAcrossStreams()) {
  const clock = new FakeClock(1_000_000);
  const sent: AgentMessage[] = [];
  const logs: { level: string; msg: string; fields: object }[] = [];
  const log: Logger = {
    debug: (fields, msg) => void logs.push({ level: 'debug', msg, fields }),
    info: (fields, msg) => void logs.push({ level: 'info', msg, fields }),
    warn: (fields, msg) => void logs.push({ level: 'warn', msg, fields }),
    error: (fields, msg) => void logs.push({ level: 'error', msg, fields }),
    child: () => log,
  };
  const applying: { state: DesiredState; finish: (r: ApplyResult | Error) => void }[] = [];
  const stats: SourceStats = { pushes: 0, full: 0, deltas: 0, resyncs: 0, cut: 0 };
  let running = '';
  const deps: SessionDeps = {
    hooks: { runningVersion: () => running, ...hooks },
    apply: (s) =>
      new Promise<ApplyResult>((resolve, reject) =>
        applying.push({
          state: s,
          finish: (r) => {
            if (r instanceof Error) return reject(r);
            if (r.outcome !== 'rejected') running = r.version;
            resolve(r);
          },
        }),
      ),
    holding,
    stats,
    clock,
    sourceLog: silentLogger,
  };
  const { held } = holding.forStream();
  const hello = helloOf(
    { nodeId: 'n1', labels: { zone: 'a' }, agentVersion: 't', haproxyVersion: '3.0' },
    running,
    held.hello(),
    deps.hooks.preflight !== undefined,
  );
  const session = new StreamSession(deps, { write: (m) => void sent.push(m) }, held, hello, log);
  return { clock, sent, logs, applying, stats, session, holding };
}

describe('StreamSession', () => {
  test('says hello, then sends counters every stats interval as the clock moves; none when there are none', async () => {
    let requests = 0;
    const h = harness({ counters: async () => (requests++ === 1 ? [] : counters(requests)) });
    h.session.start();
    expect(h.sent).toEqual([{ hello: expect.objectContaining({ nodeId: 'n1', protocolVersion: PROTOCOL_VERSION }) }]);
    expect(h.sent[0]!.hello!.capabilities).toEqual(['settings']);

    await h.clock.advanceAsync(STATS_INTERVAL_MS - 1);
    expect(h.sent).toHaveLength(1);
    await h.clock.advanceAsync(1);
    await settle();
    expect(h.sent[1]).toEqual({ stats: { counters: counters(1), runningVersion: '' } });
    await h.clock.advanceAsync(STATS_INTERVAL_MS); // the counters hook has nothing this time: no Stats
    await settle();
    expect(h.sent).toHaveLength(2);
    await h.clock.advanceAsync(STATS_INTERVAL_MS);
    await settle();
    expect(h.sent[2]).toEqual({ stats: { counters: counters(3), runningVersion: '' } });
  });

  test("the control plane's AgentSettings set the interval (at least 200 ms; 0 is the default) and restart the timer", async () => {
    const h = harness({ counters: async () => counters(1) });
    h.session.start();
    await h.clock.advanceAsync(4_000);
    h.session.receive({ settings: { statsIntervalMs: 50 } });
    expect(h.logs).toContainEqual({
      level: 'info',
      msg: 'control plane set the stats interval',
      fields: { stats_interval_ms: 200 },
    });
    await h.clock.advanceAsync(200);
    await settle();
    expect(h.sent.filter((m) => m.stats)).toHaveLength(1);
    h.session.receive({ settings: { statsIntervalMs: 200 } }); // unchanged: neither logged nor restarted
    expect(h.logs.filter((l) => l.msg === 'control plane set the stats interval')).toHaveLength(1);
    h.session.receive({ settings: { statsIntervalMs: 0 } });
    await h.clock.advanceAsync(STATS_INTERVAL_MS - 1);
    await settle();
    expect(h.sent.filter((m) => m.stats)).toHaveLength(1);
    await h.clock.advanceAsync(1);
    await settle();
    expect(h.sent.filter((m) => m.stats)).toHaveLength(2);
  });

  test('once the stream ended no timer is left and nothing more is sent', async () => {
    const h = harness({ counters: async () => counters(1) });
    h.session.start();
    h.session.receive(fullPush(v1));
    expect(h.applying).toHaveLength(1);
    h.session.end();
    expect(h.session.ended).toBe(true);
    expect(h.clock.pending).toBe(0);
    h.applying[0]!.finish(applied(v1));
    await settle();
    await h.clock.advanceAsync(STATS_INTERVAL_MS * 3);
    expect(h.sent.map((m) => Object.keys(m)[0])).toEqual(['hello']);
  });

  test('a push is applied and ACKed with its nonce, the result and fresh counters; a rejected one is NACKed', async () => {
    const ages: number[] = [];
    const h = harness({ counters: async (maxAgeMs) => (ages.push(maxAgeMs), counters(7)) });
    h.session.start();
    const first = fullPush(v1);
    h.session.receive(first);
    expect(h.applying[0]!.state).toEqual(v1);
    h.applying[0]!.finish(
      applied(v1, { problems: [{ service: 'db', where: 'service db', message: 'port in use', transient: true }] }),
    );
    await settle();
    expect(h.sent[1]).toEqual({
      ack: {
        version: v1.version,
        nonce: first.push!.nonce,
        method: ApplyMethod.APPLY_METHOD_RUNTIME,
        reasons: ['server b added'],
        runtimeCommands: 1,
        durationMs: 3,
        warnings: ['service db: port in use'],
        rejectedServices: ['db'],
        counters: counters(7),
        refusals: [{ service: 'db', message: 'port in use', leftOut: false }],
        changes: [],
        appliedAgoMs: 0,
      },
    });
    expect(ages).toEqual([500]);

    const second = deltaPush(v1, v2);
    h.session.receive(second);
    h.applying[1]!.finish(
      applied(v2, {
        outcome: 'rejected',
        error: new HaproxyConfigError('the config is invalid', 'line 3: unknown', []),
      }),
    );
    await settle();
    expect(h.sent[2]).toEqual({
      nack: {
        version: v2.version,
        nonce: second.push!.nonce,
        reason: 'the config is invalid',
        haproxyOutput: 'line 3: unknown',
        runningVersion: v1.version,
        refusals: [],
      },
    });
    expect(h.stats).toEqual({ pushes: 2, full: 1, deltas: 1, resyncs: 0, cut: 0 });
  });

  test('latest wins: a push superseded while another applies is neither applied nor answered', async () => {
    const h = harness();
    h.session.start();
    h.session.receive(fullPush(v1));
    h.session.receive(deltaPush(v1, v2));
    const last = deltaPush(v2, v3);
    h.session.receive(last);
    expect(h.logs.map((l) => l.msg)).toContain('push superseded before it was applied; not answering it');
    h.applying[0]!.finish(applied(v1));
    await settle();
    expect(h.applying.map((a) => a.state.version)).toEqual([v1.version, v3.version]);
    h.applying[1]!.finish(new Error('socket gone'));
    await settle();
    expect(h.sent.slice(1).map((m) => m.ack?.version ?? m.nack?.nonce)).toEqual([v1.version, last.push!.nonce]);
    expect(h.sent[2]!.nack).toMatchObject({ reason: 'socket gone', haproxyOutput: '', runningVersion: v1.version });
  });

  test("the change trace: an ACK names the changes of its push and of those it superseded, each with its wait on this agent's clock", async () => {
    let release: (() => void) | undefined;
    const h = harness({
      // The counters after the apply take 40 ms: the ACK says the apply ended that long ago.
      counters: () => new Promise((resolve) => (release = () => resolve(counters(1)))),
    });
    h.session.start();
    const withIds = (m: ControlMessage, ids: string[]) => ({ push: { ...m.push!, changeIds: ids } });
    h.session.receive(withIds(fullPush(v1), ['c-1']));
    await h.clock.advanceAsync(100);
    h.session.receive(withIds(deltaPush(v1, v2), ['c-2', 'c-3']));
    await h.clock.advanceAsync(50);
    h.session.receive(withIds(deltaPush(v2, v3), ['c-3', 'c-4'])); // supersedes v2 unapplied; c-3 keeps its arrival
    await h.clock.advanceAsync(10);
    h.applying[0]!.finish(applied(v1));
    await settle();
    release!();
    await settle();
    expect(h.sent[1]!.ack).toMatchObject({
      version: v1.version,
      changes: [{ id: 'c-1', queuedMs: 160 }],
      appliedAgoMs: 0,
    });
    await h.clock.advanceAsync(20);
    h.applying[1]!.finish(applied(v3));
    await settle();
    await h.clock.advanceAsync(40);
    release!();
    await settle();
    expect(h.sent[2]!.ack).toMatchObject({
      version: v3.version,
      changes: [
        { id: 'c-2', queuedMs: 80 },
        { id: 'c-3', queuedMs: 80 },
        { id: 'c-4', queuedMs: 30 },
      ],
      appliedAgoMs: 40,
    });
  });

  test('a push that does not fit asks for one resync; deltas are ignored until the full push comes', async () => {
    const h = harness();
    h.session.start();
    const stray = deltaPush(v1, v2); // builds on v1, which this agent does not hold
    h.session.receive(stray);
    expect(h.sent[1]!.resync).toMatchObject({ nonce: stray.push!.nonce });
    h.session.receive(deltaPush(v2, v3));
    expect(h.sent).toHaveLength(2);
    expect(h.applying).toHaveLength(0);
    h.session.receive(fullPush(v3));
    expect(h.applying.map((a) => a.state)).toEqual([v3]);
    expect(h.stats).toEqual({ pushes: 3, full: 1, deltas: 0, resyncs: 1, cut: 0 });
  });

  test('answerAgain answers the last push again after a retry, until the stream is superseded', async () => {
    const h = harness();
    h.session.start();
    const push = fullPush(v1);
    h.session.receive(push);
    h.applying[0]!.finish(applied(v1, { outcome: 'rejected', error: new HaproxyConfigError('port taken', '', []) }));
    await settle();
    expect(h.sent[1]!.nack).toBeDefined();
    await h.session.answerAgain(applied(v2)); // not the last push's version
    expect(h.sent).toHaveLength(2);
    await h.session.answerAgain(applied(v1));
    expect(h.sent[2]!.ack).toMatchObject({ version: v1.version, nonce: push.push!.nonce });
    h.session.supersede();
    await h.session.answerAgain(applied(v1));
    expect(h.sent).toHaveLength(3);
  });

  test('answers state and preflight requests', async () => {
    const h = harness({
      reportState: async () => 'HAProxy is not running',
      preflight: async () => ({
        ok: false,
        method: 'reload',
        reasons: ['a new service'],
        problems: [{ service: 'web', where: 'service web', message: 'bad option' }],
      }),
    });
    h.session.start();
    expect(h.session.hello.capabilities).toEqual(['settings', 'preflight']);
    h.session.receive({ stateRequest: { id: 's1' } });
    h.session.receive({ preflightRequest: { id: 'p1', state: toProto(v1) } });
    h.session.receive({ preflightRequest: { id: 'p2', state: undefined } });
    await settle();
    // The request without a state is answered at once; the others once their hooks have answered.
    expect(h.sent.slice(1)).toEqual([
      {
        preflightReport: {
          id: 'p2',
          ok: false,
          error: 'preflight request without a state',
          haproxyOutput: '',
          method: ApplyMethod.APPLY_METHOD_UNSPECIFIED,
          reasons: [],
          rejectedServices: [],
          warnings: [],
          wholeConfig: true,
        },
      },
      { stateReport: { id: 's1', servers: [], error: 'HAProxy is not running', runningVersion: '' } },
      {
        preflightReport: {
          id: 'p1',
          ok: false,
          error: '',
          haproxyOutput: '',
          method: ApplyMethod.APPLY_METHOD_RELOAD,
          reasons: ['a new service'],
          rejectedServices: ['web'],
          warnings: ['service web: bad option'],
          wholeConfig: false,
        },
      },
    ]);
  });
});

describe('HeldAcrossStreams', () => {
  test('a push taken but never applied is not declared by the next stream: what runs is', async () => {
    const holding = new HeldAcrossStreams(() => v1);
    const h = harness({}, holding);
    expect(h.session.hello.baseVersion).toBe(v1.version);
    h.session.start();
    h.session.receive(deltaPush(v1, v2));
    h.session.end(); // the stream ends while v2 applies
    const next = holding.forStream();
    expect(next.unapplied).toBe(v2.version);
    expect(next.held.version).toBe(v1.version); // read again from what runs (the disk cache)
    h.applying[0]!.finish(applied(v2));
    await settle();
    expect(holding.forStream().unapplied).toBeUndefined();
  });
});

describe('stream messages', () => {
  test('the stats interval AgentSettings ask for', () => {
    expect(statsIntervalOf(0)).toBe(STATS_INTERVAL_MS);
    expect(statsIntervalOf(1)).toBe(200);
    expect(statsIntervalOf(1_500)).toBe(1_500);
  });
});
