import { readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import * as path from 'node:path';
import yaml from 'js-yaml';
import { schemaDefault, schemaProblems } from './config-schema';
import {
  absoluteDirs,
  describe,
  expectObject,
  hostPort,
  intKey,
  onlyKeys,
  optionalBool,
  optionalIp,
  optionalLabels,
  optionalLines,
  optionalListen,
  optionalName,
  optionalObject,
  optionalString,
  optionalTls,
  requiredString,
  resolvePath,
} from './config-readers';
import { ConfigError } from './errors';
import { zkPathProblem } from './zk-path';
import { ensembleOverlapProblem, parseWatcherEnsembles, WatcherEnsemble } from './zk-ensembles';
import { optionalMaxNodeIds, parseClientLabels } from './auth-labels';
import { deniedExtraKeyword, sectionLineProblem, ServiceOptionsPolicy } from './option-policy';
import {
  localFacts,
  NO_LOCAL_FACTS,
  parsePortList,
  parseTargetRule,
  PortRange,
  TargetRule,
  TargetRules,
} from './target-policy';
import type { TlsConfig } from './grpc';

/**
 * proxymgr.yml, parsed and validated once at start. The original ProxyMgr's keys are kept as they were
 * (`haproxy.config_path`, `socket_path`, `path`, `global`, `defaults`; `service_config.type/servers/path`);
 * everything else is an addition with a default.
 */
export interface HaproxyConfig {
  /** haproxy.cfg the agent writes. */
  readonly configPath: string;
  /**
   * The stats socket with a path, for operators and tools; the agent itself talks over a channel with no path
   * (agent/haproxy/admin-channel.ts).
   */
  readonly socketPath: string;
  /** What that socket allows: `user` (read-only, the default), `operator` or `admin`. */
  readonly socketLevel?: 'user' | 'operator' | 'admin';
  /** The HAProxy binary. */
  readonly binary: string;
  readonly global: readonly string[];
  readonly defaults: readonly string[];
  /**
   * The unprivileged user (and group) HAProxy drops to after it got its sockets from the agent (`user`/`group` in
   * `global`). Only applies when the agent runs as root; a non-root agent's HAProxy runs as the agent's user.
   * Empty string = do not drop privileges.
   */
  readonly user: string;
  readonly group: string;
  /** proxymgr.yml set haproxy.user or haproxy.group: a user or group missing on the host is then an error, not a warning. */
  readonly userConfigured?: boolean;
}

export type { ServiceOptionsPolicy } from './option-policy';

export type Role = 'agent' | 'viewer' | 'operator';
export const ROLES: readonly Role[] = ['agent', 'viewer', 'operator'];

/** How a client proves who it is: a client certificate (mTLS) whose fields match, or a bearer token from a file. */
export type ClientMatch =
  | { readonly kind: 'cert'; readonly cn?: string; readonly sanDns?: string; readonly sanUri?: string }
  | { readonly kind: 'token'; readonly tokenFile: string };

/** One entry of `auth.clients`: who (match), what (roles) and, for agents, as which node ids. */
export interface AuthClient {
  /** Shown in audit log lines and errors. */
  readonly name: string;
  readonly match: ClientMatch;
  readonly roles: readonly Role[];
  /** Node-id patterns an agent identity may say hello as (`*` wildcards; `{cn}`, `{san_dns}`, `{san_uri}`). */
  readonly nodeIds: readonly string[];
  /**
   * Label name → value patterns an agent of this identity may claim (see common/auth-labels.ts); names not listed
   * are refused. Absent = self-declared.
   */
  readonly labels?: Readonly<Record<string, readonly string[]>>;
  /** Distinct node ids this identity may hold at once (records and streams); default `auth.max_node_ids`. */
  readonly maxNodeIds?: number;
}

/** `auth:` in proxymgr.yml; absent = no authentication (mutating calls from loopback peers only). */
export interface AuthConfig {
  readonly clients: readonly AuthClient[];
  /** grpc.health.v1 without credentials (load-balancer and kubelet probes carry none); default false = viewer. */
  readonly anonymousHealth: boolean;
  /** Distinct node ids one agent identity may hold at once, unless its entry says `max_node_ids`. */
  readonly maxNodeIds: number;
}

export type ServiceConfigSource =
  | { readonly type: 'zookeeper'; readonly servers: string; readonly path: string }
  | { readonly type: 'file'; readonly path: string };

export interface AgentConfig {
  /** Where the agent keeps the server-state file and its cache of the last applied desired state. */
  readonly stateDir: string;
  readonly driftCheckIntervalMs: number;
  /**
   * How long haproxy.cfg and the state cache may lag behind a change applied through the runtime API: quick
   * changes are written once (a reload always writes the config first).
   */
  readonly writeDelayMs: number;
  /**
   * The oldest state cache (by when it was last confirmed: written, or touched while the control plane was
   * connected) that starts a HAProxy when none runs; 0 = any age.
   */
  readonly cacheMaxAgeMs: number;
  /** Upper bound for old HAProxy processes after a reload (`hard-stop-after`). */
  readonly hardStopAfterMs: number;
  /**
   * How long a server that left discovery drains (no new sessions; current ones finish) before it is put in maint,
   * its remaining sessions are shut down and it is deleted from HAProxy (a service config's drain_timeout_ms wins).
   */
  readonly drainTimeoutMs: number;
  /** Kernel backlog of every listening socket the agent owns. */
  readonly backlog: number;
  /** This agent's name at the control plane (default: the host name). */
  readonly nodeId: string;
  readonly labels: Readonly<Record<string, string>>;
  /** When set, every service listens on this address instead of the one in its service config. */
  readonly bindAddress?: string;
  /** Control-plane gRPC addresses ("host:port"), tried in turn; empty = no control plane (standalone/--state). */
  readonly controlplanes: readonly string[];
  /** The agent's own gRPC server (AgentAdmin, health, reflection); empty string = off. */
  readonly adminListen: string;
  /** Prometheus `/metrics` ("host:port"); empty string = off. */
  readonly metricsListen: string;
  readonly tls?: TlsConfig;
  /** A file holding the bearer token the agent presents to the control plane (where TLS client certs are not used). */
  readonly tokenFile?: string;
}

/** The control plane's discovery settings (`controlplane:` in proxymgr.yml; every key optional). */
export interface ControlPlaneConfig {
  /** Default DNS servers ("ip" or "ip:port") for `dns` watchers; empty = the system resolver. */
  readonly dnsNameservers: readonly string[];
  /** DNS answers are re-resolved after their TTL, clamped to [min, max]. */
  readonly dnsMinTtlMs: number;
  readonly dnsMaxTtlMs: number;
  /** A burst of changes is coalesced into one snapshot: wait this long after the last event… */
  readonly coalesceMs: number;
  /** …but never longer than this after the first one (so a steady stream cannot starve snapshots). */
  readonly coalesceMaxMs: number;
  /** Largest share (0..1] of a service's hosts removed in one step; 1 = no cap. */
  readonly maxRemovalShare: number;
  /** Delay before the next removal step when the cap held some removals back. */
  readonly removalStepMs: number;
  /** Largest share (0..1] of the services removed in one step when their configs disappear; 1 = no cap. */
  readonly maxServiceRemovalShare: number;
  /** The length of a service-removal step. */
  readonly serviceRemovalStepMs: number;
  /** Requested ZooKeeper session timeout (the server clamps it to 2..20 ticks). */
  readonly zkSessionTimeoutMs: number;
  /** Polling interval of `file` watchers and the `file` service-config source (fs events come first). */
  readonly filePollMs: number;
  /** How long the first snapshot waits for every watcher to report before it is published anyway. */
  readonly initialSyncTimeoutMs: number;
  /** The gRPC server agents and operators connect to ("host:port"). */
  readonly listen: string;
  /** Prometheus `/metrics` ("host:port"); empty string = off. */
  readonly metricsListen: string;
  readonly tls?: TlsConfig;
  /** New agent streams accepted per second; more are told to come back later. */
  readonly newStreamsPerSecond: number;
  /** New agent streams accepted per second from one credential at one peer address (with auth). */
  readonly newStreamsPerIdentityPerSecond: number;
  /** Desired-state pushes per second across all agents, sustained. */
  readonly pushesPerSecond: number;
  /** Pushes that may go at once (one change to a whole fleet) before pushes_per_second applies. */
  readonly pushBurst: number;
  /**
   * Bytes of large pushes (over 64 KiB) written but not yet sent on to agents, across all agents: more wait their
   * turn. Bounds the memory a first sync of a big state to thousands of agents takes.
   */
  readonly pushBufferBytes: number;
  /** Agents disconnected longer than this are forgotten (memory stays bounded however many node ids are tried). */
  readonly forgetAgentsAfterMs: number;
  /** Directories `file` watchers may read (realpath); empty = `file` watchers are refused. */
  readonly fileWatcherDirs: readonly string[];
  /**
   * `user:password` file for ZooKeeper digest authentication, sent only to the service-config ensemble
   * (`service_config.servers`) and the rollout ensemble; unset = none.
   */
  readonly zkDigestFile?: string;
  /**
   * Ensembles `zookeeper` watchers may name besides the service-config ensemble, each with its own credentials (sent
   * to it only). A watcher naming any other server is refused.
   */
  readonly watcherEnsembles: readonly WatcherEnsemble[];
}

/** One wave of a rollout: a number of agents, or a cumulative share of the fleet (0..1]. */
export type WaveSpec =
  { readonly kind: 'count'; readonly count: number } | { readonly kind: 'share'; readonly share: number };

/** The default rollout policy (`rollout:` in proxymgr.yml); each rollout may override it (ctl / admin). */
export interface RolloutPolicyConfig {
  readonly waves: readonly WaveSpec[];
  /** After every agent of a wave ACKed, wait this long before the next wave. */
  readonly bakeMs: number;
  /** More NACKs than this (distinct agents) halt the rollout. */
  readonly maxNacks: number;
  /** On halt, give the agents that took the revision the previous one back. */
  readonly autoRollback: boolean;
  /**
   * An agent label (e.g. `zone`): every wave, the canary included, takes agents round-robin over its values, so
   * early waves span as many zones as they can. Unset: node-id order.
   */
  readonly spreadBy?: string;
  readonly preflight?: PreflightPolicy;
  readonly gate?: GatePolicy;
  /** A rollout that removes services starts paused until an operator resumes, promotes or aborts it. */
  readonly confirmServiceRemovals?: boolean;
}

export type GateMetric = 'http_5xx' | 'errors' | 'retries' | 'servers_down' | 'queue';
export const GATE_METRICS: readonly GateMetric[] = ['http_5xx', 'errors', 'retries', 'servers_down', 'queue'];

export interface GatePolicy {
  readonly enabled: boolean;
  /** A key is judged on its ratios only once the new revision's agents served this many requests in the window. */
  readonly minRequests: number;
  /**
   * The largest regression allowed per metric: for ratios (5xx, connection + response errors, retries per request;
   * servers DOWN per server) an increase in share (0.05 = 5 points), for queue an increase in requests queued per agent.
   */
  readonly thresholds: Readonly<Record<GateMetric, number>>;
  /** A wave whose bake ends with too few requests to judge: 'pass' (said in status and log) or 'halt'. */
  readonly onInsufficientTraffic: 'pass' | 'halt';
  /** How often agents report counters and replicas publish sums while a rollout runs. */
  readonly sampleMs: number;
  /** How far back an agent's "before" window reaches from its ACK. */
  readonly baselineMs: number;
}

export const DEFAULT_GATE_POLICY: GatePolicy = {
  enabled: schemaDefault('rollout.gate.enabled'),
  minRequests: schemaDefault('rollout.gate.min_requests'),
  thresholds: {
    http_5xx: schemaDefault('rollout.gate.thresholds.http_5xx'),
    errors: schemaDefault('rollout.gate.thresholds.errors'),
    retries: schemaDefault('rollout.gate.thresholds.retries'),
    servers_down: schemaDefault('rollout.gate.thresholds.servers_down'),
    queue: schemaDefault('rollout.gate.thresholds.queue'),
  },
  onInsufficientTraffic: schemaDefault('rollout.gate.on_insufficient_traffic'),
  sampleMs: schemaDefault('rollout.gate.sample_ms'),
  baselineMs: schemaDefault('rollout.gate.baseline_ms'),
};

export interface PreflightPolicy {
  readonly enabled: boolean;
  /** More agents failing preflight than this halt the rollout before any agent runs the revision. */
  readonly maxFailures: number;
  /** Agents that have not answered by then are not waited for (they are listed). */
  readonly timeoutMs: number;
}

export const DEFAULT_PREFLIGHT_POLICY: PreflightPolicy = {
  enabled: schemaDefault('rollout.preflight.enabled'),
  maxFailures: schemaDefault('rollout.preflight.max_failures'),
  timeoutMs: schemaDefault('rollout.preflight.timeout_ms'),
};

/** `rollout:` in proxymgr.yml. Without the section the control plane sends every change to every agent at once. */
export interface RolloutConfig extends RolloutPolicyConfig {
  /** ZooKeeper ensemble for rollout state, revisions, agent status and leader election (default: service_config.servers). */
  readonly zookeeper: string;
  /** Root of the control plane's own nodes in ZooKeeper. */
  readonly zkPath: string;
  /** This replica's name in ZooKeeper (default: host name and listen port). */
  readonly replicaId: string;
}

export interface ProxyMgrConfig {
  readonly file: string;
  readonly haproxy: HaproxyConfig;
  readonly serviceConfig?: ServiceConfigSource;
  readonly agent: AgentConfig;
  readonly controlplane: ControlPlaneConfig;
  /** Present only when proxymgr.yml has a `rollout:` section. */
  readonly rollout?: RolloutConfig;
  /** Present only when proxymgr.yml has an `auth:` section. */
  readonly auth?: AuthConfig;
  readonly serviceOptions: ServiceOptionsPolicy;
}

const SOCKET_LEVELS = ['user', 'operator', 'admin'] as const;

function socketLevel(value: unknown, file: string): NonNullable<HaproxyConfig['socketLevel']> {
  const level = optionalString(value, file, 'haproxy.socket_level') ?? 'user';
  if (!(SOCKET_LEVELS as readonly string[]).includes(level))
    throw new ConfigError(
      `${file}: haproxy.socket_level: expected one of ${SOCKET_LEVELS.join(', ')}, got ${JSON.stringify(level)}`,
    );
  return level as NonNullable<HaproxyConfig['socketLevel']>;
}

/** Reads and validates a proxymgr.yml file; every error names the file, the key and what is expected. */
export function loadConfig(file: string): ProxyMgrConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  const config = parseConfig(text, file);
  // The host's addresses, read once per process: a target on them at one of ProxyMgr's ports is refused.
  const local = localFacts([], networkInterfaces());
  return {
    ...config,
    serviceOptions: {
      ...config.serviceOptions,
      local: { ...config.serviceOptions.local, addresses: local.addresses, names: [hostname()] },
    },
  };
}

/** Parses proxymgr.yml text; `file` names the source in messages and anchors relative paths. */
export function parseConfig(text: string, file: string): ProxyMgrConfig {
  let doc: unknown;
  try {
    doc = yaml.load(text, { filename: file });
  } catch (err) {
    throw new ConfigError(`${file}: not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  if (doc === undefined || doc === null) doc = {};
  const root = expectObject(doc, file, '(top level)');
  const base = path.dirname(path.resolve(file));
  const agentRaw = optionalObject(root.agent, file, 'agent');
  const stateDir = resolvePath(
    base,
    optionalString(agentRaw.state_dir, file, 'agent.state_dir') ?? schemaDefault<string>('agent.state_dir'),
  );
  const haproxyRaw = optionalObject(root.haproxy, file, 'haproxy');
  const haproxy: HaproxyConfig = {
    configPath: resolvePath(
      base,
      optionalString(haproxyRaw.config_path, file, 'haproxy.config_path') ?? path.join(stateDir, 'haproxy.cfg'),
    ),
    socketPath: resolvePath(
      base,
      optionalString(haproxyRaw.socket_path, file, 'haproxy.socket_path') ?? path.join(stateDir, 'haproxy.sock'),
    ),
    socketLevel: socketLevel(haproxyRaw.socket_level, file),
    binary: optionalString(haproxyRaw.path, file, 'haproxy.path') ?? schemaDefault<string>('haproxy.path'),
    global: sectionFreeLines(haproxyRaw.global, file, 'haproxy.global'),
    defaults: sectionFreeLines(haproxyRaw.defaults, file, 'haproxy.defaults'),
    user: optionalName(haproxyRaw.user, file, 'haproxy.user') ?? schemaDefault<string>('haproxy.user'),
    group:
      optionalName(haproxyRaw.group, file, 'haproxy.group') ??
      optionalName(haproxyRaw.user, file, 'haproxy.user') ??
      'haproxy',
    userConfigured: haproxyRaw.user != null || haproxyRaw.group != null,
  };
  const agent: AgentConfig = {
    stateDir,
    driftCheckIntervalMs: intKey(agentRaw.drift_check_interval_ms, file, 'agent.drift_check_interval_ms'),
    writeDelayMs: intKey(agentRaw.write_delay_ms, file, 'agent.write_delay_ms'),
    cacheMaxAgeMs: intKey(agentRaw.cache_max_age_ms, file, 'agent.cache_max_age_ms'),
    hardStopAfterMs: intKey(agentRaw.hard_stop_after_ms, file, 'agent.hard_stop_after_ms'),
    drainTimeoutMs: intKey(agentRaw.drain_timeout_ms, file, 'agent.drain_timeout_ms'),
    backlog: intKey(agentRaw.backlog, file, 'agent.backlog'),
    nodeId: optionalString(agentRaw.node_id, file, 'agent.node_id') ?? hostname(),
    labels: optionalLabels(agentRaw.labels, file, 'agent.labels'),
    bindAddress: optionalIp(agentRaw.bind_address, file, 'agent.bind_address'),
    controlplanes: optionalLines(agentRaw.controlplanes, file, 'agent.controlplanes').map((a, i) =>
      hostPort(a, file, `agent.controlplanes[${i}]`),
    ),
    adminListen: optionalListen(agentRaw.admin_listen, file, 'agent.admin_listen', schemaDefault('agent.admin_listen')),
    metricsListen: optionalListen(agentRaw.metrics_listen, file, 'agent.metrics_listen', ''),
    tls: optionalTls(agentRaw.tls, file, 'agent.tls', base),
    ...(agentRaw.token_file !== undefined && agentRaw.token_file !== null
      ? { tokenFile: resolvePath(base, optionalString(agentRaw.token_file, file, 'agent.token_file')!) }
      : {}),
  };
  const serviceConfig =
    root.service_config !== undefined ? parseServiceConfigSource(root.service_config, file, base) : undefined;
  const controlplane = parseControlPlane(root.controlplane, file, base);
  const overlap = ensembleOverlapProblem(
    controlplane.watcherEnsembles,
    serviceConfig?.type === 'zookeeper' ? serviceConfig.servers : undefined,
  );
  if (overlap) throw new ConfigError(`${file}: ${overlap}`);
  const serviceOptions = parseServiceOptions(root.service_options, file, base, [
    controlplane.listen,
    controlplane.metricsListen,
    agent.adminListen,
    agent.metricsListen,
    ...agent.controlplanes,
  ]);
  const config: ProxyMgrConfig = { file, haproxy, agent, controlplane, serviceOptions };
  const rollout =
    root.rollout !== undefined ? parseRollout(root.rollout, file, serviceConfig, controlplane) : undefined;
  const auth = root.auth !== undefined && root.auth !== null ? parseAuth(root.auth, file, base) : undefined;
  // What the checks above do not cover (unknown keys above all: a typo is not silently ignored) — the schema.
  const problems = schemaProblems(doc, file);
  if (problems.length > 0) throw new ConfigError(problems.slice(0, 5).join('; '));
  return {
    ...config,
    ...(serviceConfig ? { serviceConfig } : {}),
    ...(rollout ? { rollout } : {}),
    ...(auth ? { auth } : {}),
  };
}

/** No extra keywords, no file directories: the defaults of `service_options:`. */
export const DEFAULT_SERVICE_OPTIONS: ServiceOptionsPolicy = {
  extraListenKeywords: [],
  extraServerKeywords: [],
  fileDirs: [],
  targets: { allow: [], deny: [] },
  bindPorts: [[1024, 65535]],
  bindLoopback: false,
  local: NO_LOCAL_FACTS,
};

function parseServiceOptions(
  value: unknown,
  file: string,
  base: string,
  listens: readonly string[],
): ServiceOptionsPolicy {
  const raw = optionalObject(value, file, 'service_options');
  // Listen keywords may have several words ("option foo"); server keywords are one word each.
  const keywords = (key: string, kind: 'listen' | 'server') =>
    optionalLines(raw[key], file, `service_options.${key}`).map((k, i) => {
      const re = kind === 'listen' ? /^[a-z0-9][a-z0-9._-]*( [a-z0-9][a-z0-9._-]*)*$/ : /^[a-z0-9][a-z0-9._-]*$/;
      if (!re.test(k)) {
        throw new ConfigError(
          `${file}: service_options.${key}[${i}]: "${k}" is not a HAProxy keyword (lower case letters, digits, . _ -${kind === 'listen' ? ', words separated by one space' : ''})`,
        );
      }
      const denied = deniedExtraKeyword(kind, k);
      if (denied)
        throw new ConfigError(
          `${file}: service_options.${key}[${i}]: "${k}" is on the deny list (${denied}) and cannot be allowed; see docs/service-options.md`,
        );
      return k;
    });
  return {
    extraListenKeywords: keywords('extra_listen_keywords', 'listen'),
    extraServerKeywords: keywords('extra_server_keywords', 'server'),
    fileDirs: absoluteDirs(raw.file_dirs, file, 'service_options.file_dirs', base),
    targets: parseTargets(raw.targets, file),
    bindPorts: bindPorts(raw.bind_ports, file),
    bindLoopback: optionalBool(raw.bind_loopback, file, 'service_options.bind_loopback') ?? false,
    local: localFacts(listens),
  };
}

/** `service_options.targets: {allow: [...], deny: [...]}`, each entry a CIDR with an optional port or port range. */
function parseTargets(value: unknown, file: string): TargetRules {
  const raw = optionalObject(value, file, 'service_options.targets');
  const list = (key: 'allow' | 'deny'): TargetRule[] =>
    optionalLines(raw[key], file, `service_options.targets.${key}`).map((text, i) => {
      const r = parseTargetRule(text);
      if (typeof r === 'string')
        throw new ConfigError(
          `${file}: service_options.targets.${key}[${i}]: ${r}; expected a CIDR with an optional port, e.g. "127.0.0.1/32:9100", "169.254.0.0/16" or "[fe80::/10]:80"`,
        );
      return r;
    });
  return { allow: list('allow'), deny: list('deny') };
}

function bindPorts(value: unknown, file: string): PortRange[] {
  if (value === undefined || value === null) return [[1024, 65535]];
  const r =
    typeof value === 'string' ? parsePortList(value) : `expected a string such as "1024-65535" or "80,443,1024-65535"`;
  if (typeof r === 'string') throw new ConfigError(`${file}: service_options.bind_ports: ${r}`);
  return r;
}

/** Free-form lines of the operator's global/defaults section, except one that would open another section. */
function sectionFreeLines(value: unknown, file: string, key: string): string[] {
  const lines = optionalLines(value, file, key);
  lines.forEach((line, i) => {
    const problem = sectionLineProblem(line);
    if (problem)
      throw new ConfigError(
        `${file}: ${key}[${i}]: ${problem}; these lines belong to the ${key.slice('haproxy.'.length)} section and HAProxy ignores indentation`,
      );
  });
  return lines;
}

function parseAuth(value: unknown, file: string, base: string): AuthConfig {
  const raw = expectObject(value, file, 'auth');
  for (const k of Object.keys(raw))
    if (k !== 'clients' && k !== 'anonymous_health' && k !== 'max_node_ids')
      throw new ConfigError(`${file}: auth.${k}: unknown key (expected clients, anonymous_health, max_node_ids)`);
  const anonymousHealth = raw.anonymous_health ?? schemaDefault<boolean>('auth.anonymous_health');
  if (typeof anonymousHealth !== 'boolean')
    throw new ConfigError(`${file}: auth.anonymous_health: expected true or false, got ${describe(anonymousHealth)}`);
  if (!Array.isArray(raw.clients) || raw.clients.length === 0) {
    throw new ConfigError(
      `${file}: auth.clients: expected a non-empty list of {name, cert: {cn|san_dns|san_uri} or token_file, roles, node_ids}`,
    );
  }
  const names = new Set<string>();
  const clients = raw.clients.map((c, i): AuthClient => {
    const key = `auth.clients[${i}]`;
    const o = expectObject(c, file, key);
    for (const k of Object.keys(o)) {
      if (!['name', 'cert', 'token_file', 'roles', 'node_ids', 'labels', 'max_node_ids'].includes(k))
        throw new ConfigError(
          `${file}: ${key}.${k}: unknown key (expected name, cert, token_file, roles, node_ids, labels, max_node_ids)`,
        );
    }
    const name = requiredString(o.name, file, `${key}.name`, 'a name for audit logs, e.g. "ops"');
    if (names.has(name)) throw new ConfigError(`${file}: ${key}.name: "${name}" is used twice`);
    names.add(name);
    if ((o.cert === undefined) === (o.token_file === undefined))
      throw new ConfigError(`${file}: ${key}: expected exactly one of cert or token_file`);
    let match: ClientMatch;
    if (o.cert !== undefined) {
      const cert = expectObject(o.cert, file, `${key}.cert`);
      for (const k of Object.keys(cert))
        if (!['cn', 'san_dns', 'san_uri'].includes(k))
          throw new ConfigError(`${file}: ${key}.cert.${k}: unknown key (expected cn, san_dns, san_uri)`);
      const cn = optionalString(cert.cn, file, `${key}.cert.cn`);
      const sanDns = optionalString(cert.san_dns, file, `${key}.cert.san_dns`);
      const sanUri = optionalString(cert.san_uri, file, `${key}.cert.san_uri`);
      if (cn === undefined && sanDns === undefined && sanUri === undefined)
        throw new ConfigError(
          `${file}: ${key}.cert: give at least one of cn, san_dns, san_uri (patterns with * allowed)`,
        );
      match = {
        kind: 'cert',
        ...(cn !== undefined ? { cn } : {}),
        ...(sanDns !== undefined ? { sanDns } : {}),
        ...(sanUri !== undefined ? { sanUri } : {}),
      };
    } else {
      match = {
        kind: 'token',
        tokenFile: resolvePath(
          base,
          requiredString(o.token_file, file, `${key}.token_file`, 'a file holding the bearer token'),
        ),
      };
    }
    const roles = optionalLines(o.roles, file, `${key}.roles`).map((r, j) => {
      if (!(ROLES as readonly string[]).includes(r))
        throw new ConfigError(`${file}: ${key}.roles[${j}]: "${r}" is not a role (expected ${ROLES.join(', ')})`);
      return r as Role;
    });
    if (roles.length === 0)
      throw new ConfigError(`${file}: ${key}.roles: missing; expected a list of ${ROLES.join(', ')}`);
    const nodeIds = optionalLines(o.node_ids, file, `${key}.node_ids`);
    if (roles.includes('agent') && nodeIds.length === 0) {
      throw new ConfigError(
        `${file}: ${key}.node_ids: an agent identity needs the node ids it may stream as (e.g. ["{cn}"] or ["web-*"])`,
      );
    }
    if (!roles.includes('agent') && nodeIds.length > 0)
      throw new ConfigError(`${file}: ${key}.node_ids: only agent identities have node ids`);
    if (match.kind === 'token' && nodeIds.some((n) => /\{(cn|san_dns|san_uri)\}/.test(n))) {
      throw new ConfigError(
        `${file}: ${key}.node_ids: {cn}, {san_dns} and {san_uri} come from a client certificate; a token entry lists its node ids`,
      );
    }
    const labels = parseClientLabels(o.labels, file, `${key}.labels`, match.kind === 'cert');
    const maxNodeIds = optionalMaxNodeIds(o.max_node_ids, file, `${key}.max_node_ids`);
    if ((labels !== undefined || maxNodeIds !== undefined) && !roles.includes('agent'))
      throw new ConfigError(`${file}: ${key}: labels and max_node_ids are for agent identities (roles: [agent])`);
    return {
      name,
      match,
      roles,
      nodeIds,
      ...(labels !== undefined ? { labels } : {}),
      ...(maxNodeIds !== undefined ? { maxNodeIds } : {}),
    };
  });
  return { clients, anonymousHealth, maxNodeIds: intKey(raw.max_node_ids, file, 'auth.max_node_ids') };
}

/**
 * Certificate entries in `auth.clients` match only certificates the server verified (require_client_cert): the
 * warning to log when they could never match on this server, else undefined. (A warning, not an error: replicas
 * may share one auth section while only some speak mTLS.)
 */
export function authTlsWarning(
  auth: AuthConfig | undefined,
  tls: TlsConfig | undefined,
  file: string,
  key: string,
): string | undefined {
  const certEntry = auth?.clients.find((c) => c.match.kind === 'cert');
  if (certEntry && !tls?.requireClientCert) {
    return `${file}: auth.clients "${certEntry.name}" and every other cert entry can never match here: ${key}.require_client_cert is not true, so no client certificate is verified`;
  }
  return undefined;
}

/** "1", 5, "10%": a wave spec; throws a message naming `key`. */
export function parseWaveSpec(value: unknown, where: string): WaveSpec {
  const s = typeof value === 'number' ? String(value) : value;
  if (typeof s === 'string') {
    const pct = /^(\d+(?:\.\d+)?)%$/.exec(s.trim());
    if (pct && Number(pct[1]) > 0 && Number(pct[1]) <= 100) return { kind: 'share', share: Number(pct[1]) / 100 };
    if (/^\d+$/.test(s.trim()) && Number(s) >= 1) return { kind: 'count', count: Number(s) };
  }
  throw new ConfigError(
    `${where}: expected a number of agents (e.g. 1) or a share of the fleet (e.g. "10%"), got ${describe(value)}`,
  );
}

/** The default rollout policy: one canary, then 10 %, 50 %, 100 %; 60 s bake; any NACK halts and rolls back. */
export const DEFAULT_ROLLOUT_POLICY: RolloutPolicyConfig = {
  waves: schemaDefault<(number | string)[]>('rollout.waves').map((w, i) =>
    parseWaveSpec(w, `schema default rollout.waves[${i}]`),
  ),
  bakeMs: schemaDefault('rollout.bake_ms'),
  maxNacks: schemaDefault('rollout.max_nacks'),
  autoRollback: schemaDefault('rollout.auto_rollback'),
};

function parseRollout(
  value: unknown,
  file: string,
  sc: ServiceConfigSource | undefined,
  cp: ControlPlaneConfig,
): RolloutConfig {
  const raw = optionalObject(value, file, 'rollout');
  let waves = DEFAULT_ROLLOUT_POLICY.waves;
  if (raw.waves !== undefined && raw.waves !== null) {
    if (!Array.isArray(raw.waves) || raw.waves.length === 0)
      throw new ConfigError(
        `${file}: rollout.waves: expected a non-empty list such as [1, "10%", "50%", "100%"], got ${describe(raw.waves)}`,
      );
    waves = raw.waves.map((w, i) => parseWaveSpec(w, `${file}: rollout.waves[${i}]`));
  }
  let autoRollback = DEFAULT_ROLLOUT_POLICY.autoRollback;
  if (raw.auto_rollback !== undefined && raw.auto_rollback !== null) {
    if (typeof raw.auto_rollback !== 'boolean')
      throw new ConfigError(
        `${file}: rollout.auto_rollback: expected true or false, got ${describe(raw.auto_rollback)}`,
      );
    autoRollback = raw.auto_rollback;
  }
  const zookeeper =
    optionalString(raw.zookeeper, file, 'rollout.zookeeper') ?? (sc?.type === 'zookeeper' ? sc.servers : undefined);
  if (!zookeeper)
    throw new ConfigError(
      `${file}: rollout.zookeeper: missing; rollouts keep their state in ZooKeeper (set it, or use service_config type zookeeper)`,
    );
  const spreadBy = optionalString(raw.spread_by, file, 'rollout.spread_by');
  if (spreadBy !== undefined && !/^[A-Za-z0-9_./-]+$/.test(spreadBy))
    throw new ConfigError(`${file}: rollout.spread_by: "${spreadBy}" is not a label key ([A-Za-z0-9_./-]+)`);
  const zkPath = optionalString(raw.zk_path, file, 'rollout.zk_path') ?? schemaDefault<string>('rollout.zk_path');
  if (!/^\/[A-Za-z0-9_.\-/]*[A-Za-z0-9_.-]$/.test(zkPath))
    throw new ConfigError(`${file}: rollout.zk_path: "${zkPath}" is not a ZooKeeper path such as /proxymgr`);
  return {
    preflight: parsePreflight(raw.preflight, file),
    gate: parseGate(raw.gate, file),
    confirmServiceRemovals:
      optionalBool(raw.confirm_service_removals, file, 'rollout.confirm_service_removals') ??
      schemaDefault<boolean>('rollout.confirm_service_removals'),
    waves,
    bakeMs: intKey(raw.bake_ms, file, 'rollout.bake_ms'),
    maxNacks: intKey(raw.max_nacks, file, 'rollout.max_nacks'),
    autoRollback,
    ...(spreadBy ? { spreadBy } : {}),
    zookeeper,
    zkPath,
    replicaId:
      optionalString(raw.replica_id, file, 'rollout.replica_id') ??
      `${hostname()}:${cp.listen.slice(cp.listen.lastIndexOf(':') + 1)}`,
  };
}

/** `rollout.preflight`: `true`/`false`, or a mapping of enabled, max_failures, timeout_ms. */
function parsePreflight(value: unknown, file: string): PreflightPolicy {
  if (value === undefined || value === null) return DEFAULT_PREFLIGHT_POLICY;
  if (typeof value === 'boolean') return { ...DEFAULT_PREFLIGHT_POLICY, enabled: value };
  const raw = expectObject(value, file, 'rollout.preflight');
  onlyKeys(raw, file, 'rollout.preflight', ['enabled', 'max_failures', 'timeout_ms']);
  return {
    enabled: optionalBool(raw.enabled, file, 'rollout.preflight.enabled') ?? DEFAULT_PREFLIGHT_POLICY.enabled,
    maxFailures: intKey(raw.max_failures, file, 'rollout.preflight.max_failures'),
    timeoutMs: intKey(raw.timeout_ms, file, 'rollout.preflight.timeout_ms'),
  };
}

/** `rollout.gate`: `true`/`false`, or a mapping (see GatePolicy). */
function parseGate(value: unknown, file: string): GatePolicy {
  const d = DEFAULT_GATE_POLICY;
  if (value === undefined || value === null) return d;
  if (typeof value === 'boolean') return { ...d, enabled: value };
  const raw = expectObject(value, file, 'rollout.gate');
  onlyKeys(raw, file, 'rollout.gate', [
    'enabled',
    'min_requests',
    'sample_ms',
    'baseline_ms',
    'on_insufficient_traffic',
    'thresholds',
  ]);
  const t = optionalObject(raw.thresholds, file, 'rollout.gate.thresholds');
  onlyKeys(t, file, 'rollout.gate.thresholds', [...GATE_METRICS]);
  const thresholds = Object.fromEntries(
    GATE_METRICS.map((m) => {
      const key = `rollout.gate.thresholds.${m}`;
      const v = t[m];
      if (v === undefined || v === null) return [m, d.thresholds[m]];
      const max = m === 'queue' ? 1_000_000 : 1;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > max) {
        throw new ConfigError(
          `${file}: ${key}: expected ${m === 'queue' ? 'a number of queued requests per agent (e.g. 10)' : 'a share 0..1 (e.g. 0.05 for 5 points)'}, got ${describe(v)}`,
        );
      }
      return [m, v];
    }),
  ) as Record<GateMetric, number>;
  const onInsufficient = raw.on_insufficient_traffic ?? d.onInsufficientTraffic;
  if (onInsufficient !== 'pass' && onInsufficient !== 'halt')
    throw new ConfigError(
      `${file}: rollout.gate.on_insufficient_traffic: expected "pass" or "halt", got ${describe(onInsufficient)}`,
    );
  return {
    enabled: optionalBool(raw.enabled, file, 'rollout.gate.enabled') ?? d.enabled,
    minRequests: intKey(raw.min_requests, file, 'rollout.gate.min_requests'),
    sampleMs: intKey(raw.sample_ms, file, 'rollout.gate.sample_ms'),
    baselineMs: intKey(raw.baseline_ms, file, 'rollout.gate.baseline_ms'),
    onInsufficientTraffic: onInsufficient,
    thresholds,
  };
}

function parseServiceConfigSource(value: unknown, file: string, base: string): ServiceConfigSource {
  const raw = expectObject(value, file, 'service_config');
  const type = raw.type;
  if (type === 'zookeeper') {
    const servers = requiredString(raw.servers, file, 'service_config.servers', 'a "host:port,host:port" list');
    for (const hp of servers.split(',')) {
      if (!/^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/.test(hp.trim())) {
        throw new ConfigError(
          `${file}: service_config.servers: "${hp}" is not host:port (expected e.g. "zk1:2181,zk2:2181")`,
        );
      }
    }
    const zkPath = requiredString(raw.path, file, 'service_config.path', 'a ZooKeeper path such as /service_config');
    const bad = zkPathProblem(zkPath);
    if (bad) throw new ConfigError(`${file}: service_config.path: "${zkPath.slice(0, 80)}" ${bad}`);
    return { type, servers, path: zkPath };
  }
  if (type === 'file') {
    return {
      type,
      path: resolvePath(
        base,
        requiredString(raw.path, file, 'service_config.path', 'a directory or file of service configs'),
      ),
    };
  }
  throw new ConfigError(`${file}: service_config.type: expected "zookeeper" or "file", got ${JSON.stringify(type)}`);
}

function parseControlPlane(value: unknown, file: string, base: string): ControlPlaneConfig {
  const raw = optionalObject(value, file, 'controlplane');
  const dnsRaw = optionalObject(raw.dns, file, 'controlplane.dns');
  const nameservers = optionalLines(dnsRaw.nameservers, file, 'controlplane.dns.nameservers');
  nameservers.forEach((ns, i) => {
    if (!/^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\])(:\d{1,5})?$|^[0-9a-fA-F:]+$/.test(ns)) {
      throw new ConfigError(
        `${file}: controlplane.dns.nameservers[${i}]: "${ns}" is not an IP or IP:port (e.g. "127.0.0.1:53", "[::1]:53")`,
      );
    }
  });
  const dnsMinTtlMs = intKey(dnsRaw.min_ttl_ms, file, 'controlplane.dns.min_ttl_ms');
  const dnsMaxTtlMs = intKey(dnsRaw.max_ttl_ms, file, 'controlplane.dns.max_ttl_ms');
  if (dnsMaxTtlMs < dnsMinTtlMs)
    throw new ConfigError(`${file}: controlplane.dns.max_ttl_ms: must be >= min_ttl_ms (${dnsMinTtlMs})`);
  const coalesceMs = intKey(raw.coalesce_ms, file, 'controlplane.coalesce_ms');
  const coalesceMaxMs = intKey(raw.coalesce_max_ms, file, 'controlplane.coalesce_max_ms');
  if (coalesceMaxMs < coalesceMs)
    throw new ConfigError(`${file}: controlplane.coalesce_max_ms: must be >= coalesce_ms (${coalesceMs})`);
  const share = (key: 'max_removal_share' | 'max_service_removal_share'): number => {
    const v = raw[key];
    if (v === undefined || v === null) return schemaDefault<number>(`controlplane.${key}`);
    if (typeof v !== 'number' || !(v > 0 && v <= 1))
      throw new ConfigError(`${file}: controlplane.${key}: expected a number in (0, 1] (e.g. 0.5), got ${describe(v)}`);
    return v;
  };
  const maxRemovalShare = share('max_removal_share');
  return {
    dnsNameservers: nameservers,
    dnsMinTtlMs,
    dnsMaxTtlMs,
    coalesceMs,
    coalesceMaxMs,
    maxRemovalShare,
    removalStepMs: intKey(raw.removal_step_ms, file, 'controlplane.removal_step_ms'),
    maxServiceRemovalShare: share('max_service_removal_share'),
    serviceRemovalStepMs: intKey(raw.service_removal_step_ms, file, 'controlplane.service_removal_step_ms'),
    zkSessionTimeoutMs: intKey(raw.zk_session_timeout_ms, file, 'controlplane.zk_session_timeout_ms'),
    filePollMs: intKey(raw.file_poll_ms, file, 'controlplane.file_poll_ms'),
    initialSyncTimeoutMs: intKey(raw.initial_sync_timeout_ms, file, 'controlplane.initial_sync_timeout_ms'),
    listen: optionalListen(raw.listen, file, 'controlplane.listen', schemaDefault('controlplane.listen')),
    metricsListen: optionalListen(raw.metrics_listen, file, 'controlplane.metrics_listen', ''),
    tls: optionalTls(raw.tls, file, 'controlplane.tls', base),
    newStreamsPerSecond: intKey(raw.new_streams_per_second, file, 'controlplane.new_streams_per_second'),
    newStreamsPerIdentityPerSecond: intKey(
      raw.new_streams_per_identity_per_second,
      file,
      'controlplane.new_streams_per_identity_per_second',
    ),
    pushesPerSecond: intKey(raw.pushes_per_second, file, 'controlplane.pushes_per_second'),
    pushBurst: intKey(raw.push_burst, file, 'controlplane.push_burst'),
    pushBufferBytes: intKey(raw.push_buffer_mb, file, 'controlplane.push_buffer_mb') * 1024 * 1024,
    forgetAgentsAfterMs: intKey(raw.forget_agents_after_ms, file, 'controlplane.forget_agents_after_ms'),
    fileWatcherDirs: absoluteDirs(raw.file_watcher_dirs, file, 'controlplane.file_watcher_dirs', base),
    ...(raw.zk_digest_file !== undefined && raw.zk_digest_file !== null
      ? { zkDigestFile: resolvePath(base, optionalString(raw.zk_digest_file, file, 'controlplane.zk_digest_file')!) }
      : {}),
    watcherEnsembles: parseWatcherEnsembles(raw.watcher_ensembles, file, base),
  };
}

/** The control-plane defaults, for callers that build a config without a file (tests, tools). */
export const DEFAULT_CONTROLPLANE_CONFIG: ControlPlaneConfig = parseControlPlane(undefined, '(defaults)', '.');
