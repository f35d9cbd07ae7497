import { isIP } from 'node:net';
import yaml from 'js-yaml';
import Ajv, { ValidateFunction } from 'ajv';
import serviceConfigSchema from './service-config.schema.json';
import { withoutNulls } from '../common/config/config-schema';
import { DEFAULT_SERVICE_OPTIONS, ServiceOptionsPolicy } from '../common/config/config';
import { ProxyMgrError } from '../common/platform/errors';
import { listenOptionProblem, serverOptionsProblems } from '../common/haproxy/option-policy';
import { bindProblem, targetProblem } from '../common/haproxy/target-policy';
import { NAME_RE } from '../common/haproxy/validate-state';
import { zkPathProblem } from '../common/platform/zk-path';
import { DEFAULT_BIND_ADDRESS } from '../common/protocol/types';
import { parseHostEntry } from './host';
import { syntaxErrorMessage } from './syntax-error';
import { DnsBackend, Host, RawServiceConfig, ServiceConfig, WatcherSpec } from './types';

/** Service configs larger than this are refused before parsing (a runaway writer must not stall discovery). */
export const MAX_SERVICE_CONFIG_BYTES = 64 * 1024;

export class ServiceConfigError extends ProxyMgrError {
  readonly where: string;
  /** The message without `where` (for reports that name the place apart). */
  readonly detail: string;

  constructor(where: string, message: string) {
    super('SERVICE_CONFIG_INVALID', `${where}: ${message}`);
    this.where = where;
    this.detail = message;
  }
}

const WATCHER_TYPES = ['zookeeper', 'dns', 'file', 'static'] as const;
// eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
const CONTROL_RE = /[\x00-\x1f\x7f]/;

/**
 * Parses and validates one service config (the original ProxyMgr's JSON, or the same document as YAML).
 * Throws ServiceConfigError naming the origin, the key and what is expected. Listen and server options are held to
 * `policy` here already, for an early and precise error; the builder's and the agents' sanitizeState stay the
 * authoritative check.
 */
export function parseServiceConfig(
  raw: RawServiceConfig,
  policy: ServiceOptionsPolicy = DEFAULT_SERVICE_OPTIONS,
): ServiceConfig {
  const at = raw.origin;
  const fail = (message: string): never => {
    throw new ServiceConfigError(at, message);
  };
  if (!NAME_RE.test(raw.name))
    fail(`service name ${JSON.stringify(raw.name)} is not a valid HAProxy section name ([A-Za-z0-9_.:-]+)`);
  const bytes = Buffer.byteLength(raw.text);
  if (bytes > MAX_SERVICE_CONFIG_BYTES)
    fail(`${bytes} bytes is larger than the limit of ${MAX_SERVICE_CONFIG_BYTES} bytes`);
  let doc: unknown;
  try {
    doc = raw.format === 'json' ? JSON.parse(raw.text) : yaml.load(raw.text, { filename: at });
  } catch (err) {
    fail(syntaxErrorMessage(err, raw.text, raw.format)); // position only: parser messages quote the text
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    fail(
      `expected a ${raw.format === 'json' ? 'JSON object' : 'mapping'}, got ${typeof doc === 'string' ? 'text' : describe(doc)}`,
    );
  const o = doc as Record<string, unknown>;
  const type = o.type;
  if (typeof type !== 'string' || !(WATCHER_TYPES as readonly string[]).includes(type)) {
    fail(
      `type: unknown watcher type ${JSON.stringify(type)}; expected one of ${WATCHER_TYPES.map((t) => `"${t}"`).join(', ')}`,
    );
  }
  const port = o.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535)
    fail(`port: expected an integer 1-65535, got ${describe(port)}`);
  let bindAddress = DEFAULT_BIND_ADDRESS;
  if (o.bind_address !== undefined) {
    if (typeof o.bind_address !== 'string' || isIP(o.bind_address) === 0)
      fail(`bind_address: expected an IPv4 or IPv6 literal, got ${describe(o.bind_address)}`);
    bindAddress = o.bind_address as string;
  }
  const listenOptions = lines(o.listen_options, 'listen_options', fail);
  const serverOptions = lines(o.server_options, 'server_options', fail);
  listenOptions.forEach((line, i) => {
    const problem = listenOptionProblem(line, policy, raw.name);
    if (problem) fail(`listen_options[${i}]: ${problem}`);
  });
  for (const p of serverOptionsProblems(serverOptions, policy, raw.name))
    fail(`server_options[${p.index}]: ${p.message}`);
  const watcher = watcherSpec(type as WatcherSpec['type'], o, fail, policy);
  if (watcher.type === 'static') {
    watcher.hosts.forEach((h, i) => {
      for (const p of serverOptionsProblems(h.options, policy, raw.name))
        fail(`hosts[${i}] options[${p.index}]: ${p.message}`);
    });
  }
  const traffic = trafficOptions(o, listenOptions, fail);
  // Checked here, where a service owner picks them; agent.bind_address and standalone state files are the operator's.
  const bind = bindProblem(bindAddress, port as number, policy.bindPorts, policy.bindLoopback);
  if (bind) fail(bind);
  const config: ServiceConfig = {
    name: raw.name,
    port: port as number,
    bindAddress,
    // Zone-aware routing needs every backup used when no server of the zone is up (not only the first one).
    listenOptions:
      traffic.zoneLabel && !listenOptions.some((l) => /^\s*option\s+allbackups\s*$/.test(l))
        ? [...listenOptions, 'option allbackups']
        : listenOptions,
    // Slow start is HAProxy's own `slowstart` on every server, the ones added at runtime included.
    serverOptions: traffic.slowStartMs ? [...serverOptions, `slowstart ${traffic.slowStartMs}ms`] : serverOptions,
    watcher,
    ...(o.agents !== undefined && o.agents !== null ? { agents: labelSelector(o.agents, fail) } : {}),
    ...(traffic.drainTimeoutMs !== undefined ? { drainTimeoutMs: traffic.drainTimeoutMs } : {}),
    ...(traffic.zoneLabel ? { zoneLabel: traffic.zoneLabel } : {}),
    ...(traffic.canary ? { canary: traffic.canary } : {}),
  };
  // What the checks above do not cover: the schema editors validate with (controlplane/service-config.schema.json).
  const schemaProblem = serviceConfigSchemaProblem(o);
  if (schemaProblem) fail(schemaProblem);
  return config;
}

let serviceSchema: ValidateFunction | undefined;

function serviceConfigSchemaProblem(doc: unknown): string | undefined {
  serviceSchema ??= new Ajv({ allErrors: false, strict: false }).compile(serviceConfigSchema);
  if (serviceSchema(withoutNulls(doc))) return undefined;
  const e = serviceSchema.errors?.[0];
  if (!e) return 'does not match the service-config schema';
  const at = e.instancePath.split('/').slice(1).join('.');
  return `${at || '(top level)'}: ${e.message ?? 'is not valid'}`;
}

/** Balance algorithms HAProxy cannot ramp (static, map-based): slow start and runtime weights do nothing there. */
const STATIC_BALANCE_RE = /^\s*balance\s+(static-rr|source|uri|url_param|hdr|rdp-cookie|hash)\b/;

/**
 * The traffic-management options (docs/discovery.md): `drain_timeout_ms`, `slow_start_ms`, `zone_label`, `canary`.
 */
function trafficOptions(o: Record<string, unknown>, listenOptions: readonly string[], fail: (m: string) => never) {
  const int = (key: string, min: number, max: number): number | undefined => {
    const v = o[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      return fail(`${key}: expected an integer ${min}-${max} (milliseconds), got ${describe(v)}`);
    return v;
  };
  const drainTimeoutMs = int('drain_timeout_ms', 1, 86_400_000);
  const slowStartMs = int('slow_start_ms', 1, 3_600_000);
  if (slowStartMs !== undefined) {
    const fixed = listenOptions.find((l) => STATIC_BALANCE_RE.test(l));
    if (fixed)
      fail(
        `slow_start_ms: "${fixed.trim()}" is a static algorithm, which HAProxy cannot ramp (use roundrobin, leastconn, random or first)`,
      );
  }
  let zoneLabel: string | undefined;
  if (o.zone_label !== undefined && o.zone_label !== null) {
    if (typeof o.zone_label !== 'string' || !/^[A-Za-z0-9_./-]{1,63}$/.test(o.zone_label))
      fail(
        `zone_label: expected a label name such as "zone" ([A-Za-z0-9_./-], at most 63), got ${describe(o.zone_label)}`,
      );
    zoneLabel = o.zone_label;
  }
  let canary: { labels: Record<string, string>; share: number } | undefined;
  if (o.canary !== undefined && o.canary !== null) {
    const c = o.canary as Record<string, unknown>;
    if (typeof c !== 'object' || Array.isArray(c))
      fail(`canary: expected {"labels": {"canary": "true"}, "share": 0.05}, got ${describe(o.canary)}`);
    for (const k of Object.keys(c))
      if (k !== 'labels' && k !== 'share') fail(`canary.${k}: unknown key (expected labels, share)`);
    const share = c.share;
    if (typeof share !== 'number' || !(share > 0 && share < 1))
      fail(`canary.share: expected a share of the traffic between 0 and 1 (e.g. 0.05 for 5 %), got ${describe(share)}`);
    const labels = labelSelector(c.labels, (m) => fail(m.replace(/^agents/, 'canary.labels')));
    if (Object.keys(labels).length === 0)
      fail('canary.labels: expected at least one label, such as {"canary": "true"}');
    const fixed = listenOptions.find((l) => STATIC_BALANCE_RE.test(l));
    if (fixed)
      fail(
        `canary: "${fixed.trim()}" is a static algorithm, which takes no runtime weights (use roundrobin, leastconn or random)`,
      );
    canary = { labels, share: share };
  }
  return { drainTimeoutMs, slowStartMs, zoneLabel, canary };
}

/** `agents`: a label selector, {"label": "value", ...}; every pair must match an agent's labels. */
function labelSelector(value: unknown, fail: (m: string) => never): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return fail(`agents: expected a label selector such as {"zone": "eu"}, got ${describe(value)}`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (!/^[A-Za-z0-9_./-]+$/.test(k)) fail(`agents: label name ${JSON.stringify(k)} must match [A-Za-z0-9_./-]+`);
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
      fail(`agents.${k}: expected a string, got ${describe(v)}`);
    out[k] = String(v);
  }
  return out;
}

function watcherSpec(
  type: WatcherSpec['type'],
  o: Record<string, unknown>,
  fail: (m: string) => never,
  policy: ServiceOptionsPolicy,
): WatcherSpec {
  switch (type) {
    case 'zookeeper': {
      const p = o.path;
      const bad = zkPathProblem(p);
      if (bad) fail(`path: ${bad}; got ${describe(p)}`);
      if (o.server === undefined) return { type, path: p as string };
      const server = o.server;
      if (
        typeof server !== 'string' ||
        !server.split(',').every((hp) => /^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/.test(hp.trim()))
      ) {
        fail(`server: expected a "host:port[,host:port]" ZooKeeper ensemble, got ${describe(server)}`);
      }
      return { type, server: server, path: p as string };
    }
    case 'dns': {
      if (!Array.isArray(o.backends) || o.backends.length === 0)
        fail(
          `backends: expected a non-empty list such as [{"name":"db.example.com","port":5432}] or [{"srv":"_http._tcp.web.example.com"}], got ${describe(o.backends)}`,
        );
      const backends = (o.backends as unknown[]).map((b, i): DnsBackend => {
        const key = `backends[${i}]`;
        if (typeof b !== 'object' || b === null || Array.isArray(b))
          return fail(`${key}: expected an object, got ${describe(b)}`);
        const e = b as Record<string, unknown>;
        if (e.srv !== undefined) {
          if (typeof e.srv !== 'string' || !dnsName(e.srv))
            return fail(
              `${key}.srv: expected an SRV name such as "_http._tcp.web.example.com", got ${describe(e.srv)}`,
            );
          return { kind: 'srv', name: e.srv };
        }
        if (typeof e.name !== 'string' || !dnsName(e.name))
          return fail(`${key}.name: expected a DNS name, got ${describe(e.name)}`);
        if (typeof e.port !== 'number' || !Number.isInteger(e.port) || e.port < 1 || e.port > 65535)
          return fail(`${key}.port: expected an integer 1-65535, got ${describe(e.port)}`);
        return { kind: 'a', name: e.name, port: e.port };
      });
      if (o.nameservers === undefined) return { type, backends };
      if (!Array.isArray(o.nameservers) || !o.nameservers.every((n) => typeof n === 'string' && n !== ''))
        fail(`nameservers: expected a list of "ip[:port]" strings, got ${describe(o.nameservers)}`);
      (o.nameservers as string[]).forEach((n, i) => {
        // The control plane sends its queries there (UDP, TCP after a truncated answer): the target policy applies.
        const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3})|\[([0-9A-Fa-f:.]+)\])(?::(\d{1,5}))?$/.exec(n);
        const host = m?.[1] ?? m?.[2];
        const port = Number(m?.[3] ?? 53);
        if (!m || isIP(host!) === 0 || port < 1 || port > 65535)
          fail(`nameservers[${i}]: expected "ip[:port]" or "[ipv6][:port]", got ${JSON.stringify(n)}`);
        const problem = targetProblem(host!, port, policy.targets, policy.local);
        if (problem) fail(`nameservers[${i}]: ${problem}`);
      });
      return { type, backends, nameservers: o.nameservers as string[] };
    }
    case 'file': {
      if (typeof o.file !== 'string' || !o.file.startsWith('/'))
        fail(`file: expected an absolute path of a file with one host:port per line, got ${describe(o.file)}`);
      return { type, file: o.file };
    }
    case 'static': {
      if (!Array.isArray(o.hosts))
        fail(`hosts: expected a list of "host:port" strings or {"address","port"} objects, got ${describe(o.hosts)}`);
      const hosts: Host[] = (o.hosts as unknown[]).map((h, i) => {
        try {
          return parseHostEntry(h);
        } catch (err) {
          return fail(`hosts[${i}]: ${(err as Error).message}`);
        }
      });
      return { type, hosts };
    }
  }
}

function lines(value: unknown, key: string, fail: (m: string) => never): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) return fail(`${key}: expected a list of strings, got ${describe(value)}`);
  return value.map((line, i) => {
    if (typeof line !== 'string') return fail(`${key}[${i}]: expected a string, got ${describe(line)}`);
    if (CONTROL_RE.test(line)) return fail(`${key}[${i}]: contains a newline or control character`);
    return line;
  });
}

function dnsName(s: string): boolean {
  return (
    s.length <= 253 &&
    /^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9])?)*\.?$/.test(s)
  );
}

export function describe(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (typeof value === 'object') return 'an object';
  const json = JSON.stringify(value);
  return `${typeof value} ${json.length > 60 ? json.slice(0, 57) + '...' : json}`;
}
