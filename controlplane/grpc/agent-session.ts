import { applyMethodFromWire } from '../../common/protocol/apply-method';
import { status } from '@grpc/grpc-js';
import { Clock, Timer, unrefTimer } from '../../common/platform/clock';
import { Logger } from '../../common/platform/log';
import { PROTOCOL_VERSION } from '../../common/protocol/resources';
import { toProto } from '../../common/protocol/state-codec';
import { Ack, AgentMessage, ControlMessage, Hello, Nack, Resync, Stats } from '../../common/gen/proxymgr/v1/stream';
import { AgentRecord, DesiredStateSource } from '../ports';
import { AgentPreflights, AgentStateRequests } from './agent-questions';
import {
  checkedCounters,
  checkedPreflightReport,
  checkedRefusals,
  checkedStateReport,
  clip,
  clipText,
  MAX_VERSION_FIELD,
  plain,
} from './agent-input';
import { LARGE_PUSH_BYTES, PushPacer, StatsLimiter } from './pacing';
import { preEncodedPush } from './push-encoding';
import {
  afterAckAgain,
  afterNack,
  afterPush,
  afterResync,
  encodePush,
  heldResources,
  Holding,
  holdingOf,
  lacks,
  msUntilOverdue,
  PushKind,
} from './push-planner';
import { AgentRegistry } from './registry';
import { afterAck as servicesAfterAck, afterNack as servicesAfterNack, HeldResources } from '../service-status';
import { DesiredState } from '../../common/protocol/types';
import { NonceSource, StreamStats } from './stream-stats';
import { ChangeTrace } from '../trace/change-trace';
import { MAX_TRACED_PER_PUSH, tracedAck } from '../trace/trace-input';
import { resourceSet } from '../../common/protocol/resources';

/** The side of a stream a session writes to: the gRPC call, or a test's fake. */
export interface SessionTransport {
  /** Sends `msg`; `sent`, when given, is called once it is sent on (or the stream is gone). */
  write(msg: ControlMessage, sent?: () => void): void;
  /** Ends the stream with a gRPC status; the transport then closes the session. */
  fail(code: status, details: string): void;
}

/** What every session of one stream server shares. */
export interface SessionDeps {
  readonly source: DesiredStateSource;
  readonly registry: AgentRegistry;
  readonly stateRequests: AgentStateRequests;
  readonly preflights?: AgentPreflights;
  readonly pacer: PushPacer;
  readonly clock: Clock;
  readonly stats: StreamStats;
  readonly nonces: NonceSource;
  /** How long a push may go unanswered before the next one is sent anyway. */
  readonly answerTimeoutMs: number;
  /** A Stats message sooner than this after the stream's last accepted one is dropped. */
  readonly minStatsIntervalMs: number;
  /** The change trace: pushes carry the ids of the changes they bring, answers say they were applied or refused. */
  readonly trace?: ChangeTrace;
}

/** What identifies a push to its answer, with what it carried and what the agent held before (service status). */
interface PushId {
  readonly version: string;
  readonly nonce: string;
  readonly state: DesiredState;
  readonly held: HeldResources | undefined;
  /** When it was sent (this control plane's clock). */
  readonly at: number;
}

/**
 * Versions a stream remembers having sent, newest last: the agent's running version after a NACK is the last one it
 * applied, at most a few pushes back (one whose ACK was overtaken by the next push after the answer timeout).
 */
const MAX_SENT_REMEMBERED = 16;

/** Pushes kept awaiting an answer: an agent that never answers gets a push per answer timeout. */
const MAX_UNANSWERED = 16;

/**
 * One connected agent's stream after its hello (delta-xDS style, docs/protocol.md). When the desired state differs
 * from what the agent holds, it pushes what changed — one encoding per (change, base), shared by every agent that
 * gets it — each push with a fresh nonce; an ACK records the version; a NACK records the error. The agent holds what
 * it was sent whether it applied it or not, so a NACKed version is not sent again while it is the last one this
 * agent got; once a different version went out, a state that flaps back to the NACKed one is pushed again (as the
 * delta back): a new change, not a loop, and what failed then (a port in use) may well apply now. A Resync gets a
 * full push. Agents from before incremental pushes (protocol 0) get whole states.
 *
 * Flow control: while a push is out, unanswered and not overdue (answerTimeoutMs), the next waits; it will carry
 * every change since. Pushes go through the server's PushPacer; the state is picked when the push's turn comes.
 */
export class AgentSession {
  /** What the agent holds, as the push planner reads it. */
  private holding: Holding;
  private readonly capabilities: ReadonlySet<string>;
  /** The settings last sent (JSON), so that a change is sent once. */
  private sentSettings = '';
  /** The push sent last, while it awaits its answer. */
  private outstanding: PushId | undefined;
  /** The push answered last: the agent may answer it again after a retry, until the next push goes out. */
  private lastAnswered: PushId | undefined;
  /** The versions pushed on this stream (the newest MAX_SENT_REMEMBERED): what a NACK may say the agent runs. */
  private readonly sentVersions = new Set<string>();
  /** Pushes sent since the agent last answered, by nonce: a Resync must name one of them. */
  private readonly unanswered = new Map<string, PushKind>();
  /** Armed only while a change waits for the outstanding push's answer: it lets the change go once overdue. */
  private answerTimer: Timer | undefined;
  /** A push waits in the pacer's queue. */
  private queued = false;
  /** A large push's bytes are written and not yet sent on: the next waits (see PushPacer's byte budget). */
  private sending: (() => void) | undefined;
  private closed = false;
  private readonly statsLimiter: StatsLimiter;
  private unsubscribe: (() => void) | undefined;
  private unregisterRequests: (() => void) | undefined;
  private unregisterPreflights: (() => void) | undefined;

  /** `agent`: the record its admitted hello connected; `log`: a logger naming the agent. */
  constructor(
    private readonly deps: SessionDeps,
    private readonly transport: SessionTransport,
    readonly agent: AgentRecord,
    private readonly hello: Hello,
    private readonly log: Logger,
  ) {
    this.holding = holdingOf(hello);
    this.capabilities = new Set(hello.capabilities);
    this.statsLimiter = new StatsLimiter(deps.minStatsIntervalMs);
  }

  /** The stream protocol its hello named. */
  get protocol(): number {
    return this.holding.protocol;
  }

  /** Starts following the desired state: settings and the first push go out if due, questions can be asked. */
  start(): void {
    const { hello, deps } = this;
    this.log.info(
      {
        running_version: hello.runningVersion,
        protocol: this.protocol,
        base_version: hello.baseVersion,
        base_resources: Object.keys(hello.baseResources).length,
      },
      'agent connected',
    );
    this.unsubscribe = deps.source.subscribe(() => {
      this.sendSettings();
      this.maybePush();
    });
    if (this.protocol === PROTOCOL_VERSION)
      this.unregisterRequests = deps.stateRequests.register(hello.nodeId, (id) =>
        this.transport.write({ stateRequest: { id } }),
      );
    const preflights = deps.preflights;
    if (this.protocol === PROTOCOL_VERSION && this.capabilities.has('preflight') && preflights) {
      this.unregisterPreflights = preflights.register(hello.nodeId, (id, state) =>
        this.transport.write({ preflightRequest: { id, state: toProto(state) } }),
      );
    }
    this.sendSettings();
    this.traceHeld();
    this.maybePush();
  }

  /**
   * An agent that connects running what it holds has applied the changes that brings (on a stream before this one,
   * or on another replica): traced as applied now, by a method this stream did not see — an upper bound of its time.
   */
  private traceHeld(): void {
    const held = heldResources(this.holding);
    if (!this.deps.trace || !held || this.hello.runningVersion !== this.hello.baseVersion) return;
    const at = this.deps.clock.now();
    this.deps.trace.applied(this.agent.nodeId, held.resources, {
      method: 'unspecified',
      at,
      queued: new Map(),
      refusals: new Map(),
    });
  }

  /** A message from the agent after its hello. */
  receive(msg: AgentMessage): void {
    if (msg.ack && this.isAnswerAgain(msg.ack)) this.ackAgain(msg.ack);
    else if (msg.nack && this.isAnswerAgain(msg.nack)) this.recordNack(msg.nack, clipText(msg.nack.reason));
    else if (msg.ack) this.onAck(msg.ack);
    else if (msg.nack) this.onNack(msg.nack);
    else if (msg.stats) this.onStats(msg.stats);
    else if (msg.stateReport) this.deps.stateRequests.answer(this.agent.nodeId, checkedStateReport(msg.stateReport));
    else if (msg.preflightReport)
      this.deps.preflights?.answer(this.agent.nodeId, checkedPreflightReport(msg.preflightReport));
    else if (msg.resync) this.onResync(msg.resync);
  }

  /** The stream is gone: stops pushing, takes back the questions, marks the agent disconnected. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.deps.pacer.cancel(this.send);
    this.answered();
    this.unregisterRequests?.();
    this.unregisterPreflights?.();
    this.sending?.(); // its bytes will never be sent on
    this.sending = undefined;
    this.unsubscribe?.();
    this.deps.registry.disconnect(this.agent);
    this.log.info({}, 'agent disconnected');
  }

  private isAnswerAgain(a: { readonly version: string; readonly nonce: string }): boolean {
    return (
      this.outstanding === undefined && a.nonce === this.lastAnswered?.nonce && a.version === this.lastAnswered.version
    );
  }

  /** The agent retried the last push after a transient failure: its new answer replaces the old one. */
  private ackAgain(ack: Ack): void {
    this.recordAck(ack, this.lastAnswered, clip(ack.reasons));
    this.holding = afterAckAgain(this.holding, ack.version);
    this.log.info({ version: ack.version }, 'ACK again after a retry');
  }

  private onAck(ack: Ack): void {
    const outstanding = this.outstanding;
    if (ack.nonce !== outstanding?.nonce) return; // an answer to a push superseded since (or never sent)
    if (ack.version !== outstanding.version)
      return this.transport.fail(
        status.INVALID_ARGUMENT,
        `ACK for nonce ${outstanding.nonce} names version ${JSON.stringify(ack.version.slice(0, 60))}, but that push carried ${outstanding.version}`,
      );
    this.lastAnswered = outstanding;
    this.answered();
    this.unanswered.clear();
    const reasons = clip(ack.reasons);
    const { registry, clock } = this.deps;
    this.recordAck(ack, outstanding, reasons);
    if (ack.counters.length > 0)
      registry.counters(this.agent, checkedCounters(ack.counters), new Date(clock.now()), ack.version);
    // Debug: thousands of agents ACK several pushes a second; the registry keeps each one's last ACK (ctl agents).
    this.log.debug(
      { version: ack.version, method: applyMethodFromWire(ack.method), reasons, duration_ms: ack.durationMs },
      'ACK',
    );
    this.maybePush();
  }

  /** What an ACK (or a retry's ACK again) of `push` says: the services it runs or refused, and the registry's record. */
  private recordAck(ack: Ack, push: PushId | undefined, reasons: readonly string[]): void {
    this.recordServices(ack, push);
    if (push && this.deps.trace)
      this.deps.trace.applied(
        this.agent.nodeId,
        resourceSet(push.state).resources,
        tracedAck(ack, push.state, push.at, this.deps.clock.now()),
      );
    this.deps.registry.ack(
      this.agent,
      ack.version,
      applyMethodFromWire(ack.method),
      reasons,
      clip(ack.warnings),
      clip(ack.rejectedServices),
    );
  }

  private onNack(nack: Nack): void {
    const outstanding = this.outstanding;
    if (nack.nonce !== outstanding?.nonce) return;
    if (nack.version !== outstanding.version)
      return this.transport.fail(
        status.INVALID_ARGUMENT,
        `NACK for nonce ${outstanding.nonce} names version ${JSON.stringify(nack.version.slice(0, 60))}, but that push carried ${outstanding.version}`,
      );
    this.lastAnswered = outstanding;
    this.answered();
    this.unanswered.clear();
    this.holding = afterNack(this.holding, nack);
    const reason = clipText(nack.reason);
    this.recordNack(nack, reason);
    this.log.warn(
      { version: nack.version, reason },
      'NACK; not re-sending this version (an agent retries a transient failure itself and answers again)',
    );
    this.maybePush();
  }

  /** What an ACK of `push` says of each service the agent runs or refused (service-status.ts). */
  private recordServices(ack: Ack, push: PushId | undefined): void {
    if (!push) return;
    const refusals = checkedRefusals(ack.refusals, push.state);
    this.agent.services = servicesAfterAck(
      this.agent.services,
      push.state,
      applyMethodFromWire(ack.method),
      refusals,
      push.held,
    );
  }

  /** Records a NACK; a running version the stream never sent (nor the agent ran) is logged, counted, not believed. */
  private recordNack(nack: Nack, reason: string): void {
    const push = this.lastAnswered;
    if (push) this.deps.trace?.refused(this.agent.nodeId, resourceSet(push.state).resources, reason);
    if (push)
      this.agent.services = servicesAfterNack(
        this.agent.services,
        push.state,
        checkedRefusals(nack.refusals, push.state),
      );
    const running = nack.runningVersion.slice(0, MAX_VERSION_FIELD);
    if (this.deps.registry.nack(this.agent, nack.version, reason, running, this.sentVersions)) return;
    this.deps.stats.nackRunningRefused++;
    this.log.warn(
      { version: nack.version, claimed_running_version: plain(running), running_version: this.agent.runningVersion },
      'NACK names a running version this stream never sent the agent; the recorded running version is kept',
    );
  }

  private onStats(stats: Stats): void {
    const now = this.deps.clock.now();
    const verdict = this.statsLimiter.take(now);
    if (!verdict.accepted) {
      // The stream stays up (an agent whose timer fired early is no attacker); the flood buys nothing.
      this.deps.stats.statsDropped++;
      if (verdict.logDropped !== undefined)
        this.log.warn(
          { dropped: verdict.logDropped, min_interval_ms: this.statsLimiter.minIntervalMs },
          'Stats sent faster than allowed; dropped',
        );
      return;
    }
    this.deps.registry.counters(
      this.agent,
      checkedCounters(stats.counters),
      new Date(now),
      stats.runningVersion.slice(0, MAX_VERSION_FIELD),
    );
  }

  private onResync(resync: Resync): void {
    if (this.protocol !== PROTOCOL_VERSION)
      return this.transport.fail(
        status.INVALID_ARGUMENT,
        `Resync is part of stream protocol ${PROTOCOL_VERSION}; this stream's hello said ${this.protocol}`,
      );
    const reason = clipText(resync.reason);
    const kind = this.unanswered.get(resync.nonce);
    // One Resync per push it could not take: anything else would let an agent have full pushes on demand.
    if (kind === undefined)
      return this.log.debug(
        { nonce: resync.nonce.slice(0, 60) },
        'Resync for no push awaiting an answer on this stream; ignored',
      );
    if (kind === 'full') {
      this.log.error(
        { nonce: resync.nonce, reason },
        'the agent could not take a full push; closing its stream (it reconnects with backoff)',
      );
      return this.transport.fail(status.INTERNAL, `the agent could not take full push ${resync.nonce}: ${reason}`);
    }
    this.deps.stats.resyncs++;
    // The agent takes nothing until a full push: whatever is outstanding will not be answered.
    this.unanswered.clear();
    this.answered();
    this.log.warn({ nonce: resync.nonce.slice(0, 60), reason }, 'agent asks for a full resync');
    this.holding = afterResync(this.holding);
    this.maybePush();
  }

  private sendSettings(): void {
    const settings = this.capabilities.has('settings') ? this.deps.source.agentSettings?.() : undefined;
    const text = settings ? JSON.stringify(settings) : '';
    if (this.closed || !settings || text === this.sentSettings) return;
    this.sentSettings = text;
    this.transport.write({ settings });
  }

  /**
   * A push is out, unanswered and not overdue (answerTimeoutMs): the agent is still taking it, and the next waits
   * (flow control: it will carry every change since). A late answer still counts.
   */
  private awaitingAnswer(): boolean {
    const outstanding = this.outstanding;
    if (!outstanding) return false;
    const { clock, answerTimeoutMs } = this.deps;
    const left = msUntilOverdue(outstanding.at, answerTimeoutMs, clock.now());
    if (left <= 0) return false;
    if (!this.answerTimer) {
      this.answerTimer = clock.setTimeout(() => {
        this.answerTimer = undefined;
        if (this.outstanding !== outstanding) return;
        this.log.warn(
          { version: outstanding.version, nonce: outstanding.nonce, after_ms: answerTimeoutMs },
          'push not answered in time; the next change is pushed anyway',
        );
        this.maybePush();
      }, left + 1);
      unrefTimer(this.answerTimer);
    }
    return true;
  }

  private answered(): void {
    this.outstanding = undefined;
    this.deps.clock.clearTimeout(this.answerTimer);
    this.answerTimer = undefined;
  }

  /** Queues a push with the pacer if one is due and may go (nothing in flight, nothing awaiting its answer). */
  private maybePush(): void {
    if (this.closed || this.queued || this.sending || this.awaitingAnswer()) return;
    const desired = this.deps.source.desiredFor(this.agent);
    if (!desired || !lacks(this.holding, desired)) return;
    this.queued = true;
    this.deps.pacer.schedule(this.send);
  }

  /** The pacer's turn for this stream: the state is picked now, so a queued agent gets the newest one. */
  private readonly send = (): void => {
    this.queued = false;
    if (this.closed || this.sending || this.awaitingAnswer()) return;
    const { source, nonces, clock, stats, pacer } = this.deps;
    const desired = source.desiredFor(this.agent);
    if (!desired || !lacks(this.holding, desired)) return;
    const nonce = nonces.next();
    const { body, kind } = encodePush(this.holding, desired);
    this.answered(); // an overdue one, if any: its late answer no longer matches
    this.lastAnswered = undefined;
    this.outstanding = {
      version: desired.version,
      nonce,
      at: clock.now(),
      state: desired,
      held: heldResources(this.holding),
    };
    this.unanswered.set(nonce, kind);
    if (this.unanswered.size > MAX_UNANSWERED) this.unanswered.delete(this.unanswered.keys().next().value!);
    this.sentVersions.delete(desired.version); // re-inserted: newest last
    this.sentVersions.add(desired.version);
    if (this.sentVersions.size > MAX_SENT_REMEMBERED)
      this.sentVersions.delete(this.sentVersions.values().next().value!);
    this.holding = afterPush(this.holding, desired);
    if (kind === 'delta') stats.deltaPushes++;
    else if (kind === 'full') stats.fullPushes++;
    else stats.protocol0Pushes++;
    stats.bytes += body.length;
    const pushed = resourceSet(desired).resources;
    this.deps.trace?.released(this.agent.nodeId, this.outstanding.held?.resources, pushed);
    const changeIds = (this.deps.trace?.covered(this.agent.nodeId, pushed, false) ?? [])
      .slice(-MAX_TRACED_PER_PUSH)
      .map((c) => c.id);
    if (body.length < LARGE_PUSH_BYTES) {
      this.transport.write(preEncodedPush(body, nonce, changeIds));
    } else {
      const sent = pacer.wrote(body.length);
      this.sending = sent;
      this.transport.write(preEncodedPush(body, nonce, changeIds), () => {
        sent();
        if (this.sending !== sent) return;
        this.sending = undefined;
        this.maybePush(); // a change that came while this push was in flight
      });
    }
    this.log.debug({ version: desired.version, nonce, kind, bytes: body.length }, 'pushed desired state');
  };
}
