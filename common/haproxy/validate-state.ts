import { isIP } from 'node:net';
import { DEFAULT_SERVICE_OPTIONS, ServiceOptionsPolicy } from '../config/config';
import { serverTargetProblems, serviceTargetProblems } from './check-targets';
import { StateError, StateProblem } from '../platform/errors';
import { hostAddressProblem } from './target-policy';
import { listenOptionProblem, OptionProblem, sectionLineProblem, serverOptionsProblems } from './option-policy';
import { DesiredState, Server, Service } from '../protocol/types';

/** HAProxy section and server names: what HAProxy accepts and nothing that could break out of a config line. */
export const NAME_RE = /^[A-Za-z0-9_.:-]+$/;
// eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
const CONTROL_RE = /[\x00-\x1f\x7f]/;

export interface SanitizedState {
  /** The state to run: every valid service, and for each rejected one its previous version if there was one. */
  readonly state: DesiredState;
  /** What was rejected and why; empty when the input was clean. */
  readonly problems: readonly StateProblem[];
}

/**
 * Rejects hostile or impossible input before anything is rendered. A bad service is left out (or kept at its
 * version in `previous`), the rest is still served. Bad global/defaults lines reject the whole state: there is
 * nothing sensible to serve instead, so the caller keeps what runs. Listen and server options are held to `policy`
 * (common/haproxy/option-policy.ts); the control plane and every agent pass their own proxymgr.yml's `service_options`.
 */
export function sanitizeState(
  state: DesiredState,
  previous?: DesiredState,
  policy: ServiceOptionsPolicy = DEFAULT_SERVICE_OPTIONS,
): SanitizedState {
  const globalProblems = [
    ...lineProblems(state.haproxy.global, 'haproxy.global', sectionLineProblem),
    ...lineProblems(state.haproxy.defaults, 'haproxy.defaults', sectionLineProblem),
  ];
  if (globalProblems.length > 0) throw new StateError(globalProblems);

  const problems: StateProblem[] = [];
  const accepted = new Map<string, Service>();
  const previousByName = new Map((previous?.services ?? []).map((s) => [s.name, s]));
  const rejected: Service[] = [];
  const seenNames = new Set<string>();
  for (const original of state.services) {
    // A bad server (a host node, the least trusted input) is left out on its own; it must not freeze its service.
    const service = withoutBadServers(original, policy, problems);
    const own = serviceProblems(service, policy);
    if (seenNames.has(service.name))
      own.push({ service: service.name, where: `service ${service.name}`, message: 'duplicate service name' });
    seenNames.add(service.name);
    if (own.length > 0) {
      problems.push(...own);
      rejected.push(service);
    } else {
      accepted.set(service.name, service);
    }
  }

  // Two services on one socket: the one already running keeps it, otherwise the first by name.
  const byListen = new Map<string, Service[]>();
  for (const s of accepted.values()) {
    const key = listenKey(s);
    const group = byListen.get(key);
    if (group) group.push(s);
    else byListen.set(key, [s]);
  }
  for (const [key, group] of byListen) {
    if (group.length < 2) continue;
    const incumbent = group.find(
      (s) => previousByName.get(s.name) !== undefined && listenKey(previousByName.get(s.name)!) === key,
    );
    const keeper = incumbent ?? [...group].sort((a, b) => a.name.localeCompare(b.name))[0]!;
    for (const s of group) {
      if (s === keeper) continue;
      problems.push({
        service: s.name,
        where: `service ${s.name}`,
        message: `port ${s.port} is already used by service ${keeper.name}`,
      });
      accepted.delete(s.name);
      rejected.push(s);
    }
  }

  // Rejected services fall back to their previous version when that one still fits.
  const usedListen = new Set([...accepted.values()].map(listenKey));
  for (const s of rejected) {
    const prev = previousByName.get(s.name);
    if (prev && !accepted.has(s.name) && !usedListen.has(listenKey(prev))) {
      accepted.set(s.name, prev);
      usedListen.add(listenKey(prev));
    }
  }
  const services = [...accepted.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { state: { ...state, services }, problems };
}

/** The socket a service listens on, as far as conflicts go: two services with one key cannot both run. */
export function listenKey(s: Pick<Service, 'port' | 'bindAddress'>): string {
  // 0.0.0.0 conflicts with every IPv4 address on the same port; keep it simple and strict: one port, one service.
  return `${isIP(s.bindAddress) === 6 ? '6' : '4'}:${s.port}`;
}

/**
 * Per policy and (immutable) service object: discovery rebuilds a snapshot per host event but reuses unchanged
 * services. Option lists are cached on their own (a service's arrays outlive a change of its hosts).
 */
const problemCache = new WeakMap<ServiceOptionsPolicy, WeakMap<Service, readonly StateProblem[]>>();
type OptionCache = WeakMap<ServiceOptionsPolicy, WeakMap<readonly string[], Map<string, readonly OptionProblem[]>>>;
const optionCache: { listen: OptionCache; server: OptionCache } = { listen: new WeakMap(), server: new WeakMap() };

function serviceProblems(service: Service, policy: ServiceOptionsPolicy): StateProblem[] {
  let byService = problemCache.get(policy);
  if (!byService) problemCache.set(policy, (byService = new WeakMap()));
  let cached = byService.get(service);
  if (!cached) byService.set(service, (cached = computeServiceProblems(service, policy)));
  return [...cached];
}

/**
 * Policy problems of one option list (listen options line by line, server options as one sequence) of the service
 * named `service` (references to tables and backends are judged against that name).
 */
function optionProblems(
  lines: readonly string[],
  kind: 'listen' | 'server',
  policy: ServiceOptionsPolicy,
  service: string,
): readonly OptionProblem[] {
  if (lines.length === 0) return [];
  let byList = optionCache[kind].get(policy);
  if (!byList) optionCache[kind].set(policy, (byList = new WeakMap()));
  let byName = byList.get(lines);
  if (!byName) byList.set(lines, (byName = new Map<string, readonly OptionProblem[]>()));
  let cached = byName.get(service);
  if (!cached) {
    cached =
      kind === 'server'
        ? serverOptionsProblems(lines, policy, service)
        : lines.flatMap((line, index) => {
            const message = CONTROL_RE.test(line) ? undefined : listenOptionProblem(line, policy, service);
            return message === undefined ? [] : [{ index, message }];
          });
    byName.set(service, cached);
  }
  return cached;
}

function computeServiceProblems(service: Service, policy: ServiceOptionsPolicy): StateProblem[] {
  const where = `service ${JSON.stringify(service.name)}`;
  const problems: StateProblem[] = [];
  const add = (message: string, at = where) => problems.push({ service: service.name, where: at, message });
  if (!NAME_RE.test(service.name)) add('name must match [A-Za-z0-9_.:-]+');
  if (!validPort(service.port)) add(`port ${service.port} is outside 1-65535`);
  if (isIP(service.bindAddress) === 0) add(`bind address ${JSON.stringify(service.bindAddress)} is not an IP literal`);
  for (const p of lineProblems(service.listenOptions, `${where} listen_options`)) add(p.message, p.where);
  for (const p of optionProblems(service.listenOptions, 'listen', policy, service.name))
    add(p.message, `${where} listen_options[${p.index}]`);
  for (const p of lineProblems(service.serverOptions, `${where} server_options`)) add(p.message, p.where);
  for (const p of optionProblems(service.serverOptions, 'server', policy, service.name))
    add(p.message, `${where} server_options[${p.index}]`);
  if (problems.length === 0) for (const message of serviceTargetProblems(service, policy)) add(message);
  const serverNames = new Set<string>();
  for (const server of service.servers) {
    const at = `${where} server ${JSON.stringify(server.name)}`;
    if (serverNames.has(server.name)) add('duplicate server name', at);
    serverNames.add(server.name);
  }
  return problems;
}

/**
 * Per policy and server; a server's problems also depend on its service's name and options (its check targets), so
 * an entry holds those it was judged with and is used only while they are the same objects.
 */
interface ServerVerdict {
  readonly name: string;
  readonly serverOptions: readonly string[];
  readonly listenOptions: readonly string[];
  readonly problems: readonly string[];
}
const serverProblemCache = new WeakMap<ServiceOptionsPolicy, WeakMap<Server, ServerVerdict>>();
const withoutBadCache = new WeakMap<
  ServiceOptionsPolicy,
  WeakMap<Service, { readonly service: Service; readonly problems: readonly StateProblem[] }>
>();

/**
 * `service` without the servers that have problems (each reported); the same object when all are fine. Memoized per
 * policy and (immutable) service object: a snapshot after one host event re-checks only the service that changed.
 */
function withoutBadServers(service: Service, policy: ServiceOptionsPolicy, problems: StateProblem[]): Service {
  let byService = withoutBadCache.get(policy);
  if (!byService) withoutBadCache.set(policy, (byService = new WeakMap()));
  let cached = byService.get(service);
  if (!cached) {
    const own: StateProblem[] = [];
    cached = { service: checkServers(service, policy, own), problems: own };
    byService.set(service, cached);
  }
  problems.push(...cached.problems);
  return cached.service;
}

function checkServers(service: Service, policy: ServiceOptionsPolicy, problems: StateProblem[]): Service {
  let byServer = serverProblemCache.get(policy);
  if (!byServer) serverProblemCache.set(policy, (byServer = new WeakMap()));
  let bad: Set<Server> | undefined;
  for (const server of service.servers) {
    let verdict = byServer.get(server);
    if (
      verdict?.name !== service.name ||
      verdict.serverOptions !== service.serverOptions ||
      verdict.listenOptions !== service.listenOptions
    ) {
      verdict = {
        name: service.name,
        serverOptions: service.serverOptions,
        listenOptions: service.listenOptions,
        problems: serverProblems(service, server, policy),
      };
      byServer.set(server, verdict);
    }
    const found = verdict.problems;
    if (found.length === 0) continue;
    (bad ??= new Set()).add(server);
    const at = `service ${JSON.stringify(service.name)} server ${JSON.stringify(server.name)}`;
    for (const message of found)
      problems.push({
        service: service.name,
        server: server.name,
        where: at,
        message: `${message}; this server is left out, the rest of the service is served`,
      });
  }
  if (!bad) return service;
  const servers = service.servers.filter((s) => !bad.has(s));
  // Every host refused (say, backends that fell back to link-local addresses) is not discovery saying "no hosts":
  // an agent keeps what it runs for the service (unknown is not empty).
  if (servers.length === 0) return { ...service, servers, hosts: 'unknown' };
  return { ...service, servers };
}

function serverProblems(service: Service, server: Server, policy: ServiceOptionsPolicy): string[] {
  const problems: string[] = [];
  if (!NAME_RE.test(server.name)) problems.push('name must match [A-Za-z0-9_.:-]+');
  const badAddress = hostAddressProblem(server.address);
  if (badAddress) problems.push(`address ${JSON.stringify(server.address)} ${badAddress}`);
  if (!validPort(server.port)) problems.push(`port ${server.port} is outside 1-65535`);
  if (!Number.isInteger(server.weight) || server.weight < 0 || server.weight > 256)
    problems.push(`weight ${server.weight} is outside 0-256`);
  for (const p of lineProblems(server.options, 'options')) problems.push(`${p.where}: ${p.message}`);
  for (const p of optionProblems(server.options, 'server', policy, service.name))
    problems.push(`options[${p.index}]: ${p.message}`);
  if (problems.length === 0) problems.push(...serverTargetProblems(service, server, policy));
  return problems;
}

/** Control characters (a newline would start a new config line), and whatever `extra` finds in a clean line. */
function lineProblems(
  lines: readonly string[],
  where: string,
  extra?: (line: string) => string | undefined,
): StateProblem[] {
  const problems: StateProblem[] = [];
  lines.forEach((line, i) => {
    const message = CONTROL_RE.test(line) ? 'contains a newline or control character' : extra?.(line);
    if (message !== undefined) problems.push({ where: `${where}[${i}]`, message });
  });
  return problems;
}

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}
