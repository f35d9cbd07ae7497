/**
 * The control plane's seams: what its parts need of each other, owned by none of them. The stream server takes
 * desired states from a DesiredStateSource (discovery, or the rollout coordinator) and reports agent events through
 * RegistryEvents; the rollout coordinator asks agents to preflight through a PreflightAsker. The gRPC code
 * (controlplane/grpc/) implements or calls these; the rollout code does not import it. Discovery reads service
 * configs from a ServiceConfigSource and hosts from Watchers a WatcherFactory makes (sources/, watchers/).
 */
import { ServiceCounters } from '../common/gen/proxymgr/v1/counters';
import { AgentSettings, PreflightReport } from '../common/gen/proxymgr/v1/stream';
import { DesiredState } from '../common/protocol/types';
import type { ServiceView } from './service-status';
import type { Host, RawServiceConfig, ServiceConfig } from './types';
import type { SourceTime } from './trace/source-changes';

/** What the control plane knows about one agent (kept after it disconnects, for ListAgents). */
export interface AgentRecord {
  nodeId: string;
  /**
   * The credential (auth.clients entry, and the certificate for a certificate entry) whose hello made this record;
   * unset without authentication. The gate counts one voice per credential.
   */
  credential?: string;
  labels: Record<string, string>;
  agentVersion: string;
  haproxyVersion: string;
  peer: string;
  connected: boolean;
  connectedSince?: Date;
  /** When the last stream closed (forgotten `forgetAfterMs` later). */
  disconnectedAt?: number;
  runningVersion: string;
  /** What the agent said it can do beyond protocol 2 (hello.capabilities: "preflight", "settings"). */
  capabilities?: readonly string[];
  lastAckedVersion: string;
  lastAckTime?: Date;
  lastNackedVersion: string;
  lastError: string;
  /** Services of the last ACKed version the agent left out (a partial apply); empty when it applied all. */
  rejectedServices?: readonly string[];
  /** Per service: the version the agent runs, how it came, what it refused (service-status.ts); unset until an answer. */
  services?: ServiceView;
  /** HAProxy's per-service counters as the agent last reported them (with an ACK or its periodic Stats), and when. */
  counters?: readonly ServiceCounters[];
  countersAt?: Date;
}

/** Listens to what happens on agent streams (metrics, rollout engine). */
export interface RegistryEvents {
  /** `rejectedServices`: services of `version` the agent did not apply (a partial apply; `warnings` say why). */
  onAck?(
    agent: AgentRecord,
    version: string,
    method: string,
    reasons: readonly string[],
    rejectedServices: readonly string[],
    warnings: readonly string[],
  ): void;
  onNack?(agent: AgentRecord, version: string, reason: string): void;
  onConnectionChange?(connected: number): void;
  /** An agent said hello (also on a second stream of the same node). */
  onConnect?(agent: AgentRecord): void;
  /** The last stream of an agent closed. */
  onDisconnect?(agent: AgentRecord): void;
  /**
   * The agent reported its per-service counters (with an ACK, after onAck, or periodically), running `version`
   * ("" when an older agent did not say).
   */
  onCounters?(agent: AgentRecord, counters: readonly ServiceCounters[], at: Date, version: string): void;
}

/** Where the stream server gets each agent's desired state: discovery's snapshot, or the rollout coordinator's release. */
export interface DesiredStateSource {
  /** The state this agent should run now, or undefined while none is known. */
  desiredFor(agent: AgentRecord): DesiredState | undefined;
  /** Calls `fn` whenever desired states may have changed; returns an unsubscribe function. */
  subscribe(fn: () => void): () => void;
  /** How agents should behave on their streams now (sent on connect and whenever it changes; checked on `subscribe`). */
  agentSettings?(): AgentSettings;
}

/** Asks connected agents whether they could run a state (controlplane/grpc/agent-questions.ts implements it). */
export interface PreflightAsker {
  /** Whether `nodeId` has a stream here that answers preflight questions. */
  has(nodeId: string): boolean;
  /** The agent's report, or why there is none (a sentence). */
  ask(nodeId: string, state: DesiredState, timeoutMs: number): Promise<PreflightReport | string>;
}

/** What a source tells discovery. */
export interface SourceListener {
  /** The complete current set of service configs (name → raw). */
  configs(configs: ReadonlyMap<string, RawServiceConfig>): void;
  /** The source cannot be read right now; everything stays as it was. */
  unavailable(reason: string): void;
}

/** A source of service configs (`zookeeper` or `file`); one implementation per file under sources/. */
export interface ServiceConfigSource {
  start(listener: SourceListener): void;
  stop(): Promise<void>;
}

/** One full report from a watcher. */
export interface HostReport {
  /** Every valid host the watcher sees now. */
  readonly hosts: readonly Host[];
  /** Entries that were skipped (malformed node, bad line, failed lookup), each naming where. */
  readonly problems: readonly { readonly where: string; readonly message: string }[];
  /**
   * When the change this report brings happened at the source, if the source records it: the newest ZooKeeper mtime
   * of a host node that is new or changed, a hosts file's mtime ('source'), a DNS answer's arrival ('arrival').
   * Absent: the report is timed when discovery sees it ('observed'), as a deleted node is.
   */
  readonly changedAt?: SourceTime;
}

export interface WatcherListener {
  hosts(report: HostReport): void;
  /** The backing system cannot be read (lost session, DNS timeout, missing file): keep the previous hosts. */
  unavailable(reason: string): void;
}

/** Follows the hosts of one service; one implementation per file under watchers/. */
export interface Watcher {
  start(listener: WatcherListener): void;
  stop(): Promise<void>;
}

/**
 * Makes the watcher each service config asks for (watchers/index.ts makes the real ones; tests and the simulator
 * pass fakes).
 */
export interface WatcherFactory {
  /** The watcher `config` asks for; throws ServiceConfigError when the config cannot be honoured here. */
  create(config: ServiceConfig, origin: string): Watcher;
  /** What identifies a running watcher: equal keys mean a config change can keep the watcher (and its hosts). */
  identity(config: ServiceConfig): string;
}
