import { EMPTY_DOC, FleetDoc } from './engine';
import { ReplicaTraffic, TrafficView } from './gate';
import { Revision } from './revision';
import { AgentStatus, RolloutStore, RolloutStoreListener } from './store';

export interface MemoryRolloutStoreOptions {
  readonly replicaId?: string;
  /** Whether this replica leads once started (default true); `setLeader` changes it later. */
  readonly leader?: boolean;
  /** The fleet document found at start (default: empty). */
  readonly doc?: FleetDoc;
  /** Traffic sums shared by the replicas of a test (default: this store's own). */
  readonly traffic?: Map<string, ReplicaTraffic>;
}

/**
 * A RolloutStore in memory, for tests of one replica. It reports like HaStore does: the document and leadership
 * once started, agent changes batched after the writes that caused them (ZooKeeper watches fire later), the
 * document synchronously after every update.
 */
export class MemoryRolloutStore implements RolloutStore {
  private docValue: FleetDoc | undefined;
  private leaderValue = false;
  private leaderIdValue = '';
  private readonly revisions = new Map<string, Revision>();
  private readonly agentMap = new Map<string, AgentStatus>();
  private agentsPending = false;
  private started = false;
  private closed = false;
  /** Every document written, oldest first (for assertions). */
  readonly writes: FleetDoc[] = [];

  constructor(
    private readonly listener: RolloutStoreListener,
    private readonly options: MemoryRolloutStoreOptions = {},
  ) {}

  get isLeader(): boolean {
    return this.leaderValue;
  }

  get leaderId(): string {
    return this.leaderIdValue;
  }

  get doc(): FleetDoc | undefined {
    return this.docValue;
  }

  get agents(): ReadonlyMap<string, AgentStatus> {
    return this.agentMap;
  }

  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    // As on a ZooKeeper connection: the document is read, then the election settles.
    queueMicrotask(() => {
      if (this.closed) return;
      this.docValue = this.options.doc ?? EMPTY_DOC;
      this.listener.doc?.(this.docValue);
      const id = this.options.replicaId ?? 'memory';
      if (this.options.leader ?? true) this.setLeader(true, id);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  /** Changes leadership, as an election would. */
  setLeader(isLeader: boolean, leaderId: string): void {
    if (isLeader === this.leaderValue && leaderId === this.leaderIdValue) return;
    this.leaderValue = isLeader;
    this.leaderIdValue = leaderId;
    this.listener.leadership?.(isLeader, leaderId);
  }

  async update(fn: (doc: FleetDoc) => FleetDoc): Promise<FleetDoc> {
    this.requireOpen();
    const before = this.docValue ?? this.options.doc ?? EMPTY_DOC;
    const after = fn(before);
    if (after === before) return before;
    this.docValue = after;
    this.writes.push(after);
    this.listener.doc?.(after);
    return after;
  }

  async putRevision(rev: Revision): Promise<void> {
    this.requireOpen();
    if (!this.revisions.has(rev.id)) this.revisions.set(rev.id, rev);
  }

  async getRevision(id: string): Promise<Revision | undefined> {
    this.requireOpen();
    return this.revisions.get(id);
  }

  cachedRevision(id: string): Revision | undefined {
    return this.revisions.get(id);
  }

  putAgent(status: AgentStatus): void {
    if (this.closed) return;
    this.agentMap.set(status.nodeId, status);
    this.agentsChanged();
  }

  removeAgent(nodeId: string): void {
    if (this.closed) return;
    if (this.agentMap.delete(nodeId)) this.agentsChanged();
  }

  private agentsChanged(): void {
    if (this.agentsPending) return;
    this.agentsPending = true;
    queueMicrotask(() => {
      this.agentsPending = false;
      if (!this.closed) this.listener.agents?.(this.agentMap);
    });
  }

  putTraffic(traffic: ReplicaTraffic): void {
    if (!this.closed) this.trafficMap.set(this.options.replicaId ?? 'memory', traffic);
  }

  async readTraffic(): Promise<TrafficView> {
    this.requireOpen();
    return new Map(this.trafficMap);
  }

  private get trafficMap(): Map<string, ReplicaTraffic> {
    return (this.ownTraffic ??= this.options.traffic ?? new Map());
  }

  private ownTraffic: Map<string, ReplicaTraffic> | undefined;

  private requireOpen(): void {
    if (this.closed || !this.started) throw new Error('the store is not open');
  }
}
