import * as grpc from '@grpc/grpc-js';
import { backoffMs } from '../../common/platform/backoff';
import { Clock, systemClock, Timer, unrefTimer } from '../../common/platform/clock';
import { channelCredentials, TlsConfig } from '../../common/platform/grpc';
import { errorMessage, HaproxyConfigError } from '../../common/platform/errors';
import { Lifecycle, settleWithin } from '../../common/platform/lifecycle';
import { Logger } from '../../common/platform/log';
import { DesiredState } from '../../common/protocol/types';
import {
  AgentMessage,
  AgentStreamClient,
  ControlMessage,
  PreflightReport,
  Push,
} from '../../common/gen/proxymgr/v1/stream';
import { DesiredState as ProtoState } from '../../common/gen/proxymgr/v1/state';
import { RuntimeServer } from '../../common/gen/proxymgr/v1/admin';
import { ServiceCounters } from '../../common/gen/proxymgr/v1/counters';
import { ApplyResult, PreflightResult } from '../agent';
import { applyMethodToWire } from '../../common/protocol/apply-method';
import { fromProto } from '../../common/protocol/state-codec';
import { ApplyFn, ControlPlaneLink, StateSource } from '../ports';
import { HeldState, PushMismatch } from './held-state';
import { fitAgentMessage } from './message-fit';
import { clipText } from '../../common/platform/text';

export interface GrpcSourceOptions {
  /** Control-plane addresses ("host:port"), tried in turn. */
  readonly addresses: readonly string[];
  readonly nodeId: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly agentVersion: string;
  readonly haproxyVersion: string;
  /** The version the agent runs now (sent in every hello so nothing is re-applied needlessly). */
  readonly runningVersion: () => string;
  /**
   * What the agent ran before this source received anything (its disk cache): declared in the first hello as
   * what it holds, so the control plane sends only what differs (docs/protocol.md).
   */
  readonly initialState?: () => DesiredState | undefined;
  /**
   * HAProxy's per-service counters no older than `maxAgeMs` (empty when unknown), sent with every ACK and every
   * stats interval (STATS_INTERVAL_MS, or what the control plane's AgentSettings say).
   */
  readonly counters?: (maxAgeMs: number) => Promise<ServiceCounters[]>;
  /** Whether a state would apply whole, without applying it (the control plane's PreflightRequest before a rollout's first wave). */
  readonly preflight?: (state: DesiredState) => Promise<PreflightResult>;
  /** What HAProxy has now, for the control plane's StateRequest (`proxymgr ctl agent NODE`); a sentence when unknown. */
  readonly reportState?: () => Promise<RuntimeServer[] | string>;
  readonly tls?: TlsConfig;
  /** Bearer token sent with the stream (`agent.token_file`); never logged. */
  readonly token?: string;
  readonly log: Logger;
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
  /** For tests: the reconnect timers. */
  readonly clock?: Clock;
  readonly random?: () => number;
}

/** idle → running (start) → stopping → stopped (stream cancelled and client closed). */
export type GrpcSourceState = 'idle' | 'running' | 'stopping' | 'stopped';

/** How long stop() waits for a cancelled stream to report its end before it closes the client anyway. */
const STOP_WAIT_MS = 5000;

/**
 * The largest push an agent takes: a full push is the whole state (about 1.1 KiB per service of 20 servers, so
 * 4,000 services are 4.5 MiB, over grpc-js's 4 MiB default). Raised on purpose rather than chunked: a full push
 * is rare (first sync, resync) and must be applied whole anyway; 64 MiB holds some 55,000 such services, and the
 * control plane, which builds the states, is trusted not to exceed it (docs/protocol.md).
 */
export const MAX_PUSH_BYTES = 64 * 1024 * 1024;

/** How often the agent sends its per-service counters between ACKs, unless the control plane's AgentSettings say otherwise. */
export const STATS_INTERVAL_MS = 10_000;
/** How old the counters sent with an ACK may be. */
const ACK_COUNTERS_MAX_AGE_MS = 500;
/** The shortest stats interval the agent takes from a control plane. */
const MIN_STATS_INTERVAL_MS = 200;

/** Reconnect delay: exponential from base, capped, with ±50 % jitter so a fleet does not reconnect in step. */
export function reconnectDelay(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  return backoffMs(attempt, { baseMs, maxMs, jitter: 'centered', random });
}

/**
 * Desired states from the control plane over the agent stream (docs/protocol.md). Connects to each address in turn
 * with backoff and jitter, saying in its hello what it holds; takes each push into what it holds (HeldState) as it
 * arrives, in order, and asks for a full resync when one does not fit; answers every push it applies with ACK or
 * NACK (the latest push wins: one superseded while waiting is dropped unanswered). While disconnected nothing
 * changes locally.
 */
export class GrpcStateSource implements StateSource {
  private readonly lifecycle = new Lifecycle<GrpcSourceState>('grpc state source', 'idle', {
    idle: ['running', 'stopping'],
    running: ['stopping'],
    stopping: ['stopped'],
    stopped: [],
  });
  private stopping: Promise<void> | undefined;
  private call: grpc.ClientDuplexStream<AgentMessage, ControlMessage> | undefined;
  /** Resolves once the current call has ended (its status arrived). */
  private callEnded: Promise<void> = Promise.resolve();
  private client: InstanceType<typeof AgentStreamClient> | undefined;
  private timer: Timer | undefined;
  private attempt = 0;
  private next = 0;
  /** What the agent holds of the control plane's state (kept across reconnects); undefined until the first connect. */
  private held: HeldState | undefined;
  /**
   * Whether the newest push taken into `held` was applied (and answered). A push taken but never applied (the
   * stream ended while an earlier one was applying) must not be declared as held in the next hello: the control
   * plane would see nothing missing, and the agent would keep running the earlier state.
   */
  private heldApplied = true;
  /** The last push answered, on which stream (see answerAgain). */
  private lastAnswered:
    { call: grpc.ClientDuplexStream<AgentMessage, ControlMessage>; push: Push; log: Logger } | undefined;
  /** Counts of pushes taken and resyncs asked for (metrics, tests). */
  readonly stats = { pushes: 0, full: 0, deltas: 0, resyncs: 0, cut: 0 };
  connectedTo: string | undefined;
  lastError = '';
  /** This source is a control plane's stream (StateSource.controlPlane): its address, last error and counts. */
  readonly controlPlane: ControlPlaneLink = this;

  private readonly clock: Clock;

  constructor(private readonly opts: GrpcSourceOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  get state(): GrpcSourceState {
    return this.lifecycle.state;
  }

  /** Connects (and keeps reconnecting) until stop(); throws LifecycleError when started twice or after stop. */
  async start(apply: ApplyFn): Promise<void> {
    this.lifecycle.to('running', 'start');
    this.connect(apply);
  }

  private connect(apply: ApplyFn): void {
    if (!this.lifecycle.is('running')) return;
    const address = this.opts.addresses[this.next % this.opts.addresses.length]!;
    this.next++;
    const log = this.opts.log.child({ controlplane: address });
    const client = new AgentStreamClient(address, channelCredentials(this.opts.tls), {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_receive_message_length': MAX_PUSH_BYTES,
    });
    this.client = client;
    const metadata = new grpc.Metadata();
    if (this.opts.token) metadata.set('authorization', `Bearer ${this.opts.token}`);
    const call = client.stream(metadata);
    this.call = call;
    // 'status' comes exactly once per call, however it ends (an error, the server's end, our cancel).
    this.callEnded = new Promise<void>((resolve) => call.once('status', () => resolve()));
    let gotMessage = false;
    let ended = false;
    // Latest wins: one push is applied at a time and at most one waits; a newer push replaces the waiting one.
    // A replaced push is never applied nor answered: the control plane takes only the answer to its newest nonce
    // (stream-server.ts), so a slow apply neither grows a queue of full states nor applies stale ones.
    let applying = false;
    let waiting: { push: Push; state: DesiredState } | undefined;
    const drain = async (): Promise<void> => {
      applying = true;
      try {
        while (waiting && !ended) {
          const { push, state } = waiting;
          waiting = undefined;
          const reply = await this.answer(push, state, apply);
          if (this.held?.version === push.version) this.heldApplied = true;
          if (!ended) {
            this.send(call, reply, log);
            this.lastAnswered = { call, push, log };
          }
        }
      } finally {
        applying = false;
      }
    };
    if (this.held && !this.heldApplied) {
      log.info(
        { held: this.held.version },
        'the last push taken was never applied (the stream ended first): declaring what runs instead',
      );
      this.held = undefined;
    }
    const held = (this.held ??= HeldState.of(this.opts.initialState?.()));
    this.heldApplied = true;
    /** A push did not fit: only a full one is taken until it comes (one Resync per episode). */
    let awaitingFull = false;
    this.send(
      call,
      {
        hello: {
          nodeId: this.opts.nodeId,
          labels: { ...this.opts.labels },
          agentVersion: this.opts.agentVersion,
          haproxyVersion: this.opts.haproxyVersion,
          runningVersion: this.opts.runningVersion(),
          ...held.hello(),
          capabilities: ['settings', ...(this.opts.preflight ? ['preflight'] : [])],
        },
      },
      log,
    );
    call.on('data', (msg: ControlMessage) => {
      if (!gotMessage) {
        gotMessage = true;
        this.attempt = 0;
      }
      this.connectedTo = address;
      if (msg.stateRequest) return void this.report(call, msg.stateRequest.id);
      if (msg.preflightRequest)
        return void this.preflight(call, msg.preflightRequest.id, msg.preflightRequest.state, log);
      if (msg.settings) {
        const every =
          msg.settings.statsIntervalMs === 0
            ? STATS_INTERVAL_MS
            : Math.max(MIN_STATS_INTERVAL_MS, msg.settings.statsIntervalMs);
        if (every !== statsEvery) {
          log.info({ stats_interval_ms: every }, 'control plane set the stats interval');
          statsEvery = every;
          if (this.opts.counters && !ended) {
            this.clock.clearTimeout(statsTimer);
            sendStatsLater();
          }
        }
        return;
      }
      const push = msg.push;
      if (!push) return;
      this.stats.pushes++;
      if (awaitingFull && !push.full && !push.state)
        return log.debug({ nonce: push.nonce, version: push.version }, 'waiting for the full push; ignoring a delta');
      let state: DesiredState;
      try {
        state = held.take(push);
      } catch (err) {
        if (!(err instanceof PushMismatch)) throw err;
        this.stats.resyncs++;
        awaitingFull = true;
        log.warn(
          { nonce: push.nonce, version: push.version, err: err.message },
          'push does not fit what this agent holds; asking for a full resync (the running state is kept)',
        );
        this.send(call, { resync: { nonce: push.nonce, reason: err.message } }, log);
        return;
      }
      awaitingFull = false;
      this.heldApplied = false;
      if (push.full || push.state) this.stats.full++;
      else this.stats.deltas++;
      if (waiting)
        log.debug(
          { superseded: waiting.push.version, nonce: waiting.push.nonce, by: push.version },
          'push superseded before it was applied; not answering it',
        );
      waiting = { push, state };
      if (!applying) void drain();
    });
    // Connected as soon as the server answers the stream's headers.
    call.on('metadata', () => {
      this.connectedTo = address;
      log.info({}, 'connected to control plane');
    });
    // Counters between ACKs, so the control plane sees traffic while nothing changes (protocol 2 control planes).
    let statsTimer: Timer | undefined;
    let statsEvery = STATS_INTERVAL_MS;
    const sendStatsLater = () => {
      statsTimer = this.clock.setTimeout(() => {
        void this.countersNow(statsEvery / 2).then((counters) => {
          if (!ended && counters.length > 0)
            this.send(call, { stats: { counters, runningVersion: this.opts.runningVersion() } }, log);
        });
        sendStatsLater();
      }, statsEvery);
      unrefTimer(statsTimer);
    };
    if (this.opts.counters) sendStatsLater();
    const retry = (why: string) => {
      if (ended) return;
      ended = true;
      this.clock.clearTimeout(statsTimer);
      this.connectedTo = undefined;
      this.lastError = why;
      client.close();
      if (!this.lifecycle.is('running')) return;
      const delay = reconnectDelay(
        this.attempt++,
        this.opts.backoffBaseMs ?? 200,
        this.opts.backoffMaxMs ?? 10_000,
        this.opts.random,
      );
      log.warn(
        { err: why, retry_in_ms: delay },
        'control plane stream ended; keeping the current state and reconnecting',
      );
      this.timer = this.clock.setTimeout(() => this.connect(apply), delay);
    };
    call.on('error', (err: grpc.ServiceError) =>
      retry(`${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`),
    );
    call.on('end', () => retry('stream ended by the control plane'));
  }

  /**
   * Writes a message to the control plane, fitted to its receive limit (fitAgentMessage): a larger one would end the
   * stream, and every reconnect would fail the same way. What was cut is logged, counted, and said in an ACK's or a
   * preflight report's warnings, so the control plane's operator sees it too.
   */
  private send(call: grpc.ClientDuplexStream<AgentMessage, ControlMessage>, msg: AgentMessage, log: Logger): void {
    const fitted = fitAgentMessage(msg);
    let out = fitted.msg;
    if (fitted.cut.length > 0) {
      this.stats.cut++;
      log.warn(
        { cut: fitted.cut, bytes: fitted.bytes },
        'a message to the control plane was cut to fit its receive limit',
      );
      const note = clipText(`cut to fit the control plane's message limit: ${fitted.cut.join('; ')}`, 2048);
      if (out.ack) out = { ack: { ...out.ack, warnings: [...out.ack.warnings, note] } };
      if (out.preflightReport)
        out = { preflightReport: { ...out.preflightReport, warnings: [...out.preflightReport.warnings, note] } };
    }
    call.write(out);
  }

  /** The counters to send now; never throws (they are figures for the control plane, not part of the apply). */
  private async countersNow(maxAgeMs: number): Promise<ServiceCounters[]> {
    try {
      return (await this.opts.counters?.(maxAgeMs)) ?? [];
    } catch {
      return [];
    }
  }

  /** Answers a StateRequest with what HAProxy has (never throws: a failure is the report's error). */
  private async report(call: grpc.ClientDuplexStream<AgentMessage, ControlMessage>, id: string): Promise<void> {
    let servers: RuntimeServer[] = [];
    let error = '';
    try {
      const state = this.opts.reportState
        ? await this.opts.reportState()
        : 'this agent does not report its HAProxy state';
      if (typeof state === 'string') error = state;
      else servers = state;
    } catch (err) {
      error = errorMessage(err);
    }
    if (call === this.call)
      this.send(
        call,
        { stateReport: { id, servers, error, runningVersion: this.opts.runningVersion() } },
        this.opts.log,
      );
  }

  /** Answers a PreflightRequest (never throws: a failure is the report's error). Nothing is applied. */
  private async preflight(
    call: grpc.ClientDuplexStream<AgentMessage, ControlMessage>,
    id: string,
    proto: ProtoState | undefined,
    log: Logger,
  ): Promise<void> {
    let report: PreflightReport;
    try {
      if (!proto || !this.opts.preflight)
        throw new Error(proto ? 'this agent cannot preflight' : 'preflight request without a state');
      const r = await this.opts.preflight(fromProto(proto));
      report = {
        id,
        ok: r.ok,
        error: r.error ?? '',
        haproxyOutput: r.haproxyOutput ?? '',
        method: applyMethodToWire(r.method),
        reasons: [...r.reasons],
        rejectedServices: [
          ...new Set(r.problems.flatMap((p) => (p.service !== undefined && p.server === undefined ? [p.service] : []))),
        ],
        warnings: r.problems.map((p) => `${p.where}: ${p.message}`),
        wholeConfig: !r.ok && r.wholeConfig === true,
      };
    } catch (err) {
      report = {
        id,
        ok: false,
        error: errorMessage(err),
        haproxyOutput: '',
        method: applyMethodToWire('unspecified'),
        reasons: [],
        rejectedServices: [],
        warnings: [],
        wholeConfig: true,
      };
    }
    log.info(
      { version: proto?.version, ok: report.ok, method: report.method, error: report.error || undefined },
      'preflight',
    );
    if (call === this.call) this.send(call, { preflightReport: report }, log);
  }

  /**
   * The agent applied the state of its last answered push again (a retry after a transient failure): that push is
   * answered again, so the control plane's record goes from the NACK (or the partial ACK) to what runs now. Nothing
   * when a newer push came, or the stream is another one (its hello declared what runs).
   */
  async answerAgain(result: ApplyResult): Promise<void> {
    const last = this.lastAnswered;
    if (!last || last.call !== this.call || last.push.version !== result.version) return;
    const reply = await this.replyFor(last.push, result);
    if (this.lastAnswered === last && last.call === this.call) this.send(last.call, reply, last.log);
  }

  /** Applies one push and builds its ACK or NACK (never throws: an apply that throws is a NACK). */
  private async answer(push: Push, state: DesiredState, apply: ApplyFn): Promise<AgentMessage> {
    try {
      return await this.replyFor(push, await apply(state));
    } catch (err) {
      return {
        nack: {
          version: push.version,
          nonce: push.nonce,
          reason: errorMessage(err),
          haproxyOutput: '',
          runningVersion: this.opts.runningVersion(),
        },
      };
    }
  }

  /** The ACK or NACK of `push` for how it was applied. */
  private async replyFor(push: Push, result: ApplyResult): Promise<AgentMessage> {
    if (result.outcome === 'rejected') {
      return {
        nack: {
          version: push.version,
          nonce: push.nonce,
          reason: result.error?.message ?? 'rejected',
          haproxyOutput: result.error instanceof HaproxyConfigError ? result.error.output : '',
          runningVersion: this.opts.runningVersion(),
        },
      };
    }
    return {
      ack: {
        version: push.version,
        nonce: push.nonce,
        method: applyMethodToWire(result.outcome),
        reasons: result.reasons.map((r) => r.text),
        runtimeCommands: result.commands.length,
        durationMs: result.durationMs,
        warnings: result.problems.map((p) => `${p.where}: ${p.message}`),
        rejectedServices: [
          ...new Set(
            result.problems.flatMap((p) => (p.service !== undefined && p.server === undefined ? [p.service] : [])),
          ),
        ],
        // Fresh: the traffic gates count what came after this sample for the version it ACKs.
        counters: await this.countersNow(ACK_COUNTERS_MAX_AGE_MS),
      },
    };
  }

  /**
   * Cancels the stream and closes the client; resolves once the stream has ended (bounded by STOP_WAIT_MS) and the
   * client is closed. Every later call returns the same promise.
   */
  stop(): Promise<void> {
    return (this.stopping ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    this.lifecycle.to('stopping', 'stop');
    this.clock.clearTimeout(this.timer);
    const ended = this.callEnded;
    this.call?.cancel();
    if (!(await settleWithin(ended, STOP_WAIT_MS, this.clock)))
      this.opts.log.warn({}, `the cancelled stream did not end within ${STOP_WAIT_MS} ms; closing the client anyway`);
    this.client?.close();
    this.lifecycle.to('stopped');
  }
}
