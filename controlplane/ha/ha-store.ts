import zookeeper, { ACL, Client, Event, Exception, Stat } from 'node-zookeeper-client';
import { errorMessage, ProxyMgrError } from '../../common/errors';
import { Logger } from '../../common/log';
import { EMPTY_DOC, FleetDoc } from '../rollout/engine';
import { ReplicaTraffic, TrafficView } from '../rollout/gate';
import { Revision } from '../rollout/revision';
import { AgentStatus, RolloutStore, RolloutStoreListener } from '../rollout/store';
import { ensurePath, secureNodes, stillOpen } from '../zk/acl';
import { call, call2, ignore, zkCode } from '../zk/calls';
import { decodeNode, encodeNode } from './node-codec';

import { ZkDigest } from '../zk/digest';
import { ZkSession } from '../zk/session';

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
  private readonly mine = new Map<string, AgentStatus>();
  private readonly writes = new Map<string, Promise<void>>();
  private readonly agentCache = new Map<string, AgentStatus>();
  private leaderNode = '';
  private leaderValue = false;
  private leaderIdValue = '';
  private docValue: FleetDoc | undefined;
  private emitAgentsTimer: NodeJS.Immediate | undefined;
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
  }

  get isLeader(): boolean {
    return this.leaderValue;
  }

  get leaderId(): string {
    return this.leaderIdValue;
  }

  /** The fleet document as last read (undefined until the first read). */
  get doc(): FleetDoc | undefined {
    return this.docValue;
  }

  /** Connected agents as the replicas report them (kept current by watches). */
  get agents(): ReadonlyMap<string, AgentStatus> {
    return this.agentCache;
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
        if (this.leaderValue) this.log.warn({ reason }, 'lost ZooKeeper: no longer leading until reconnected');
        this.setLeader(false, '');
      },
    });
    this.session.start();
  }

  close(): void {
    this.closed = true;
    this.session.close();
    this.client = undefined;
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
      this.watchAgents(client, epoch);
      for (const s of this.mine.values()) this.putAgent(s);
      if (this.myTraffic) this.putTraffic(this.myTraffic);
      // One election node per session: after a mere reconnect the session's node is still there (a second one
      // would sit behind it and nobody would lead); a new session's old node died with the old session.
      if (this.insecure) return; // serves agents from the rollout state it reads, but never stands for leader
      const kept =
        !newSession &&
        this.leaderNode !== '' &&
        (await call<Stat | null>((cb) => client.exists(this.p('leader', this.leaderNode), cb)));
      if (!kept) {
        const created = await call<string>((cb) =>
          client.create(
            this.p('leader', 'n_'),
            Buffer.from(this.opts.replicaId),
            this.acls,
            zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL,
            cb,
          ),
        );
        this.leaderNode = created.slice(created.lastIndexOf('/') + 1);
      }
      this.watchLeader(client, epoch);
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

  private watchLeader(client: Client, epoch: number): void {
    client.getChildren(
      this.p('leader'),
      () => epoch === this.epoch && this.watchLeader(client, epoch),
      (err, children) => {
        if (err || epoch !== this.epoch) return;
        const sorted = children.filter((c) => c.startsWith('n_')).sort();
        const first = sorted[0];
        if (!first) return;
        client.getData(this.p('leader', first), (e2, data) => {
          if (epoch !== this.epoch) return;
          this.setLeader(first === this.leaderNode, e2 ? '' : data.toString());
        });
      },
    );
  }

  private setLeader(isLeader: boolean, leader: string): void {
    if (isLeader === this.leaderValue && leader === this.leaderIdValue) return;
    this.leaderValue = isLeader;
    this.leaderIdValue = leader;
    if (leader)
      this.log.info(
        { leader, me: this.opts.replicaId, leading: isLeader },
        isLeader ? 'this replica leads rollouts' : 'following the rollout leader',
      );
    this.listener.leadership?.(isLeader, leader);
  }

  private watchAgents(client: Client, epoch: number): void {
    client.getChildren(
      this.p('agents'),
      () => epoch === this.epoch && this.watchAgents(client, epoch),
      (err, children) => {
        if (err || epoch !== this.epoch) return;
        const present = new Set(children);
        for (const id of [...this.agentCache.keys()]) if (!present.has(id)) this.agentCache.delete(id);
        this.emitAgents();
        for (const id of children) if (!this.agentCache.has(id)) this.watchAgent(client, epoch, id);
      },
    );
  }

  private watchAgent(client: Client, epoch: number, id: string): void {
    client.getData(
      this.p('agents', id),
      (ev: Event) => {
        if (epoch !== this.epoch) return;
        if (ev.getName() === 'NODE_DELETED') {
          this.agentCache.delete(id);
          this.emitAgents();
          return;
        }
        this.watchAgent(client, epoch, id);
      },
      (err, data) => {
        if (epoch !== this.epoch) return;
        if (err) {
          if (this.agentCache.delete(id)) this.emitAgents();
          return;
        }
        try {
          this.agentCache.set(id, decodeNode(data) as AgentStatus);
          this.emitAgents();
        } catch {
          // a foreign node: ignore
        }
      },
    );
  }

  private emitAgents(): void {
    if (this.emitAgentsTimer) return;
    this.emitAgentsTimer = setImmediate(() => {
      this.emitAgentsTimer = undefined;
      this.listener.agents?.(this.agentCache);
    });
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

  /** Records (or updates) the status of an agent connected to this replica; writes per agent are serialized. */
  putAgent(status: AgentStatus): void {
    this.mine.set(status.nodeId, status);
    this.serialize(status.nodeId, async () => {
      const client = this.client;
      if (!client || this.mine.get(status.nodeId) !== status) return;
      const path = this.p('agents', status.nodeId);
      const data = encodeNode(status, `the status of agent ${status.nodeId}`);
      try {
        const [, stat] = await call2<Buffer, Stat>((cb) => client.getData(path, cb));
        if (stat.ephemeralOwner.equals(client.getSessionId())) {
          await call((cb) => client.setData(path, data, stat.version, cb));
          return;
        }
        // The agent moved here from another replica (maybe a dead one whose session has not expired yet).
        await call((cb) => client.remove(path, stat.version, (e) => cb(e, undefined))).catch(ignore(Exception.NO_NODE));
      } catch (err) {
        if (zkCode(err) !== Exception.NO_NODE) throw err;
      }
      await call((cb) => client.create(path, data, this.acls, zookeeper.CreateMode.EPHEMERAL, cb));
    });
  }

  /** The agent left this replica: remove its node if this replica still owns it. */
  removeAgent(nodeId: string): void {
    this.mine.delete(nodeId);
    this.serialize(nodeId, async () => {
      const client = this.client;
      if (!client || this.mine.has(nodeId)) return;
      const path = this.p('agents', nodeId);
      const [, stat] = await call2<Buffer, Stat>((cb) => client.getData(path, cb)).catch(
        () => [undefined, undefined] as const,
      );
      if (stat && stat.ephemeralOwner.equals(client.getSessionId()))
        await call((cb) => client.remove(path, stat.version, (e) => cb(e, undefined))).catch(() => undefined);
    });
  }

  /** This replica's traffic sums: one ephemeral node, traffic/<replica id> (a dead replica's go with its session). */
  putTraffic(traffic: ReplicaTraffic): void {
    this.myTraffic = traffic;
    this.serialize('\0traffic', async () => {
      const client = this.client;
      if (!client || this.myTraffic !== traffic) return;
      const path = this.p('traffic', this.opts.replicaId);
      const data = encodeNode(traffic, 'the traffic sums of this replica');
      try {
        await call((cb) => client.setData(path, data, -1, cb));
      } catch (err) {
        if (zkCode(err) !== Exception.NO_NODE) throw err;
        await call((cb) => client.create(path, data, this.acls, zookeeper.CreateMode.EPHEMERAL, cb));
      }
    });
  }

  private myTraffic: ReplicaTraffic | undefined;

  /** Every replica's traffic sums; a node that is not one (or cannot be read) is left out. */
  async readTraffic(): Promise<TrafficView> {
    const client = this.requireClient();
    const out = new Map<string, ReplicaTraffic>();
    const names = await call<string[]>((cb) => client.getChildren(this.p('traffic'), cb)).catch((err) => {
      if (zkCode(err) === Exception.NO_NODE) return [] as string[];
      throw err;
    });
    await Promise.all(
      names.map(async (name) => {
        try {
          const [data] = await call2<Buffer, Stat>((cb) => client.getData(this.p('traffic', name), cb));
          const t = decodeNode(data);
          if (isReplicaTraffic(t)) out.set(name, t);
          else this.log.warn({ node: name }, 'traffic node of a replica is malformed; left out of the gates');
        } catch (err) {
          if (zkCode(err) !== Exception.NO_NODE)
            this.log.warn({ node: name, err: errorMessage(err) }, 'cannot read the traffic node of a replica');
        }
      }),
    );
    return out;
  }

  private serialize(key: string, job: () => Promise<void>): void {
    const prev = this.writes.get(key) ?? Promise.resolve();
    const next = prev.then(job).catch((err: unknown) => {
      if (!this.closed)
        this.log.warn({ node_id: key, err: errorMessage(err) }, 'writing agent status to ZooKeeper failed');
    });
    this.writes.set(key, next);
    void next.then(() => {
      if (this.writes.get(key) === next) this.writes.delete(key);
    });
  }

  private requireClient(): Client {
    if (!this.client) throw new ProxyMgrError('ZK_DISCONNECTED', 'ZooKeeper is not connected');
    return this.client;
  }
}

/** The shape of a traffic node: written by control planes, but read like any input. */
function isReplicaTraffic(t: unknown): t is ReplicaTraffic {
  const o = t as Partial<ReplicaTraffic> | null;
  const vecs = (m: unknown) =>
    typeof m === 'object' &&
    m !== null &&
    Object.values(m).every(
      (v) => Array.isArray(v) && v.length <= 8 && v.every((x) => typeof x === 'number' && Number.isFinite(x) && x >= 0),
    );
  const nested = (m: unknown) => typeof m === 'object' && m !== null && Object.values(m).every(vecs);
  return (
    typeof o === 'object' &&
    o !== null &&
    typeof o.epoch === 'string' &&
    typeof o.rollout === 'string' &&
    typeof o.at === 'number' &&
    nested(o.sums) &&
    nested(o.gauges) &&
    vecs(o.baseline) &&
    vecs(o.baselineGauges)
  );
}

function parseDoc(data: Buffer | undefined): FleetDoc {
  if (!data || data.length === 0) return EMPTY_DOC;
  const d = decodeNode(data) as Partial<FleetDoc>;
  return { ...EMPTY_DOC, ...d };
}
