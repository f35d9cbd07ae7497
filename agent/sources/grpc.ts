import * as grpc from '@grpc/grpc-js';
import { backoffMs } from '../../common/platform/backoff';
import { Clock, systemClock, Timer } from '../../common/platform/clock';
import { channelCredentials, TlsConfig } from '../../common/platform/grpc';
import { Lifecycle, settleWithin } from '../../common/platform/lifecycle';
import { Logger } from '../../common/platform/log';
import { DesiredState } from '../../common/protocol/types';
import { AgentMessage, AgentStreamClient, ControlMessage } from '../../common/gen/proxymgr/v1/stream';
import { ApplyFn, ControlPlaneLink, StateSource } from '../ports';
import { ApplyResult } from '../results';
import { HeldAcrossStreams } from './held-state';
import { AgentIdentity, helloOf } from './stream-messages';
import { SourceStats, StreamHooks, StreamSession } from './stream-session';

export interface GrpcSourceOptions extends AgentIdentity, StreamHooks {
  /** Control-plane addresses ("host:port"), tried in turn. */
  readonly addresses: readonly string[];
  /**
   * What the agent ran before this source received anything (its disk cache): declared in the first hello as
   * what it holds, so the control plane sends only what differs (docs/protocol.md).
   */
  readonly initialState?: () => DesiredState | undefined;
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

/** Reconnect delay: exponential from base, capped, with ±50 % jitter so a fleet does not reconnect in step. */
export function reconnectDelay(attempt: number, baseMs: number, maxMs: number, random = Math.random): number {
  return backoffMs(attempt, { baseMs, maxMs, jitter: 'centered', random });
}

/**
 * Desired states from the control plane over the agent stream (docs/protocol.md). Connects to each address in turn
 * with backoff and jitter; each stream is a StreamSession, which says in its hello what the agent holds, takes and
 * answers the pushes and the control plane's questions. What the agent holds is kept across reconnects. While
 * disconnected nothing changes locally.
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
  /** The session of the current call. */
  private session: StreamSession | undefined;
  /** The reconnect timer. */
  private timer: Timer | undefined;
  /** Reconnects since a control plane last sent something (the backoff's exponent). */
  private attempt = 0;
  /** Which address the next connect tries (modulo their count). */
  private next = 0;
  /** What the agent holds of the control plane's state (kept across reconnects). */
  private readonly holding: HeldAcrossStreams;
  /** Counts of pushes taken and resyncs asked for (metrics, tests). */
  readonly stats: SourceStats = { pushes: 0, full: 0, deltas: 0, resyncs: 0, cut: 0 };
  connectedTo: string | undefined;
  lastError = '';
  /** This source is a control plane's stream (StateSource.controlPlane): its address, last error and counts. */
  readonly controlPlane: ControlPlaneLink = this;

  private readonly clock: Clock;

  constructor(private readonly opts: GrpcSourceOptions) {
    this.clock = opts.clock ?? systemClock;
    this.holding = new HeldAcrossStreams(() => opts.initialState?.());
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
    const { opts } = this;
    const address = opts.addresses[this.next % opts.addresses.length]!;
    this.next++;
    const log = opts.log.child({ controlplane: address });
    const client = new AgentStreamClient(address, channelCredentials(opts.tls), {
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_receive_message_length': MAX_PUSH_BYTES,
    });
    this.client = client;
    const metadata = new grpc.Metadata();
    if (opts.token) metadata.set('authorization', `Bearer ${opts.token}`);
    const call = client.stream(metadata);
    this.call = call;
    this.session?.supersede();
    // 'status' comes exactly once per call, however it ends (an error, the server's end, our cancel).
    this.callEnded = new Promise<void>((resolve) => call.once('status', () => resolve()));
    const { held, unapplied } = this.holding.forStream();
    if (unapplied !== undefined)
      log.info(
        { held: unapplied },
        'the last push taken was never applied (the stream ended first): declaring what runs instead',
      );
    const session = new StreamSession(
      { hooks: opts, apply, holding: this.holding, stats: this.stats, clock: this.clock, sourceLog: opts.log },
      { write: (msg) => call.write(msg) },
      held,
      helloOf(opts, opts.runningVersion(), held.hello(), opts.preflight !== undefined),
      log,
    );
    this.session = session;
    session.start();
    let gotMessage = false;
    call.on('data', (msg: ControlMessage) => {
      if (!gotMessage) {
        gotMessage = true;
        this.attempt = 0;
      }
      this.connectedTo = address;
      session.receive(msg);
    });
    // Connected as soon as the server answers the stream's headers.
    call.on('metadata', () => {
      this.connectedTo = address;
      log.info({}, 'connected to control plane');
    });
    const retry = (why: string) => {
      if (session.ended) return;
      session.end();
      this.connectedTo = undefined;
      this.lastError = why;
      client.close();
      if (!this.lifecycle.is('running')) return;
      const delay = reconnectDelay(this.attempt++, opts.backoffBaseMs ?? 200, opts.backoffMaxMs ?? 10_000, opts.random);
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
   * The agent applied the state of its last answered push again (a retry after a transient failure): the current
   * stream's session answers that push again (StreamSession.answerAgain).
   */
  async answerAgain(result: ApplyResult): Promise<void> {
    await this.session?.answerAgain(result);
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
