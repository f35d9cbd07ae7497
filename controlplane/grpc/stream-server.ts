import { clipText as clipAt, plainText } from '../../common/text';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Logger } from '../../common/log';
import { KeyedTokenBuckets, TokenBucket } from '../../common/token-bucket';
import { Clock, systemClock, Timer, unrefTimer } from '../../common/clock';
import { createHash } from 'node:crypto';
import {
  Delta,
  diff,
  fullDelta,
  MAX_COUNTED_SERVICES,
  MAX_DECLARED_RESOURCES,
  PROTOCOL_VERSION,
  ResourceSet,
  resourceSet,
} from '../../common/resources';
import { DesiredState } from '../../common/types';
import {
  AgentMessage,
  AgentStreamServer,
  ApplyMethod,
  applyMethodToJSON,
  ControlMessage,
  Hello,
} from '../../common/gen/proxymgr/v1/stream';
import { toProto } from '../../common/state-codec';
import { ServiceCounters } from '../../common/gen/proxymgr/v1/counters';
import { AGENT_STREAM_METHOD, Authorizer, labelRefusal, mayStreamAs, peerAddress } from '../../common/auth';
import { identifyCall } from '../../common/grpc-auth';
import { AgentRegistry } from './registry';
import { AgentRecord, DesiredStateSource } from '../ports';
import { cachedBody, preEncodedPush, pushBody } from './push-encoding';
import { AgentPreflights, AgentStateRequests } from './agent-questions';

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

/** A stream's dropped Stats are logged at most this often (with the count since the last such line). */
export const STATS_DROP_LOG_EVERY_MS = 60_000;

/**
 * Paces pushes through one token bucket and one byte budget, with one queue and one timer: when the bucket is
 * empty or the bytes written and not yet sent on exceed the budget, waiting streams queue up (each at most once)
 * instead of each polling with its own timer. The budget bounds the control plane's memory during a first sync of
 * a big state to thousands of agents (each push is copied per agent by grpc-js and held until the agent reads it).
 */
export class PushPacer {
  private readonly queue = new Set<() => void>();
  private timer: Timer | undefined;
  private inFlight = 0;

  constructor(
    private readonly bucket: TokenBucket,
    private readonly maxBytes = Infinity,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Bytes written and not yet sent on. */
  get bytesInFlight(): number {
    return this.inFlight;
  }

  /** Runs `send` now if a token and budget are free and nobody is waiting, else when its turn comes. */
  schedule(send: () => void): void {
    if (this.queue.size === 0 && this.inFlight < this.maxBytes && this.bucket.tryTake()) return send();
    this.queue.add(send);
    this.arm();
  }

  cancel(send: () => void): void {
    this.queue.delete(send);
  }

  /** `bytes` were written; call the returned function once they are sent on (or the stream is gone), once. */
  wrote(bytes: number): () => void {
    this.inFlight += bytes;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.inFlight -= bytes;
      if (this.queue.size > 0) this.arm(0);
    };
  }

  private arm(delayMs?: number): void {
    if (this.timer) return;
    // Over budget, it is a write completing that re-arms the queue (wrote's callback), not the bucket's timer.
    if (this.inFlight >= this.maxBytes && delayMs === undefined) return;
    this.timer = this.clock.setTimeout(
      () => {
        this.timer = undefined;
        for (const send of this.queue) {
          if (this.inFlight >= this.maxBytes || !this.bucket.tryTake()) break;
          this.queue.delete(send);
          send();
        }
        if (this.queue.size > 0) this.arm();
      },
      Math.max(delayMs ?? 1, this.bucket.waitMs()),
    );
  }
}

/**
 * Pushes this large (first syncs and resyncs of big states) count against the pacer's byte budget until grpc-js has
 * sent them on; deltas are a few KiB, and each agent has at most one unanswered push anyway (flow control).
 */
const LARGE_PUSH_BYTES = 64 * 1024;

/**
 * Counts for metrics and benchmarks: pushes by kind, resyncs asked for, bytes of push bodies written, Stats messages
 * dropped for coming too soon after the stream's previous one, NACKs whose running version was not believed (see
 * AgentRegistry.nack).
 */
export const streamStats = {
  deltaPushes: 0,
  fullPushes: 0,
  protocol0Pushes: 0,
  resyncs: 0,
  bytes: 0,
  statsDropped: 0,
  nackRunningRefused: 0,
};

/**
 * Versions a stream remembers having sent, newest last: the agent's running version after a NACK is the last one it
 * applied, at most a few pushes back (one whose ACK was overtaken by the next push after the answer timeout).
 */
const MAX_SENT_REMEMBERED = 16;

/** What the control plane knows an agent holds: a state object it sent, or the set the agent declared in its hello. */
type Held = { readonly state: DesiredState } | { readonly declared: Declared };

/**
 * What an agent declared it holds. `key` is a sha256 of the whole declaration (not the XOR digest, which a hostile
 * agent could make collide with another set): two agents with the same key hold the same set and share a delta.
 */
interface Declared extends ResourceSet {
  readonly key: string;
}

// Nonces only need to be unique per stream and unguessable across restarts: a random prefix and a counter.
const noncePrefix = randomBytes(6).toString('hex');
let nonceCounter = 0;

/**
 * The agent stream (delta-xDS style, docs/protocol.md). Per agent: when the desired state differs from what the
 * agent holds, push what changed — one encoding per (change, base), shared by every agent that gets it — each
 * push with a fresh nonce; an ACK records the version; a NACK records the error. The agent holds what it was sent
 * whether it applied it or not, so a NACKed version is not sent again while it is the last one this agent got;
 * once a different version went out, a state that flaps back to the NACKed one is pushed again (as the delta back):
 * a new change, not a loop, and what failed then (a port in use) may well apply now. A Resync gets a full push.
 * Agents from before incremental pushes (protocol 0) get whole states, as before.
 */
export function agentStreamServer(
  source: DesiredStateSource,
  registry: AgentRegistry,
  log: Logger,
  limits: StreamLimits = DEFAULT_LIMITS,
  authorizer: Authorizer = new Authorizer(undefined),
  questions: StreamQuestions = {},
  clock: Clock = systemClock,
): AgentStreamServer {
  const stateRequests = questions.state ?? new AgentStateRequests();
  const newStreams = new TokenBucket(limits.newStreamsPerSecond, limits.newStreamsPerSecond, clock);
  const perIdentity = limits.newStreamsPerIdentityPerSecond ?? DEFAULT_LIMITS.newStreamsPerIdentityPerSecond!;
  const newStreamsOf = new KeyedTokenBuckets(perIdentity, perIdentity, clock);
  const pacer = new PushPacer(
    new TokenBucket(limits.pushesPerSecond, limits.pushBurst ?? limits.pushesPerSecond, clock),
    limits.pushBufferBytes ?? DEFAULT_LIMITS.pushBufferBytes,
    clock,
  );
  const answerTimeoutMs = limits.answerTimeoutMs ?? DEFAULT_LIMITS.answerTimeoutMs!;
  const minStatsIntervalMs = limits.minStatsIntervalMs ?? DEFAULT_LIMITS.minStatsIntervalMs!;
  return {
    stream(call: grpc.ServerDuplexStream<AgentMessage, ControlMessage>) {
      // Its own budget first: a credential over its budget takes nothing from the global one.
      const caller = authorizer.enabled ? identifyCall(authorizer, AGENT_STREAM_METHOD, call) : undefined;
      if (caller?.ok && !newStreamsOf.tryTake(`${caller.identity.credential}\0${peerAddress(call.getPeer())}`)) {
        log.warn(
          { identity: caller.identity.name, via: caller.identity.via, peer: call.getPeer() },
          'agent stream refused: new-stream budget of this credential used up',
        );
        call.emit('error', {
          code: grpc.status.RESOURCE_EXHAUSTED,
          details: `too many new agent streams from ${caller.identity.name} (${caller.identity.via}) at ${peerAddress(call.getPeer())}: at most ${perIdentity} per second (controlplane.new_streams_per_identity_per_second); retry with backoff`,
        });
        return;
      }
      if (!newStreams.tryTake()) {
        call.emit('error', {
          code: grpc.status.RESOURCE_EXHAUSTED,
          details: 'too many new agent streams; retry with backoff',
        });
        return;
      }
      let agent: AgentRecord | undefined;
      let unsubscribe: (() => void) | undefined;
      let unregisterRequests: (() => void) | undefined;
      let unregisterPreflights: (() => void) | undefined;
      /** The settings last sent (JSON), so that a change is sent once. */
      let sentSettings = '';
      let protocol = 0;
      /** Protocol 2: what the agent holds (what it was sent last, or declared in its hello). */
      let held: Held | undefined;
      /** Protocol 2: the agent asked for a full push (Resync). */
      let needFull = false;
      /** Protocol 0: what the agent runs or was last sent, and the version NACKed by the last answer (no resend loop). */
      let sentVersion = '';
      let nackedVersion = '';
      let outstanding: { version: string; nonce: string; at: number } | undefined;
      /** The push answered last: the agent may answer it again after a retry, until the next push goes out. */
      let lastAnswered: { version: string; nonce: string } | undefined;
      const isAnswerAgain = (a: { nonce: string; version: string }): boolean =>
        outstanding === undefined && a.nonce === lastAnswered?.nonce && a.version === lastAnswered.version;
      /** The versions pushed on this stream (the newest MAX_SENT_REMEMBERED): what a NACK may say the agent runs. */
      const sentVersions = new Set<string>();
      /** Pushes sent since the agent last answered, by nonce: a Resync must name one of them. */
      const unanswered = new Map<string, 'delta' | 'full' | 'protocol 0'>();
      /** Armed only while a change waits for the outstanding push's answer: it lets the change go once overdue. */
      let answerTimer: Timer | undefined;
      let queued = false;
      /** A large push's bytes are written and not yet sent on: the next waits (see PushPacer's byte budget). */
      let sending: (() => void) | undefined;
      let closed = false;
      let alog = log;
      /** When this stream's last Stats was accepted (control plane clock), and the drops not yet logged. */
      let statsAcceptedAt = -Infinity;
      let statsDroppedUnlogged = 0;
      let statsDropLoggedAt = -Infinity;

      /**
       * A push is out, unanswered and not overdue (answerTimeoutMs): the agent is still taking it, and the next waits
       * (flow control: it will carry every change since). A late answer still counts.
       */
      const awaitingAnswer = (): boolean => {
        if (!outstanding) return false;
        const left = outstanding.at + answerTimeoutMs - clock.now();
        if (left <= 0) return false;
        if (!answerTimer) {
          const overdue = outstanding;
          answerTimer = clock.setTimeout(() => {
            answerTimer = undefined;
            if (outstanding !== overdue) return;
            alog.warn(
              { version: overdue.version, nonce: overdue.nonce, after_ms: answerTimeoutMs },
              'push not answered in time; the next change is pushed anyway',
            );
            maybePush();
          }, left + 1);
          unrefTimer(answerTimer);
        }
        return true;
      };
      const answered = () => {
        outstanding = undefined;
        clock.clearTimeout(answerTimer);
        answerTimer = undefined;
      };
      /** Whether the agent lacks `desired`. */
      const lacks = (desired: DesiredState): boolean => {
        if (protocol === 0) return desired.version !== sentVersion && desired.version !== nackedVersion;
        if (needFull || !held) return true;
        if ('state' in held)
          return (
            held.state !== desired &&
            (held.state.version !== desired.version || resourceSet(held.state).digest !== resourceSet(desired).digest)
          );
        return !holdsExactly(held.declared, desired);
      };
      /** The encoded push (without nonce) that takes the agent from what it holds to `desired`. */
      const bodyFor = (desired: DesiredState): { body: Buffer; kind: 'delta' | 'full' | 'protocol 0' } => {
        if (protocol === 0) return { body: pushBody(desired, '\0protocol-0', () => 'protocol-0'), kind: 'protocol 0' };
        if (needFull || !held) return { body: pushBody(desired, '\0full', () => fullDelta(desired)), kind: 'full' };
        if ('state' in held) {
          const base = held.state;
          return {
            body: pushBody(desired, base.version, (): Delta => diff(resourceSet(base), desired)),
            kind: 'delta',
          };
        }
        // After a control-plane restart most agents declare the same base: one encoding for all of them. A base that
        // shares little with the desired state gets the full push (encoded once per state), and a large delta is
        // not kept: declarations cannot fill the cache with near-full bodies.
        const declared = held.declared;
        const key = `\0declared\0${declared.key}`;
        const cached = cachedBody(desired, key);
        if (cached) return { body: cached, kind: 'delta' };
        const d = diff(declared, desired);
        if (d.upserted.length * 2 > desired.services.length && d.upserted.length > 1)
          return { body: pushBody(desired, '\0full', () => fullDelta(desired)), kind: 'full' };
        return { body: pushBody(desired, key, () => d, MAX_CACHED_DECLARED_BYTES), kind: 'delta' };
      };

      // The state is picked when the push's turn comes, so a queued agent gets the newest one.
      const send = () => {
        queued = false;
        if (closed || !agent || sending || awaitingAnswer()) return;
        const desired = source.desiredFor(agent);
        if (!desired || !lacks(desired)) return;
        const nonce = `${noncePrefix}-${++nonceCounter}`;
        const { body, kind } = bodyFor(desired);
        answered(); // an overdue one, if any: its late answer no longer matches
        lastAnswered = undefined;
        outstanding = { version: desired.version, nonce, at: clock.now() };
        unanswered.set(nonce, kind);
        // An agent that never answers gets a push per answer timeout: keep only the latest few.
        if (unanswered.size > 16) unanswered.delete(unanswered.keys().next().value!);
        sentVersion = desired.version;
        sentVersions.delete(desired.version); // re-inserted: newest last
        sentVersions.add(desired.version);
        if (sentVersions.size > MAX_SENT_REMEMBERED) sentVersions.delete(sentVersions.values().next().value!);
        nackedVersion = ''; // a different version goes out: the NACKed one is no longer the last word
        held = { state: desired };
        needFull = false;
        if (kind === 'delta') streamStats.deltaPushes++;
        else if (kind === 'full') streamStats.fullPushes++;
        else streamStats.protocol0Pushes++;
        streamStats.bytes += body.length;
        if (body.length < LARGE_PUSH_BYTES) {
          call.write(preEncodedPush(body, nonce));
        } else {
          const sent = pacer.wrote(body.length);
          sending = sent;
          call.write(preEncodedPush(body, nonce), () => {
            sent();
            if (sending !== sent) return;
            sending = undefined;
            maybePush(); // a change that came while this push was in flight
          });
        }
        alog.debug({ version: desired.version, nonce, kind, bytes: body.length }, 'pushed desired state');
      };
      /** Records a NACK; a running version the stream never sent (nor the agent ran) is logged, counted, not believed. */
      const recordNack = (a: AgentRecord, nack: { version: string; runningVersion: string }, reason: string) => {
        const running = nack.runningVersion.slice(0, MAX_VERSION_FIELD);
        if (registry.nack(a, nack.version, reason, running, sentVersions)) return;
        streamStats.nackRunningRefused++;
        alog.warn(
          { version: nack.version, claimed_running_version: plain(running), running_version: a.runningVersion },
          'NACK names a running version this stream never sent the agent; the recorded running version is kept',
        );
      };
      const maybePush = () => {
        if (closed || !agent || queued || sending || awaitingAnswer()) return;
        const desired = source.desiredFor(agent);
        if (!desired || !lacks(desired)) return;
        queued = true;
        pacer.schedule(send);
      };

      const onHello = (hello: Hello) => {
        const bad = helloProblem(hello);
        if (bad) {
          call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: bad });
          return;
        }
        const mismatch = protocolProblem(hello);
        if (mismatch) {
          log.warn(
            { node_id: hello.nodeId, protocol: hello.protocolVersion, peer: call.getPeer() },
            'agent stream refused: protocol version',
          );
          call.emit('error', { code: grpc.status.FAILED_PRECONDITION, details: mismatch });
          return;
        }
        // The interceptor authenticated the caller and checked its role; here: may it be this node?
        const who = identifyCall(authorizer, AGENT_STREAM_METHOD, call);
        if (!who.ok) return call.emit('error', { code: who.code, details: who.details });
        if (!mayStreamAs(who.identity, hello.nodeId)) {
          log.warn(
            { identity: who.identity.name, via: who.identity.via, node_id: hello.nodeId, peer: call.getPeer() },
            'agent stream refused: node id not allowed for this identity',
          );
          call.emit('error', {
            code: grpc.status.PERMISSION_DENIED,
            details: `${who.identity.name} (${who.identity.via}) may not stream as node_id "${hello.nodeId}" (see auth.clients node_ids)`,
          });
          return;
        }
        const refused =
          labelRefusal(who.identity, hello.labels) ??
          (who.identity.maxNodeIds !== undefined
            ? registry.admit(hello.nodeId, who.identity.name, who.identity.maxNodeIds)
            : undefined);
        if (refused) {
          log.warn(
            { identity: who.identity.name, via: who.identity.via, node_id: hello.nodeId, peer: call.getPeer() },
            `agent stream refused: ${refused}`,
          );
          call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: refused });
          return;
        }
        agent = registry.connect(
          {
            nodeId: hello.nodeId,
            labels: { ...hello.labels },
            agentVersion: hello.agentVersion,
            haproxyVersion: hello.haproxyVersion,
            peer: call.getPeer(),
            runningVersion: hello.runningVersion,
            capabilities: [...new Set(hello.capabilities)].sort(),
            ...(authorizer.enabled ? { credential: who.identity.credential } : {}),
          },
          who.identity.maxNodeIds !== undefined ? who.identity.name : undefined,
        );
        sentVersion = hello.runningVersion;
        protocol = hello.protocolVersion;
        if (protocol === PROTOCOL_VERSION && hello.baseVersion) held = { declared: declaredSet(hello) };
        alog = log.child({ node_id: agent.nodeId, peer: call.getPeer() });
        alog.info(
          {
            running_version: hello.runningVersion,
            protocol,
            base_version: hello.baseVersion,
            base_resources: Object.keys(hello.baseResources).length,
          },
          'agent connected',
        );
        const caps = new Set(hello.capabilities);
        const sendSettings = () => {
          const settings = caps.has('settings') ? source.agentSettings?.() : undefined;
          const text = settings ? JSON.stringify(settings) : '';
          if (closed || !settings || text === sentSettings) return;
          sentSettings = text;
          call.write({ settings });
        };
        unsubscribe = source.subscribe(() => {
          sendSettings();
          maybePush();
        });
        if (protocol === PROTOCOL_VERSION)
          unregisterRequests = stateRequests.register(hello.nodeId, (id) => call.write({ stateRequest: { id } }));
        if (protocol === PROTOCOL_VERSION && caps.has('preflight') && questions.preflight) {
          unregisterPreflights = questions.preflight.register(hello.nodeId, (id, state) =>
            call.write({ preflightRequest: { id, state: toProto(state) } }),
          );
        }
        sendSettings();
        maybePush();
      };

      call.on('data', (msg: AgentMessage) => {
        if (msg.hello) {
          if (agent)
            return call.emit('error', {
              code: grpc.status.INVALID_ARGUMENT,
              details: 'hello sent twice on one stream',
            });
          return onHello(msg.hello);
        }
        if (!agent)
          return call.emit('error', {
            code: grpc.status.FAILED_PRECONDITION,
            details: 'the first message must be a hello',
          });
        if (msg.ack && isAnswerAgain(msg.ack)) {
          // The agent retried the last push after a transient failure: its new answer replaces the old one.
          registry.ack(
            agent,
            msg.ack.version,
            applyMethodToJSON(msg.ack.method),
            clip(msg.ack.reasons),
            clip(msg.ack.warnings),
            clip(msg.ack.rejectedServices),
          );
          if (protocol === 0) sentVersion = msg.ack.version;
          nackedVersion = '';
          alog.info({ version: msg.ack.version }, 'ACK again after a retry');
        } else if (msg.nack && isAnswerAgain(msg.nack)) {
          recordNack(agent, msg.nack, clipText(msg.nack.reason));
        } else if (msg.ack) {
          if (msg.ack.nonce !== outstanding?.nonce) return; // an answer to a push superseded since (or never sent)
          if (msg.ack.version !== outstanding.version)
            return call.emit('error', {
              code: grpc.status.INVALID_ARGUMENT,
              details: `ACK for nonce ${outstanding.nonce} names version ${JSON.stringify(msg.ack.version.slice(0, 60))}, but that push carried ${outstanding.version}`,
            });
          lastAnswered = outstanding;
          answered();
          unanswered.clear();
          const reasons = clip(msg.ack.reasons);
          registry.ack(
            agent,
            msg.ack.version,
            applyMethodToJSON(msg.ack.method),
            reasons,
            clip(msg.ack.warnings),
            clip(msg.ack.rejectedServices),
          );
          if (msg.ack.counters.length > 0)
            registry.counters(agent, checkedCounters(msg.ack.counters), new Date(clock.now()), msg.ack.version);
          // Debug: thousands of agents ACK several pushes a second; the registry keeps each one's last ACK (ctl agents).
          alog.debug(
            {
              version: msg.ack.version,
              method: applyMethodToJSON(msg.ack.method),
              reasons,
              duration_ms: msg.ack.durationMs,
            },
            'ACK',
          );
          maybePush();
        } else if (msg.nack) {
          if (msg.nack.nonce !== outstanding?.nonce) return;
          if (msg.nack.version !== outstanding.version)
            return call.emit('error', {
              code: grpc.status.INVALID_ARGUMENT,
              details: `NACK for nonce ${outstanding.nonce} names version ${JSON.stringify(msg.nack.version.slice(0, 60))}, but that push carried ${outstanding.version}`,
            });
          lastAnswered = outstanding;
          answered();
          unanswered.clear();
          nackedVersion = msg.nack.version;
          sentVersion = msg.nack.runningVersion; // protocol 0; protocol 2 agents hold what they were sent (held)
          const reason = clipText(msg.nack.reason);
          recordNack(agent, msg.nack, reason);
          alog.warn(
            { version: msg.nack.version, reason },
            'NACK; not re-sending this version (an agent retries a transient failure itself and answers again)',
          );
          maybePush();
        } else if (msg.stats) {
          const now = clock.now();
          if (now - statsAcceptedAt < minStatsIntervalMs) {
            // The stream stays up (an agent whose timer fired early is no attacker); the flood buys nothing.
            streamStats.statsDropped++;
            statsDroppedUnlogged++;
            if (now - statsDropLoggedAt >= STATS_DROP_LOG_EVERY_MS) {
              alog.warn(
                { dropped: statsDroppedUnlogged, min_interval_ms: minStatsIntervalMs },
                'Stats sent faster than allowed; dropped',
              );
              statsDropLoggedAt = now;
              statsDroppedUnlogged = 0;
            }
            return;
          }
          statsAcceptedAt = now;
          registry.counters(
            agent,
            checkedCounters(msg.stats.counters),
            new Date(now),
            msg.stats.runningVersion.slice(0, MAX_VERSION_FIELD),
          );
        } else if (msg.stateReport) {
          // Hostile input like any answer: every text clipped and stripped of control characters.
          const r = msg.stateReport;
          const t = (s: string) => plain(s).slice(0, 256);
          stateRequests.answer(agent.nodeId, {
            id: r.id,
            error: plain(clipText(r.error)),
            runningVersion: t(r.runningVersion),
            servers: r.servers.map((s) => ({
              backend: t(s.backend),
              name: t(s.name),
              address: t(s.address),
              port: s.port,
              weight: s.weight,
              adminState: t(s.adminState),
              operState: t(s.operState),
            })),
          });
        } else if (msg.preflightReport) {
          const r = msg.preflightReport;
          questions.preflight?.answer(agent.nodeId, {
            id: r.id,
            ok: r.ok,
            error: plain(clipText(r.error)),
            haproxyOutput: plain(clipText(r.haproxyOutput)),
            method: r.method,
            reasons: clip(r.reasons).map(plain),
            rejectedServices: clip(r.rejectedServices).map((x) => plain(x).slice(0, 256)),
            warnings: clip(r.warnings).map(plain),
            wholeConfig: r.wholeConfig,
          });
        } else if (msg.resync) {
          if (protocol !== PROTOCOL_VERSION)
            return call.emit('error', {
              code: grpc.status.INVALID_ARGUMENT,
              details: `Resync is part of stream protocol ${PROTOCOL_VERSION}; this stream's hello said ${protocol}`,
            });
          const reason = clipText(msg.resync.reason);
          const kind = unanswered.get(msg.resync.nonce);
          // One Resync per push it could not take: anything else would let an agent have full pushes on demand.
          if (kind === undefined)
            return alog.debug(
              { nonce: msg.resync.nonce.slice(0, 60) },
              'Resync for no push awaiting an answer on this stream; ignored',
            );
          if (kind === 'full') {
            alog.error(
              { nonce: msg.resync.nonce, reason },
              'the agent could not take a full push; closing its stream (it reconnects with backoff)',
            );
            return call.emit('error', {
              code: grpc.status.INTERNAL,
              details: `the agent could not take full push ${msg.resync.nonce}: ${reason}`,
            });
          }
          streamStats.resyncs++;
          // The agent takes nothing until a full push: whatever is outstanding will not be answered.
          unanswered.clear();
          answered();
          alog.warn({ nonce: msg.resync.nonce.slice(0, 60), reason }, 'agent asks for a full resync');
          needFull = true;
          maybePush();
        }
      });
      const close = () => {
        if (closed) return;
        closed = true;
        pacer.cancel(send);
        answered();
        unregisterRequests?.();
        unregisterPreflights?.();
        sending?.(); // its bytes will never be sent on
        sending = undefined;
        unsubscribe?.();
        if (agent) {
          registry.disconnect(agent);
          alog.info({}, 'agent disconnected');
        }
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

export { ApplyMethod };

/** Deltas from a declared base larger than this are encoded for their stream only. */
const MAX_CACHED_DECLARED_BYTES = 256 * 1024;

/** The resource set an agent declared in its hello (checked by helloProblem): one hash, not one per resource. */
function declaredSet(hello: Hello): Declared {
  const entries = Object.entries(hello.baseResources).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const h = createHash('sha256').update(hello.baseVersion).update('\0').update(hello.baseGlobalsVersion);
  for (const [name, version] of entries) h.update(`\n${name}\0${version}`);
  return {
    version: hello.baseVersion,
    globalsVersion: hello.baseGlobalsVersion,
    resources: new Map(entries),
    key: h.digest('hex'),
  };
}

/** Whether a declared set is exactly `desired` (same version, globals and resource versions). */
function holdsExactly(declared: Declared, desired: DesiredState): boolean {
  const want = resourceSet(desired);
  if (
    declared.version !== desired.version ||
    declared.globalsVersion !== want.globalsVersion ||
    declared.resources.size !== want.resources.size
  )
    return false;
  for (const [name, version] of want.resources) if (declared.resources.get(name) !== version) return false;
  return true;
}

const NODE_ID_RE = /^[A-Za-z0-9_.:@-]{1,253}$/;
const LABEL_KEY_RE = /^[A-Za-z0-9_./-]{1,63}$/;
export const MAX_LABELS = 64;
const MAX_LABEL_VALUE = 256;
const MAX_VERSION_FIELD = 128;
const MAX_CAPABILITIES = 16;

/** An agent's free text (NACK reasons, ACK reasons and warnings) is kept and logged only this long. */
const MAX_TEXT = 4096;
const MAX_ITEMS = 100;
const plain = (s: string) => plainText(s);
const clipText = (s: string) => clipAt(s, MAX_TEXT, true);
const clip = (items: readonly string[]) => [
  ...items.slice(0, MAX_ITEMS).map(clipText),
  ...(items.length > MAX_ITEMS ? [`… ${items.length - MAX_ITEMS} more`] : []),
];

export { MAX_COUNTED_SERVICES, MAX_DECLARED_RESOURCES };

/** Counters from an agent, as hostile input: at most MAX_COUNTED_SERVICES, names clipped and plain, numbers finite. */
function checkedCounters(counters: readonly ServiceCounters[]): ServiceCounters[] {
  const n = (v: number) => (Number.isFinite(v) && v >= 0 ? v : 0);
  return counters.slice(0, MAX_COUNTED_SERVICES).map((c) => ({
    service: plain(c.service).slice(0, 253),
    requests: n(c.requests),
    responses5xx: n(c.responses5xx),
    sessions: n(c.sessions),
    connectionErrors: n(c.connectionErrors),
    responseErrors: n(c.responseErrors),
    retries: n(c.retries),
    serversDown: n(c.serversDown),
    servers: n(c.servers),
    queue: n(c.queue),
  }));
}

const RESOURCE_NAME_RE = /^[A-Za-z0-9_.:-]{1,253}$/;
const RESOURCE_VERSION_RE = /^[0-9a-f]{1,64}$/;

/** Why a hello's protocol version is refused (FAILED_PRECONDITION), or undefined. */
export function protocolProblem(hello: Hello): string | undefined {
  if (hello.protocolVersion === 0 || hello.protocolVersion === PROTOCOL_VERSION) return undefined;
  return `the agent speaks stream protocol ${hello.protocolVersion}; this control plane speaks ${PROTOCOL_VERSION} (and 0, whole states, for agents from before incremental pushes): upgrade the control plane first (docs/protocol.md)`;
}

/** What is wrong with a hello (node id, labels, version strings), or undefined: the first message is hostile input. */
export function helloProblem(hello: Hello): string | undefined {
  if (!hello.nodeId) return 'hello.node_id is required';
  if (!NODE_ID_RE.test(hello.nodeId))
    return `hello.node_id: ${JSON.stringify(hello.nodeId.slice(0, 60))} is not a node id (1-253 of A-Z a-z 0-9 _ . : @ -)`;
  const labels = Object.entries(hello.labels);
  if (labels.length > MAX_LABELS) return `hello.labels: ${labels.length} labels, at most ${MAX_LABELS}`;
  for (const [k, v] of labels) {
    if (!LABEL_KEY_RE.test(k))
      return `hello.labels: key ${JSON.stringify(k.slice(0, 60))} is not a label name (1-63 of A-Z a-z 0-9 _ . / -)`;
    // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
    if (v.length > MAX_LABEL_VALUE || /[\x00-\x1f\x7f]/.test(v))
      return `hello.labels.${k}: value longer than ${MAX_LABEL_VALUE} characters or with control characters`;
  }
  for (const [name, v] of [
    ['agent_version', hello.agentVersion],
    ['haproxy_version', hello.haproxyVersion],
    ['running_version', hello.runningVersion],
    ['base_version', hello.baseVersion],
  ] as const) {
    // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
    if (v.length > MAX_VERSION_FIELD || /[\x00-\x1f\x7f]/.test(v))
      return `hello.${name}: longer than ${MAX_VERSION_FIELD} characters or with control characters`;
  }
  const declared = Object.entries(hello.baseResources);
  if (declared.length > MAX_DECLARED_RESOURCES)
    return `hello.base_resources: ${declared.length} resources, at most ${MAX_DECLARED_RESOURCES}`;
  for (const [name, version] of declared) {
    if (!RESOURCE_NAME_RE.test(name))
      return `hello.base_resources: key ${JSON.stringify(name.slice(0, 60))} is not a service name (1-253 of A-Z a-z 0-9 _ . : -)`;
    if (!RESOURCE_VERSION_RE.test(version))
      return `hello.base_resources.${name}: ${JSON.stringify(version.slice(0, 60))} is not a resource version (1-64 lowercase hex digits)`;
  }
  if (hello.baseGlobalsVersion !== '' && !RESOURCE_VERSION_RE.test(hello.baseGlobalsVersion))
    return `hello.base_globals_version: ${JSON.stringify(hello.baseGlobalsVersion.slice(0, 60))} is not a resource version (1-64 lowercase hex digits)`;
  if (hello.capabilities.length > MAX_CAPABILITIES)
    return `hello.capabilities: ${hello.capabilities.length} entries, at most ${MAX_CAPABILITIES}`;
  for (const c of hello.capabilities)
    if (!/^[a-z0-9_.-]{1,32}$/.test(c))
      return `hello.capabilities: ${JSON.stringify(c.slice(0, 40))} is not a capability name (1-32 of a-z 0-9 _ . -)`;
  return undefined;
}
