import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { silentLogger } from '../../common/platform/log';
import { Discovery } from '../../controlplane/discovery';
import { AgentRecord } from '../../controlplane/ports';
import { RolloutCoordinator } from '../../controlplane/rollout/coordinator';
import { revisionOfVersion } from '../../common/protocol/revision-id';
import { testDiscovery } from '../../testkit/discovery';
import { haRolloutStore } from '../../controlplane/wiring';
import { eventually, sleep, tempDir } from '../../testkit/net';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';

// Issue 9b through the coordinator (real ZooKeeper for the rollout document and agent status): a new revision while
// no agent is connected must not complete and become stable; the first agent that comes is its canary.

let zk: ZooKeeper;
let tmp: ReturnType<typeof tempDir>;
let d: Discovery | undefined;
let c: RolloutCoordinator | undefined;

beforeAll(async () => {
  zk = await startZooKeeper();
  tmp = tempDir('proxymgr-rollout-');
});
afterAll(async () => {
  await c?.stop();
  await d?.stop();
  await zk?.stop();
  tmp?.cleanup();
});

test('a revision released while no agent is connected waits for an ACK; the first agent gets it as the canary', async () => {
  const file = path.join(tmp.dir, 'services.yml');
  const write = (port: number) =>
    writeFileSync(file, JSON.stringify({ web: { type: 'static', port, hosts: ['10.0.0.1:80'] } }));
  write(8080);
  d = testDiscovery({ type: 'file', path: file }, { filePollMs: 100 });
  c = new RolloutCoordinator({
    config: {
      waves: [
        { kind: 'count', count: 1 },
        { kind: 'share', share: 1 },
      ],
      bakeMs: 0,
      maxNacks: 0,
      autoRollback: true,
      zookeeper: zk.connectString,
      zkPath: '/proxymgr',
      replicaId: 'cp1',
    },
    discovery: d,
    log: silentLogger,
    store: haRolloutStore(
      { zookeeper: zk.connectString, zkPath: '/proxymgr', replicaId: 'cp1' },
      {
        sessionTimeoutMs: 4000,
        log: silentLogger,
      },
    ),
  });
  c.start();
  d.start();
  expect(await eventually(() => c!.store.isLeader && (c!.store.doc?.stable ?? '') !== '', 15_000)).toBe(true);
  const first = c.store.doc!.stable;

  write(8081); // a shape change: a new revision, a rollout
  expect(await eventually(() => c!.store.doc?.current !== undefined, 15_000)).toBe(true);
  await sleep(500); // every step the leader takes meanwhile sees no agent
  const doc = c.store.doc!;
  expect(doc.stable).toBe(first);
  expect(doc.current).toMatchObject({ state: 'running', from: first });
  expect(doc.current!.reason).toMatch(/waiting for an agent to ACK .*: no agent is connected/);

  // An agent connects (as the stream server reports it): it is the canary, gets the new revision, ACKs.
  const agent: AgentRecord = {
    nodeId: 'a1',
    labels: {},
    agentVersion: 't',
    haproxyVersion: 't',
    peer: 'test',
    connected: true,
    runningVersion: '',
    lastAckedVersion: '',
    lastNackedVersion: '',
    lastError: '',
  };
  const events = c.registryEvents();
  events.onConnect(agent);
  expect(await eventually(() => c!.store.doc?.current?.waves.length === 1, 15_000)).toBe(true);
  expect(c.store.doc!.current!.waves[0]!.agents).toEqual(['a1']);
  let pushed = '';
  expect(
    await eventually(
      () => revisionOfVersion((pushed = c!.desiredFor(agent)?.version ?? '')) === c!.store.doc!.current!.to,
      15_000,
    ),
  ).toBe(true);
  agent.runningVersion = pushed;
  events.onAck(agent, pushed, 'reload', [], [], []);
  expect(await eventually(() => c!.store.doc?.current?.state === 'completed', 15_000)).toBe(true);
  expect(c.store.doc!.stable).toBe(c.store.doc!.current!.to);
  events.onDisconnect(agent);
});
