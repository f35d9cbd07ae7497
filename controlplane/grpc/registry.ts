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

  constructor(
    private readonly events: RegistryEvents = {},
    private readonly limits: RegistryLimits = DEFAULT_REGISTRY_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

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
      ...hello,
      connected: true,
      connectedSince: new Date(),
    };
    this.agents.set(record.nodeId, record);
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
    method: string,
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

  nack(record: AgentRecord, version: string, reason: string, runningVersion: string): void {
    record.lastNackedVersion = version;
    record.lastError = reason;
    record.runningVersion = runningVersion;
    this.events.onNack?.(record, version, reason);
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
      this.gone.delete(id);
      this.agents.delete(id);
    }
  }

  connectedCount(): number {
    return this.connected;
  }
}
