import { FakeClock } from '../../../testkit/fake-clock';
import { resourceSet } from '../../../common/protocol/resources';
import { DesiredState } from '../../../common/protocol/types';
import { ChangeTrace } from '../../../controlplane/trace/change-trace';
import { listChanges } from '../../../controlplane/trace/change-summary';
import { changesBetween } from '../../../controlplane/trace/source-changes';
import { server, service, state } from '../../../testkit/agent';

const web1 = service('web', 8080, [server('a', 9001)]);
const web2 = service('web', 8080, [server('a', 9001)], { listenOptions: ['mode http', 'retries 3'] });
const web3 = service('web', 8080, [server('a', 9001), server('b', 9002)], {
  listenOptions: ['mode http', 'retries 3'],
});
const resources = (s: DesiredState) => resourceSet(s).resources;
const none = { queued: new Map<string, number>(), refusals: new Map<string, string>() };

/**
 * With rollouts a change is recorded before the revision that has it is released to any agent: each agent is followed
 * from when it is sent a state that brings it (and that it did not hold before).
 */
describe('ChangeTrace: changes released to agents after they were recorded (rollout waves)', () => {
  const setup = (opts: { detailed?: number } = {}) => {
    const clock = new FakeClock(10_000);
    const trace = new ChangeTrace({ clock, ...opts });
    const record = (from: DesiredState, to: DesiredState, expected: string[] = []) =>
      trace.record(
        changesBetween(from, to, () => undefined, clock.now()),
        () => expected,
      );
    return { clock, trace, record };
  };

  test('the canary is followed once sent it and its refusal shows; the others only when their wave comes', () => {
    const { clock, trace, record } = setup();
    const [c] = record(state([web1]), state([web2]));
    expect(c!.expected).toBe(0);
    // Sent the old revision again (an unrelated push): still held back, nothing expected of it.
    trace.released('n1', resources(state([web1])), resources(state([web1])));
    expect(c!.expected).toBe(0);
    expect(trace.covered('n1', resources(state([web2])))).toEqual([]);
    // Wave 1: the canary is sent the new revision, and refuses it.
    clock.advance(1_000);
    trace.released('n1', resources(state([web1])), resources(state([web2])));
    expect(c!.expected).toBe(1);
    expect(trace.oldestUnappliedMs(() => true)).toBe(1_000);
    trace.refused('n1', resources(state([web2])), "unexpected character 's' in 'timeout server'");
    let s = listChanges(trace, 10, () => true).changes[0]!;
    expect(s).toMatchObject({ expected: 1, applied: 0, refused: 1 });
    expect(s.refusals.map((r) => [r.nodeId, r.message])).toEqual([
      ['n1', "unexpected character 's' in 'timeout server'"],
    ]);
    expect(trace.oldestUnappliedMs(() => true)).toBe(0);
    // Released once only: a second push of it does not count it again.
    trace.released('n1', resources(state([web1])), resources(state([web2])));
    expect(c!.expected).toBe(1);
    // Wave 2, after a later host change: a state at the later change's version brings this one too.
    const [d] = record(state([web2]), state([web3]), ['n1']);
    clock.advance(2_000);
    trace.released('n2', resources(state([web1])), resources(state([web3])));
    expect([c!.expected, d!.expected]).toEqual([2, 2]);
    trace.applied('n2', resources(state([web3])), { method: 'reload', at: clock.now(), ...none });
    s = listChanges(trace, 10, () => true).changes[1]!;
    expect(s).toMatchObject({ id: c!.id, expected: 2, applied: 1, refused: 1, maxMs: 3_000 });
    expect(s.behind).toEqual([]);
  });

  test('an agent expected at once is not counted twice; a change no longer among the detailed ones is not followed', () => {
    const { trace, record } = setup({ detailed: 2 });
    const [c] = record(state([web1]), state([web2]), ['n1']);
    trace.released('n1', resources(state([web1])), resources(state([web2])));
    expect(c!.expected).toBe(1);
    record(state([web2]), state([web3]));
    record(state([web3]), state([web1]));
    // c is now the third most recent: n2 sent it only now is not followed.
    trace.released('n2', resources(state([web1])), resources(state([web2])));
    expect(c!.expected).toBe(1);
  });
});
