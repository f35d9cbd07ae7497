import * as grpc from '@grpc/grpc-js';
import { toProto } from '../../common/state-codec';
import { AgentInfo, ControlPlaneAdminServer } from '../../common/gen/proxymgr/v1/admin';
import { DesiredState } from '../../common/types';
import { AgentRecord, AgentRegistry } from './registry';
import { AgentStateRequests } from './state-requests';
import { DesiredStateSource } from './stream-server';

/** How long GetAgentView waits for the agent's answer about its HAProxy. */
const AGENT_ANSWER_MS = 5000;

export type AgentSyncState = 'SYNCED' | 'STALE' | 'NACKED' | 'DISCONNECTED';

/** Where an agent stands against what this control plane wants it to run. */
export function syncOf(a: Pick<AgentRecord, 'connected' | 'runningVersion' | 'lastNackedVersion'>, desiredVersion: string): { desiredVersion: string; state: AgentSyncState } {
  const state: AgentSyncState = !a.connected
    ? 'DISCONNECTED'
    : desiredVersion !== '' && a.runningVersion === desiredVersion
      ? 'SYNCED'
      : desiredVersion !== '' && a.lastNackedVersion === desiredVersion
        ? 'NACKED'
        : 'STALE';
  return { desiredVersion, state };
}

/** ControlPlaneAdmin: services and hosts, agents and what they run, the state one agent should get. */
export function controlPlaneAdminServer(
  current: () => DesiredState | undefined,
  errors: () => Record<string, string>,
  source: DesiredStateSource,
  registry: AgentRegistry,
  stateRequests: AgentStateRequests = new AgentStateRequests(),
): ControlPlaneAdminServer {
  const info = (a: AgentRecord): AgentInfo => ({
    ...syncOf(a, source.desiredFor(a)?.version ?? ''),
    nodeId: a.nodeId,
    labels: { ...a.labels },
    connected: a.connected,
    runningVersion: a.runningVersion,
    lastAckedVersion: a.lastAckedVersion,
    lastAckTime: a.lastAckTime?.toISOString() ?? '',
    lastNackedVersion: a.lastNackedVersion,
    lastError: a.lastError,
    agentVersion: a.agentVersion,
    haproxyVersion: a.haproxyVersion,
    peer: a.peer,
    connectedSince: a.connectedSince?.toISOString() ?? '',
  });
  return {
    listServices(_call, callback) {
      const state = current();
      callback(null, { version: state?.version ?? '', services: state ? toProto(state).services : [], errors: errors() });
    },
    listAgents(_call, callback) {
      callback(null, {
        desiredVersion: current()?.version ?? '',
        agents: registry.list().map(info),
      });
    },
    getAgentState(call, callback) {
      const agent = registry.get(call.request.nodeId);
      if (!agent) return callback({ code: grpc.status.NOT_FOUND, details: `no agent with node_id "${call.request.nodeId}" has connected to this control plane` });
      const state = source.desiredFor(agent);
      if (!state) return callback({ code: grpc.status.UNAVAILABLE, details: 'no desired state yet (discovery has not synced)' });
      callback(null, toProto(state));
    },
    getAgentView(call, callback) {
      const agent = registry.get(call.request.nodeId);
      if (!agent) return callback({ code: grpc.status.NOT_FOUND, details: `no agent with node_id "${call.request.nodeId}" has connected to this control plane` });
      const desired = source.desiredFor(agent);
      void stateRequests.ask(agent.nodeId, AGENT_ANSWER_MS).then((report) => {
        const haproxy = typeof report === 'string' ? { haproxy: [], haproxyError: report } : { haproxy: report.servers, haproxyError: report.error };
        callback(null, { agent: info(agent), desired: desired ? toProto(desired) : undefined, ...haproxy });
      });
    },
  };
}
