import { FleetDoc } from './engine';
import { ReplicaTraffic, TrafficView } from './gate';
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
  readonly lastNack?: {
    readonly version: string;
    readonly revision: string;
    readonly error: string;
    readonly at: number;
  };
  /** The agent can check a revision without applying it (its hello said so). */
  readonly canPreflight?: boolean;
  /** Its answer to the latest preflight (see engine.ts). */
  readonly preflight?: PreflightStatus;
}

export interface PreflightStatus {
  readonly rollout: string;
  readonly ok: boolean;
  /** Why it failed (HAProxy's message, a port that cannot be bound). */
  readonly error: string;
  /** How the agent would apply the revision: reload, runtime or nothing, and why. */
  readonly method: string;
  readonly reasons: readonly string[];
  readonly at: number;
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
 * (controlplane/ha/ha-store.ts); MemoryRolloutStore keeps it in memory for tests.
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
  /** Resolves once the store's connection is closed. */
  close(): Promise<void>;
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
  /** Publishes this replica's traffic sums for the gates (replacing its previous ones). */
  putTraffic(traffic: ReplicaTraffic): void;
  /** Every replica's traffic sums (the leader reads them while a wave bakes). */
  readTraffic(): Promise<TrafficView>;
}
