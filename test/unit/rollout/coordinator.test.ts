import { FakeClock } from '../../../testkit/fake-clock';
import { RolloutConfig } from '../../../common/config/config';
import { silentLogger } from '../../../common/platform/log';
import { DesiredState } from '../../../common/protocol/types';
import { AgentRecord } from '../../../controlplane/ports';
import { RolloutCoordinator, RolloutDiscovery } from '../../../controlplane/rollout/coordinator';
import { MemoryRolloutStore } from '../../../controlplane/rollout/memory-store';
import { revisionOfVersion } from '../../../common/protocol/revision-id';

// The coordinator end to end in milliseconds: an in-memory store instead of ZooKeeper, registry events as the
// stream server sends them, and a fake clock for the bake time.

class FakeDiscovery implements RolloutDiscovery {
  private state: DesiredState | undefined;
  private readonly listeners = new Set<(s: DesiredState) => void>();

  current(): DesiredState | undefined {
    return this.state;
  }

  configOf(): undefined {
    return undefined;
  }

  onSnapshot(listener: (s: DesiredState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A snapshot with one service on `port` (a port change is a shape change: a new revision). */
  publish(port: number): void {
    this.state = {
      version: `v${port}`,
      haproxy: { global: [], defaults: [] },
      services: [
        {
          name: 'web',
          port,
          bindAddress: '0.0.0.0',
          listenOptions: [],
          serverOptions: [],
          servers: [{ name: 'a', address: '10.0.0.1', port: 80, weight: 1, options: [] }],
        },
      ],
    };
    for (const l of [...this.listeners]) l(this.state);
  }
}

const BAKE_MS = 60_000;

function setup(config: Partial<RolloutConfig> = {}) {
  const clock = new FakeClock(1_000_000);
  const discovery = new FakeDiscovery();
  let store: MemoryRolloutStore | undefined;
  const c = new RolloutCoordinator({
    config: {
      waves: [
        { kind: 'count', count: 1 },
        { kind: 'share', share: 1 },
      ],
      bakeMs: BAKE_MS,
      maxNacks: 0,
      autoRollback: true,
      zookeeper: '',
      zkPath: '/proxymgr',
      replicaId: 'cp1',
      ...config,
    },
    discovery,
    log: silentLogger,
    clock,
    store: (listener) => (store = new MemoryRolloutStore(listener, { replicaId: 'cp1' })),
  });
  const events = c.registryEvents();
  const agents = ['a1', 'a2', 'a3'].map((nodeId): AgentRecord => ({
    nodeId,
    labels: {},
    agentVersion: 't',
    haproxyVersion: 't',
    peer: 'test',
    connected: true,
    runningVersion: '',
    lastAckedVersion: '',
    lastNackedVersion: '',
    lastError: '',
  }));
  /** What the registry does on an ACK: the agent runs the version, then the coordinator hears of it. */
  const ack = (a: AgentRecord, rejected: string[] = []) => {
    const version = c.desiredFor(a)!.version;
    a.runningVersion = version;
    events.onAck(
      a,
      version,
      'reload',
      [],
      rejected,
      rejected.map((s) => `${s}: port in use`),
    );
  };
  const nack = (a: AgentRecord, reason: string) => events.onNack(a, c.desiredFor(a)!.version, reason);
  const revisionFor = (a: AgentRecord) => revisionOfVersion(c.desiredFor(a)?.version ?? '');
  return { clock, discovery, c, store: () => store!, events, agents, ack, nack, revisionFor };
}

/** Lets every promise chain the last event started settle (store writes, steps). */
const settle = () => new Promise<void>((r) => setImmediate(r));

/** Starts with revision r1 released to three connected agents running it; then publishes r2 (a rollout starts). */
async function toRollout(t: ReturnType<typeof setup>) {
  t.c.start();
  t.discovery.publish(8080);
  await settle();
  const r1 = t.store().doc!.stable;
  expect(r1).not.toBe('');
  for (const a of t.agents) {
    t.events.onConnect(a);
    await settle();
    t.ack(a);
  }
  await settle();
  t.discovery.publish(8081);
  await settle();
  const r = t.store().doc!.current!;
  expect(r).toMatchObject({ state: 'running', from: r1 });
  return { r1, r2: r.to };
}

describe('RolloutCoordinator with an in-memory store and a fake clock', () => {
  test('canary wave, ACK, bake, next wave, ACKs: the rollout completes and its revision becomes stable', async () => {
    const t = setup();
    const { r1, r2 } = await toRollout(t);
    const [a1, a2, a3] = t.agents as [AgentRecord, AgentRecord, AgentRecord];

    // Wave 1 is the canary: one agent gets r2, the others keep r1.
    let doc = t.store().doc!;
    expect(doc.current!.waves.map((w) => w.agents)).toEqual([['a1']]);
    expect([a1, a2, a3].map(t.revisionFor)).toEqual([r2, r1, r1]);

    t.ack(a1);
    await settle();
    doc = t.store().doc!;
    expect(doc.current!.waves[0]!.ackedAt).toBe(t.clock.now());
    expect(doc.current!.waves).toHaveLength(1); // baking

    await t.clock.advanceAsync(BAKE_MS - 1);
    expect(t.store().doc!.current!.waves).toHaveLength(1);
    await t.clock.advanceAsync(2); // the bake ends: the coordinator's wake timer steps the rollout
    doc = t.store().doc!;
    expect(doc.current!.waves.map((w) => w.agents)).toEqual([['a1'], ['a2', 'a3']]);
    expect(doc.current!.state).toBe('running');
    expect([a2, a3].map(t.revisionFor)).toEqual([r2, r2]);

    t.ack(a2);
    await settle();
    expect(t.store().doc!.current!.state).toBe('running'); // a3 has not ACKed yet
    t.ack(a3);
    await settle();
    doc = t.store().doc!;
    expect(doc.current).toMatchObject({ state: 'completed', to: r2 });
    expect(doc.stable).toBe(r2);
    expect(t.c.active).toBe(false);
    await t.c.stop();
    expect(t.clock.pending).toBe(0);
  });

  test('a NACK from the canary rolls back: no other agent ever gets the revision', async () => {
    const t = setup();
    const { r1, r2 } = await toRollout(t);
    const [a1, a2, a3] = t.agents as [AgentRecord, AgentRecord, AgentRecord];
    expect(t.revisionFor(a1)).toBe(r2);

    t.nack(a1, 'haproxy -c: unknown keyword');
    await settle();
    const doc = t.store().doc!;
    expect(doc.current).toMatchObject({ state: 'rolled_back', to: r2 });
    expect(doc.current!.reason).toMatch(/1 NACK\(s\), more than max_nacks 0; a1: haproxy -c: unknown keyword/);
    expect(doc.stable).toBe(r1);
    expect([a1, a2, a3].map(t.revisionFor)).toEqual([r1, r1, r1]);
    await t.clock.advanceAsync(10 * BAKE_MS);
    expect(t.store().doc!.current!.waves).toHaveLength(1);
    await t.c.stop();
  });

  test('a partial ACK (a service the agent could not apply) counts as a NACK and halts the rollout', async () => {
    const t = setup({ autoRollback: false });
    const { r1, r2 } = await toRollout(t);
    const [a1, a2, a3] = t.agents as [AgentRecord, AgentRecord, AgentRecord];

    t.ack(a1, ['web']);
    await settle();
    const doc = t.store().doc!;
    expect(doc.current).toMatchObject({ state: 'halted', to: r2 });
    expect(doc.current!.results['a1']).toMatchObject({ status: 'nacked' });
    expect(doc.current!.reason).toMatch(/applied without service\(s\) web/);
    expect(doc.stable).toBe(r1);
    // Halted, not rolled back: the canary keeps the revision; nobody else gets it, however long we wait.
    await t.clock.advanceAsync(10 * BAKE_MS);
    expect(t.store().doc!.current!.waves).toHaveLength(1);
    expect([a1, a2, a3].map(t.revisionFor)).toEqual([r2, r1, r1]);
    await t.c.stop();
  });

  test('a partial ACK of a service the rollout did not change is an ACK; the rollout goes on (review)', async () => {
    const t = setup({ autoRollback: false });
    const { r2 } = await toRollout(t);
    const [a1] = t.agents as [AgentRecord, AgentRecord, AgentRecord];
    t.ack(a1, ['not-in-this-rollout']);
    await settle();
    expect(t.store().doc!.current).toMatchObject({ state: 'running', to: r2 });
    expect(t.store().doc!.current!.results['a1']).toMatchObject({ status: 'acked' });
    await t.c.stop();
  });

  test('a partial NACK stays a NACK when the agent reconnects reporting that version (review)', async () => {
    const t = setup({ autoRollback: false });
    await toRollout(t);
    const [a1] = t.agents as [AgentRecord, AgentRecord, AgentRecord];
    t.ack(a1, ['web']);
    await settle();
    t.events.onDisconnect(a1);
    t.events.onConnect(a1); // the hello re-reports the partial version as running
    await settle();
    expect(t.store().doc!.current!.results['a1']).toMatchObject({ status: 'nacked' });
    expect(t.store().agents.get('a1')!.runningRevision).not.toBe(t.store().doc!.current!.to);
    await t.c.stop();
  });
});
