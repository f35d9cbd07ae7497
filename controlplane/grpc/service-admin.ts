import * as grpc from '@grpc/grpc-js';
import { GetServiceRequest, ServiceAgentStatus, ServiceStatus } from '../../common/gen/proxymgr/v1/admin';
import { clipText, plainText } from '../../common/platform/text';
import { resourceSet } from '../../common/protocol/resources';
import { DesiredState } from '../../common/protocol/types';
import { DesiredStateSource } from '../ports';
import { agentsOfService, AgentServiceStatus, fleetSummaries, FleetServiceRow, summarize } from '../service-status';
import { AgentRegistry } from './registry';

/** GetService lists this many agents unless asked otherwise, and never more than MAX_LISTED. */
export const DEFAULT_LISTED = 200;
export const MAX_LISTED = 5000;

const NAME_RE = /^[A-Za-z0-9_.:-]{1,253}$/;

/** Every agent's part in service `name` (see service-status.ts), from the registry and each agent's desired state. */
export function serviceAgents(name: string, source: DesiredStateSource, registry: AgentRegistry): AgentServiceStatus[] {
  return agentsOfService(
    name,
    registry.list().map((a) => ({
      nodeId: a.nodeId,
      connected: a.connected,
      view: a.services,
      desired: source.desiredFor(a),
    })),
  );
}

/**
 * GetService: which agents run which version of the service, how it came, which refused it and why. INVALID_ARGUMENT
 * for a name no service can have; NOT_FOUND when neither the desired state nor any agent has the service.
 */
export function getService(
  request: GetServiceRequest,
  current: () => DesiredState | undefined,
  source: DesiredStateSource,
  registry: AgentRegistry,
): ServiceStatus | { code: grpc.status; details: string } {
  const name = request.name;
  if (!NAME_RE.test(name))
    return {
      code: grpc.status.INVALID_ARGUMENT,
      details: `service name ${JSON.stringify(clipText(plainText(name), 253, true))} is not a service name ([A-Za-z0-9_.:-], 1 to 253 characters)`,
    };
  const state = current();
  const desiredVersion = state ? (resourceSet(state).resources.get(name) ?? '') : '';
  const agents = serviceAgents(name, source, registry);
  if (desiredVersion === '' && agents.length === 0)
    return {
      code: grpc.status.NOT_FOUND,
      details: `no service "${name}" in the desired state, and no agent of this control plane runs or refused one`,
    };
  const limit = Math.min(MAX_LISTED, request.limit > 0 ? request.limit : DEFAULT_LISTED);
  const sum = summarize(agents);
  return {
    name,
    desiredVersion,
    agents: agents.slice(0, limit).map(toProtoStatus),
    agentsTotal: agents.length,
    byVersion: sum.byVersion,
    byMethod: sum.byMethod,
    refused: sum.refused,
  };
}

function toProtoStatus(s: AgentServiceStatus): ServiceAgentStatus {
  return {
    nodeId: s.nodeId,
    connected: s.connected,
    runningVersion: s.running?.version ?? '',
    method: s.running?.method ?? '',
    desiredVersion: s.desiredVersion,
    refusedVersion: s.refused?.version ?? '',
    refusal: s.refused?.message ?? '',
    unknown: s.unknown,
  };
}

/** The status page shows at most this many services in its applied table. */
const MAX_PAGE_SERVICES = 1000;

/** The applied table of the status page and /status.json: every desired service (and any refused one). */
export function serviceRows(
  current: () => DesiredState | undefined,
  source: DesiredStateSource,
  registry: AgentRegistry,
): FleetServiceRow[] {
  const state = current();
  return fleetSummaries(
    state ? state.services.map((s) => s.name) : [],
    state,
    registry
      .list()
      .map((a) => ({ nodeId: a.nodeId, connected: a.connected, view: a.services, desired: source.desiredFor(a) })),
    MAX_PAGE_SERVICES,
  );
}
