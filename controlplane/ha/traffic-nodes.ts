import zookeeper, { Exception, Stat } from 'node-zookeeper-client';
import { errorMessage, ProxyMgrError } from '../../common/platform/errors';
import { ReplicaTraffic, TrafficView } from '../rollout/gate';
import { call, call2, isPersistent, zkCode } from '../zk/calls';
import type { HaContext } from './ha-context';
import { decodeNode, encodeNode } from './node-codec';

/** Each replica's traffic sums for the gates: one ephemeral node per replica under `traffic/`. */
export class TrafficNodes {
  private myTraffic: ReplicaTraffic | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(private readonly ctx: HaContext) {}

  /** On a (re)connection: write this replica's sums again (an ephemeral node). */
  connected(): void {
    if (this.myTraffic) this.putTraffic(this.myTraffic);
  }

  /** This replica's traffic sums: one ephemeral node, traffic/<replica id> (a dead replica's go with its session). */
  putTraffic(traffic: ReplicaTraffic): void {
    this.myTraffic = traffic;
    this.writing = this.writing
      .then(async () => {
        const client = this.ctx.client();
        if (!client || this.myTraffic !== traffic) return;
        const path = this.ctx.p('traffic', this.ctx.replicaId);
        const data = encodeNode(traffic, 'the traffic sums of this replica');
        try {
          await call((cb) => client.setData(path, data, -1, cb));
        } catch (err) {
          if (zkCode(err) !== Exception.NO_NODE) throw err;
          await call((cb) => client.create(path, data, this.ctx.acls, zookeeper.CreateMode.EPHEMERAL, cb));
        }
      })
      .catch((err: unknown) => {
        // The next sample writes again (and a reconnection re-creates the node).
        if (!this.ctx.closed())
          this.ctx.log.warn({ err: errorMessage(err) }, "writing this replica's traffic sums to ZooKeeper failed");
      });
  }

  /** Every replica's traffic sums; a node that is not one (or cannot be read) is left out. */
  async readTraffic(): Promise<TrafficView> {
    const client = this.ctx.client();
    if (!client) throw new ProxyMgrError('ZK_DISCONNECTED', 'ZooKeeper is not connected');
    const out = new Map<string, ReplicaTraffic>();
    const names = await call<string[]>((cb) => client.getChildren(this.ctx.p('traffic'), cb)).catch((err) => {
      if (zkCode(err) === Exception.NO_NODE) return [] as string[];
      throw err;
    });
    await Promise.all(
      names.map(async (name) => {
        try {
          const [data, stat] = await call2<Buffer, Stat>((cb) => client.getData(this.ctx.p('traffic', name), cb));
          // Replicas write only ephemeral nodes here: a persistent one is nobody's traffic.
          if (isPersistent(stat)) {
            this.ctx.log.warn({ node: name }, 'traffic node is not ephemeral (not written by a replica); left out');
            return;
          }
          const t = decodeNode(data);
          if (isReplicaTraffic(t)) out.set(name, t);
          else this.ctx.log.warn({ node: name }, 'traffic node of a replica is malformed; left out of the gates');
        } catch (err) {
          if (zkCode(err) !== Exception.NO_NODE)
            this.ctx.log.warn({ node: name, err: errorMessage(err) }, 'cannot read the traffic node of a replica');
        }
      }),
    );
    return out;
  }
}

/** The shape of a traffic node: written by control planes, but read like any input. */
export function isReplicaTraffic(t: unknown): t is ReplicaTraffic {
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
