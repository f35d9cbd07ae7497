import { ServiceOptionsPolicy } from '../common/config/config';
import { StateProblem } from '../common/platform/errors';
import { DesiredState, HaproxyGlobals, HostsStatus, Server, Service } from '../common/protocol/types';
import { sanitizeState } from '../common/haproxy/validate-state';
import { canonicalJson, stateVersion } from '../common/protocol/state-hash';

export { canonicalJson, stateVersion };
import { Host, ServiceConfig } from './types';

/**
 * One service as discovery currently sees it: its accepted config, the hosts to run and whether a watcher reported
 * them ('reported'; none is then an affirmative "no hosts") or they are the last known while it cannot ('unknown').
 */
export interface ServiceView {
  readonly config: ServiceConfig;
  readonly hosts: readonly Host[];
  /** Default 'reported'. */
  readonly status?: HostsStatus;
}

/** Everything the builder needs; `previous` lets a rejected service fall back to the version that runs. */
export interface DiscoveryView {
  readonly haproxy: HaproxyGlobals;
  readonly services: readonly ServiceView[];
  readonly previous?: DesiredState;
  /** proxymgr.yml's `service_options`: what listen/server options may contain (default: HAProxy's keywords only). */
  readonly policy?: ServiceOptionsPolicy;
}

export interface BuildResult {
  readonly state: DesiredState;
  /** Services or servers the final check rejected (e.g. two services on one port). */
  readonly problems: readonly StateProblem[];
}

/**
 * Builds the desired state: every service with its servers sorted by name, checked by sanitizeState, and a
 * version that is a sha256 over the canonical JSON of the content — equal inputs give equal versions, across
 * processes and restarts. Pure; results are memoized per (config, hosts) object pair, which stays correct because
 * both are immutable.
 */
export function buildDesiredStateChecked(view: DiscoveryView): BuildResult {
  const services = view.services.map((s) => buildService(s.config, s.hosts, s.status));
  const draft: DesiredState = { version: '', haproxy: view.haproxy, services };
  const { state, problems } = sanitizeState(draft, view.previous, view.policy);
  return { state: { ...state, version: stateVersion(state.haproxy, state.services) }, problems };
}

/** The snapshot for `view` (see buildDesiredStateChecked; problems are dropped). */
export function buildDesiredState(view: DiscoveryView): DesiredState {
  return buildDesiredStateChecked(view).state;
}

const builtByConfig = new WeakMap<ServiceConfig, Record<HostsStatus, WeakMap<readonly Host[], Service>>>();

/** One service: servers with unique names, sorted; memoized on the (immutable) inputs. */
export function buildService(config: ServiceConfig, hosts: readonly Host[], status: HostsStatus = 'reported'): Service {
  let byStatus = builtByConfig.get(config);
  if (!byStatus) builtByConfig.set(config, (byStatus = { reported: new WeakMap(), unknown: new WeakMap() }));
  const byHosts = byStatus[status];
  const cached = byHosts.get(hosts);
  if (cached) return cached;
  let servers = uniqueServers(hosts, config.zoneLabel);
  if (config.canary) servers = canaryWeights(servers, hosts, config.canary);
  const service: Service = {
    name: config.name,
    port: config.port,
    bindAddress: config.bindAddress,
    listenOptions: config.listenOptions,
    serverOptions: config.serverOptions,
    servers,
    ...(config.drainTimeoutMs !== undefined ? { drainTimeoutMs: config.drainTimeoutMs } : {}),
    ...(config.zoneLabel ? { zoneLabel: config.zoneLabel } : {}),
    hosts: status,
  };
  byHosts.set(hosts, service);
  return service;
}

/** The servers of `hosts` as buildService makes them (without canary weights): for hosts known without a config. */
export function serversOf(hosts: readonly Host[], zoneLabel?: string): Server[] {
  return uniqueServers(hosts, zoneLabel);
}

/**
 * Server names must be unique within a backend. Two hosts claiming one name (e.g. two Nerve nodes with the same
 * `name` on different ports) both get `name_address:port`; exact duplicates of address:port collapse into one.
 */
function uniqueServers(hosts: readonly Host[], zoneLabel?: string): Server[] {
  const byName = new Map<string, Host[]>();
  for (const h of hosts) byName.set(h.name, [...(byName.get(h.name) ?? []), h]);
  const out = new Map<string, Server>();
  const sortedNames = [...byName.keys()].sort(compare);
  for (const name of sortedNames) {
    const group = byName.get(name)!;
    const ordered =
      group.length === 1
        ? group
        : [...group].sort((a, b) =>
            compare(canonicalJson(toServer(a, '', zoneLabel)), canonicalJson(toServer(b, '', zoneLabel))),
          );
    for (const h of ordered) {
      const unique = group.length === 1 ? name : `${name}_${h.address}:${h.port}`;
      if (!out.has(unique)) out.set(unique, toServer(h, unique, zoneLabel));
    }
  }
  return [...out.values()].sort((a, b) => compare(a.name, b.name));
}

function toServer(h: Host, name: string, zoneLabel?: string): Server {
  const zone = zoneLabel ? h.labels?.[zoneLabel] : undefined;
  return { name, address: h.address, port: h.port, weight: h.weight, options: h.options, ...(zone ? { zone } : {}) };
}

/**
 * Weighted canaries: the servers whose host matches `canary.labels` get `canary.share` of the traffic, the others
 * the rest, however many hosts each side has: every server of a side gets that side's weight (1-256), chosen so
 * that canaries·wc / (canaries·wc + others·ws) is as close to the share as HAProxy's integer weights allow. Servers
 * at weight 0 (drained through discovery) stay at 0. With no server on one side, weights stay as discovered.
 */
export function canaryWeights(
  servers: readonly Server[],
  hosts: readonly Host[],
  canary: { readonly labels: Readonly<Record<string, string>>; readonly share: number },
): Server[] {
  const isCanary = new Set(
    hosts
      .filter((h) => Object.entries(canary.labels).every(([k, v]) => h.labels?.[k] === v))
      .map((h) => `${h.address}:${h.port}`),
  );
  const live = servers.filter((s) => s.weight > 0);
  const nc = live.filter((s) => isCanary.has(`${s.address}:${s.port}`)).length;
  const ns = live.length - nc;
  if (nc === 0 || ns === 0) return [...servers];
  const { wc, ws } = shareWeights(nc, ns, canary.share);
  return servers.map((s) => (s.weight === 0 ? s : { ...s, weight: isCanary.has(`${s.address}:${s.port}`) ? wc : ws }));
}

/** Integer weights (1-256) for nc canaries and ns others whose traffic share is closest to `share`. */
export function shareWeights(nc: number, ns: number, share: number): { wc: number; ws: number } {
  let best = { wc: 1, ws: 1, err: Infinity };
  for (let ws = 1; ws <= 256; ws++) {
    const ideal = (share * ns * ws) / ((1 - share) * nc);
    // Clamped into 1..256: when the share cannot be reached (one canary among thousands at a high share), the
    // nearest reachable one wins rather than an even split.
    for (const wc of [Math.floor(ideal), Math.ceil(ideal)].map((w) => Math.min(256, Math.max(1, w)))) {
      const err = Math.abs((nc * wc) / (nc * wc + ns * ws) - share);
      if (err < best.err - 1e-12) best = { wc, ws, err };
    }
  }
  return { wc: best.wc, ws: best.ws };
}

/** sha256 of the canonical JSON of the globals and of every service (each service hashed once, memoized). */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
