import { ServiceCounters } from '../../common/gen/proxymgr/v1/counters';
import { applyMethodFromWire } from '../../common/protocol/apply-method';
import { Logger } from '../../common/platform/log';
import { revisionOfVersion } from '../../common/protocol/revision-id';
import { clipText } from '../../common/platform/text';
import { DesiredState } from '../../common/protocol/types';
import { AgentRecord, PreflightAsker, RegistryEvents } from '../ports';
import { RolloutDoc } from './engine';
import { AgentStatus, PreflightStatus, RolloutStore } from './store';
import { TrafficPublisher } from './traffic-publisher';

/** How long what an agent that left is kept for its reconnect: as long as the registry keeps its record (an hour). */
export const DEFAULT_FORGET_DEPARTED_MS = 3_600_000;
/** The most agents that left kept at once: as many as the registry keeps disconnected records. */
export const DEFAULT_MAX_DEPARTED = 50_000;

/** What AgentReports needs of the coordinator around it. */
export interface AgentReportsDeps {
  store(): RolloutStore;
  readonly replicaId: string;
  readonly log: Logger;
  readonly now: () => number;
  traffic(): TrafficPublisher;
  /** Preflight questions to this replica's agents; without it no agent is asked. */
  readonly preflights?: PreflightAsker;
  /** The state of revision `id` for an agent with `labels` (undefined while not known). */
  stateOf(id: string, labels: Readonly<Record<string, string>>): DesiredState | undefined;
  /** The services a rollout changes (undefined while its revisions are not both loaded). */
  changedBy(r: RolloutDoc): Set<string> | undefined;
  /** The services the current rollout changes when `revision` is its target. */
  rolloutChanged(revision: string): Set<string> | undefined;
  /**
   * How long what an agent that left is remembered for its reconnect (a partial apply, its preflight answer);
   * DEFAULT_FORGET_DEPARTED_MS by default.
   */
  readonly forgetAfterMs?: number;
  /** The most agents that left remembered at once (the oldest go first); DEFAULT_MAX_DEPARTED by default. */
  readonly maxDeparted?: number;
}

/**
 * One replica's agents, as the rollouts see them: their hellos, ACKs and NACKs written to ZooKeeper as agent status
 * (a partial apply of a service the rollout changed counted as a NACK), their counters handed to the traffic sums,
 * and — while a rollout is in its preflight — the preflight question to each of them, its answer recorded in its
 * status for the leader.
 */
export class AgentReports {
  private readonly statuses = new Map<string, AgentStatus>();
  /** Preflights asked of this replica's agents: node id → the question's token (rollout id#n). */
  private readonly preflightAsked = new Map<string, string>();

  /**
   * Agents that left this replica, by node id, oldest first, with when they left: their partial apply and preflight
   * answer are kept for a reconnect, then dropped (node ids are the agents' to choose: a wildcard credential can
   * make any number of them).
   */
  private readonly departed = new Map<string, number>();
  private readonly forgetAfterMs: number;
  private readonly maxDeparted: number;

  constructor(private readonly deps: AgentReportsDeps) {
    this.forgetAfterMs = deps.forgetAfterMs ?? DEFAULT_FORGET_DEPARTED_MS;
    this.maxDeparted = deps.maxDeparted ?? DEFAULT_MAX_DEPARTED;
  }

  /** How many agents this replica holds something for, per map (what the bound is measured on). */
  sizes(): Record<string, number> {
    return {
      statuses: this.statuses.size,
      preflightAsked: this.preflightAsked.size,
      partial: this.partial.size,
      records: this.records.size,
      preflightResults: this.preflightResults.size,
      departed: this.departed.size,
    };
  }

  /** Drops what is kept of agents gone longer than the forget age, and of the oldest beyond the cap. */
  private forgetDeparted(): void {
    const cutoff = this.deps.now() - this.forgetAfterMs;
    for (const [nodeId, at] of this.departed) {
      if (at >= cutoff && this.departed.size <= this.maxDeparted) break;
      this.departed.delete(nodeId);
      this.partial.delete(nodeId);
      this.preflightResults.delete(nodeId);
    }
  }

  /** On every rollout document: a new rollout forgets the last one's preflight answers; preflights to ask. */
  follow(r: RolloutDoc | undefined): void {
    if (this.preflightResults.size > 0 && [...this.preflightResults.values()][0]!.rollout !== r?.id)
      this.preflightResults.clear();
    this.askPreflights();
  }

  /** Agents whose running version is a partial apply (see registryEvents' onAck): node id → that version. */
  private readonly partial = new Map<string, string>();

  /** Registry events that report this replica's agents to ZooKeeper. */
  events(): Required<Pick<RegistryEvents, 'onConnect' | 'onDisconnect' | 'onAck' | 'onNack' | 'onCounters'>> {
    const put = (agent: AgentRecord, change: Partial<AgentStatus>) => {
      const prev = this.statuses.get(agent.nodeId);
      const status: AgentStatus = {
        nodeId: agent.nodeId,
        labels: agent.labels,
        replica: this.deps.replicaId,
        runningVersion: agent.runningVersion,
        // A version applied without a service its rollout changed does not count as running that revision, also
        // after a reconnect re-reports it.
        runningRevision:
          this.partial.get(agent.nodeId) === agent.runningVersion
            ? (prev?.runningRevision ?? '')
            : revisionOfVersion(agent.runningVersion),
        connectedAt: prev?.connectedAt ?? this.deps.now(),
        ...(prev?.lastAck ? { lastAck: prev.lastAck } : {}),
        ...(prev?.lastNack ? { lastNack: prev.lastNack } : {}),
        ...(prev?.preflight ? { preflight: prev.preflight } : {}),
        ...(this.deps.preflights && agent.capabilities?.includes('preflight') ? { canPreflight: true } : {}),
        ...change,
      };
      this.statuses.set(agent.nodeId, status);
      this.deps.store().putAgent(status);
    };
    this.putStatus = put;
    return {
      onConnect: (agent) => {
        this.departed.delete(agent.nodeId);
        this.forgetDeparted();
        this.statuses.delete(agent.nodeId);
        this.preflightAsked.delete(agent.nodeId);
        this.records.set(agent.nodeId, agent);
        // Its answer to the current rollout's preflight stands across a reconnect (a failure keeps it from being the canary).
        const pf = this.preflightResults.get(agent.nodeId);
        put(agent, pf ? { preflight: pf } : {});
        setImmediate(() => this.askPreflights()); // once the stream has registered for questions
      },
      onDisconnect: (agent) => {
        this.statuses.delete(agent.nodeId);
        this.preflightAsked.delete(agent.nodeId);
        this.records.delete(agent.nodeId);
        this.deps.traffic().forget(agent.nodeId);
        this.deps.store().removeAgent(agent.nodeId);
        this.departed.delete(agent.nodeId); // re-inserted: the map stays in the order agents left
        this.departed.set(agent.nodeId, this.deps.now());
        this.forgetDeparted();
      },
      onCounters: (agent, counters, at, version) => {
        const status = this.statuses.get(agent.nodeId);
        const revision = status?.runningRevision ?? revisionOfVersion(agent.runningVersion);
        // A Stats that names another version than the agent's ACKed one (sent right after an apply, before its ACK
        // arrived — or a lie): a boundary, nothing counted, so traffic is never put on a revision the agent did not
        // ACK. A partial apply's traffic counts for neither side.
        const countable =
          (version === '' || version === agent.runningVersion) &&
          this.partial.get(agent.nodeId) !== agent.runningVersion;
        const state = this.deps.stateOf(revision, agent.labels);
        // One voice per credential: a wildcard identity's many node ids speak as one agent in the gate.
        this.deps
          .traffic()
          .sample(agent.nodeId, revision, boundedGauges(counters, state), at.getTime(), countable, agent.credential);
      },
      onAck: (agent, version, _method, _reasons, rejected, warnings) => {
        const revision = revisionOfVersion(version);
        // A partial apply (a service HAProxy refused here, a port taken on this host) of a service the current
        // rollout changed: the agent runs the rest, but it did not take the revision — a NACK, so the canary halts
        // the rollout. A service the rollout did not touch (already refused before, a local port clash) is no
        // reason to hold back every rollout on this host: a plain ACK (the agent's last error still names it).
        const changed = this.deps.rolloutChanged(revision);
        const counted = rejected.filter((s) => changed?.has(s) ?? false);
        if (counted.length === 0) {
          this.partial.delete(agent.nodeId);
          return put(agent, { lastAck: { version, revision, at: this.deps.now() } });
        }
        this.partial.set(agent.nodeId, version);
        const error = `applied without service(s) ${counted.join(', ')}: ${warnings.join('; ')}`;
        put(agent, { lastNack: { version, revision, error, at: this.deps.now() } });
      },
      onNack: (agent, version, reason) =>
        put(agent, { lastNack: { version, revision: revisionOfVersion(version), error: reason, at: this.deps.now() } }),
    };
  }

  /** Writes an agent's status (set by registryEvents). */
  private putStatus: ((agent: AgentRecord, change: Partial<AgentStatus>) => void) | undefined;
  /** This replica's agent records by node id, for preflights (set by registryEvents' onConnect). */
  private readonly records = new Map<string, AgentRecord>();

  private askCounter = 0;

  /**
   * While the current rollout is in its preflight, asks each agent of this replica that can preflight (once per
   * rollout) whether it could run the rollout's revision, and records the answer in its status for the leader.
   * An agent that does not answer in time (or leaves) is not recorded: the leader counts it as unanswered.
   */
  askPreflights(): void {
    const r = this.deps.store().doc?.current;
    const preflights = this.deps.preflights;
    if (
      !preflights ||
      !r ||
      r.state !== 'running' ||
      r.waves.length > 0 ||
      !r.policy.preflight?.enabled ||
      r.preflight?.completedAt
    )
      return;
    const changed = this.deps.changedBy(r);
    if (!changed) return; // asked again once the revisions are loaded (load → followRollout)
    for (const [nodeId, status] of this.statuses) {
      if (this.preflightAsked.get(nodeId)?.startsWith(`${r.id}#`) || !preflights.has(nodeId)) continue;
      const state = this.deps.stateOf(r.to, status.labels);
      if (!state) continue;
      const token = `${r.id}#${++this.askCounter}`;
      this.preflightAsked.set(nodeId, token);
      void preflights.ask(nodeId, state, r.policy.preflight.timeoutMs).then((report) => {
        const agent = this.records.get(nodeId);
        // Only the answer to the latest question to this agent counts (a reconnect asks again).
        if (!agent || this.statuses.get(nodeId) === undefined || this.preflightAsked.get(nodeId) !== token) return;
        if (typeof report === 'string') {
          this.deps.log.warn(
            { rollout: r.id, node_id: nodeId, why: report },
            'no preflight answer; the leader counts the agent as unanswered',
          );
          return;
        }
        // Only services this rollout changes count (as for a partial apply): an old local problem does not block it.
        const counted = report.rejectedServices.filter((x) => changed.has(x));
        const ok = report.ok || (!report.wholeConfig && report.rejectedServices.length > 0 && counted.length === 0);
        const error = ok ? '' : clipText(report.error || `would leave out ${counted.join(', ')}`, 600);
        const method = applyMethodFromWire(report.method);
        const result: PreflightStatus = {
          rollout: r.id,
          ok,
          error,
          method,
          reasons: report.reasons.slice(0, 20).map((x) => clipText(x, 256)),
          at: this.deps.now(),
        };
        this.preflightResults.set(nodeId, result);
        this.deps.log.info(
          { rollout: r.id, node_id: nodeId, ok, method, error: error || undefined },
          'preflight answered',
        );
        this.putStatus?.(agent, { preflight: result });
      });
    }
  }

  /** Preflight answers of the current rollout, kept across an agent's reconnects (see registryEvents' onConnect). */
  private readonly preflightResults = new Map<string, PreflightStatus>();
}

/** Servers per service of a desired state (kept per state object: every agent's every sample reads it). */
const serversOf = new WeakMap<DesiredState, Map<string, number>>();

/**
 * An agent's gauges as far as the control plane can vouch for them: its servers of a service at most the servers it
 * was sent for that service (when its state is known), DOWN at most those. A claimed huge fleet cannot dilute the
 * DOWN share, nor a stable agent claim more DOWN servers than it runs.
 */
export function boundedGauges(
  counters: readonly ServiceCounters[],
  state: DesiredState | undefined,
): readonly ServiceCounters[] {
  let sent: Map<string, number> | undefined;
  if (state) {
    sent = serversOf.get(state);
    if (!sent) serversOf.set(state, (sent = new Map(state.services.map((s) => [s.name, s.servers.length]))));
  }
  return counters.map((c) => {
    const servers = sent ? Math.min(c.servers, sent.get(c.service) ?? 0) : c.servers;
    const serversDown = Math.min(c.serversDown, servers);
    return servers === c.servers && serversDown === c.serversDown ? c : { ...c, servers, serversDown };
  });
}
