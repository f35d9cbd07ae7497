import { createHash } from 'node:crypto';
import { DesiredState, HaproxyGlobals, HostsStatus, Server, Service } from '../../common/protocol/types';
import { DEFAULT_SERVICE_OPTIONS, ServiceOptionsPolicy } from '../../common/config/config';
import { errorMessage } from '../../common/platform/errors';
import { REVISION_ID_LENGTH } from '../../common/protocol/revision-id';
import { sanitizeState } from '../../common/haproxy/validate-state';
import { canonicalJson, stateVersion } from '../builder';

/** The shape of one service in a revision: everything but its hosts. */
export interface ServiceShape {
  readonly name: string;
  readonly port: number;
  readonly bindAddress: string;
  readonly listenOptions: readonly string[];
  readonly serverOptions: readonly string[];
  /** Label selector (matchLabels); absent = every agent. */
  readonly agents?: Readonly<Record<string, string>>;
  readonly drainTimeoutMs?: number;
  readonly zoneLabel?: string;
}

/**
 * A config revision: the shape of every service plus the HAProxy global/defaults. Host membership, weights and
 * addresses are not part of it — an agent's desired state is (its revision) × (the current hosts), so host
 * changes reach every agent at once whatever revision it runs. Immutable; `id` is a content hash.
 */
export interface Revision {
  readonly id: string;
  readonly haproxy: HaproxyGlobals;
  readonly services: readonly ServiceShape[];
}

/** The revision of a discovery snapshot; `selectorOf` gives each service's `agents` selector. */
export function revisionOf(
  state: DesiredState,
  selectorOf: (service: string) => Readonly<Record<string, string>> | undefined,
): Revision {
  const services: ServiceShape[] = state.services.map((s) => {
    const agents = selectorOf(s.name);
    return {
      name: s.name,
      port: s.port,
      bindAddress: s.bindAddress,
      listenOptions: s.listenOptions,
      serverOptions: s.serverOptions,
      ...(agents && Object.keys(agents).length > 0 ? { agents } : {}),
      ...(s.drainTimeoutMs !== undefined ? { drainTimeoutMs: s.drainTimeoutMs } : {}),
      ...(s.zoneLabel ? { zoneLabel: s.zoneLabel } : {}),
    };
  });
  services.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const body = { haproxy: { global: state.haproxy.global, defaults: state.haproxy.defaults }, services };
  return { id: createHash('sha256').update(canonicalJson(body)).digest('hex').slice(0, REVISION_ID_LENGTH), ...body };
}

/** matchLabels: every pair of the selector is among the labels. */
export function selectorMatches(
  selector: Readonly<Record<string, string>> | undefined,
  labels: Readonly<Record<string, string>>,
): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/**
 * The desired state of one agent: the revision's services that select it, with the current hosts of each.
 * The version is `<revision id>.<content hash>`, so an ACK or a hello names the revision an agent runs, on any replica.
 * `hostsOf` gives each service's servers, and whether discovery reported them or they are the last known
 * (default: reported); a service whose hosts are not known is marked 'unknown', never sent as an affirmative empty.
 */
export function composeState(
  revision: Revision,
  labels: Readonly<Record<string, string>>,
  hostsOf: (
    service: string,
    shape: ServiceShape,
  ) => readonly Server[] | { readonly servers: readonly Server[]; readonly status: HostsStatus },
): DesiredState {
  const services: Service[] = revision.services
    .filter((s) => selectorMatches(s.agents, labels))
    .map((s) => {
      const h = hostsOf(s.name, s);
      const { servers, status } = 'servers' in h ? h : { servers: h, status: 'reported' as const };
      return {
        name: s.name,
        port: s.port,
        bindAddress: s.bindAddress,
        listenOptions: s.listenOptions,
        serverOptions: s.serverOptions,
        servers,
        ...(s.drainTimeoutMs !== undefined ? { drainTimeoutMs: s.drainTimeoutMs } : {}),
        ...(s.zoneLabel ? { zoneLabel: s.zoneLabel } : {}),
        hosts: status,
      };
    });
  return {
    version: `${revision.id}.${stateVersion(revision.haproxy, services).slice(0, 20)}`,
    haproxy: revision.haproxy,
    services,
  };
}

/**
 * The services whose shape `to` changes from `from` (new ones included; a global/defaults change touches them all).
 * A service an agent refuses counts against a rollout only if the rollout changed it.
 */
export function changedServices(from: Revision | undefined, to: Revision): Set<string> {
  const all = new Set(to.services.map((s) => s.name));
  if (!from || canonicalJson(from.haproxy) !== canonicalJson(to.haproxy)) return all;
  const before = new Map(from.services.map((s) => [s.name, canonicalJson(s)]));
  return new Set(to.services.filter((s) => before.get(s.name) !== canonicalJson(s)).map((s) => s.name));
}

/**
 * What is wrong with a revision read back from ZooKeeper, or undefined. Revisions are stored by the leader, but
 * anyone who can write ZooKeeper (no `controlplane.zk_digest_file`) could plant one: it is checked like a fresh
 * snapshot — shape, then sanitizeState with this replica's service_options — before any agent is served from it.
 */
export function revisionProblem(
  revision: unknown,
  policy: ServiceOptionsPolicy = DEFAULT_SERVICE_OPTIONS,
): string | undefined {
  const r = revision as Partial<Revision> | null;
  const lines = (v: unknown) => Array.isArray(v) && v.every((l) => typeof l === 'string');
  if (typeof r !== 'object' || r === null || typeof r.id !== 'string' || !Array.isArray(r.services))
    return 'not a revision (id, services)';
  if (typeof r.haproxy !== 'object' || r.haproxy === null || !lines(r.haproxy.global) || !lines(r.haproxy.defaults))
    return 'haproxy.global/defaults must be lists of lines';
  for (const [i, sv] of r.services.entries()) {
    const x = sv as Partial<ServiceShape> | null;
    if (
      typeof x !== 'object' ||
      x === null ||
      typeof x.name !== 'string' ||
      typeof x.port !== 'number' ||
      typeof x.bindAddress !== 'string' ||
      !lines(x.listenOptions) ||
      !lines(x.serverOptions)
    ) {
      return `services[${i}] is not a service (name, port, bindAddress, listenOptions, serverOptions)`;
    }
  }
  // Service by service: two services on one port are fine in a revision when their selectors pick different agents.
  try {
    for (const x of (r as Revision).services) {
      const one: DesiredState = {
        version: '',
        haproxy: r.haproxy,
        services: [
          {
            name: x.name,
            port: x.port,
            bindAddress: x.bindAddress,
            listenOptions: x.listenOptions,
            serverOptions: x.serverOptions,
            servers: [],
          },
        ],
      };
      const { problems } = sanitizeState(one, undefined, policy);
      if (problems.length > 0) return problems.map((p) => `${p.where}: ${p.message}`).join('; ');
    }
    sanitizeState({ version: '', haproxy: r.haproxy, services: [] }, undefined, policy); // global/defaults
  } catch (err) {
    return errorMessage(err);
  }
  return undefined;
}

/** What `to` changes compared with `from`, for humans ("service api added", "listen_options of web changed"). */
export function describeChanges(from: Revision | undefined, to: Revision): string[] {
  if (!from) return ['initial revision'];
  const out: string[] = [];
  if (canonicalJson(from.haproxy.global) !== canonicalJson(to.haproxy.global)) out.push('haproxy global changed');
  if (canonicalJson(from.haproxy.defaults) !== canonicalJson(to.haproxy.defaults)) out.push('haproxy defaults changed');
  const before = new Map(from.services.map((s) => [s.name, s]));
  const after = new Map(to.services.map((s) => [s.name, s]));
  for (const [name, s] of after) {
    const b = before.get(name);
    if (!b) {
      out.push(`service ${name} added`);
      continue;
    }
    const fields: [string, unknown, unknown][] = [
      ['port', b.port, s.port],
      ['bind_address', b.bindAddress, s.bindAddress],
      ['listen_options', b.listenOptions, s.listenOptions],
      ['server_options', b.serverOptions, s.serverOptions],
      ['agents', b.agents, s.agents],
      ['drain_timeout_ms', b.drainTimeoutMs, s.drainTimeoutMs],
      ['zone_label', b.zoneLabel, s.zoneLabel],
    ];
    for (const [field, x, y] of fields)
      if (canonicalJson(x) !== canonicalJson(y)) out.push(`${field} of ${name} changed`);
  }
  for (const name of removedServices(from, to)) out.push(`service ${name} removed`);
  return out;
}

/** The services `from` has and `to` does not, by name. */
function removedServices(from: Revision | undefined, to: Revision): string[] {
  if (!from) return [];
  const after = new Set(to.services.map((s) => s.name));
  return from.services.map((s) => s.name).filter((name) => !after.has(name));
}

/**
 * What `to` takes away from agents compared with `from`: the services it removes (by name), and those whose `agents`
 * selector no longer matches some of `agents` (their labels) that it matched — "web (from 2 agent(s))".
 */
export function serviceRemovalsOf(
  from: Revision,
  to: Revision,
  agents: readonly Readonly<Record<string, string>>[] = [],
): string[] {
  const out = removedServices(from, to);
  const after = new Map(to.services.map((s) => [s.name, s]));
  for (const b of from.services) {
    const a = after.get(b.name);
    if (!a || canonicalJson(a.agents) === canonicalJson(b.agents)) continue;
    const left = agents.filter((labels) => selectorMatches(b.agents, labels) && !selectorMatches(a.agents, labels));
    if (left.length > 0) out.push(`${b.name} (from ${left.length} agent(s))`);
  }
  return out;
}
