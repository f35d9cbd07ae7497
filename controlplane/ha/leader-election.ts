import zookeeper, { Client, Exception, Stat } from 'node-zookeeper-client';
import { call, call2, zkCode } from '../zk/calls';
import type { HaContext } from './ha-context';

/** Election nodes: `n_` plus ZooKeeper's 10-digit sequence (names stay as older replicas write and sort them). */
const ELECTION_NODE = /^n_\d{10}$/;

/**
 * Leader election among the control-plane replicas: one ephemeral sequential node per session under `leader/`; the
 * lowest leads. `onChange` hears every change of who leads (and whether it is this replica).
 *
 * A node is this replica's when its ephemeral owner is this replica's session, whatever name this replica
 * remembers: a create whose reply was lost (connection loss after the server made the node) leaves a node nobody
 * named, and a replica that only trusted the name it was told would see its own orphan sit lowest, create another
 * behind it, and nobody would lead until the session ended (the ZooKeeper election recipe's known trap).
 */
export class LeaderElection {
  private leaderNode = '';
  private leaderValue = false;
  private leaderIdValue = '';

  constructor(
    private readonly ctx: HaContext,
    private readonly onChange: (isLeader: boolean, leader: string) => void,
  ) {}

  get isLeader(): boolean {
    return this.leaderValue;
  }

  get leaderId(): string {
    return this.leaderIdValue;
  }

  /** The election node this replica stands with ('' before it stood). */
  get node(): string {
    return this.leaderNode;
  }

  /**
   * Stands for leader on this connection: one election node per session (after a mere reconnect the session's node
   * is still there, and a second one would sit behind it and nobody would lead; a new session's old node died with
   * the old session), then watches who leads. Before creating, it looks for a node this session already owns (a
   * create whose reply was lost) and stands with that one.
   */
  async stand(client: Client, epoch: number, newSession: boolean): Promise<void> {
    const kept =
      !newSession &&
      this.leaderNode !== '' &&
      (await call<Stat | null>((cb) => client.exists(this.ctx.p('leader', this.leaderNode), cb)));
    if (!kept) {
      const own = await this.ownNodes(client);
      const [first, ...extra] = own;
      if (first) {
        this.leaderNode = first;
        if (extra.length > 0)
          this.ctx.log.warn(
            { nodes: extra, kept: first, zk_path: this.ctx.p('leader') },
            'removing extra leader-election nodes of this session (creates whose replies were lost)',
          );
        for (const n of extra)
          await call<void>((cb) => client.remove(this.ctx.p('leader', n), -1, (e) => cb(e, undefined))).catch(
            () => undefined, // gone already, or the connection dropped: it dies with the session either way
          );
      } else {
        const created = await call<string>((cb) =>
          client.create(
            this.ctx.p('leader', 'n_'),
            Buffer.from(this.ctx.replicaId),
            this.ctx.acls,
            zookeeper.CreateMode.EPHEMERAL_SEQUENTIAL,
            cb,
          ),
        );
        this.leaderNode = created.slice(created.lastIndexOf('/') + 1);
      }
    }
    this.watchLeader(client, epoch);
  }

  /** The connection is gone: nobody is known to lead, this replica least of all. */
  lost(): void {
    this.setLeader(false, '');
  }

  /** The election nodes this client's session owns, lowest first. */
  private async ownNodes(client: Client): Promise<string[]> {
    const session = client.getSessionId();
    const children = await call<string[]>((cb) => client.getChildren(this.ctx.p('leader'), cb));
    const own: string[] = [];
    for (const name of electionOrder(children)) {
      const stat = await call<Stat | null>((cb) => client.exists(this.ctx.p('leader', name), cb)).catch((err) => {
        if (zkCode(err) === Exception.NO_NODE) return null;
        throw err;
      });
      if (stat && stat.ephemeralOwner.equals(session)) own.push(name);
    }
    return own;
  }

  private watchLeader(client: Client, epoch: number): void {
    client.getChildren(
      this.ctx.p('leader'),
      () => epoch === this.ctx.epoch() && this.watchLeader(client, epoch),
      (err, children) => {
        if (err || epoch !== this.ctx.epoch()) return;
        const first = electionOrder(children)[0];
        if (!first) return;
        void call2<Buffer, Stat>((cb) => client.getData(this.ctx.p('leader', first), cb)).then(
          ([data, stat]) => {
            if (epoch !== this.ctx.epoch()) return;
            const ours = first === this.leaderNode || stat.ephemeralOwner.equals(client.getSessionId());
            if (ours && first !== this.leaderNode) {
              // Our session's orphan sits lowest: lead with it (the later node behind it dies with the session).
              this.ctx.log.warn(
                { node: first, was: this.leaderNode, zk_path: this.ctx.p('leader') },
                'the lowest leader-election node belongs to this session though its create reply was lost: leading with it',
              );
              this.leaderNode = first;
            }
            this.setLeader(ours, data.toString());
          },
          () => {
            if (epoch === this.ctx.epoch()) this.setLeader(first === this.leaderNode, '');
          },
        );
      },
    );
  }

  private setLeader(isLeader: boolean, leader: string): void {
    if (isLeader === this.leaderValue && leader === this.leaderIdValue) return;
    this.leaderValue = isLeader;
    this.leaderIdValue = leader;
    if (leader)
      this.ctx.log.info(
        { leader, me: this.ctx.replicaId, leading: isLeader },
        isLeader ? 'this replica leads rollouts' : 'following the rollout leader',
      );
    this.onChange(isLeader, leader);
  }
}

/** Election node names (anything else under `leader/` is ignored), lowest sequence first. */
export function electionOrder(children: readonly string[]): string[] {
  return children.filter((c) => ELECTION_NODE.test(c)).sort();
}
