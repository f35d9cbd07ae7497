import type { ServiceOptionsPolicy } from '../config/config';
import { CheckArgs, ConnectArgs } from './option-grammar';
import { connectTargets, serverCheckArgs } from './option-policy';
import { targetProblem } from './target-policy';
import { Server, Service } from '../protocol/types';

/**
 * Every connection a server line makes — its traffic, its health checks (`addr`/`port`, `tcp-check connect`,
 * `http-check connect`), its agent check and its socks4 proxy — judged by the target policy (target-policy.ts).
 * A target set entirely by the service config (address and port both from `server_options` / `listen_options`)
 * refuses the service; one that involves a host entry refuses that server only, so one bad registration leaves the
 * rest of the service served. Pure.
 */

/** A value and whether the service config (rather than the host entry) set it. */
interface From<T> {
  readonly v: T;
  readonly service: boolean;
}

interface Target {
  readonly what: string;
  readonly host: From<string>;
  readonly port: From<number>;
}

const checkArgsCache = new WeakMap<ServiceOptionsPolicy, WeakMap<readonly string[], Map<string, CheckArgs>>>();
const connectCache = new WeakMap<readonly string[], readonly ConnectArgs[]>();

function cachedCheckArgs(options: readonly string[], policy: ServiceOptionsPolicy, service: string): CheckArgs {
  if (options.length === 0) return { initAddrs: [] };
  let byList = checkArgsCache.get(policy);
  if (!byList) checkArgsCache.set(policy, (byList = new WeakMap()));
  let byName = byList.get(options);
  if (!byName) byList.set(options, (byName = new Map<string, CheckArgs>()));
  let args = byName.get(service);
  if (!args) byName.set(service, (args = serverCheckArgs(options, policy, service)));
  return args;
}

function cachedConnects(listenOptions: readonly string[]): readonly ConnectArgs[] {
  let c = connectCache.get(listenOptions);
  if (!c) connectCache.set(listenOptions, (c = connectTargets(listenOptions)));
  return c;
}

function from<T>(v: T | undefined, service: boolean): From<T> | undefined {
  return v === undefined ? undefined : { v, service };
}

/** The targets of `server` in `service`; without a server, those the service config alone determines. */
function targets(service: Service, server: Server | undefined, policy: ServiceOptionsPolicy): Target[] {
  const svc = cachedCheckArgs(service.serverOptions, policy, service.name);
  const own = server ? cachedCheckArgs(server.options, policy, service.name) : { initAddrs: [] };
  // Host options follow the service's on the server line: the later setting wins.
  const address = server ? from(server.address, false) : undefined;
  const serverPort = server ? from(server.port, false) : undefined;
  const addr = from(own.addr, false) ?? from(svc.addr, true);
  const checkHost = addr ?? address;
  const checkPort = from(own.port, false) ?? from(svc.port, true) ?? serverPort;
  const out: Target[] = [];
  const push = (what: string, host: From<string> | undefined, port: From<number> | undefined) => {
    if (host && port) out.push({ what, host, port });
  };
  push('server address', address, serverPort);
  push('health check (addr/port)', checkHost, checkPort);
  push(
    'agent check (agent-addr/agent-port)',
    from(own.agentAddr, false) ?? from(svc.agentAddr, true) ?? checkHost,
    from(own.agentPort, false) ?? from(svc.agentPort, true),
  );
  const socks4 = own.socks4
    ? { v: own.socks4, service: false }
    : svc.socks4
      ? { v: svc.socks4, service: true }
      : undefined;
  if (socks4) push('socks4 proxy', from(socks4.v.ip, socks4.service), from(socks4.v.port, socks4.service));
  const init = own.initAddrs.length > 0 ? from(own.initAddrs, false) : from(svc.initAddrs, true);
  for (const ip of init?.v ?? []) push('init-addr', from(ip, init!.service), serverPort);
  for (const c of cachedConnects(service.listenOptions))
    push('tcp-check/http-check connect', from(c.addr, true) ?? checkHost, from(c.port, true) ?? checkPort);
  return out;
}

function judge(list: readonly Target[], policy: ServiceOptionsPolicy): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const t of list) {
    // A check without its own addr/port goes where the traffic goes: one message per address and port.
    const key = `${t.host.v}|${t.port.v}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const problem = targetProblem(t.host.v, t.port.v, policy.targets, policy.local);
    if (problem) problems.push(`${t.what}: ${problem}`);
  }
  return problems;
}

/** `log <ip>[:<port>] …` lines: syslog over UDP (port 514 unless given), with text the service shapes. */
function logTargets(listenOptions: readonly string[]): Target[] {
  const out: Target[] = [];
  for (const line of listenOptions) {
    const [keyword, target] = line.trim().split(/\s+/);
    if (keyword !== 'log' || target === undefined) continue;
    const m = /^(\d{1,3}(?:\.\d{1,3}){3}|\[[^\]]+\])(?::(\d{1,5}))?$/.exec(target);
    if (!m) continue; // not a network address: the grammar judged it (global, stdout, a file under file_dirs, …)
    out.push({
      what: 'log target',
      host: { v: m[1]!.replace(/^\[(.*)\]$/, '$1'), service: true },
      port: { v: Number(m[2] ?? 514), service: true },
    });
  }
  return out;
}

/** Targets the service config alone aims at and the target policy refuses (the service is refused). */
export function serviceTargetProblems(service: Service, policy: ServiceOptionsPolicy): string[] {
  return judge([...targets(service, undefined, policy), ...logTargets(service.listenOptions)], policy);
}

/** Targets of one server (involving its host entry) the target policy refuses (the server is left out). */
export function serverTargetProblems(service: Service, server: Server, policy: ServiceOptionsPolicy): string[] {
  return judge(
    targets(service, server, policy).filter((t) => !(t.host.service && t.port.service)),
    policy,
  );
}
