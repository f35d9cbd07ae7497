import * as grpc from '@grpc/grpc-js';
import { Clock, systemClock } from '../common/clock';
import { AGENT_MESSAGE_LIMIT_BYTES } from '../common/grpc';
import { silentLogger } from '../common/log';
import { DesiredState } from '../common/types';
import { AgentStreamDefinition } from '../controlplane/grpc/push-encoding';
import { AgentRegistry } from '../controlplane/grpc/registry';
import { agentStreamServer, StreamLimits } from '../controlplane/grpc/stream-server';
import { DesiredStateSource } from '../controlplane/ports';

/**
 * A real gRPC server running the agent stream (with the pre-encoding serializer, as the control plane registers it)
 * over a desired state the test controls; its timers (answer timeout, push pacing) run on `clock`.
 */
export async function startStreamServer(
  limits: StreamLimits = { newStreamsPerSecond: 100, pushesPerSecond: 100 },
  clock: Clock = systemClock,
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
  const registry = new AgentRegistry();
  const srv = new grpc.Server({ 'grpc.max_receive_message_length': AGENT_MESSAGE_LIMIT_BYTES });
  srv.addService(
    AgentStreamDefinition,
    agentStreamServer(source, registry, silentLogger, limits, undefined, undefined, clock),
  );
  const port = await new Promise<number>((resolve, reject) =>
    srv.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return {
    port,
    registry,
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
