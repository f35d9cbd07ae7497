import { silentLogger } from '../../../common/platform/log';
import { AgentRecord } from '../../../controlplane/ports';
import { AgentReports } from '../../../controlplane/rollout/agent-reports';
import { RolloutStore } from '../../../controlplane/rollout/store';
import { TrafficPublisher } from '../../../controlplane/rollout/traffic-publisher';

const record = (nodeId: string): AgentRecord => ({
  nodeId,
  labels: {},
  agentVersion: 'test',
  haproxyVersion: '2.6',
  peer: '127.0.0.1',
  connected: true,
  runningVersion: 'rev1-aaaa',
  lastAckedVersion: '',
  lastNackedVersion: '',
  lastError: '',
});

function setup(limits: { forgetAfterMs?: number; maxDeparted?: number } = {}) {
  let now = 1_000_000;
  const written = new Map<string, unknown>();
  const store = {
    doc: undefined,
    putAgent: (s: { nodeId: string }) => void written.set(s.nodeId, s),
    removeAgent: (id: string) => void written.delete(id),
  } as unknown as RolloutStore;
  const traffic = { forget: () => undefined, sample: () => undefined } as unknown as TrafficPublisher;
  const reports = new AgentReports({
    store: () => store,
    replicaId: 'cp1',
    log: silentLogger,
    now: () => now,
    traffic: () => traffic,
    stateOf: () => undefined,
    changedBy: () => new Set(['web']),
    rolloutChanged: () => new Set(['web']),
    ...limits,
  });
  return { reports, events: reports.events(), advance: (ms: number) => (now += ms), written };
}

describe('AgentReports holds what it must, and no more', () => {
  test('agents that come, apply partially and leave for good do not grow its maps without bound', () => {
    const t = setup({ forgetAfterMs: 60_000, maxDeparted: 1000 });
    let most = 0;
    for (let i = 0; i < 20_000; i++) {
      const a = record(`agent-${i}`);
      t.events.onConnect(a);
      t.events.onAck(a, a.runningVersion, 'runtime', [], ['web'], ['port taken']);
      t.events.onDisconnect(a);
      t.advance(10);
      const sizes = t.reports.sizes();
      most = Math.max(most, ...Object.values(sizes));
    }
    expect(most).toBeLessThanOrEqual(1001);
    // Gone longer than the forget age: nothing is held at all.
    t.advance(61_000);
    t.events.onConnect(record('late'));
    t.events.onDisconnect(record('late'));
    expect(t.reports.sizes()).toEqual({
      statuses: 0,
      preflightAsked: 0,
      partial: 0,
      records: 0,
      preflightResults: 0,
      departed: 1,
    });
  });

  test('an agent back within the forget age still has its partial apply remembered', () => {
    const t = setup({ forgetAfterMs: 60_000 });
    const a = record('a1');
    t.events.onConnect(a);
    t.events.onAck(a, a.runningVersion, 'runtime', [], ['web'], ['port taken']);
    t.events.onDisconnect(a);
    t.advance(30_000);
    t.events.onConnect(a); // re-reports the partial version as running: not counted as running its revision
    expect(t.written.get('a1')).toMatchObject({ runningRevision: '' });
    expect(t.reports.sizes().partial).toBe(1);

    t.events.onDisconnect(a);
    t.advance(61_000);
    t.events.onConnect(record('other'));
    expect(t.reports.sizes().partial).toBe(0);
  });
});
