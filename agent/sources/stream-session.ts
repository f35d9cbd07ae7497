import { Clock, Timer, unrefTimer } from '../../common/platform/clock';
import { errorMessage } from '../../common/platform/errors';
import { Logger } from '../../common/platform/log';
import { fromProto } from '../../common/protocol/state-codec';
import { DesiredState } from '../../common/protocol/types';
import { RuntimeServer } from '../../common/gen/proxymgr/v1/admin';
import { ServiceCounters } from '../../common/gen/proxymgr/v1/counters';
import { ReloadStats } from '../../common/gen/proxymgr/v1/reloads';
import { DesiredState as ProtoState } from '../../common/gen/proxymgr/v1/state';
import {
  AgentMessage,
  AgentSettings,
  ControlMessage,
  Hello,
  PreflightReport,
  Push,
} from '../../common/gen/proxymgr/v1/stream';
import { ApplyFn } from '../ports';
import { ApplyResult, PreflightResult } from '../results';
import { HeldAcrossStreams, HeldState, PushMismatch } from './held-state';
import { fitAgentMessage } from './message-fit';
import {
  ackOf,
  nackOf,
  nackOfError,
  preflightFailure,
  preflightReportOf,
  STATS_INTERVAL_MS,
  statsIntervalOf,
  wasApplied,
  withCutNote,
} from './stream-messages';

/** How old the counters sent with an ACK may be. */
const ACK_COUNTERS_MAX_AGE_MS = 500;

/** The side of a stream a session writes to: the gRPC call, or a test's fake. */
export interface StreamTransport {
  write(msg: AgentMessage): void;
}

/** What a stream asks of the agent beyond applying a state. */
export interface StreamHooks {
  /** The version the agent runs now (sent in every hello so nothing is re-applied needlessly). */
  readonly runningVersion: () => string;
  /**
   * HAProxy's per-service counters no older than `maxAgeMs` (empty when unknown), sent with every ACK and every
   * stats interval (STATS_INTERVAL_MS, or what the control plane's AgentSettings say).
   */
  readonly counters?: (maxAgeMs: number) => Promise<ServiceCounters[]>;
  /** Whether a state would apply whole, without applying it (the control plane's PreflightRequest before a rollout's first wave). */
  readonly preflight?: (state: DesiredState) => Promise<PreflightResult>;
  /** What HAProxy has now, for the control plane's StateRequest (`proxymgr ctl agent NODE`); a sentence when unknown. */
  readonly reportState?: () => Promise<RuntimeServer[] | string>;
  /** The agent's reloads and old HAProxy generations, sent with the StateRequest's answer. */
  readonly reloadStats?: () => ReloadStats | undefined;
}

/** Pushes taken, resyncs asked for and messages cut to fit, over every stream of a source (metrics, tests). */
export interface SourceStats {
  pushes: number;
  full: number;
  deltas: number;
  resyncs: number;
  cut: number;
}

/** What every session of one source shares. */
export interface SessionDeps {
  readonly hooks: StreamHooks;
  readonly apply: ApplyFn;
  /** What the agent holds across streams: a push taken, then applied, is recorded there. */
  readonly holding: HeldAcrossStreams;
  readonly stats: SourceStats;
  readonly clock: Clock;
  /** The source's logger, which state reports are sent under; the session's own names the control plane. */
  readonly sourceLog: Logger;
}

/**
 * One stream to a control plane after its hello (docs/protocol.md): takes each push into what the agent holds as it
 * arrives, in order, and asks for a full resync when one does not fit; applies pushes and answers each with ACK or
 * NACK, the latest winning; answers preflight and state requests; sends counters every stats interval. The transport
 * (the gRPC call) and its reconnects belong to GrpcStateSource, which ends the session when the stream ends.
 *
 * Latest wins: one push is applied at a time and at most one waits; a newer push replaces the waiting one. A
 * replaced push is never applied nor answered: the control plane takes only the answer to its newest nonce, so a
 * slow apply neither grows a queue of full states nor applies stale ones.
 */
/** A push taken and not yet applied, with the changes it brings and those of the pushes it replaced unapplied. */
interface Waiting {
  readonly push: Push;
  readonly state: DesiredState;
  /** Change id → when it was received (this agent's clock). */
  readonly changes: ReadonlyMap<string, number>;
}

/** The change ids an ACK names at most (twice what one push may carry: a replaced push's and the new one's). */
const MAX_TRACED_CHANGES = 2000;

export class StreamSession {
  /** A push is being applied. */
  private applying = false;
  /** The push taken and waiting for the one being applied (at most one: a newer push replaces it). */
  private waiting: Waiting | undefined;
  /** A push did not fit: only a full one is taken until it comes (one Resync per episode). */
  private awaitingFull = false;
  /** The push answered last on this stream: a retry of its state answers it again (answerAgain). */
  private lastAnswered: Push | undefined;
  private statsTimer: Timer | undefined;
  private statsEveryMs = STATS_INTERVAL_MS;
  private streamEnded = false;
  /** A newer stream replaced this one: answers to questions still pending are not sent. */
  private superseded = false;

  /** `held`: what the stream builds on (its hello declares it); `log`: a logger naming the control plane. */
  constructor(
    private readonly deps: SessionDeps,
    private readonly transport: StreamTransport,
    private readonly held: HeldState,
    readonly hello: Hello,
    private readonly log: Logger,
  ) {}

  /** The stream ended (an error, the control plane's end, a cancel): nothing more is applied or sent on it. */
  get ended(): boolean {
    return this.streamEnded;
  }

  /** Sends the hello and starts the stats interval (when there are counters to send). */
  start(): void {
    this.send({ hello: this.hello });
    if (this.deps.hooks.counters) this.sendStatsLater();
  }

  /** Takes one message from the control plane. */
  receive(msg: ControlMessage): void {
    if (msg.stateRequest) return void this.report(msg.stateRequest.id);
    if (msg.preflightRequest) return void this.preflight(msg.preflightRequest.id, msg.preflightRequest.state);
    if (msg.settings) return this.takeSettings(msg.settings);
    if (msg.push) this.take(msg.push);
  }

  /** The stream ended: the stats interval stops, and nothing more is applied or answered on it. */
  end(): void {
    this.streamEnded = true;
    this.deps.clock.clearTimeout(this.statsTimer);
  }

  /** A newer stream replaced this one. */
  supersede(): void {
    this.superseded = true;
  }

  /**
   * The agent applied the state of this stream's last answered push again (a retry after a transient failure): that
   * push is answered again, so the control plane's record goes from the NACK (or the partial ACK) to what runs now.
   * Nothing when a newer push was answered since, or this stream was superseded (the next hello declared what runs).
   */
  async answerAgain(result: ApplyResult): Promise<void> {
    const last = this.lastAnswered;
    if (!last || this.superseded || last.version !== result.version) return;
    const reply = await this.replyFor(last, result);
    if (this.lastAnswered === last && !this.superseded) this.send(reply);
  }

  private takeSettings(settings: AgentSettings): void {
    const every = statsIntervalOf(settings.statsIntervalMs);
    if (every === this.statsEveryMs) return;
    this.log.info({ stats_interval_ms: every }, 'control plane set the stats interval');
    this.statsEveryMs = every;
    if (this.deps.hooks.counters && !this.streamEnded) {
      this.deps.clock.clearTimeout(this.statsTimer);
      this.sendStatsLater();
    }
  }

  private take(push: Push): void {
    const { stats } = this.deps;
    stats.pushes++;
    if (this.awaitingFull && !push.full && !push.state)
      return this.log.debug(
        { nonce: push.nonce, version: push.version },
        'waiting for the full push; ignoring a delta',
      );
    let state: DesiredState;
    try {
      state = this.held.take(push);
    } catch (err) {
      if (!(err instanceof PushMismatch)) throw err;
      stats.resyncs++;
      this.awaitingFull = true;
      this.log.warn(
        { nonce: push.nonce, version: push.version, err: err.message },
        'push does not fit what this agent holds; asking for a full resync (the running state is kept)',
      );
      this.send({ resync: { nonce: push.nonce, reason: err.message } });
      return;
    }
    this.awaitingFull = false;
    this.deps.holding.taken();
    if (push.full || push.state) stats.full++;
    else stats.deltas++;
    if (this.waiting)
      this.log.debug(
        { superseded: this.waiting.push.version, nonce: this.waiting.push.nonce, by: push.version },
        'push superseded before it was applied; not answering it',
      );
    const changes = new Map(this.waiting?.changes);
    const now = this.deps.clock.now();
    for (const id of push.changeIds) {
      if (changes.size >= MAX_TRACED_CHANGES) break;
      if (id.length <= 64 && !changes.has(id)) changes.set(id, now);
    }
    this.waiting = { push, state, changes };
    if (!this.applying) void this.drain();
  }

  /** Applies the waiting push, and the one that came meanwhile, until none waits or the stream ends. */
  private async drain(): Promise<void> {
    this.applying = true;
    try {
      while (this.waiting && !this.streamEnded) {
        const waiting = this.waiting;
        const { push } = waiting;
        this.waiting = undefined;
        const reply = await this.answer(waiting);
        this.deps.holding.appliedVersion(push.version);
        if (!this.streamEnded) {
          this.send(reply);
          this.lastAnswered = push;
        }
      }
    } finally {
      this.applying = false;
    }
  }

  /** Applies one push and builds its ACK or NACK (never throws: an apply that throws is a NACK). */
  private async answer({ push, state, changes }: Waiting): Promise<AgentMessage> {
    try {
      const result = await this.deps.apply(state);
      return await this.replyFor(push, result, { changes, appliedAt: this.deps.clock.now() });
    } catch (err) {
      return nackOfError(push, err, this.deps.hooks.runningVersion());
    }
  }

  /**
   * The ACK or NACK of `push` for how it was applied; an ACK carries fresh counters and, when `traced`, the changes
   * the apply brought with the time each waited here and how long ago the apply ended (this agent's clock only).
   */
  private async replyFor(
    push: Push,
    result: ApplyResult,
    traced?: { readonly changes: ReadonlyMap<string, number>; readonly appliedAt: number },
  ): Promise<AgentMessage> {
    if (!wasApplied(result)) return nackOf(push, result, this.deps.hooks.runningVersion());
    // Fresh: the traffic gates count what came after this sample for the version it ACKs.
    const counters = await this.countersNow(ACK_COUNTERS_MAX_AGE_MS);
    if (!traced) return ackOf(push, result, counters);
    const now = this.deps.clock.now();
    const changes = [...traced.changes].map(([id, at]) => ({ id, queuedMs: Math.max(0, traced.appliedAt - at) }));
    return ackOf(push, result, counters, { changes, appliedAgoMs: Math.max(0, now - traced.appliedAt) });
  }

  /** Answers a StateRequest with what HAProxy has (never throws: a failure is the report's error). */
  private async report(id: string): Promise<void> {
    const { hooks } = this.deps;
    let servers: RuntimeServer[] = [];
    let error = '';
    try {
      const state = hooks.reportState ? await hooks.reportState() : 'this agent does not report its HAProxy state';
      if (typeof state === 'string') error = state;
      else servers = state;
    } catch (err) {
      error = errorMessage(err);
    }
    if (!this.superseded)
      this.send(
        { stateReport: { id, servers, error, runningVersion: hooks.runningVersion(), reloads: hooks.reloadStats?.() } },
        this.deps.sourceLog,
      );
  }

  /** Answers a PreflightRequest (never throws: a failure is the report's error). Nothing is applied. */
  private async preflight(id: string, proto: ProtoState | undefined): Promise<void> {
    const { hooks } = this.deps;
    let report: PreflightReport;
    try {
      if (!proto || !hooks.preflight)
        throw new Error(proto ? 'this agent cannot preflight' : 'preflight request without a state');
      report = preflightReportOf(id, await hooks.preflight(fromProto(proto)));
    } catch (err) {
      report = preflightFailure(id, err);
    }
    this.log.info(
      { version: proto?.version, ok: report.ok, method: report.method, error: report.error || undefined },
      'preflight',
    );
    if (!this.superseded) this.send({ preflightReport: report });
  }

  /** Counters between ACKs, so the control plane sees traffic while nothing changes (protocol 2 control planes). */
  private sendStatsLater(): void {
    const { clock, hooks } = this.deps;
    this.statsTimer = clock.setTimeout(() => {
      void this.countersNow(this.statsEveryMs / 2).then((counters) => {
        if (!this.streamEnded && counters.length > 0)
          this.send({ stats: { counters, runningVersion: hooks.runningVersion() } });
      });
      this.sendStatsLater();
    }, this.statsEveryMs);
    unrefTimer(this.statsTimer);
  }

  /** The counters to send now; never throws (they are figures for the control plane, not part of the apply). */
  private async countersNow(maxAgeMs: number): Promise<ServiceCounters[]> {
    try {
      return (await this.deps.hooks.counters?.(maxAgeMs)) ?? [];
    } catch {
      return [];
    }
  }

  /**
   * Writes a message to the control plane, fitted to its receive limit (fitAgentMessage): a larger one would end the
   * stream, and every reconnect would fail the same way. What was cut is logged, counted, and said in an ACK's or a
   * preflight report's warnings, so the control plane's operator sees it too.
   */
  private send(msg: AgentMessage, log: Logger = this.log): void {
    const fitted = fitAgentMessage(msg);
    let out = fitted.msg;
    if (fitted.cut.length > 0) {
      this.deps.stats.cut++;
      log.warn(
        { cut: fitted.cut, bytes: fitted.bytes },
        'a message to the control plane was cut to fit its receive limit',
      );
      out = withCutNote(out, fitted.cut);
    }
    this.transport.write(out);
  }
}
