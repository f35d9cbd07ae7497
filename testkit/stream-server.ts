import * as grpc from '@grpc/grpc-js';
import { Clock, systemClock } from '../common/platform/clock';
import { AGENT_MESSAGE_LIMIT_BYTES } from '../common/platform/grpc';
import { silentLogger } from '../common/platform/log';
import { DesiredState } from '../common/protocol/types';
import { AgentMessage, AgentStreamClient, ControlMessage, Hello } from '../common/gen/proxymgr/v1/stream';
import { AgentStreamDefinition } from '../controlplane/grpc/push-encoding';
import { AgentRegistry } from '../controlplane/grpc/registry';
import { agentStreamServer, StreamLimits } from '../controlplane/grpc/stream-server';
import { StreamStats } from '../controlplane/grpc/stream-stats';
import { DesiredStateSource } from '../controlplane/ports';

/**
 * A real gRPC server running the agent stream (with the pre-encoding serializer, as the control plane registers it)
 * over a desired state the test controls; its timers (answer timeout, push pacing) run on `clock`, what agents
 * report goes to `registry` (give one with events to watch them), and what the streams count to `stats`.
 */
export async function startStreamServer(
  limits: StreamLimits = { newStreamsPerSecond: 100, pushesPerSecond: 100 },
  clock: Clock = systemClock,
  registry: AgentRegistry = new AgentRegistry(),
) {
  let current: DesiredState | undefined;
  const subscribers = new Set<() => void>();
  const source: DesiredStateSource = {
    desiredFor: () => current,
    subscribe: (fn) => {
      subscribers.add(fn);
      return () => subscribers.delete(fn);
    },
  };
  const stats = new StreamStats();
  const srv = new grpc.Server({ 'grpc.max_receive_message_length': AGENT_MESSAGE_LIMIT_BYTES });
  srv.addService(
    AgentStreamDefinition,
    agentStreamServer({ source, registry, log: silentLogger, limits, clock, stats }),
  );
  const port = await new Promise<number>((resolve, reject) =>
    srv.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return {
    port,
    registry,
    stats,
    set(s: DesiredState) {
      current = s;
      for (const fn of subscribers) fn();
    },
    /** Wakes every stream without changing the state (as a discovery event that changes nothing would). */
    poke() {
      for (const fn of subscribers) fn();
    },
    close: () => srv.forceShutdown(),
  };
}

/** A raw agent-stream client (protocol 0) that says hello and records pushes and errors; close it in `finally`. */
export function rawAgent(port: number, nodeId: string, runningVersion = '') {
  const client = new AgentStreamClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = client.stream();
  const pushes: ControlMessage['push'][] = [];
  let error: grpc.ServiceError | undefined;
  call.on('data', (m: ControlMessage) => pushes.push(m.push));
  call.on('error', (e: grpc.ServiceError) => (error = e));
  call.write({
    hello: Hello.fromPartial({ nodeId, labels: {}, agentVersion: 't', haproxyVersion: 't', runningVersion }),
  });
  return {
    pushes,
    error: () => error,
    send: (m: AgentMessage) => call.write(m),
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

/** What identifies a push to its answer. */
type Answered = { readonly version: string; readonly nonce: string };

/** The ACK of `push` by an agent that applied it through the runtime API, with nothing to report. */
export function ackOf(push: Answered | undefined): AgentMessage {
  return {
    ack: {
      version: push!.version,
      nonce: push!.nonce,
      method: 2,
      reasons: [],
      runtimeCommands: 0,
      durationMs: 1,
      warnings: [],
      rejectedServices: [],
      counters: [],
      refusals: [],
      changes: [],
      appliedAgoMs: 0,
    },
  };
}

/** The NACK of `push`: HAProxy's `reason`, and the version the agent says it keeps running. */
export function nackOf(push: Answered | undefined, reason: string, runningVersion: string): AgentMessage {
  return {
    nack: { version: push!.version, nonce: push!.nonce, reason, haproxyOutput: '', runningVersion, refusals: [] },
  };
}
