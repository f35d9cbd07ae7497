import zookeeper, { Client, Event, Exception, Stat } from 'node-zookeeper-client';
import { errorMessage } from '../../common/platform/errors';
import { AgentStatus } from '../rollout/store';
import { call, call2, ignore, isPersistent, zkCode } from '../zk/calls';
import type { HaContext } from './ha-context';
import { decodeNode, encodeNode } from './node-codec';

/**
 * The status of every connected agent: one ephemeral node per agent under `agents/`, written by the replica the
 * agent is connected to (writes per agent serialized), watched by every replica.
 */
export class AgentStatusNodes {
  private readonly mine = new Map<string, AgentStatus>();
  private readonly writes = new Map<string, Promise<void>>();
  private readonly agentCache = new Map<string, AgentStatus>();
  private emitAgentsTimer: NodeJS.Immediate | undefined;

  constructor(
    private readonly ctx: HaContext,
    private readonly onChange: (agents: ReadonlyMap<string, AgentStatus>) => void,
  ) {}

  /** Connected agents as the replicas report them (kept current by watches). */
  get agents(): ReadonlyMap<string, AgentStatus> {
    return this.agentCache;
  }

  /** On a (re)connection: watch every agent's node, and write this replica's agents again (ephemeral nodes). */
  connected(client: Client, epoch: number): void {
    this.watchAgents(client, epoch);
    for (const s of this.mine.values()) this.putAgent(s);
  }

  /** Records (or updates) the status of an agent connected to this replica; writes per agent are serialized. */
  putAgent(status: AgentStatus): void {
    this.mine.set(status.nodeId, status);
    this.serialize(status.nodeId, async () => {
      const client = this.ctx.client();
      if (!client || this.mine.get(status.nodeId) !== status) return;
      const path = this.ctx.p('agents', status.nodeId);
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
      await call((cb) => client.create(path, data, this.ctx.acls, zookeeper.CreateMode.EPHEMERAL, cb));
    });
  }

  /** The agent left this replica: remove its node if this replica still owns it. */
  removeAgent(nodeId: string): void {
    this.mine.delete(nodeId);
    this.serialize(nodeId, async () => {
      const client = this.ctx.client();
      if (!client || this.mine.has(nodeId)) return;
      const path = this.ctx.p('agents', nodeId);
      const [, stat] = await call2<Buffer, Stat>((cb) => client.getData(path, cb)).catch(
        () => [undefined, undefined] as const,
      );
      if (stat && stat.ephemeralOwner.equals(client.getSessionId()))
        await call((cb) => client.remove(path, stat.version, (e) => cb(e, undefined))).catch(() => undefined);
    });
  }

  private watchAgents(client: Client, epoch: number): void {
    client.getChildren(
      this.ctx.p('agents'),
      () => epoch === this.ctx.epoch() && this.watchAgents(client, epoch),
      (err, children) => {
        if (err || epoch !== this.ctx.epoch()) return;
        const present = new Set(children);
        for (const id of [...this.agentCache.keys()]) if (!present.has(id)) this.agentCache.delete(id);
        this.emitAgents();
        for (const id of children) if (!this.agentCache.has(id)) this.watchAgent(client, epoch, id);
      },
    );
  }

  private watchAgent(client: Client, epoch: number, id: string): void {
    client.getData(
      this.ctx.p('agents', id),
      (ev: Event) => {
        if (epoch !== this.ctx.epoch()) return;
        if (ev.getName() === 'NODE_DELETED') {
          this.agentCache.delete(id);
          this.emitAgents();
          return;
        }
        this.watchAgent(client, epoch, id);
      },
      (err, data, stat) => {
        if (epoch !== this.ctx.epoch()) return;
        // Replicas write only ephemeral status nodes: a persistent one is nobody's agent.
        if (err || isPersistent(stat)) {
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
      this.onChange(this.agentCache);
    });
  }

  private serialize(key: string, job: () => Promise<void>): void {
    const prev = this.writes.get(key) ?? Promise.resolve();
    const next = prev.then(job).catch((err: unknown) => {
      if (!this.ctx.closed())
        this.ctx.log.warn({ node_id: key, err: errorMessage(err) }, 'writing agent status to ZooKeeper failed');
    });
    this.writes.set(key, next);
    void next.then(() => {
      if (this.writes.get(key) === next) this.writes.delete(key);
    });
  }
}
