import { ChangeDetail, ListChangesResponse } from '../../../common/gen/proxymgr/v1/admin';
import { resourceSet } from '../../../common/protocol/resources';
import { DesiredState } from '../../../common/protocol/types';
import { runCtlCommand } from '../../../ctl/ctl';
import { msText } from '../../../common/platform/duration-text';
import { renderChange, renderChanges } from '../../../ctl/render-changes';
import { printableText } from '../../../ctl/table';
import { AppliedReport, ChangeTrace } from '../../../controlplane/trace/change-trace';
import { changeDetail, listChanges } from '../../../controlplane/trace/change-summary';
import { changesBetween } from '../../../controlplane/trace/source-changes';
import { server, service, state } from '../../../testkit/agent';
import { FakeClock } from '../../../testkit/fake-clock';

const web1 = service('web', 8080, [server('a', 9001)]);
const web2 = service('web', 8080, [server('a', 9001), server('b', 9002)]);
const web3 = service('web', 8080, [server('a', 9001), server('b', 9002), server('c', 9003)]);
const resources = (s: DesiredState) => resourceSet(s).resources;
const report = (at: number, extra: Partial<AppliedReport> = {}): AppliedReport => ({
  method: 'runtime',
  at,
  queued: new Map(),
  refusals: new Map(),
  ...extra,
});

/** Two changes of web traced through four agents: the first applied by all, the second by two, one refused it. */
function traced() {
  const clock = new FakeClock(Date.parse('2026-11-30T10:00:00Z'));
  const trace = new ChangeTrace({ clock });
  const nodes = ['n1', 'n2', 'n3', 'n4'];
  const t0 = clock.now();
  const zk = { source: 'zookeeper' as const, time: { at: t0, kind: 'source' as const } };
  const [first] = trace.record(
    changesBetween(state([web1]), state([web2]), () => zk, t0 + 2),
    () => nodes,
  );
  trace.applied('n1', resources(state([web2])), report(t0 + 12, { queued: new Map([[first!.id, 3]]) }));
  trace.applied('n2', resources(state([web2])), report(t0 + 30));
  trace.applied('n3', resources(state([web2])), report(t0 + 8));
  trace.applied('n4', resources(state([web2])), report(t0 + 2400, { method: 'reload' }));
  const t1 = t0 + 5000;
  clock.advance(5000);
  const zk2 = { source: 'zookeeper' as const, time: { at: t1, kind: 'source' as const } };
  const [second] = trace.record(
    changesBetween(state([web2]), state([web3]), () => zk2, t1 + 1),
    () => nodes,
  );
  trace.applied('n1', resources(state([web3])), report(t1 + 40));
  trace.applied('n2', resources(state([web3])), report(t1 + 55));
  trace.refused('n3', resources(state([web3])), "haproxy: unexpected character 's'");
  clock.advance(7000);
  const connected = (n: string) => n !== 'n2';
  return { trace, first: first!, second: second!, connected };
}

describe('ctl changes: recent changes and how far each got', () => {
  test('newest first, "N/M agents applied", p50/p99/max, the slowest, who is behind, who refused and why', () => {
    const { trace, connected } = traced();
    const text = renderChanges(listChanges(trace, 20, connected));
    const lines = text.split('\n');
    expect(lines[0]).toBe('oldest change not yet applied by a connected agent: 7 s old');
    expect(lines[1]).toMatch(
      /^2 changes, newest first; source → applied per agent: ≤10 ms 1, ≤25 ms 1, ≤50 ms 2, ≤100 ms 1, ≤2.5 s 1$/,
    );
    expect(lines[3]).toMatch(/^ID +SERVICE +SOURCE +AT +WHAT +AGENTS +P50 +P99 +MAX +SLOWEST +BEHIND$/);
    // The second change first: two of four applied, one refused, one still behind.
    expect(lines[4]).toMatch(
      /^\w+-2 +web +zookeeper +11-30 10:00:05\.000 source +hosts \+1 -0 \(2 → 3\) +2\/4 agents applied, 1 refused, 1 behind +40 ms +55 ms +55 ms +n2, n1 +n4$/,
    );
    expect(lines[5]).toMatch(
      /^\w+-1 +web +zookeeper +11-30 10:00:00\.000 source +hosts \+1 -0 \(1 → 2\) +4\/4 agents applied +12 ms +2\.4 s +2\.4 s +n4, n2, n1 +-$/,
    );
    expect(text).toMatch(
      /^refused:\nID +SERVICE +AGENT +HAPROXY SAID\n\w+-2 +web +n3 +haproxy: unexpected character 's'$/m,
    );
  });

  test('nothing traced yet, and nothing behind', () => {
    const text = renderChanges(listChanges(new ChangeTrace({ clock: new FakeClock(0) }), 20, () => true));
    expect(text).toBe(
      'every change is applied by the connected agents that should run it\nno changes traced yet (the first state is not a change)\n',
    );
  });

  test('durations read as people read them', () => {
    expect([0.4, 12, 999.6, 1000, 2400, 45_000].map(msText)).toEqual([
      '0.4 ms',
      '12 ms',
      '1 s',
      '1 s',
      '2.4 s',
      '45 s',
    ]);
  });
});

describe('ctl change ID: one change agent by agent', () => {
  test('pending and refused first, then the slowest applied; method, propagation, queued, connected, message', () => {
    const { first, second, connected } = traced();
    const text = renderChange(changeDetail(second, connected));
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^change \w+-2 +service web +source zookeeper +hosts \+1 -0 \(2 → 3\)$/);
    expect(lines[1]).toBe("  at 2026-11-30T10:00:05.000Z  (the source's own time)");
    expect(lines[2]).toBe(
      '  2/4 agents applied, 1 refused, 1 behind; source → applied p50 40 ms, p99 55 ms, max 55 ms',
    );
    expect(lines[4]).toMatch(/^AGENT +STATE +METHOD +PROPAGATION +QUEUED +CONNECTED +MESSAGE$/);
    expect(lines[5]).toMatch(/^n4 +pending +- +- +- +yes *$/);
    expect(lines[6]).toMatch(/^n3 +refused +- +- +- +yes +haproxy: unexpected character 's'$/);
    expect(lines[7]).toMatch(/^n2 +applied +runtime +55 ms +0 ms +no *$/);
    expect(lines[8]).toMatch(/^n1 +applied +runtime +40 ms +0 ms +yes *$/);
    const all = renderChange(changeDetail(first, connected)).split('\n');
    expect(all[2]).toMatch(/^ {2}4\/4 agents applied; /);
    expect(all[5]).toMatch(/^n4 +applied +reload +2\.4 s +0 ms +yes/);
    expect(all[7]).toMatch(/^n1 +applied +runtime +12 ms +3 ms +yes/);
  });
});

describe('text from the fleet cannot drive the terminal nor break the lines', () => {
  const EVIL = 'web\x1b]52;c;ZXZpbA==\x07\nFAKE LINE\x1b[2J\u009b';
  test('service names, node ids, ids and messages from the control plane are printed without control characters', () => {
    const change = {
      id: 'x\x1b[31m-1',
      service: EVIL,
      source: 'zookeeper\x1b[0m',
      what: 'hosts\n+1',
      sourceTime: '2026-11-30T10:00:00.000Z\x1b[2J',
      sourceTimeKind: 'source\x07',
      expected: 2,
      applied: 1,
      refused: 1,
      p50Ms: 1,
      p99Ms: 1,
      maxMs: 1,
      slowest: ['n\x1b[1m1'],
      behind: [],
      refusals: [
        {
          nodeId: 'n\x1b[2J2',
          state: 'refused',
          method: '',
          message: 'bad\x1b[2J\nline',
          propagationMs: 0,
          queuedMs: 0,
          connected: true,
        },
      ],
    };
    const list = printableText(
      renderChanges(ListChangesResponse.fromPartial({ changes: [change], histogramLeMs: [10], histogramCounts: [1] })),
    );
    const one = printableText(
      renderChange(ChangeDetail.fromPartial({ change, agents: [{ ...change.refusals[0]!, nodeId: EVIL }] })),
    );
    for (const text of [list, one]) {
      // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
      expect(text).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
      // A line break inside a name or message is no line of its own.
      expect(text).not.toMatch(/^FAKE LINE/m);
      expect(text).not.toMatch(/^line/m);
    }
    expect(one.split('\n')[0]).toMatch(/^change x \[31m-1 +service web ]52;c;ZXZpbA== +FAKE LINE \[2J /);
  });
});

describe('ctl changes / change ID: usage', () => {
  test('"change" wants one id, "changes" none; --limit must be a number', async () => {
    const err = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      expect(await runCtlCommand(['change'], () => undefined)).toBe(2);
      expect(await runCtlCommand(['changes', 'x'], () => undefined)).toBe(2);
      expect(String(err.mock.calls[0]?.[0])).toMatch(/"changes" or "change ID"/);
      expect(
        await runCtlCommand(['changes', '--limit', 'many', '--controlplane', '127.0.0.1:1'], () => undefined),
      ).toBe(2);
      expect(String(err.mock.calls[2]?.[0])).toMatch(/--limit: expected a non-negative integer/);
    } finally {
      err.mockRestore();
    }
    let help = '';
    expect(await runCtlCommand(['--help'], (s) => (help += s))).toBe(0);
    expect(help).toMatch(/^ {2}changes +recent changes/m);
    expect(help).toMatch(/^ {2}change ID +one change agent by agent/m);
  });
});
