import zookeeper, { Client } from 'node-zookeeper-client';
import { silentLogger } from '../../common/platform/log';
import type { HaContext } from '../../controlplane/ha/ha-context';
import { LeaderElection } from '../../controlplane/ha/leader-election';
import { eventually } from '../../testkit/net';
import { connectZk, ZkTestClient } from '../../testkit/zk-client';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';

jest.setTimeout(60_000);

/** The library's own CONNECTION_LOSS error (its `Exception.create` is not in the typings). */
const connectionLoss = () =>
  (zookeeper.Exception as unknown as { create(code: number): Error }).create(zookeeper.Exception.CONNECTION_LOSS);

/**
 * A client whose first `create` reaches the server (the node is made) but whose reply is lost: the caller hears
 * CONNECTION_LOSS, as it does when the connection drops between the server's commit and its answer.
 */
function losingFirstCreateReply(client: Client): Client {
  let lost = false;
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop === 'create' && !lost) {
        return (...args: unknown[]) => {
          lost = true;
          const cb = args[args.length - 1] as (err: Error | null, p?: string) => void;
          (target.create as (...a: unknown[]) => void)(...args.slice(0, -1), () => cb(connectionLoss()));
        };
      }
      const v: unknown = Reflect.get(target, prop, receiver);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** Leader election against a real ZooKeeper, with a create whose reply is lost. */
describe('leader election', () => {
  let zk: ZooKeeper;
  const clients: ZkTestClient[] = [];
  let root = '';
  let n = 0;

  const ctx = (replicaId: string, client: Client): HaContext => ({
    log: silentLogger,
    replicaId,
    acls: [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('world', 'anyone'))],
    client: () => client,
    epoch: () => 1,
    p: (...parts) => [root, ...parts].join('/'),
    closed: () => false,
  });
  const children = (c: Client) =>
    new Promise<string[]>((resolve, reject) =>
      c.getChildren(`${root}/leader`, (err, ch) => (err ? reject(err) : resolve(ch))),
    );

  beforeAll(async () => {
    zk = await startZooKeeper();
  });
  beforeEach(async () => {
    root = `/election-${++n}`;
    const admin = await connectZk(zk.connectString);
    clients.push(admin);
    await admin.put(`${root}/leader`, '');
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await zk?.stop();
  });

  test('a replica whose create reply was lost stands with the node it made, and leads with it', async () => {
    const a = await connectZk(zk.connectString);
    clients.push(a);
    const lossy = losingFirstCreateReply(a.client);
    let leading = false;
    const election = new LeaderElection(ctx('cp-a', lossy), (l) => (leading = l));

    await expect(election.stand(lossy, 1, true)).rejects.toThrow(/CONNECTION_LOSS/);
    expect(await children(a.client)).toHaveLength(1); // the server made the node all the same

    // The reconnection (same session) stands again.
    await election.stand(lossy, 1, false);
    expect(await children(a.client)).toHaveLength(1); // no second node behind the orphan
    expect(await eventually(() => leading, 10_000)).toBe(true);
    expect(election.isLeader).toBe(true);
    expect(election.leaderId).toBe('cp-a');
  });

  test('a second replica follows the first, whose lost-reply node sits lowest', async () => {
    const a = await connectZk(zk.connectString);
    const b = await connectZk(zk.connectString);
    clients.push(a, b);
    const lossy = losingFirstCreateReply(a.client);
    let aLeads = false;
    let bLeads = false;
    let bHeard = '';
    const ea = new LeaderElection(ctx('cp-a', lossy), (l) => (aLeads = l));
    const eb = new LeaderElection(ctx('cp-b', b.client), (l, who) => {
      bLeads = l;
      bHeard = who;
    });
    await expect(ea.stand(lossy, 1, true)).rejects.toThrow(/CONNECTION_LOSS/);
    await eb.stand(b.client, 1, true);
    await ea.stand(lossy, 1, false);

    expect(await eventually(() => aLeads && bHeard === 'cp-a', 10_000)).toBe(true);
    expect(bLeads).toBe(false);
    expect(await children(a.client)).toHaveLength(2);

    // The leader's session ends: the follower takes over.
    a.close();
    expect(await eventually(() => bLeads, 15_000)).toBe(true);
  });

  test('a node this session made before the election stood (a lost reply from an earlier attempt) is its own', async () => {
    const a = await connectZk(zk.connectString);
    clients.push(a);
    let leading = false;
    const election = new LeaderElection(ctx('cp-a', a.client), (l) => (leading = l));
    // The orphan: a node of this session the election was never told of.
    await new Promise<void>((resolve, reject) =>
      a.client.create(`${root}/leader/n_`, Buffer.from('cp-a'), zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL, (err) =>
        err ? reject(err) : resolve(),
      ),
    );
    await election.stand(a.client, 1, false);
    expect(await eventually(() => leading, 10_000)).toBe(true);
    expect(await children(a.client)).toEqual([election.node]);
  });
});
