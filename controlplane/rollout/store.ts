import { FleetDoc } from './engine';
import { Revision } from './revision';

/** What one replica says about one connected agent (an ephemeral node owned by that replica's session). */
export interface AgentStatus {
  readonly nodeId: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly replica: string;
  readonly runningVersion: string;
  readonly runningRevision: string;
  readonly connectedAt: number;
  readonly lastAck?: { readonly version: string; readonly revision: string; readonly at: number };
  readonly lastNack?: { readonly version: string; readonly revision: string; readonly error: string; readonly at: number };
}

/** What the store reports; the coordinator steps the rollout on each. */
export interface RolloutStoreListener {
  doc?(doc: FleetDoc): void;
  agents?(agents: ReadonlyMap<string, AgentStatus>): void;
  leadership?(isLeader: boolean, leader: string): void;
}

/**
 * The state the control-plane replicas share for rollouts: the fleet document (changed only by compare-and-set),
 * immutable revisions, the status of every connected agent, and which replica leads. HaStore keeps it in ZooKeeper
 * (controlplane/ha/zk-store.ts); MemoryRolloutStore keeps it in memory for tests.
 */
export interface RolloutStore {
  /** Whether this replica leads rollouts (only the leader steps them). */
  readonly isLeader: boolean;
  /** The leading replica's id ("" while unknown). */
  readonly leaderId: string;
  /** The fleet document as last read (undefined until the first read). */
  readonly doc: FleetDoc | undefined;
  /** Connected agents as every replica reports them. */
  readonly agents: ReadonlyMap<string, AgentStatus>;
  start(): void;
  close(): void;
  /** Reads, transforms and writes the fleet document atomically; `fn` returning its argument writes nothing. */
  update(fn: (doc: FleetDoc) => FleetDoc): Promise<FleetDoc>;
  putRevision(rev: Revision): Promise<void>;
  getRevision(id: string): Promise<Revision | undefined>;
  /** A revision already read or written by this replica, without I/O. */
  cachedRevision(id: string): Revision | undefined;
  /** Records (or updates) an agent connected to this replica. */
  putAgent(status: AgentStatus): void;
  /** The agent left this replica. */
  removeAgent(nodeId: string): void;
}
