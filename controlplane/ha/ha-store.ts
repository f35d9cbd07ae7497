import zookeeper, { ACL, Client, Exception, Stat } from 'node-zookeeper-client';
import { errorMessage, ProxyMgrError } from '../../common/platform/errors';
import { Logger } from '../../common/platform/log';
import { EMPTY_DOC, FleetDoc } from '../rollout/engine';
import { ReplicaTraffic, TrafficView } from '../rollout/gate';
import { Revision } from '../rollout/revision';
import { AgentStatus, RolloutStore, RolloutStoreListener } from '../rollout/store';
import { ensurePath, removeOpenChildren, secureNodes, stillOpen } from '../zk/acl';
import { call, call2, ignore, zkCode } from '../zk/calls';
import { decodeNode, encodeNode } from './node-codec';
import { AgentStatusNodes } from './agent-status-nodes';
import { LeaderElection } from './leader-election';
import { TrafficNodes } from './traffic-nodes';

import { ZkDigest } from '../zk/digest';
import { ZkSession } from '../zk/session';
import type { HaContext } from './ha-context';

export type { AgentStatus };

export interface HaStoreOptions {
  readonly servers: string;
  /** Root path, e.g. /proxymgr: `rollout` (the FleetDoc), `revisions/<id>`, `agents/<node>`, `leader/n_…`. */
  readonly root: string;
  readonly replicaId: string;
  readonly sessionTimeoutMs: number;
  readonly log: Logger;
  /**
   * `controlplane.zk_digest_file`: the session authenticates with it, and every node written here (the root and
   * its parents included) gets full rights for these credentials and READ for everyone. Unset: open ACLs.
   */
  readonly digest?: ZkDigest;
}

export type HaListener = RolloutStoreListener;

/**
 * The control plane's shared state in ZooKeeper: the fleet document (stable revision, current rollout, history)
 * updated with compare-and-set, immutable revisions, one ephemeral status node per connected agent, and leader
 * election (ephemeral sequential nodes; the lowest is the leader). Every (re)connection re-creates this replica's
 * ephemeral nodes and re-arms every watch.
 */
export class HaStore implements RolloutStore {
  private readonly session: ZkSession;
  private readonly log: Logger;
  private client: Client | undefined;
  private readonly revisionCache = new Map<string, Revision>();
  private readonly election: LeaderElection;
  private readonly agentNodes: AgentStatusNodes;
  private readonly trafficNodes: TrafficNodes;
  private docValue: FleetDoc | undefined;
  private closed = false;
  private epoch = 0;
  private readonly acls: ACL[];
  private aclsChecked = false;
  /** Some of our nodes stay writable by others (their ACL could not be fixed): this replica must not lead. */
  private insecure = false;

  constructor(
    private readonly opts: HaStoreOptions,
    private readonly listener: HaListener,
  ) {
    this.log = opts.log.child({ component: 'ha' });
    this.session = new ZkSession(opts.servers, {
      sessionTimeoutMs: opts.sessionTimeoutMs,
      spinDelayMs: 200,
      backoffInitialMs: 100,
      backoffMaxMs: 5000,
      log: this.log,
      ...(opts.digest ? { digest: opts.digest } : {}),
    });
    this.acls = opts.digest
      ? opts.digest.acls()
      : [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('world', 'anyone'))]; // OPEN_ACL_UNSAFE
    const ctx: HaContext = {
      log: this.log,
      replicaId: opts.replicaId,
      acls: this.acls,
      client: () => this.client,
      epoch: () => this.epoch,
      p: (...parts) => this.p(...parts),
      closed: () => this.closed,
    };
    this.election = new LeaderElection(ctx, (isLeader, leader) => this.listener.leadership?.(isLeader, leader));
    this.agentNodes = new AgentStatusNodes(ctx, (agents) => this.listener.agents?.(agents));
    this.trafficNodes = new TrafficNodes(ctx);
  }

  get isLeader(): boolean {
    return this.election.isLeader;
  }

  get leaderId(): string {
    return this.election.leaderId;
  }

  /** The fleet document as last read (undefined until the first read). */
  get doc(): FleetDoc | undefined {
    return this.docValue;
  }

  /** Connected agents as the replicas report them (kept current by watches). */
  get agents(): ReadonlyMap<string, AgentStatus> {
    return this.agentNodes.agents;
  }

  start(): void {
    if (!this.opts.digest) {
      this.log.warn(
        { zk_path: this.opts.root },
        `controlplane.zk_digest_file is not set: the rollout state under ${this.opts.root} (rollout document, revisions, agent status, leader election) is writable by anyone who can reach ZooKeeper`,
      );
    }
    this.session.subscribe({
      connected: (client, info) => void this.onConnected(client, info.newSession),
      disconnected: (reason) => {
        this.client = undefined;
        if (this.election.isLeader) this.log.warn({ reason }, 'lost ZooKeeper: no longer leading until reconnected');
        this.election.lost();
      },
    });
    this.session.start();
  }

  /** Closes the session (its ephemeral nodes go at once: agent status, traffic, election); resolves once closed. */
  close(): Promise<void> {
    this.closed = true;
    this.client = undefined;
    return this.session.close();
  }

  private p(...parts: string[]): string {
    return [this.opts.root, ...parts].join('/');
  }

  private async onConnected(client: Client, newSession: boolean): Promise<void> {
    this.client = client;
    const epoch = ++this.epoch;
    try {
      for (const dir of ['revisions', 'agents', 'leader', 'traffic']) await ensurePath(client, this.p(dir), this.acls);
      await call((cb) =>
        client.create(this.p('rollout'), encodeNode(EMPTY_DOC, 'the rollout document'), this.acls, cb),
      ).catch(ignore(Exception.NODE_EXISTS));
      if (epoch !== this.epoch) return;
      if (this.opts.digest && !this.aclsChecked) {
        // Upgrading from open ACLs: what an earlier control plane created gets this store's ACLs. Ephemeral nodes of
        // other sessions are left alone: they end with those sessions, and nobody else can create new ones.
        const revisions = await call<string[]>((cb) => client.getChildren(this.p('revisions'), cb)).catch(
          () => [] as string[],
        );
        const nodes = [
          this.opts.root,
          ...['rollout', 'revisions', 'agents', 'leader', 'traffic'].map((d) => this.p(d)),
          ...revisions.map((r) => this.p('revisions', r)),
        ];
        const fixed = await secureNodes(client, nodes, this.opts.digest, this.log);
        // Persistent nodes others planted under agents/ and traffic/ while the ACLs were open (logged one by one).
        for (const dir of ['agents', 'traffic'])
          await removeOpenChildren(client, this.p(dir), this.opts.digest, this.log);
        if (fixed > 0)
          this.log.warn(
            { fixed, zk_path: this.opts.root },
            `set the ACL of ${fixed} ZooKeeper node(s) that were writable by anyone`,
          );
        // A node someone else may still change (pre-created without giving us ADMIN, so its ACL cannot be fixed)
        // means the rollout state cannot be trusted: serve agents, but never lead (checked again on reconnect).
        const open = await stillOpen(client, nodes, this.opts.digest);
        this.insecure = open.length > 0;
        if (this.insecure)
          this.log.error(
            { nodes: open, zk_path: this.opts.root },
            'refusing to lead rollouts: ZooKeeper nodes of the control plane stay writable by others (fix their ACLs by hand, see docs/security.md)',
          );
        else this.aclsChecked = true;
      }
      await this.watchDoc(client, epoch);
      this.agentNodes.connected(client, epoch);
      this.trafficNodes.connected();
      if (this.insecure) return; // serves agents from the rollout state it reads, but never stands for leader
      await this.election.stand(client, epoch, newSession);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'ZooKeeper setup failed; retrying on the next connection');
    }
  }

  private async watchDoc(client: Client, epoch: number): Promise<void> {
    const [data] = await call2<Buffer, Stat>((cb) =>
      client.getData(
        this.p('rollout'),
        () => {
          if (epoch === this.epoch)
            void this.watchDoc(client, epoch).catch((err) =>
              this.log.warn({ err: errorMessage(err) }, 'reading the rollout state failed'),
            );
        },
        cb,
      ),
    );
    const doc = parseDoc(data);
    if (
      doc.seq === this.docValue?.seq &&
      this.docValue !== undefined &&
      JSON.stringify(doc) === JSON.stringify(this.docValue)
    )
      return;
    this.docValue = doc;
    this.listener.doc?.(doc);
  }

  /** Reads, transforms and writes the fleet document with compare-and-set (retried on a concurrent write). */
  async update(fn: (doc: FleetDoc) => FleetDoc): Promise<FleetDoc> {
    for (let attempt = 0; ; attempt++) {
      const client = this.requireClient();
      const [data, stat] = await call2<Buffer, Stat>((cb) => client.getData(this.p('rollout'), cb));
      const before = parseDoc(data);
      const after = fn(before);
      if (after === before) return before;
      try {
        const data = encodeNode(after, 'the rollout document');
        await call<Stat>((cb) => client.setData(this.p('rollout'), data, stat.version, cb));
        this.docValue = after;
        this.listener.doc?.(after);
        return after;
      } catch (err) {
        if (zkCode(err) !== Exception.BAD_VERSION || attempt > 20) throw err;
      }
    }
  }

  async putRevision(rev: Revision): Promise<void> {
    if (this.revisionCache.has(rev.id)) return;
    const client = this.requireClient();
    await call((cb) =>
      client.create(this.p('revisions', rev.id), encodeNode(rev, `revision ${rev.id}`), this.acls, cb),
    ).catch(ignore(Exception.NODE_EXISTS));
    this.revisionCache.set(rev.id, rev);
  }

  /** A revision by id (immutable, cached after the first read). */
  cachedRevision(id: string): Revision | undefined {
    return this.revisionCache.get(id);
  }

  async getRevision(id: string): Promise<Revision | undefined> {
    const cached = this.revisionCache.get(id);
    if (cached) return cached;
    const client = this.requireClient();
    try {
      const [data] = await call2<Buffer, Stat>((cb) => client.getData(this.p('revisions', id), cb));
      const rev = decodeNode(data) as Revision;
      this.revisionCache.set(id, rev);
      return rev;
    } catch (err) {
      if (zkCode(err) === Exception.NO_NODE) return undefined;
      throw err;
    }
  }

  /** Records (or updates) the status of an agent connected to this replica (see AgentStatusNodes). */
  putAgent(status: AgentStatus): void {
    this.agentNodes.putAgent(status);
  }

  /** The agent left this replica: remove its node if this replica still owns it. */
  removeAgent(nodeId: string): void {
    this.agentNodes.removeAgent(nodeId);
  }

  /** This replica's traffic sums (see TrafficNodes). */
  putTraffic(traffic: ReplicaTraffic): void {
    this.trafficNodes.putTraffic(traffic);
  }

  /** Every replica's traffic sums. */
  readTraffic(): Promise<TrafficView> {
    return this.trafficNodes.readTraffic();
  }

  private requireClient(): Client {
    if (!this.client) throw new ProxyMgrError('ZK_DISCONNECTED', 'ZooKeeper is not connected');
    return this.client;
  }
}

function parseDoc(data: Buffer | undefined): FleetDoc {
  if (!data || data.length === 0) return EMPTY_DOC;
  const d = decodeNode(data) as Partial<FleetDoc>;
  return { ...EMPTY_DOC, ...d };
}
