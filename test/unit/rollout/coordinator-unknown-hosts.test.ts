import { FakeClock } from '../../../testkit/fake-clock';
import { silentLogger } from '../../../common/platform/log';
import { DesiredState, Server, Service } from '../../../common/protocol/types';
import { AgentRecord } from '../../../controlplane/ports';
import { RolloutCoordinator, RolloutDiscovery } from '../../../controlplane/rollout/coordinator';
import { MemoryRolloutStore } from '../../../controlplane/rollout/memory-store';

// A service an agent's revision still has but discovery no longer follows (a rollout removing it, on a replica that
// just restarted): served with its last known servers, marked unknown — never as an affirmative "no hosts".

const server = (name: string): Server => ({ name, address: '10.0.0.9', port: 80, weight: 1, options: [] });
const svc = (name: string, port: number, servers: Server[]): Service => ({
  name,
  port,
  bindAddress: '0.0.0.0',
  listenOptions: [],
  serverOptions: [],
  servers,
  hosts: 'reported',
});

class FakeDiscovery implements RolloutDiscovery {
  state: DesiredState | undefined;
  readonly persisted = new Map<string, Server[]>();
  private readonly listeners = new Set<(s: DesiredState) => void>();
  current = () => this.state;
  configOf = () => undefined;
  knownServers = (name: string) => this.persisted.get(name);
  onSnapshot(l: (s: DesiredState) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  publish(services: Service[], notify = true): void {
    this.state = { version: services.map((s) => s.name).join(), haproxy: { global: [], defaults: [] }, services };
    if (notify) for (const l of [...this.listeners]) l(this.state);
  }
}

const settle = () => new Promise<void>((r) => setImmediate(r));

test('a revision service discovery does not follow: persisted servers, hosts unknown (not [])', async () => {
  const clock = new FakeClock(1_000_000);
  const discovery = new FakeDiscovery();
  let store: MemoryRolloutStore | undefined;
  const c = new RolloutCoordinator({
    config: {
      waves: [
        { kind: 'count', count: 1 },
        { kind: 'share', share: 1 },
      ],
      bakeMs: 60_000,
      maxNacks: 0,
      autoRollback: true,
      zookeeper: '',
      zkPath: '/proxymgr',
      replicaId: 'cp1',
    },
    discovery,
    log: silentLogger,
    clock,
    store: (listener) => (store = new MemoryRolloutStore(listener, { replicaId: 'cp1' })),
  });
  // As after a restart: the state with `gone` exists, but this replica never saw its hosts in a snapshot.
  discovery.persisted.set('gone', [server('g1'), server('g2')]);
  discovery.publish([svc('web', 8080, [server('w1')]), svc('gone', 8081, [])], false);
  c.start();
  const events = c.registryEvents();
  const agents = ['a1', 'a2'].map((nodeId): AgentRecord => ({
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
  await settle();
  for (const a of agents) {
    events.onConnect(a);
    await settle();
    const v = c.desiredFor(a)!.version;
    a.runningVersion = v;
    events.onAck(a, v, 'reload', [], [], []);
  }
  await settle();
  expect(store!.doc!.stable).not.toBe('');
  // Discovery stops following `gone`: the rollout that removes it waits for an operator, and every agent keeps
  // `gone` with its persisted servers meanwhile.
  discovery.publish([svc('web', 8080, [server('w1')])]);
  await settle();
  expect(store!.doc!.current).toMatchObject({
    state: 'paused',
    reason: expect.stringContaining('removes 1 service(s) (gone)'),
  });
  for (const a of agents)
    expect(c.desiredFor(a)!.services.find((s) => s.name === 'gone')).toMatchObject({
      hosts: 'unknown',
      servers: [{ name: 'g1' }, { name: 'g2' }],
    });
  // Resumed: the canary first; a2 keeps the old revision.
  await c.command('resume', store!.doc!.current!.id);
  await settle();
  expect(store!.doc!.current?.state).toBe('running');
  const a2 = c.desiredFor(agents[1]!)!;
  expect(a2.services.find((s) => s.name === 'gone')).toMatchObject({
    hosts: 'unknown',
    servers: [{ name: 'g1' }, { name: 'g2' }],
  });
  expect(a2.services.find((s) => s.name === 'web')).toMatchObject({ hosts: 'reported' });
  await c.stop();
});
