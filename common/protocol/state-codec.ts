import * as pb from '../gen/proxymgr/v1/state';
import { DEFAULT_BIND_ADDRESS, DEFAULT_WEIGHT, DesiredState, HostsStatus, Service } from './types';

/** Proto → domain. Defaults are filled in here so the rest of the code never sees proto's zero values. */
export function fromProto(msg: pb.DesiredState): DesiredState {
  return {
    version: msg.version,
    haproxy: { global: [...(msg.haproxy?.global ?? [])], defaults: [...(msg.haproxy?.defaults ?? [])] },
    services: msg.services.map(serviceFromProto),
  };
}

export function serviceFromProto(s: pb.Service): Service {
  return {
    name: s.name,
    port: s.port,
    bindAddress: s.bindAddress || DEFAULT_BIND_ADDRESS,
    listenOptions: [...s.listenOptions],
    serverOptions: [...s.serverOptions],
    servers: s.servers.map((v) => ({
      name: v.name,
      address: v.address,
      port: v.port,
      // Unset (an older control plane, a hand-written file) is the default; an explicit 0 is a drained server.
      weight: v.weight ?? DEFAULT_WEIGHT,
      options: [...v.options],
      ...(v.zone ? { zone: v.zone } : {}),
    })),
    ...(s.drainTimeoutMs ? { drainTimeoutMs: s.drainTimeoutMs } : {}),
    ...(s.zoneLabel ? { zoneLabel: s.zoneLabel } : {}),
    ...hostsFromProto(s.hostsStatus),
  };
}

function hostsFromProto(status: pb.HostsStatus): { hosts?: HostsStatus } {
  if (status === pb.HostsStatus.HOSTS_STATUS_REPORTED) return { hosts: 'reported' };
  if (status === pb.HostsStatus.HOSTS_STATUS_UNKNOWN) return { hosts: 'unknown' };
  return {};
}

const HOSTS_TO_PROTO: Record<HostsStatus, pb.HostsStatus> = {
  reported: pb.HostsStatus.HOSTS_STATUS_REPORTED,
  unknown: pb.HostsStatus.HOSTS_STATUS_UNKNOWN,
};

export function serviceToProto(s: Service): pb.Service {
  return {
    name: s.name,
    port: s.port,
    bindAddress: s.bindAddress,
    listenOptions: [...s.listenOptions],
    serverOptions: [...s.serverOptions],
    // The weight is always set (presence): 0 must reach the agent as 0, not as "unset".
    servers: s.servers.map((v) => ({
      name: v.name,
      address: v.address,
      port: v.port,
      weight: v.weight,
      options: [...v.options],
      zone: v.zone ?? '',
    })),
    drainTimeoutMs: s.drainTimeoutMs ?? 0,
    zoneLabel: s.zoneLabel ?? '',
    hostsStatus: s.hosts ? HOSTS_TO_PROTO[s.hosts] : pb.HostsStatus.HOSTS_STATUS_UNSPECIFIED,
  };
}

/** Domain → proto. */
export function toProto(state: DesiredState): pb.DesiredState {
  return pb.DesiredState.fromPartial({
    version: state.version,
    haproxy: { global: [...state.haproxy.global], defaults: [...state.haproxy.defaults] },
    services: state.services.map(serviceToProto),
  });
}

/** Parses the proto3 JSON form (camelCase or snake_case keys) of a DesiredState. */
export function fromJson(json: unknown): DesiredState {
  return fromProto(pb.DesiredState.fromJSON(json));
}

export function toJson(state: DesiredState): unknown {
  return pb.DesiredState.toJSON(toProto(state));
}

/** Each service's proto3 JSON text, memoized per (immutable) service object. */
const serviceJson = new WeakMap<Service, string>();

/**
 * The proto3 JSON text of a state (what fromJson reads), built from per-service texts: the agent's state cache is
 * rewritten after every change, and at 2,000 services only the services that changed are serialized again.
 */
export function stateJsonText(state: DesiredState): string {
  const services = state.services.map((s) => {
    let text = serviceJson.get(s);
    if (text === undefined) serviceJson.set(s, (text = JSON.stringify(pb.Service.toJSON(serviceToProto(s)))));
    return text;
  });
  const head = pb.DesiredState.toJSON({
    version: state.version,
    haproxy: { global: [...state.haproxy.global], defaults: [...state.haproxy.defaults] },
    services: [],
  }) as Record<string, unknown>;
  delete head.services;
  const prefix = JSON.stringify(head).slice(0, -1);
  return `${prefix}${prefix.length > 1 ? ',' : ''}"services":[\n${services.join(',\n')}\n]}\n`;
}
