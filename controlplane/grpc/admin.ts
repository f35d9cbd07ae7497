import * as grpc from '@grpc/grpc-js';
import { toProto } from '../../common/protocol/state-codec';
import {
  AgentInfo,
  ControlPlaneAdminServer,
  ListAgentsResponse,
  ListServicesResponse,
} from '../../common/gen/proxymgr/v1/admin';
import { clipText, plainText } from '../../common/platform/text';
import { DesiredState } from '../../common/protocol/types';
import { systemClock } from '../../common/platform/clock';
import { AgentRegistry } from './registry';
import { AgentStateRequests } from './agent-questions';
import { getService } from './service-admin';
import { ChangeTrace } from '../trace/change-trace';
import { changeDetail, listChanges } from '../trace/change-summary';
import { AgentRecord, DesiredStateSource } from '../ports';

/** ListServices: the desired services with their hosts, and discovery's problems per service. */
export function listServices(
  current: () => DesiredState | undefined,
  errors: () => Record<string, string>,
): ListServicesResponse {
  const state = current();
  return { version: state?.version ?? '', services: state ? toProto(state).services : [], errors: errors() };
}

/** ListAgents: every agent this replica knows, with its state against what it should run. */
export function listAgents(
  current: () => DesiredState | undefined,
  source: DesiredStateSource,
  registry: AgentRegistry,
): ListAgentsResponse {
  return { desiredVersion: current()?.version ?? '', agents: registry.list().map((a) => agentInfo(a, source)) };
}

function agentInfo(a: AgentRecord, source: DesiredStateSource): AgentInfo {
  return {
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
    counters: [...(a.counters ?? [])],
    countersTime: a.countersAt?.toISOString() ?? '',
  };
}

/** How long GetAgentView waits for the agent's answer about its HAProxy. */
const AGENT_ANSWER_MS = 5000;

export type AgentSyncState = 'SYNCED' | 'STALE' | 'NACKED' | 'DISCONNECTED';

/**
 * Where an agent stands against what this control plane wants it to run. An agent that runs the version but left
 * services of it out (a partial apply, e.g. a port taken on that host) refused part of it: NACKED, as a rollout
 * counts it.
 */
export function syncOf(
  a: Pick<AgentRecord, 'connected' | 'runningVersion' | 'lastNackedVersion' | 'rejectedServices'>,
  desiredVersion: string,
): { desiredVersion: string; state: AgentSyncState } {
  const runs = desiredVersion !== '' && a.runningVersion === desiredVersion;
  const state: AgentSyncState = !a.connected
    ? 'DISCONNECTED'
    : runs && (a.rejectedServices?.length ?? 0) > 0
      ? 'NACKED'
      : runs
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
  trace: ChangeTrace = new ChangeTrace({ clock: systemClock }),
): ControlPlaneAdminServer {
  const connected = (node: string) => registry.get(node)?.connected === true;
  return {
    listChanges(call, callback) {
      callback(null, listChanges(trace, call.request.limit, connected));
    },
    getChange(call, callback) {
      const c = trace.get(call.request.id);
      if (!c) {
        const shown = JSON.stringify(clipText(plainText(call.request.id), 64, true));
        return callback({
          code: grpc.status.NOT_FOUND,
          details: `no change ${shown} is traced by this control plane (ctl changes lists them)`,
        });
      }
      callback(null, changeDetail(c, connected));
    },
    listServices(_call, callback) {
      callback(null, listServices(current, errors));
    },
    listAgents(_call, callback) {
      callback(null, listAgents(current, source, registry));
    },
    getAgentState(call, callback) {
      const agent = registry.get(call.request.nodeId);
      if (!agent) return callback(unknownAgent(call.request.nodeId));
      const state = source.desiredFor(agent);
      if (!state)
        return callback({ code: grpc.status.UNAVAILABLE, details: 'no desired state yet (discovery has not synced)' });
      callback(null, toProto(state));
    },
    getService(call, callback) {
      const r = getService(call.request, current, source, registry);
      if ('code' in r) callback(r);
      else callback(null, r);
    },
    getAgentView(call, callback) {
      const agent = registry.get(call.request.nodeId);
      if (!agent) return callback(unknownAgent(call.request.nodeId));
      const desired = source.desiredFor(agent);
      void stateRequests.ask(agent.nodeId, undefined, AGENT_ANSWER_MS).then((report) => {
        const haproxy =
          typeof report === 'string'
            ? { haproxy: [], haproxyError: report }
            : { haproxy: report.servers, haproxyError: report.error, reloads: report.reloads };
        callback(null, {
          agent: agentInfo(agent, source),
          desired: desired ? toProto(desired) : undefined,
          ...haproxy,
        });
      });
    },
  };
}

/**
 * NOT_FOUND for a node id no agent connected with, quoting the id clipped and without control characters: a caller's
 * 100 KB id in the status details was more than grpc-js could send, and the call (with every other call on its
 * connection) hung until its deadline.
 */
function unknownAgent(nodeId: string): { code: grpc.status; details: string } {
  const shown = JSON.stringify(clipText(plainText(nodeId), 253, true));
  return { code: grpc.status.NOT_FOUND, details: `no agent with node_id ${shown} has connected to this control plane` };
}
