import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { Logger } from '../../common/log';
import { TokenBucket } from '../../common/token-bucket';
import { toProto } from '../../common/state-codec';
import { DesiredState } from '../../common/types';
import { AgentMessage, AgentStreamServer, ApplyMethod, applyMethodToJSON, ControlMessage, Hello } from '../../common/gen/proxymgr/v1/stream';
import { AGENT_STREAM_METHOD, Authorizer, mayStreamAs } from '../../common/auth';
import { identifyCall } from '../../common/grpc-auth';
import { AgentRecord, AgentRegistry } from './registry';

/** Where the stream server gets desired states from (discovery now; the rollout engine later). */
export interface DesiredStateSource {
  /** The state this agent should run now, or undefined while none is known. */
  desiredFor(agent: AgentRecord): DesiredState | undefined;
  /** Calls `fn` whenever desired states may have changed; returns an unsubscribe function. */
  subscribe(fn: () => void): () => void;
}

export interface StreamLimits {
  /** New streams accepted per second (burst: the same number); more are refused with RESOURCE_EXHAUSTED. */
  readonly newStreamsPerSecond: number;
  /** Pushes sent per second across all agents (burst: the same number); the rest wait their turn. */
  readonly pushesPerSecond: number;
}

export const DEFAULT_LIMITS: StreamLimits = { newStreamsPerSecond: 2000, pushesPerSecond: 5000 };

/**
 * Paces pushes through one token bucket with one queue and one timer: when the bucket is empty, waiting streams
 * queue up (each at most once) instead of each polling with its own timer.
 */
export class PushPacer {
  private readonly queue = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly bucket: TokenBucket) {}

  /** Runs `send` now if a token is free and nobody is waiting, else when its turn comes. */
  schedule(send: () => void): void {
    if (this.queue.size === 0 && this.bucket.tryTake()) return send();
    this.queue.add(send);
    this.arm();
  }

  cancel(send: () => void): void {
    this.queue.delete(send);
  }

  private arm(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      for (const send of this.queue) {
        if (!this.bucket.tryTake()) break;
        this.queue.delete(send);
        send();
      }
      if (this.queue.size > 0) this.arm();
    }, Math.max(1, this.bucket.waitMs()));
  }
}

/** Proto of a desired state, converted once per state however many agents it goes to. */
const protoCache = new WeakMap<DesiredState, ReturnType<typeof toProto>>();
function protoOf(state: DesiredState): ReturnType<typeof toProto> {
  let pb = protoCache.get(state);
  if (!pb) protoCache.set(state, (pb = toProto(state)));
  return pb;
}

// Nonces only need to be unique per stream and unguessable across restarts: a random prefix and a counter.
const noncePrefix = randomBytes(6).toString('hex');
let nonceCounter = 0;

/**
 * The agent stream (xDS-style). Per agent: push the desired state when it differs from what the agent runs,
 * each push with a fresh nonce; an ACK records the version; a NACK records the error, and that version is not
 * sent again while it is the last one this agent was sent — only a new desired state is. Once a different version
 * went out (and was ACKed or NACKed in turn), a state that flaps back to the NACKed one is pushed again: it is a
 * new change, not a loop, and what failed then (a port in use, a transient error) may well apply now.
 */
export function agentStreamServer(source: DesiredStateSource, registry: AgentRegistry, log: Logger, limits: StreamLimits = DEFAULT_LIMITS, authorizer: Authorizer = new Authorizer(undefined)): AgentStreamServer {
  const newStreams = new TokenBucket(limits.newStreamsPerSecond, limits.newStreamsPerSecond);
  const pacer = new PushPacer(new TokenBucket(limits.pushesPerSecond, limits.pushesPerSecond));
  return {
    stream(call: grpc.ServerDuplexStream<AgentMessage, ControlMessage>) {
      if (!newStreams.tryTake()) {
        call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'too many new agent streams; retry with backoff' });
        return;
      }
      let agent: AgentRecord | undefined;
      let unsubscribe: (() => void) | undefined;
      let sentVersion = ''; // what the agent runs or was last sent
      /** The version NACKed by the last answer, held back until another version is sent (no resend loop). */
      let nackedVersion = '';
      let outstanding: { version: string; nonce: string } | undefined;
      let queued = false;
      let closed = false;
      let alog = log;

      // The state is picked when the push's turn comes, so a queued agent gets the newest one.
      const send = () => {
        queued = false;
        if (closed || !agent) return;
        const desired = source.desiredFor(agent);
        if (!desired || desired.version === sentVersion || desired.version === nackedVersion) return;
        const nonce = `${noncePrefix}-${++nonceCounter}`;
        outstanding = { version: desired.version, nonce };
        sentVersion = desired.version;
        nackedVersion = ''; // a different version goes out: the NACKed one is no longer the last word
        call.write({ push: { version: desired.version, nonce, state: protoOf(desired) } });
        alog.debug({ version: desired.version, nonce }, 'pushed desired state');
      };
      const maybePush = () => {
        if (closed || !agent || queued) return;
        const desired = source.desiredFor(agent);
        if (!desired || desired.version === sentVersion || desired.version === nackedVersion) return;
        queued = true;
        pacer.schedule(send);
      };

      const onHello = (hello: Hello) => {
        const bad = helloProblem(hello);
        if (bad) {
          call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: bad });
          return;
        }
        // The interceptor authenticated the caller and checked its role; here: may it be this node?
        const who = identifyCall(authorizer, AGENT_STREAM_METHOD, call);
        if (!who.ok) return call.emit('error', { code: who.code, details: who.details });
        if (!mayStreamAs(who.identity, hello.nodeId)) {
          log.warn({ identity: who.identity.name, via: who.identity.via, node_id: hello.nodeId, peer: call.getPeer() }, 'agent stream refused: node id not allowed for this identity');
          call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: `${who.identity.name} (${who.identity.via}) may not stream as node_id "${hello.nodeId}" (see auth.clients node_ids)` });
          return;
        }
        agent = registry.connect({
          nodeId: hello.nodeId,
          labels: { ...hello.labels },
          agentVersion: hello.agentVersion,
          haproxyVersion: hello.haproxyVersion,
          peer: call.getPeer(),
          runningVersion: hello.runningVersion,
        });
        sentVersion = hello.runningVersion;
        alog = log.child({ node_id: agent.nodeId, peer: call.getPeer() });
        alog.info({ running_version: hello.runningVersion }, 'agent connected');
        unsubscribe = source.subscribe(maybePush);
        maybePush();
      };

      call.on('data', (msg: AgentMessage) => {
        if (msg.hello) {
          if (agent) return call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'hello sent twice on one stream' });
          return onHello(msg.hello);
        }
        if (!agent) return call.emit('error', { code: grpc.status.FAILED_PRECONDITION, details: 'the first message must be a hello' });
        if (msg.ack) {
          if (msg.ack.nonce !== outstanding?.nonce) return; // an answer to a push superseded since (or never sent)
          if (msg.ack.version !== outstanding.version) return call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: `ACK for nonce ${outstanding.nonce} names version ${JSON.stringify(msg.ack.version.slice(0, 60))}, but that push carried ${outstanding.version}` });
          outstanding = undefined;
          const reasons = clip(msg.ack.reasons);
          registry.ack(agent, msg.ack.version, applyMethodToJSON(msg.ack.method), reasons, clip(msg.ack.warnings), clip(msg.ack.rejectedServices));
          alog.info({ version: msg.ack.version, method: applyMethodToJSON(msg.ack.method), reasons, duration_ms: msg.ack.durationMs }, 'ACK');
          maybePush();
        } else if (msg.nack) {
          if (msg.nack.nonce !== outstanding?.nonce) return;
          if (msg.nack.version !== outstanding.version) return call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: `NACK for nonce ${outstanding.nonce} names version ${JSON.stringify(msg.nack.version.slice(0, 60))}, but that push carried ${outstanding.version}` });
          outstanding = undefined;
          nackedVersion = msg.nack.version;
          sentVersion = msg.nack.runningVersion;
          const reason = clipText(msg.nack.reason);
          registry.nack(agent, msg.nack.version, reason, msg.nack.runningVersion.slice(0, MAX_VERSION_FIELD));
          alog.warn({ version: msg.nack.version, reason }, 'NACK; not re-sending this version');
          maybePush();
        }
      });
      const close = () => {
        if (closed) return;
        closed = true;
        pacer.cancel(send);
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

const NODE_ID_RE = /^[A-Za-z0-9_.:@-]{1,253}$/;
const LABEL_KEY_RE = /^[A-Za-z0-9_.\/-]{1,63}$/;
export const MAX_LABELS = 64;
const MAX_LABEL_VALUE = 256;
const MAX_VERSION_FIELD = 128;

/** An agent's free text (NACK reasons, ACK reasons and warnings) is kept and logged only this long. */
const MAX_TEXT = 4096;
const MAX_ITEMS = 100;
const clipText = (s: string) => (s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}… (${s.length} characters)` : s);
const clip = (items: readonly string[]) => [...items.slice(0, MAX_ITEMS).map(clipText), ...(items.length > MAX_ITEMS ? [`… ${items.length - MAX_ITEMS} more`] : [])];

/** What is wrong with a hello (node id, labels, version strings), or undefined: the first message is hostile input. */
export function helloProblem(hello: Hello): string | undefined {
  if (!hello.nodeId) return 'hello.node_id is required';
  if (!NODE_ID_RE.test(hello.nodeId)) return `hello.node_id: ${JSON.stringify(hello.nodeId.slice(0, 60))} is not a node id (1-253 of A-Z a-z 0-9 _ . : @ -)`;
  const labels = Object.entries(hello.labels);
  if (labels.length > MAX_LABELS) return `hello.labels: ${labels.length} labels, at most ${MAX_LABELS}`;
  for (const [k, v] of labels) {
    if (!LABEL_KEY_RE.test(k)) return `hello.labels: key ${JSON.stringify(k.slice(0, 60))} is not a label name (1-63 of A-Z a-z 0-9 _ . / -)`;
    // eslint-disable-next-line no-control-regex
    if (v.length > MAX_LABEL_VALUE || /[\x00-\x1f\x7f]/.test(v)) return `hello.labels.${k}: value longer than ${MAX_LABEL_VALUE} characters or with control characters`;
  }
  for (const [name, v] of [['agent_version', hello.agentVersion], ['haproxy_version', hello.haproxyVersion], ['running_version', hello.runningVersion]] as const) {
    // eslint-disable-next-line no-control-regex
    if (v.length > MAX_VERSION_FIELD || /[\x00-\x1f\x7f]/.test(v)) return `hello.${name}: longer than ${MAX_VERSION_FIELD} characters or with control characters`;
  }
  return undefined;
}
