import {
  command,
  EMPTY_DOC,
  FleetAgent,
  FleetDoc,
  onRevision,
  PolicyDoc,
  releaseOrder,
  releasedRevision,
  setPolicy,
  step,
} from '../../../controlplane/rollout/engine';
import {
  composeState,
  describeChanges,
  revisionOf,
  selectorMatches,
  serviceRemovalsOf,
} from '../../../controlplane/rollout/revision';
import { revisionOfVersion } from '../../../common/protocol/revision-id';
import { DesiredState } from '../../../common/protocol/types';

const POLICY: PolicyDoc = { waves: ['1', '10%', '50%', '100%'], bakeMs: 300, maxNacks: 0, autoRollback: true };
const ids = (n: number) => Array.from({ length: n }, (_, i) => `a${String(i).padStart(2, '0')}`);

/** A simulated fleet: agents run a revision; `ackAll` makes every agent released the target run it. */
function fleetOf(
  running: Record<string, string>,
  nacks: Record<string, { revision: string; error: string }> = {},
): Map<string, FleetAgent> {
  return new Map(
    Object.entries(running).map(([id, rev]) => [
      id,
      { nodeId: id, runningRevision: rev, ...(nacks[id] ? { lastNack: { ...nacks[id], at: 1e15 } } : {}) },
    ]),
  );
}

function start(n: number, policy = POLICY): { doc: FleetDoc; running: Record<string, string> } {
  let doc = onRevision(EMPTY_DOC, 'r1', policy, 0);
  const running = Object.fromEntries(ids(n).map((id) => [id, 'r1']));
  doc = onRevision(doc, 'r2', policy, 1000);
  return { doc, running };
}

/** Lets agents apply what is released to them, steps, advances time past bakes; returns the wave sizes seen. */
function drive(
  doc: FleetDoc,
  running: Record<string, string>,
  t0: number,
  maxSteps = 50,
): { doc: FleetDoc; t: number } {
  let t = t0;
  for (let i = 0; i < maxSteps && doc.current && ['running'].includes(doc.current.state); i++) {
    for (const id of Object.keys(running)) running[id] = releasedRevision(doc, id);
    const r = step(doc, fleetOf(running), t);
    doc = r.doc;
    t = r.wakeAt ?? t + 1;
  }
  return { doc, t };
}

describe('rollout engine', () => {
  test('the first revision is released at once; later ones wait for a rollout', () => {
    const d1 = onRevision(EMPTY_DOC, 'r1', POLICY, 0);
    expect(d1.stable).toBe('r1');
    expect(d1.current).toBeUndefined();
    const d2 = onRevision(d1, 'r2', POLICY, 5);
    expect(d2.current?.state).toBe('running');
    expect(releasedRevision(d2, 'a00')).toBe('r1');
  });

  test('spread_by: every wave takes agents round-robin over the label values; without it, node-id order', () => {
    const zones: Record<string, string> = {
      a00: 'z1',
      a01: 'z1',
      a02: 'z1',
      a03: 'z1',
      a04: 'z2',
      a05: 'z2',
      a06: 'z3',
      a07: 'z3',
      a08: 'z3',
      a09: '',
    };
    const fleet = new Map<string, FleetAgent>(
      Object.entries(zones).map(([id, z]) => [
        id,
        { nodeId: id, runningRevision: 'r1', ...(z ? { labels: { zone: z } } : {}) },
      ]),
    );
    expect(releaseOrder([...fleet.keys()].reverse(), fleet)).toEqual([
      'a00',
      'a01',
      'a02',
      'a03',
      'a04',
      'a05',
      'a06',
      'a07',
      'a08',
      'a09',
    ]);
    // Groups in label order (agents without the label last), each by node id.
    expect(releaseOrder([...fleet.keys()], fleet, 'zone')).toEqual([
      'a00',
      'a04',
      'a06',
      'a09',
      'a01',
      'a05',
      'a07',
      'a02',
      'a08',
      'a03',
    ]);

    const policy = { ...POLICY, waves: ['1', '40%', '100%'], bakeMs: 0, spreadBy: 'zone' };
    let doc = onRevision(onRevision(EMPTY_DOC, 'r1', policy, 0), 'r2', policy, 1000);
    const running = Object.fromEntries(Object.keys(zones).map((id) => [id, 'r1']));
    const fleetNow = () => new Map([...fleet].map(([id, a]) => [id, { ...a, runningRevision: running[id]! }]));
    for (let t = 1000; doc.current?.state === 'running' && t < 1010; t++) {
      for (const id of Object.keys(running)) running[id] = releasedRevision(doc, id);
      doc = step(doc, fleetNow(), t).doc;
    }
    expect(doc.current!.state).toBe('completed');
    const waveZones = doc.current!.waves.map((w) =>
      w.agents
        .map((id) => zones[id] || '-')
        .sort()
        .join(','),
    );
    expect(waveZones).toEqual(['z1', 'z1,z2,z3', '-,z1,z1,z2,z3,z3']); // each wave spreads what is left over every zone
  });

  test('default waves over 20 agents: 1, 2 (10 %), 10 (50 %), 20 (100 %), each after ACKs and the bake time', () => {
    const { doc: d0, running } = start(20);
    let doc = step(d0, fleetOf(running), 1000).doc;
    expect(doc.current!.waves.map((w) => w.agents.length)).toEqual([1]);
    expect(releasedRevision(doc, 'a00')).toBe('r2');
    expect(releasedRevision(doc, 'a01')).toBe('r1');
    // Canary has not ACKed: nothing moves however long we wait.
    expect(step(doc, fleetOf(running), 999_999).doc.current!.waves).toHaveLength(1);
    running['a00'] = 'r2';
    const acked = step(doc, fleetOf(running), 2000);
    expect(acked.wakeAt).toBe(2300);
    expect(acked.doc.current!.waves).toHaveLength(1);
    doc = step(acked.doc, fleetOf(running), 2299).doc;
    expect(doc.current!.waves).toHaveLength(1);
    doc = step(doc, fleetOf(running), 2300).doc;
    expect(doc.current!.waves.map((w) => w.agents.length)).toEqual([1, 1]);
    const end = drive(doc, running, 2301);
    expect(end.doc.current!.state).toBe('completed');
    expect(end.doc.current!.waves.map((w) => [w.spec, w.agents.length])).toEqual([
      ['1', 1],
      ['10%', 1],
      ['50%', 8],
      ['100%', 10],
    ]);
    expect(end.doc.stable).toBe('r2');
    expect(end.doc.history[0]!.counts).toEqual({ total: 20, acked: 20, nacked: 0 });
    const w = end.doc.current!.waves;
    for (let i = 1; i < w.length; i++) expect(w[i]!.startedAt).toBeGreaterThanOrEqual(w[i - 1]!.ackedAt! + 300);
  });

  test('5 agents: a 10 % wave that adds nobody is skipped', () => {
    const { doc, running } = start(5);
    const end = drive(step(doc, fleetOf(running), 1000).doc, running, 1000);
    expect(end.doc.current!.waves.map((w) => [w.spec, w.agents.length])).toEqual([
      ['1', 1],
      ['50%', 2],
      ['100%', 2],
    ]);
  });

  test('a NACK halts and rolls back: only the canary ever had the revision', () => {
    const { doc: d0, running } = start(6);
    const doc = step(d0, fleetOf(running), 1000).doc;
    const after = step(doc, fleetOf(running, { a00: { revision: 'r2', error: "unknown keyword 'bogus'" } }), 1100).doc;
    expect(after.current!.state).toBe('rolled_back');
    expect(after.current!.reason).toMatch(/a00: unknown keyword 'bogus'/);
    expect(after.current!.results['a00']).toMatchObject({ status: 'nacked' });
    for (const id of ids(6)) expect(releasedRevision(after, id)).toBe('r1');
    expect(after.stable).toBe('r1');
    // The same revision coming back from discovery does not restart the rollout.
    expect(onRevision(after, 'r2', POLICY, 2000)).toBe(after);
  });

  test('without auto-rollback a NACK halts and the canary keeps the revision; resume forgives it', () => {
    const { doc: d0, running } = start(4, { ...POLICY, autoRollback: false });
    const doc = step(d0, fleetOf(running), 1000).doc;
    const nack = { a00: { revision: 'r2', error: 'bad' } };
    const halted = step(doc, fleetOf(running, nack), 1100).doc;
    expect(halted.current!.state).toBe('halted');
    expect(releasedRevision(halted, 'a00')).toBe('r2');
    const resumed = command(halted, 'resume', 1200);
    const next = step(resumed, fleetOf(running, nack), 1300);
    expect(next.doc.current!.state).toBe('running');
    // Nobody ACKed yet, so the rollout does not move on to 10 %: another canary gets the revision.
    expect(next.doc.current!.waves.map((w) => [w.spec, w.agents])).toEqual([
      ['1', ['a00']],
      ['1', ['a01']],
    ]);
    expect(next.wakeAt).toBeUndefined();
  });

  test('pause holds the next wave, resume continues, abort rolls everyone back', () => {
    const { doc: d0, running } = start(10);
    let doc = step(d0, fleetOf(running), 1000).doc;
    running['a00'] = 'r2';
    doc = command(doc, 'pause', 1001);
    doc = step(doc, fleetOf(running), 99_999).doc;
    expect(doc.current!.state).toBe('paused');
    expect(doc.current!.waves).toHaveLength(1);
    expect(releasedRevision(doc, 'a00')).toBe('r2'); // paused agents keep it
    doc = command(doc, 'resume', 100_000);
    doc = step(doc, fleetOf(running), 100_001).doc;
    doc = step(doc, fleetOf(running), 100_400).doc;
    expect(doc.current!.waves).toHaveLength(2);
    doc = command(doc, 'abort', 100_500);
    expect(doc.current!.state).toBe('aborted');
    for (const id of ids(10)) expect(releasedRevision(doc, id)).toBe('r1');
    expect(() => command(doc, 'pause', 100_600)).toThrow(/no rollout is in progress/);
  });

  test('promote releases to every agent at once', () => {
    const { doc: d0, running } = start(10);
    let doc = step(d0, fleetOf(running), 1000).doc;
    doc = step(command(doc, 'promote', 1001), fleetOf(running), 1002).doc;
    expect(doc.current!.waves.map((w) => w.agents.length)).toEqual([1, 9]);
    for (const id of ids(10)) running[id] = 'r2';
    expect(step(doc, fleetOf(running), 1003).doc.current!.state).toBe('completed');
  });

  test('a revision that removes services waits for an operator: nobody gets it until resume (waves) or promote', () => {
    let doc = onRevision(EMPTY_DOC, 'r1', POLICY, 0);
    const running = Object.fromEntries(ids(10).map((id) => [id, 'r1']));
    doc = onRevision(doc, 'r2', POLICY, 1000, ['service api removed'], ['api']);
    expect(doc.current).toMatchObject({
      state: 'paused',
      reason: expect.stringMatching(/removes 1 service\(s\) \(api\)/),
    });
    for (let t = 1001; t < 100_000; t += 5000) doc = step(doc, fleetOf(running), t).doc;
    expect(doc.current!.waves).toHaveLength(0);
    for (const id of ids(10)) expect(releasedRevision(doc, id)).toBe('r1');
    // resume: waves as usual, the canary first.
    const resumed = step(command(doc, 'resume', 100_000), fleetOf(running), 100_001).doc;
    expect(resumed.current!.waves.map((w) => w.agents.length)).toEqual([1]);
    // promote: every agent at once.
    const promoted = step(command(doc, 'promote', 100_000), fleetOf(running), 100_001).doc;
    expect(promoted.current!.waves.map((w) => w.agents.length)).toEqual([10]);
    // abort: the services stay.
    expect(command(doc, 'abort', 100_000).stable).toBe('r1');
    // A policy change (twice) keeps it waiting, and still saying why.
    const changed = setPolicy(
      setPolicy(doc, { bakeMs: 5 }, false, POLICY, 100_000),
      { bakeMs: 6 },
      false,
      POLICY,
      100_001,
    );
    expect(changed.current).toMatchObject({
      state: 'paused',
      reason: expect.stringMatching(
        /^waiting for an operator: removes 1 service\(s\) \(api\).* \(policy changed by operator\)$/,
      ),
    });
    expect(changed.current!.reason.match(/policy changed/g)).toHaveLength(1);
    // Without confirmation (or with nothing removed), a rollout starts running.
    const off = onRevision(
      onRevision(EMPTY_DOC, 'r1', POLICY, 0),
      'r2',
      { ...POLICY, confirmServiceRemovals: false },
      1000,
      [],
      ['api'],
    );
    expect(off.current!.state).toBe('running');
    expect(
      onRevision(onRevision(EMPTY_DOC, 'r1', POLICY, 0), 'r2', POLICY, 1000, ['service api added'], []).current!.state,
    ).toBe('running');
  });

  test('a newer revision supersedes the rollout and starts again from the stable revision; agents joining mid-rollout get the stable one', () => {
    const { doc: d0, running } = start(4);
    let doc = step(d0, fleetOf(running), 1000).doc;
    doc = onRevision(doc, 'r3', POLICY, 1500);
    expect(doc.history[0]).toMatchObject({ to: 'r2', state: 'superseded' });
    expect(doc.current).toMatchObject({ from: 'r1', to: 'r3', state: 'running' });
    expect(releasedRevision(doc, 'a00')).toBe('r1');
    doc = step(doc, fleetOf(running), 1600).doc;
    expect(releasedRevision(doc, 'a00')).toBe('r3');
    expect(releasedRevision(doc, 'late')).toBe('r1');
    // Reverting to the stable revision just ends the rollout.
    const reverted = onRevision(doc, 'r1', POLICY, 1700);
    expect(reverted.current!.state).toBe('superseded');
    expect(releasedRevision(reverted, 'a00')).toBe('r1');
  });

  // Issue 9b: a rollout that saw no agent completed at once and its revision became stable: every agent that
  // reconnected got it, no canary.
  test('no agent connected: the rollout waits (and says why) instead of completing; the first agent to come is the canary', () => {
    const { doc: d0 } = start(0);
    const empty = step(d0, new Map(), 1000);
    expect(empty.doc.current!.state).toBe('running');
    expect(empty.doc.stable).toBe('r1');
    expect(empty.doc.current!.waves).toHaveLength(0);
    expect(empty.doc.current!.pending).toEqual(POLICY.waves);
    expect(empty.doc.current!.reason).toMatch(
      /waiting for an agent to ACK r2 before wave 1 starts: no agent is connected/,
    );
    // Waiting writes nothing new on every step.
    expect(step(empty.doc, new Map(), 5000).doc).toBe(empty.doc);
    expect(releasedRevision(empty.doc, 'a00')).toBe('r1');

    const running: Record<string, string> = Object.fromEntries(ids(10).map((id) => [id, 'r1']));
    const doc = step(empty.doc, fleetOf(running), 6000).doc;
    expect(doc.current!.waves.map((w) => w.agents.length)).toEqual([1]);
    expect(releasedRevision(doc, 'a01')).toBe('r1');
    const end = drive(doc, running, 6001);
    expect(end.doc.current!.state).toBe('completed');
    expect(end.doc.stable).toBe('r2');
  });

  test('a canary that leaves before ACKing does not advance the rollout: another canary is taken, or it waits', () => {
    const { doc: d0, running } = start(3);
    let doc = step(d0, fleetOf(running), 1000).doc;
    expect(doc.current!.waves[0]!.agents).toEqual(['a00']);
    delete running['a00'];
    doc = step(doc, fleetOf(running), 1100).doc;
    expect(doc.current!.waves.map((w) => [w.spec, w.agents])).toEqual([
      ['1', ['a00']],
      ['1', ['a01']],
    ]);
    expect(doc.current!.reason).toMatch(
      /wave 1 ended without an ACK \(its 1 agent\(s\) disconnected\); wave 2 \(1\) released to 1 agent/,
    );
    expect(releasedRevision(doc, 'a02')).toBe('r1');
    // The replacement leaves too, and the last agent disconnects: nothing completes, the rollout waits.
    doc = step(doc, new Map(), 1200).doc;
    expect(doc.current!.state).toBe('running');
    expect(doc.stable).toBe('r1');
    expect(doc.current!.reason).toMatch(
      /waiting for an agent to ACK r2: wave 2 ended without an ACK .* no other agent is connected/,
    );
    // The old canary comes back, gets the revision it was released, ACKs: the rollout goes on (after the bake).
    const back = { a00: 'r2', a02: 'r1' };
    const r = step(doc, fleetOf(back), 1300);
    expect(r.doc.current!.waves).toHaveLength(2);
    expect(r.wakeAt).toBe(1600);
  });

  test('promote with no agent connected does not complete the rollout either', () => {
    const { doc: d0 } = start(0);
    const doc = step(command(step(d0, new Map(), 1000).doc, 'promote', 1001), new Map(), 1002).doc;
    expect(doc.current!.state).toBe('running');
    expect(doc.stable).toBe('r1');
  });

  test('every wave after an ACK: agents of later waves that disconnect are not waited for', () => {
    const { doc: d0, running } = start(4, { ...POLICY, waves: ['1', '2', '100%'] });
    let doc = step(d0, fleetOf(running), 1000).doc;
    running['a00'] = 'r2';
    doc = step(step(doc, fleetOf(running), 1100).doc, fleetOf(running), 1400).doc;
    expect(doc.current!.waves.map((w) => w.agents)).toEqual([['a00'], ['a01', 'a02']]);
    delete running['a01'];
    delete running['a02'];
    doc = step(doc, fleetOf(running), 1500).doc;
    doc = step(doc, fleetOf(running), 1800).doc;
    expect(doc.current!.waves.map((w) => w.agents)).toEqual([['a00'], ['a01', 'a02'], ['a03']]);
  });

  test('policy changes: next rollout, and the current one', () => {
    let doc = onRevision(EMPTY_DOC, 'r1', POLICY, 0);
    doc = setPolicy(doc, { waves: ['50%', '100%'], bakeMs: 0 }, true, POLICY, 1);
    doc = onRevision(doc, 'r2', POLICY, 2);
    expect(doc.current!.policy).toMatchObject({ waves: ['50%', '100%'], bakeMs: 0 });
    expect(doc.nextPolicy).toBeUndefined();
    doc = setPolicy(doc, { maxNacks: 3 }, false, POLICY, 3);
    expect(doc.current!.policy.maxNacks).toBe(3);
    expect(() => setPolicy(doc, { waves: ['x'] }, false, POLICY, 4)).toThrow(/expected a number of agents/);
  });
});

describe('revisions', () => {
  const state = (listen: string[], servers: number): DesiredState => ({
    version: 'x',
    haproxy: { global: [], defaults: ['mode http'] },
    services: [
      {
        name: 'web',
        port: 80,
        bindAddress: '0.0.0.0',
        listenOptions: listen,
        serverOptions: [],
        servers: Array.from({ length: servers }, (_, i) => ({
          name: `s${i}`,
          address: '10.0.0.1',
          port: 8000 + i,
          weight: 1,
          options: [],
        })),
      },
      { name: 'eu', port: 81, bindAddress: '0.0.0.0', listenOptions: [], serverOptions: [], servers: [] },
    ],
  });
  const sel = (n: string) => (n === 'eu' ? { zone: 'eu' } : undefined);

  test('hosts are not part of a revision; shapes and selectors are', () => {
    expect(revisionOf(state(['mode http'], 1), sel).id).toBe(revisionOf(state(['mode http'], 5), sel).id);
    expect(revisionOf(state(['mode http'], 1), sel).id).not.toBe(revisionOf(state(['mode tcp'], 1), sel).id);
    expect(revisionOf(state(['mode http'], 1), sel).id).not.toBe(
      revisionOf(state(['mode http'], 1), () => undefined).id,
    );
    expect(
      describeChanges(
        revisionOf(state(['mode http'], 1), sel),
        revisionOf(state(['mode tcp'], 1), () => undefined),
      ),
    ).toEqual(['agents of eu changed', 'listen_options of web changed']);
  });

  test('an agent gets the services whose selector matches its labels, with the current hosts; the version names the revision', () => {
    const rev = revisionOf(state([], 0), sel);
    const hosts = state([], 3).services[0]!.servers;
    const us = composeState(rev, { zone: 'us' }, (n) => (n === 'web' ? hosts : []));
    const eu = composeState(rev, { zone: 'eu', rack: '1' }, (n) => (n === 'web' ? hosts : []));
    expect(us.services.map((s) => s.name)).toEqual(['web']);
    expect(eu.services.map((s) => s.name)).toEqual(['eu', 'web']);
    expect(us.services[0]!.servers).toHaveLength(3);
    expect(revisionOfVersion(us.version)).toBe(rev.id);
    expect(revisionOfVersion('0123456789abcdef')).toBe('');
    expect(selectorMatches({ zone: 'eu' }, {})).toBe(false);
  });

  test('what a revision takes from agents: services removed, and a selector narrowed away from agents that had it', () => {
    const before = revisionOf(state([], 0), () => undefined); // web and eu on every agent
    const narrowed = revisionOf(state([], 0), sel); // eu only on zone=eu agents
    const agents = [{ zone: 'eu' }, { zone: 'us' }, { zone: 'us' }];
    expect(serviceRemovalsOf(before, narrowed, agents)).toEqual(['eu (from 2 agent(s))']);
    expect(serviceRemovalsOf(narrowed, before, agents)).toEqual([]); // widened: nobody loses it
    const withoutEu = { ...before, id: 'x', services: before.services.filter((x) => x.name !== 'eu') };
    expect(serviceRemovalsOf(before, withoutEu, agents)).toEqual(['eu']);
  });
});
