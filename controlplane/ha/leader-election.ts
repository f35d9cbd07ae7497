import zookeeper, { Client, Stat } from 'node-zookeeper-client';
import { call } from '../zk/calls';
import type { HaContext } from './ha-store';

/**
 * Leader election among the control-plane replicas: one ephemeral sequential node per session under `leader/`; the
 * lowest leads. `onChange` hears every change of who leads (and whether it is this replica).
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

  /**
   * Stands for leader on this connection: one election node per session (after a mere reconnect the session's node
   * is still there, and a second one would sit behind it and nobody would lead; a new session's old node died with
   * the old session), then watches who leads.
   */
  async stand(client: Client, epoch: number, newSession: boolean): Promise<void> {
    const kept =
      !newSession &&
      this.leaderNode !== '' &&
      (await call<Stat | null>((cb) => client.exists(this.ctx.p('leader', this.leaderNode), cb)));
    if (!kept) {
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
    this.watchLeader(client, epoch);
  }

  /** The connection is gone: nobody is known to lead, this replica least of all. */
  lost(): void {
    this.setLeader(false, '');
  }

  private watchLeader(client: Client, epoch: number): void {
    client.getChildren(
      this.ctx.p('leader'),
      () => epoch === this.ctx.epoch() && this.watchLeader(client, epoch),
      (err, children) => {
        if (err || epoch !== this.ctx.epoch()) return;
        const sorted = children.filter((c) => c.startsWith('n_')).sort();
        const first = sorted[0];
        if (!first) return;
        client.getData(this.ctx.p('leader', first), (e2, data) => {
          if (epoch !== this.ctx.epoch()) return;
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
      this.ctx.log.info(
        { leader, me: this.ctx.replicaId, leading: isLeader },
        isLeader ? 'this replica leads rollouts' : 'following the rollout leader',
      );
    this.onChange(isLeader, leader);
  }
}
