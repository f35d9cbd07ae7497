import * as grpc from '@grpc/grpc-js';
import { Logger } from '../../common/platform/log';
import { TokenBucket } from '../../common/platform/token-bucket';
import { Clock, systemClock } from '../../common/platform/clock';
import { AgentMessage, AgentStreamServer, ControlMessage, Hello } from '../../common/gen/proxymgr/v1/stream';
import { AGENT_STREAM_METHOD, Authorizer } from '../../common/platform/auth';
import { identifyCall } from '../../common/platform/grpc-auth';
import { AgentRegistry } from './registry';
import { DesiredStateSource } from '../ports';
import { AgentPreflights, AgentStateRequests } from './agent-questions';
import { AgentSession, SessionDeps, SessionTransport } from './agent-session';
import { admitHello, connectAgent } from './hello';
import { NewStreamAdmission, PushPacer } from './pacing';
import { NonceSource, StreamStats } from './stream-stats';
import { ChangeTrace } from '../trace/change-trace';

/** Questions the stream carries to agents (see agent-questions.ts). */
export interface StreamQuestions {
  readonly state?: AgentStateRequests;
  readonly preflight?: AgentPreflights;
}

export interface StreamLimits {
  /** New streams accepted per second (burst: the same number); more are refused with RESOURCE_EXHAUSTED. */
  readonly newStreamsPerSecond: number;
  /**
   * New streams accepted per second from one authenticated credential at one peer address (burst: the same number),
   * so one credential reconnecting in a loop cannot use up newStreamsPerSecond for everyone. Without auth there is
   * no credential to tell callers apart: only the global budget applies.
   */
  readonly newStreamsPerIdentityPerSecond?: number;
  /** Pushes sent per second across all agents, sustained; the rest wait their turn. */
  readonly pushesPerSecond: number;
  /** Pushes that may go at once (default: pushesPerSecond). */
  readonly pushBurst?: number;
  /** Bytes of pushes written and not yet sent on, across all agents; the rest wait their turn. */
  readonly pushBufferBytes?: number;
  /**
   * A Stats message sooner than this after the stream's last accepted one is dropped (and counted): an agent sends
   * them every gate.sample_ms (200 ms at the least), and a flood must not buy its sender more samples.
   */
  readonly minStatsIntervalMs?: number;
  /**
   * How long a push may go unanswered before the next one is sent anyway. Until then an agent gets no new push: its
   * answer is the flow control (a busy agent gets fewer, larger pushes instead of a backlog it would skip).
   */
  readonly answerTimeoutMs?: number;
}

export const DEFAULT_LIMITS: StreamLimits = {
  newStreamsPerSecond: 2000,
  newStreamsPerIdentityPerSecond: 20,
  pushesPerSecond: 2000,
  pushBurst: 10_000,
  pushBufferBytes: 32 * 1024 * 1024,
  answerTimeoutMs: 30_000,
  minStatsIntervalMs: 100,
};

/** What an agent stream server is made of; everything but the source, the registry and the log has a default. */
export interface StreamServerOptions {
  readonly source: DesiredStateSource;
  /** Where agents are recorded as they connect, answer and disconnect. */
  readonly registry: AgentRegistry;
  readonly log: Logger;
  readonly limits?: StreamLimits;
  /** Who may stream as which node (default: no auth, anyone as anything). */
  readonly authorizer?: Authorizer;
  readonly questions?: StreamQuestions;
  /** Time for the answer timeout, the Stats interval and every budget. */
  readonly clock?: Clock;
  /** Where the sessions count what they send and drop (the process's metrics read it). */
  readonly stats?: StreamStats;
  /** Nonces for pushes (default: a random prefix for this server and a counter). */
  readonly nonces?: NonceSource;
  /** The change trace the sessions report pushes and answers to (none: not traced). */
  readonly trace?: ChangeTrace;
}

/**
 * The agent stream's transport: it admits a new stream within the new-stream budgets, opens an AgentSession
 * (agent-session.ts) once the first message, the hello, is admitted (hello.ts), hands it every later message and
 * closes it with the stream.
 */
export function agentStreamServer(opts: StreamServerOptions): AgentStreamServer {
  const { source, registry, log, questions = {} } = opts;
  const limits = opts.limits ?? DEFAULT_LIMITS;
  const authorizer = opts.authorizer ?? new Authorizer(undefined);
  const clock = opts.clock ?? systemClock;
  const admission = new NewStreamAdmission(
    limits.newStreamsPerSecond,
    limits.newStreamsPerIdentityPerSecond ?? DEFAULT_LIMITS.newStreamsPerIdentityPerSecond!,
    clock,
  );
  const deps: SessionDeps = {
    source,
    registry,
    stateRequests: questions.state ?? new AgentStateRequests(),
    ...(questions.preflight ? { preflights: questions.preflight } : {}),
    pacer: new PushPacer(
      new TokenBucket(limits.pushesPerSecond, limits.pushBurst ?? limits.pushesPerSecond, clock),
      limits.pushBufferBytes ?? DEFAULT_LIMITS.pushBufferBytes,
      clock,
    ),
    clock,
    stats: opts.stats ?? new StreamStats(),
    nonces: opts.nonces ?? new NonceSource(),
    answerTimeoutMs: limits.answerTimeoutMs ?? DEFAULT_LIMITS.answerTimeoutMs!,
    minStatsIntervalMs: limits.minStatsIntervalMs ?? DEFAULT_LIMITS.minStatsIntervalMs!,
    ...(opts.trace ? { trace: opts.trace } : {}),
  };
  return {
    stream(call: grpc.ServerDuplexStream<AgentMessage, ControlMessage>) {
      const fail = (code: grpc.status, details: string): void => void call.emit('error', { code, details });
      const caller = authorizer.enabled ? identifyCall(authorizer, AGENT_STREAM_METHOD, call) : undefined;
      const refused = admission.refusal(caller?.ok ? caller.identity : undefined, call.getPeer());
      if (refused) {
        if (refused.identity)
          log.warn(
            { identity: refused.identity.name, via: refused.identity.via, peer: call.getPeer() },
            'agent stream refused: new-stream budget of this credential used up',
          );
        return fail(grpc.status.RESOURCE_EXHAUSTED, refused.details);
      }
      const transport: SessionTransport = {
        write: (msg, sent) => (sent ? call.write(msg, sent) : call.write(msg)),
        fail,
      };
      let session: AgentSession | undefined;
      let closed = false;

      const open = (hello: Hello): void => {
        const verdict = admitHello(hello, {
          peer: call.getPeer(),
          identify: () => identifyCall(authorizer, AGENT_STREAM_METHOD, call),
          registry,
        });
        if (!verdict.ok) {
          if (verdict.warn) log.warn(verdict.warn.fields, verdict.warn.msg);
          return fail(verdict.code, verdict.details);
        }
        const agent = connectAgent(registry, hello, call.getPeer(), verdict.identity, authorizer.enabled);
        session = new AgentSession(
          deps,
          transport,
          agent,
          hello,
          log.child({ node_id: agent.nodeId, peer: call.getPeer() }),
        );
        session.start();
      };

      call.on('data', (msg: AgentMessage) => {
        // A stream that ended (a refused hello, a cancel) takes nothing more: no session opens after its close.
        if (closed) return;
        if (msg.hello) {
          if (session) return fail(grpc.status.INVALID_ARGUMENT, 'hello sent twice on one stream');
          return open(msg.hello);
        }
        if (!session) return fail(grpc.status.FAILED_PRECONDITION, 'the first message must be a hello');
        session.receive(msg);
      });
      const close = () => {
        if (closed) return;
        closed = true;
        session?.close();
      };
      call.on('end', () => {
        close();
        call.end();
      });
      call.on('cancelled', close);
      call.on('error', close);
      call.on('close', close);
    },
  };
}
