import { FakeClock } from '../../../testkit/fake-clock';
import { resourceSet } from '../../../common/protocol/resources';
import { DesiredState } from '../../../common/protocol/types';
import { AppliedReport, ChangeTrace } from '../../../controlplane/trace/change-trace';
import { changeDetail, listChanges, quantile } from '../../../controlplane/trace/change-summary';
import { changesBetween, PendingSource } from '../../../controlplane/trace/source-changes';
import { server, service, state } from '../../../testkit/agent';

const web1 = service('web', 8080, [server('a', 9001)]);
const web2 = service('web', 8080, [server('a', 9001), server('b', 9002)]);
const web3 = service('web', 8080, [server('b', 9002)]);
const api = service('api', 8081, [server('a', 9101)]);
const resources = (s: DesiredState) => resourceSet(s).resources;
const report = (at: number, extra: Partial<AppliedReport> = {}): AppliedReport => ({
  method: 'runtime',
  at,
  queued: new Map(),
  refusals: new Map(),
  ...extra,
});

describe('changesBetween: what discovery saw change, service by service, and when at its source', () => {
  const zk: PendingSource = { source: 'zookeeper', time: { at: 1_000, kind: 'source' } };

  test('a host change, a config change, an added and a removed service; the first state is no change', () => {
    const before = state([web1, api]);
    const withOption = service('api', 8081, [server('a', 9101)], { listenOptions: ['mode tcp', 'retries 3'] });
    const after = state([web2, withOption, service('db', 5432, [server('d', 9201)])]);
    expect(changesBetween(undefined, after, () => zk, 5_000)).toEqual([]);
    const changes = changesBetween(before, after, (s) => (s === 'web' ? zk : undefined), 5_000);
    expect(changes.map((c) => [c.service, c.source, c.what, c.sourceTime])).toEqual([
      ['web', 'zookeeper', 'hosts +1 -0 (1 → 2)', { at: 1_000, kind: 'source' }],
      ['api', 'config', 'config', { at: 5_000, kind: 'observed' }],
      ['db', 'config', 'service added (1 hosts)', { at: 5_000, kind: 'observed' }],
    ]);
    const removed = changesBetween(after, state([web2]), () => undefined, 6_000);
    expect(removed.map((c) => [c.service, c.source, c.version])).toEqual([
      ['api', 'removed', ''],
      ['db', 'removed', ''],
    ]);
  });

  test("a source time after this control plane saw the change (the source's clock ahead) is replaced, marked skewed", () => {
    const ahead: PendingSource = { source: 'zookeeper', time: { at: 9_000, kind: 'source' } };
    const [c] = changesBetween(state([web1]), state([web2]), () => ahead, 5_000);
    expect(c!.sourceTime).toEqual({ at: 5_000, kind: 'skewed' });
  });

  test('hosts that became unknown (discovery cannot read them) are said so, not taken for a config change', () => {
    const unknown = service('web', 8080, [server('a', 9001)], { hosts: 'unknown' });
    const reported = service('web', 8080, [server('a', 9001)], { hosts: 'reported' });
    const [c] = changesBetween(state([reported]), state([unknown]), () => undefined, 5_000);
    expect(c!.what).toBe('hosts unknown (1)');
  });

  test('an unchanged service is no change', () => {
    expect(changesBetween(state([web1, api]), state([web1, api]), () => zk, 5_000)).toEqual([]);
  });
});

describe('ChangeTrace', () => {
  const setup = () => {
    const clock = new FakeClock(10_000);
    const samples: [string, number][] = [];
    const trace = new ChangeTrace({ clock, onApplied: (m, s) => void samples.push([m, s]) });
    const record = (from: DesiredState, to: DesiredState, at: number, nodes = ['n1', 'n2']) =>
      trace.record(
        changesBetween(from, to, () => ({ source: 'zookeeper', time: { at, kind: 'source' } }), clock.now()),
        () => nodes,
      );
    return { clock, trace, samples, record };
  };

  test('a change is applied by each agent that ACKs a state with it; times from the source on the control plane clock', () => {
    const { trace, samples, record } = setup();
    const s1 = state([web1]);
    const s2 = state([web2]);
    const [c] = record(s1, s2, 9_990);
    expect(c!.id).toMatch(/^[0-9a-f]{6}-1$/);
    expect(trace.covered('n1', resources(s1))).toEqual([]); // the old state does not bring it
    expect(trace.covered('n1', resources(s2)).map((x) => x.id)).toEqual([c!.id]);
    trace.applied('n1', resources(s2), report(10_020, { queued: new Map([[c!.id, 7]]) }));
    expect(trace.oldestUnappliedMs(() => true)).toBe(10); // n2 is behind: 10,000 − 9,990
    trace.applied('n2', resources(s2), report(10_090, { method: 'reload' }));
    expect(samples).toEqual([
      ['runtime', 0.03],
      ['reload', 0.1],
    ]);
    const list = listChanges(trace, 10, () => true);
    expect(list.changes[0]).toMatchObject({ applied: 2, expected: 2, p50Ms: 30, p99Ms: 100, maxMs: 100 });
    expect(list.changes[0]!.slowest).toEqual(['n2', 'n1']);
    expect(list.oldestUnappliedSeconds).toBe(0);
    expect(changeDetail(c!, () => true).agents.map((a) => [a.nodeId, a.state, a.method, a.queuedMs])).toEqual([
      ['n2', 'applied', 'reload', 0],
      ['n1', 'applied', 'runtime', 7],
    ]);
    // An ACK again (a retry) does not count it twice.
    trace.applied('n1', resources(s2), report(10_500));
    expect(trace.get(c!.id)!.times).toEqual([30, 100]);
  });

  test('changes coalesced into one state are each applied by it, earlier versions of the service included', () => {
    const { trace, record } = setup();
    const [a] = record(state([web1]), state([web2]), 9_000);
    const [b] = record(state([web2]), state([web3]), 9_500);
    expect(trace.covered('n1', resources(state([web3]))).map((c) => c.id)).toEqual([a!.id, b!.id]);
    trace.applied('n1', resources(state([web3])), report(10_000));
    expect(trace.get(a!.id)!.times).toEqual([1_000]);
    expect(trace.get(b!.id)!.times).toEqual([500]);
    // A state at the first change's version brings only the first.
    expect(trace.covered('n2', resources(state([web2]))).map((c) => c.id)).toEqual([a!.id]);
  });

  test('a NACK refuses what the state would have brought; a later ACK of it applies it; a left-out service is refused', () => {
    const { trace, record } = setup();
    const [c] = record(state([web1, api]), state([web2, api]), 9_000);
    trace.refused('n1', resources(state([web2, api])), 'haproxy -c: line 3: unknown keyword');
    trace.applied('n2', resources(state([web2, api])), report(10_000, { refusals: new Map([['web', 'port in use']]) }));
    let s = listChanges(trace, 10, () => true).changes[0]!;
    expect(s).toMatchObject({ applied: 0, refused: 2 });
    expect(s.refusals.map((r) => [r.nodeId, r.message])).toEqual([
      ['n1', 'haproxy -c: line 3: unknown keyword'],
      ['n2', 'port in use'],
    ]);
    trace.applied('n1', resources(state([web2, api])), report(10_100));
    s = listChanges(trace, 10, () => true).changes[0]!;
    expect(s).toMatchObject({ applied: 1, refused: 1 });
    expect(trace.get(c!.id)!.marks.get('n1')!.state).toBe('applied');
  });

  test('the oldest unapplied change ages only while a connected agent is behind; disconnected ones are listed behind', () => {
    const { clock, trace, record } = setup();
    record(state([web1]), state([web2]), 9_000, ['n1']);
    clock.advance(5_000);
    expect(trace.oldestUnappliedMs(() => true)).toBe(6_000);
    expect(trace.oldestUnappliedMs(() => false)).toBe(0);
    expect(listChanges(trace, 10, () => false).changes[0]!.behind).toEqual(['n1']);
  });

  test('only `keep` changes are kept; older changes keep pending and refused agents but not applied ones', () => {
    const clock = new FakeClock(10_000);
    const trace = new ChangeTrace({ clock, keep: 3, detailed: 1 });
    let from = state([service('web', 8080, [server('a', 9000)])]);
    const ids: string[] = [];
    for (let i = 1; i <= 5; i++) {
      const to = state([service('web', 8080, [server('a', 9000 + i)])]);
      const [c] = trace.record(
        changesBetween(from, to, () => undefined, clock.now()),
        () => ['n1', 'n2'],
      );
      trace.applied('n1', resources(to), report(clock.now()));
      ids.push(c!.id);
      from = to;
    }
    expect(trace.recent(10).map((c) => c.id)).toEqual(ids.slice(2).reverse());
    const old = trace.get(ids[2]!)!;
    expect([...old.marks.keys()]).toEqual(['n2']); // n1's applied detail dropped; its time kept as quantiles
    expect(old).toMatchObject({ applied: 1, times: [], frozen: { p50: 0, p99: 0, max: 0 } });
    trace.applied('n2', resources(state([service('web', 8080, [server('a', 9003)])])), report(clock.now() + 70));
    expect(old).toMatchObject({ applied: 2, frozen: { p50: 0, p99: 0, max: 70 } });
    expect(trace.get(ids[4]!)!.marks.get('n1')!.state).toBe('applied');
  });

  test('a service every agent refuses while its hosts flap costs one open refusal per agent, and pushes name none of them', () => {
    const { trace } = setup();
    let from = state([service('web', 8080, [server('a', 9000)])]);
    for (let i = 1; i <= 200; i++) {
      const to = state([service('web', 8080, [server('a', 9000 + i)])]);
      trace.record(
        changesBetween(from, to, () => undefined, 10_000),
        () => ['n1'],
      );
      trace.refused('n1', resources(to), 'port in use');
      from = to;
    }
    expect(trace.covered('n1', resources(from), false)).toEqual([]); // what a push names
    expect(trace.covered('n1', resources(from))).toHaveLength(1); // the newest refusal: a later ACK may apply it
    trace.applied('n1', resources(from), report(10_050));
    const newest = trace.recent(1)[0]!;
    expect(newest).toMatchObject({ applied: 1, refused: 0 });
    expect(trace.recent(2)[1]).toMatchObject({ applied: 0, refused: 1 }); // older refusals are final
  });

  test('one service keeps at most perService changes; a forgotten change still pending keeps the age counting', () => {
    const clock = new FakeClock(10_000);
    const trace = new ChangeTrace({ clock, perService: 5 });
    let from = state([service('web', 8080, [server('a', 9000)])]);
    for (let i = 1; i <= 20; i++) {
      const to = state([service('web', 8080, [server('a', 9000 + i)])]);
      trace.record(
        changesBetween(from, to, () => ({ source: 'zookeeper', time: { at: 1_000 * i, kind: 'source' } }), clock.now()),
        () => ['n1'],
      );
      from = to;
    }
    expect(trace.recent(100)).toHaveLength(5);
    expect(trace.oldestUnappliedMs(() => true)).toBe(10_000 - 1_000); // the first change, forgotten, still counts
    trace.applied('n1', resources(from), report(10_000));
    expect(trace.oldestUnappliedMs(() => true)).toBe(0); // caught up with everything still followed
  });

  test('an agent whose every followed pending change was forgotten is caught up by its next ACK, however it came', () => {
    const clock = new FakeClock(10_000);
    const trace = new ChangeTrace({ clock, perService: 2 });
    let from = state([service('web', 8080, [server('a', 9000)])]);
    const step = (i: number, nodes: string[]) => {
      const to = state([service('web', 8080, [server('a', 9000 + i)])]);
      trace.record(
        changesBetween(from, to, () => undefined, clock.now()),
        () => nodes,
      );
      from = to;
    };
    step(1, ['n1']); // pending on n1, which goes away
    for (let i = 2; i <= 6; i++) step(i, []); // the service flaps past the cap while n1 is away
    clock.advance(5_000);
    expect(trace.oldestUnappliedMs(() => true)).toBe(5_000);
    // n1 is back running the newest state (no push brings it a followed change): an ACK of it, or the hello's
    // declaration, is applied() with nothing covered.
    trace.applied('n1', resources(from), report(clock.now(), { method: 'unspecified' }));
    expect(trace.oldestUnappliedMs(() => true)).toBe(0);
  });

  test('messages are kept plain and clipped', () => {
    const { trace, record } = setup();
    const [c] = record(state([web1]), state([web2]), 9_000);
    trace.refused('n1', resources(state([web2])), `bad\u001b[31m ${'x'.repeat(5000)}`);
    const m = c!.marks.get('n1')!.message!;
    expect(m.length).toBeLessThan(340);
    expect(m.includes(String.fromCharCode(0x1b))).toBe(false);
  });

  test('quantile: nearest rank', () => {
    expect(quantile([], 0.5)).toBe(0);
    expect(quantile([1, 2, 3, 4], 0.5)).toBe(2);
    expect(quantile([1, 2, 3, 4], 0.99)).toBe(4);
  });
});
