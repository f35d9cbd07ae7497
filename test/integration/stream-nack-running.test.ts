import { FakeClock } from '../../testkit/fake-clock';
import { silentLogger } from '../../common/platform/log';
import { DesiredState } from '../../common/protocol/types';
import { AgentRegistry } from '../../controlplane/grpc/registry';
import { AgentReports } from '../../controlplane/rollout/agent-reports';
import { RolloutStore } from '../../controlplane/rollout/store';
import { TrafficPublisher } from '../../controlplane/rollout/traffic-publisher';
import { server, service, state } from '../../testkit/agent';
import { eventually } from '../../testkit/net';
import { ackOf, nackOf, rawAgent, startStreamServer } from '../../testkit/stream-server';

jest.setTimeout(30_000);

/** A state of revision `revision` (versions are `<revision>.<hash>`, as composeState makes them). */
const of = (revision: string, s: DesiredState): DesiredState => ({
  ...s,
  version: `${revision}.${s.version.slice(0, 20)}`,
});
const REV = 'aaaaaaaaaaaa';
const TARGET = 'bbbbbbbbbbbb';
const v1 = of(REV, state([service('web', 8080, [server('a', 9001)])]));
const v2 = of(REV, state([service('web', 8080, [server('a', 9001), server('b', 9002)])]));
/** A version of a revision this agent was never sent (the rollout's target, say): what a lying agent would claim. */
const FORGED = `${TARGET}.0123456789abcdef0123`;

const counters = [
  {
    service: 'web',
    requests: 1000,
    responses5xx: 0,
    sessions: 10,
    connectionErrors: 0,
    responseErrors: 0,
    retries: 0,
    serversDown: 0,
    servers: 1,
    queue: 0,
    rtimeMs: 0,
  },
];

/** A registry whose events go to the rollouts' AgentReports, with the traffic samples and statuses it writes kept. */
function reportedRegistry() {
  const samples: { nodeId: string; revision: string; countable: boolean }[] = [];
  const statuses = new Map<string, { runningVersion: string; runningRevision: string }>();
  const store = {
    doc: undefined,
    putAgent: (s: { nodeId: string; runningVersion: string; runningRevision: string }) =>
      void statuses.set(s.nodeId, s),
    removeAgent: (id: string) => void statuses.delete(id),
  } as unknown as RolloutStore;
  const traffic = {
    forget: () => undefined,
    sample: (nodeId: string, revision: string, _c: unknown, _at: number, countable: boolean) =>
      void samples.push({ nodeId, revision, countable }),
  } as unknown as TrafficPublisher;
  const reports = new AgentReports({
    store: () => store,
    replicaId: 'cp1',
    log: silentLogger,
    now: Date.now,
    traffic: () => traffic,
    stateOf: () => undefined,
    changedBy: () => new Set(['web']),
    rolloutChanged: () => new Set(['web']),
  });
  return { registry: new AgentRegistry(reports.events()), samples, statuses };
}

describe("a NACK's running version is believed only when this stream sent it, or the agent already ran it", () => {
  test('a NACK naming a version never sent keeps the ACKed one: Stats claiming the other revision count for none', async () => {
    // The minimum interval between two Stats of a stream runs on a fake clock: the test moves time past it.
    const clock = new FakeClock(Date.now());
    const r = reportedRegistry();
    const s = await startStreamServer(undefined, clock, r.registry);
    s.set(v1);
    const a = rawAgent(s.port, 'n1');
    const refused0 = s.stats.nackRunningRefused;
    try {
      expect(await eventually(() => a.pushes.length === 1)).toBe(true);
      a.send(ackOf(a.pushes[0]));
      expect(await eventually(() => s.registry.get('n1')?.runningVersion === v1.version)).toBe(true);
      s.set(v2);
      expect(await eventually(() => a.pushes.length === 2)).toBe(true);
      a.send(nackOf(a.pushes[1], 'port in use', FORGED));
      expect(await eventually(() => s.registry.get('n1')?.lastNackedVersion === v2.version)).toBe(true);

      expect(s.registry.get('n1')?.runningVersion).toBe(v1.version);
      expect(r.statuses.get('n1')).toMatchObject({ runningVersion: v1.version, runningRevision: REV });
      expect(s.stats.nackRunningRefused - refused0).toBe(1);

      // The agent goes on claiming the forged version in its Stats: a boundary, counted for no revision.
      a.send({ stats: { runningVersion: FORGED, counters } });
      expect(await eventually(() => r.samples.length === 1)).toBe(true);
      clock.advance(150); // past the minimum interval between two Stats of a stream
      a.send({ stats: { runningVersion: v1.version, counters } });
      expect(await eventually(() => r.samples.length === 2)).toBe(true);
      expect(r.samples).toEqual([
        { nodeId: 'n1', revision: REV, countable: false },
        { nodeId: 'n1', revision: REV, countable: true },
      ]);
    } finally {
      a.close();
      s.close();
    }
  });

  test('a NACK naming a version this stream sent (its ACK overtaken by the next push) or its hello named is believed', async () => {
    const clock = new FakeClock(Date.now());
    const r = reportedRegistry();
    const s = await startStreamServer(
      { newStreamsPerSecond: 100, pushesPerSecond: 100, answerTimeoutMs: 1500 },
      clock,
      r.registry,
    );
    const v0 = of(REV, state([service('web', 8080, [server('z', 9000)])]));
    s.set(v1);
    const a = rawAgent(s.port, 'n1', v0.version); // runs v0, sent by another replica before a reconnect
    const refused0 = s.stats.nackRunningRefused;
    try {
      expect(await eventually(() => a.pushes.length === 1)).toBe(true);
      a.send(nackOf(a.pushes[0], 'port in use', v0.version));
      expect(await eventually(() => s.registry.get('n1')?.lastNackedVersion === v1.version)).toBe(true);
      expect(s.registry.get('n1')?.runningVersion).toBe(v0.version);

      // v2 goes out and is not answered in time: v1 follows. The agent applied v2 (its ACK was overtaken), not v1.
      s.set(v2);
      expect(await eventually(() => a.pushes.length === 2)).toBe(true);
      s.set(v1);
      clock.advance(1501);
      expect(await eventually(() => a.pushes.length === 3, 3000)).toBe(true);
      a.send(nackOf(a.pushes[2], 'port in use', v2.version));
      expect(await eventually(() => s.registry.get('n1')?.runningVersion === v2.version)).toBe(true);
      expect(r.statuses.get('n1')).toMatchObject({ runningVersion: v2.version, runningRevision: REV });
      expect(s.stats.nackRunningRefused - refused0).toBe(0);
    } finally {
      a.close();
      s.close();
    }
  });
});
