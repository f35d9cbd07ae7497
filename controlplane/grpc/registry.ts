import type { ReportedMethod } from '../../common/protocol/apply-method';
import { ServiceCounters } from '../../common/gen/proxymgr/v1/counters';
import { AgentRecord, RegistryEvents } from '../ports';

export interface RegistryLimits {
  /** Disconnected agents are forgotten this long after their last stream closed. */
  readonly forgetAfterMs: number;
  /** And at most this many disconnected agents are remembered (the oldest go first). */
  readonly maxDisconnected: number;
}

export const DEFAULT_REGISTRY_LIMITS: RegistryLimits = { forgetAfterMs: 3_600_000, maxDisconnected: 50_000 };

/**
 * The agents of this control-plane replica: their versions, ACKs and errors. Disconnected agents are kept for
 * ListAgents, but only for a while and only so many: memory stays bounded however many node ids are tried.
 */
export class AgentRegistry {
  private readonly agents = new Map<string, AgentRecord>();
  private readonly streams = new Map<string, number>();
  /** Disconnected node ids, oldest first (a Map keeps insertion order). */
  private readonly gone = new Map<string, number>();
  /** Nodes with at least one open stream, kept as a count (a fleet of 10,000 connects and disconnects often). */
  private connected = 0;
  /** The identity (auth.clients entry) whose hello made each node id's record, its node ids and its open streams. */
  private readonly ownerOf = new Map<string, string>();
  private readonly owned = new Map<string, Set<string>>();
  private readonly ownerStreams = new Map<string, number>();
  private readonly streamOwner = new WeakMap<AgentRecord, string>();

  constructor(
    private readonly events: RegistryEvents = {},
    private readonly limits: RegistryLimits = DEFAULT_REGISTRY_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Whether identity `owner` may take `nodeId` (call before connect, with the same owner): an identity holds at most
   * `maxNodeIds` distinct node ids (connected or remembered) and twice that many open streams, so a wildcard
   * `node_ids` credential cannot fill the control plane with records. At the bound, its own longest-disconnected node
   * id is forgotten to make room; when all of its node ids are connected, the refusal (a sentence naming the
   * identity) is returned.
   */
  admit(nodeId: string, owner: string, maxNodeIds: number): string | undefined {
    this.prune();
    const streams = this.ownerStreams.get(owner) ?? 0;
    if (streams >= 2 * maxNodeIds)
      return `identity ${owner} has ${streams} open agent streams, the most its max_node_ids (${maxNodeIds}) allows (twice that); node id "${nodeId}" refused`;
    const nodes = this.owned.get(owner);
    if (!nodes || nodes.has(nodeId) || nodes.size < maxNodeIds) return undefined;
    for (const id of this.gone.keys()) {
      if (this.ownerOf.get(id) !== owner) continue;
      this.forget(id);
      return undefined;
    }
    return `identity ${owner} holds ${nodes.size} node ids with open streams, its max_node_ids (auth.clients); node id "${nodeId}" refused`;
  }

  connect(
    hello: Omit<
      AgentRecord,
      | 'connected'
      | 'connectedSince'
      | 'disconnectedAt'
      | 'lastAckedVersion'
      | 'lastNackedVersion'
      | 'lastError'
      | 'lastAckTime'
    >,
    /** The identity whose hello this is (see admit); undefined without authentication. */
    owner?: string,
  ): AgentRecord {
    this.prune();
    this.gone.delete(hello.nodeId);
    const prev = this.agents.get(hello.nodeId);
    const record: AgentRecord = {
      lastAckedVersion: prev?.lastAckedVersion ?? '',
      lastAckTime: prev?.lastAckTime,
      lastNackedVersion: prev?.lastNackedVersion ?? '',
      lastError: prev?.lastError ?? '',
      // Still running the version it applied partially: still without those services (no new ACK will say so).
      ...(prev?.rejectedServices && prev.runningVersion === hello.runningVersion
        ? { rejectedServices: prev.rejectedServices }
        : {}),
      // Likewise what it runs of each service: unknown once it runs another version than its last answer said.
      ...(prev?.services && prev.runningVersion === hello.runningVersion ? { services: prev.services } : {}),
      ...hello,
      connected: true,
      connectedSince: new Date(),
    };
    this.agents.set(record.nodeId, record);
    this.setOwner(record.nodeId, owner);
    if (owner !== undefined) {
      this.streamOwner.set(record, owner);
      this.ownerStreams.set(owner, (this.ownerStreams.get(owner) ?? 0) + 1);
    }
    const n = (this.streams.get(record.nodeId) ?? 0) + 1;
    this.streams.set(record.nodeId, n);
    if (n === 1) this.connected++;
    this.events.onConnectionChange?.(this.connected);
    this.events.onConnect?.(record);
    return record;
  }

  /**
   * One stream of `record`'s node closed. Each stream holds the record its own hello made, and a node's newer stream
   * may close before its older one: when the last stream goes, the record listed now (the newest hello's) is the one
   * marked disconnected, whichever stream's record this is.
   */
  disconnect(record: AgentRecord): void {
    const owner = this.streamOwner.get(record);
    if (owner !== undefined) {
      this.streamOwner.delete(record);
      const left = (this.ownerStreams.get(owner) ?? 1) - 1;
      if (left > 0) this.ownerStreams.set(owner, left);
      else this.ownerStreams.delete(owner);
    }
    const n = (this.streams.get(record.nodeId) ?? 1) - 1;
    this.streams.set(record.nodeId, n);
    const listed = this.agents.get(record.nodeId) ?? record;
    if (n <= 0) {
      const at = this.now();
      for (const r of new Set([record, listed])) {
        r.connected = false;
        r.disconnectedAt = at;
      }
      this.streams.delete(record.nodeId);
      this.gone.set(record.nodeId, at);
      this.connected--;
    }
    this.events.onConnectionChange?.(this.connected);
    if (n <= 0) this.events.onDisconnect?.(listed);
    this.prune();
  }

  ack(
    record: AgentRecord,
    version: string,
    method: ReportedMethod,
    reasons: readonly string[],
    warnings: readonly string[],
    rejectedServices: readonly string[] = [],
  ): void {
    record.runningVersion = version;
    record.lastAckedVersion = version;
    record.rejectedServices = [...rejectedServices];
    record.lastAckTime = new Date();
    record.lastError =
      rejectedServices.length > 0
        ? `applied without service(s) ${rejectedServices.join(', ')}: ${warnings.join('; ')}`
        : warnings.length > 0
          ? `applied with warnings: ${warnings.join('; ')}`
          : '';
    this.events.onAck?.(record, version, method, reasons, rejectedServices, warnings);
  }

  /** The agent's latest per-service counters (checked by the stream: names clipped, at most MAX_COUNTED_SERVICES). */
  counters(record: AgentRecord, counters: readonly ServiceCounters[], at: Date, version = ''): void {
    record.counters = counters;
    record.countersAt = at;
    this.events.onCounters?.(record, counters, at, version);
  }

  /**
   * A NACK of `version`. The running version it names is the agent's word: it is believed only when it is one of
   * `sent` (versions its stream sent it) or the one it is already recorded as running (its hello's, its last ACK's).
   * Its traffic is counted for the revision of what it runs, so an agent naming any other version could have its
   * Stats count for a revision it was never sent. Otherwise the record keeps its running version; returns whether
   * the claim was believed.
   */
  nack(
    record: AgentRecord,
    version: string,
    reason: string,
    runningVersion: string,
    sent: ReadonlySet<string>,
  ): boolean {
    const believed = runningVersion === record.runningVersion || sent.has(runningVersion);
    record.lastNackedVersion = version;
    record.lastError = reason;
    if (believed) record.runningVersion = runningVersion;
    this.events.onNack?.(record, version, reason);
    return believed;
  }

  get(nodeId: string): AgentRecord | undefined {
    this.prune();
    return this.agents.get(nodeId);
  }

  list(): AgentRecord[] {
    this.prune();
    return [...this.agents.values()].sort((a, b) => a.nodeId.localeCompare(b.nodeId));
  }

  /** How many agents are remembered (connected or not). */
  size(): number {
    return this.agents.size;
  }

  /** Forgets agents gone longer than `forgetAfterMs`, and the oldest beyond `maxDisconnected`. */
  prune(): void {
    const cutoff = this.now() - this.limits.forgetAfterMs;
    for (const [id, at] of this.gone) {
      if (at > cutoff && this.gone.size <= this.limits.maxDisconnected) break;
      this.forget(id);
    }
  }

  /** Node ids held by identity `owner` (connected or remembered). */
  heldBy(owner: string): number {
    return this.owned.get(owner)?.size ?? 0;
  }

  private forget(id: string): void {
    this.gone.delete(id);
    this.agents.delete(id);
    this.setOwner(id, undefined);
  }

  private setOwner(id: string, owner: string | undefined): void {
    const before = this.ownerOf.get(id);
    if (before === owner) return;
    if (before !== undefined) {
      const set = this.owned.get(before);
      set?.delete(id);
      if (set?.size === 0) this.owned.delete(before);
    }
    if (owner === undefined) this.ownerOf.delete(id);
    else {
      this.ownerOf.set(id, owner);
      let set = this.owned.get(owner);
      if (!set) this.owned.set(owner, (set = new Set()));
      set.add(id);
    }
  }

  connectedCount(): number {
    return this.connected;
  }
}
