/**
 * proxymgr.yml, read once at start: parsed (js-yaml), compiled from its schema (common/config/config.schema.json: every key,
 * its type, range and default, named once), then checked for what one key alone cannot say (a port range in order,
 * a ZooKeeper ensemble for rollouts, an auth entry's roles and node ids agreeing). Every error names the file, the key
 * and what is expected.
 */
import { readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import * as path from 'node:path';
import yaml from 'js-yaml';
import { compile, expectObject, expected, Raw } from './config-compile';
import { CONFIG_FORMATS, resolvePath, zkServersProblem } from './config-readers';
import { CONFIG_SCHEMA, schemaNode } from './config-schema';
import type {
  AgentConfig,
  AuthClient,
  AuthConfig,
  ClientMatch,
  ControlPlaneConfig,
  GatePolicy,
  HaproxyConfig,
  PreflightPolicy,
  ProxyMgrConfig,
  RolloutConfig,
  RolloutPolicyConfig,
  ServiceConfigSource,
  ServiceOptionsPolicy,
} from './config-types';
import { ConfigError } from '../platform/errors';
import type { TlsConfig } from '../platform/grpc';
import { localFacts, NO_LOCAL_FACTS } from '../haproxy/target-policy';
import { ensembleOverlapProblem } from './zk-ensembles';
import { zkPathProblem } from '../platform/zk-path';

export type * from './config-types';
export { GATE_METRICS, ROLES } from './config-types';
export { parseWaveSpec } from './config-readers';

/** What the schema alone gives, before the checks and defaults that need more than one key. */
interface Compiled {
  readonly haproxy: Omit<HaproxyConfig, 'configPath' | 'socketPath' | 'group'> &
    Partial<Pick<HaproxyConfig, 'configPath' | 'socketPath' | 'group'>>;
  readonly serviceOptions: Omit<ServiceOptionsPolicy, 'local'>;
  readonly serviceConfig?: { readonly type: 'zookeeper' | 'file'; readonly servers?: string; readonly path: string };
  readonly controlplane: ControlPlaneConfig;
  readonly rollout?: Omit<RolloutConfig, 'zookeeper' | 'replicaId'> &
    Partial<Pick<RolloutConfig, 'zookeeper' | 'replicaId'>>;
  readonly agent: Omit<AgentConfig, 'nodeId'> & Partial<Pick<AgentConfig, 'nodeId'>>;
  readonly auth?: Omit<AuthConfig, 'clients'> & { readonly clients: readonly CompiledClient[] };
}

interface CompiledClient extends Omit<AuthClient, 'match'> {
  readonly tokenFile?: string;
  readonly cert?: { readonly cn?: string; readonly sanDns?: string; readonly sanUri?: string };
}

/** The compiled value of one key (`rollout.gate`) as `value` (nothing set: its defaults, as the schema gives them). */
function defaultsOf<T>(key: string, value?: Raw): T {
  return compile(schemaNode(key)!, value, key, { file: '(defaults)', base: '.', formats: CONFIG_FORMATS }) as T;
}

/** No extra keywords, no file directories: the defaults of `service_options:`. */
export const DEFAULT_SERVICE_OPTIONS: ServiceOptionsPolicy = {
  ...defaultsOf<Compiled['serviceOptions']>('service_options'),
  local: NO_LOCAL_FACTS,
};

/** The control-plane defaults, for callers that build a config without a file (tests, tools). */
export const DEFAULT_CONTROLPLANE_CONFIG: ControlPlaneConfig = defaultsOf('controlplane');

export const DEFAULT_GATE_POLICY: GatePolicy = defaultsOf('rollout.gate');

export const DEFAULT_PREFLIGHT_POLICY: PreflightPolicy = defaultsOf('rollout.preflight');

/** The default rollout policy: one canary, then 10 %, 50 %, 100 %; 60 s bake; any NACK halts and rolls back. */
export const DEFAULT_ROLLOUT_POLICY: RolloutPolicyConfig = rolloutPolicy(defaultsOf<RolloutConfig>('rollout', {}));

function rolloutPolicy(r: RolloutPolicyConfig): RolloutPolicyConfig {
  return { waves: r.waves, bakeMs: r.bakeMs, maxNacks: r.maxNacks, autoRollback: r.autoRollback };
}

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
  const raw = doc === undefined || doc === null ? {} : expectObject(doc, file, '(top level)');
  // An empty key is "not set", with two exceptions: `service_config:` names no source (refused) and `rollout:` turns
  // rollouts on with the default policy, as `rollout: {}` does.
  if (raw.service_config === null) throw new ConfigError(`${file}: service_config: expected a mapping, got null`);
  const base = path.dirname(path.resolve(file));
  const c = compile(CONFIG_SCHEMA, raw.rollout === null ? { ...raw, rollout: {} } : raw, '', {
    file,
    base,
    formats: CONFIG_FORMATS,
  }) as Compiled;
  const serviceConfig = c.serviceConfig && serviceConfigSource(c.serviceConfig, file, base);
  const agent: AgentConfig = { ...c.agent, nodeId: c.agent.nodeId ?? hostname() };
  const controlplane = checkControlPlane(c.controlplane, serviceConfig, file);
  const rollout = c.rollout && rolloutConfig(c.rollout, serviceConfig, controlplane, file);
  const auth = c.auth && authConfig(c.auth, (raw.auth as Raw).clients as Raw[], file);
  const listens = [
    controlplane.listen,
    controlplane.metricsListen,
    agent.adminListen,
    agent.metricsListen,
    ...agent.controlplanes,
  ];
  return {
    file,
    haproxy: haproxyConfig(c.haproxy, agent.stateDir, raw.haproxy as Raw | undefined),
    agent,
    controlplane,
    serviceOptions: { ...c.serviceOptions, local: localFacts(listens) },
    ...(serviceConfig ? { serviceConfig } : {}),
    ...(rollout ? { rollout } : {}),
    ...(auth ? { auth } : {}),
  };
}

/** The paths under `agent.state_dir` and the group that follows `haproxy.user`, where proxymgr.yml names none. */
function haproxyConfig(h: Compiled['haproxy'], stateDir: string, raw: Raw | undefined): HaproxyConfig {
  return {
    ...h,
    configPath: h.configPath ?? path.join(stateDir, 'haproxy.cfg'),
    socketPath: h.socketPath ?? path.join(stateDir, 'haproxy.sock'),
    group: h.group ?? h.user,
    userConfigured: raw?.user != null || raw?.group != null,
  };
}

/** `service_config`: a ZooKeeper ensemble and path, or a file or directory. */
function serviceConfigSource(
  sc: NonNullable<Compiled['serviceConfig']>,
  file: string,
  base: string,
): ServiceConfigSource {
  if (sc.type === 'file') return { type: 'file', path: resolvePath(base, sc.path) };
  if (!sc.servers)
    throw new ConfigError(
      `${file}: service_config.servers: missing; expected ${expected(schemaNode('service_config.servers')!)}`,
    );
  const badServers = zkServersProblem(sc.servers);
  if (badServers) throw new ConfigError(`${file}: service_config.servers: ${badServers}`);
  const badPath = zkPathProblem(sc.path);
  if (badPath) throw new ConfigError(`${file}: service_config.path: "${sc.path.slice(0, 80)}" ${badPath}`);
  return { type: 'zookeeper', servers: sc.servers, path: sc.path };
}

/** Ranges given as two keys in order; watcher ensembles apart from the service-config ensemble. */
function checkControlPlane(
  cp: ControlPlaneConfig,
  sc: ServiceConfigSource | undefined,
  file: string,
): ControlPlaneConfig {
  if (cp.dnsMaxTtlMs < cp.dnsMinTtlMs)
    throw new ConfigError(`${file}: controlplane.dns.max_ttl_ms: must be >= min_ttl_ms (${cp.dnsMinTtlMs})`);
  if (cp.coalesceMaxMs < cp.coalesceMs)
    throw new ConfigError(`${file}: controlplane.coalesce_max_ms: must be >= coalesce_ms (${cp.coalesceMs})`);
  const overlap = ensembleOverlapProblem(cp.watcherEnsembles, sc?.type === 'zookeeper' ? sc.servers : undefined);
  if (overlap) throw new ConfigError(`${file}: ${overlap}`);
  return cp;
}

/** `rollout:` with the ensemble (default: the service-config one) and this replica's name (default: host:port). */
function rolloutConfig(
  r: NonNullable<Compiled['rollout']>,
  sc: ServiceConfigSource | undefined,
  cp: ControlPlaneConfig,
  file: string,
): RolloutConfig {
  const zookeeper = r.zookeeper ?? (sc?.type === 'zookeeper' ? sc.servers : undefined);
  if (!zookeeper)
    throw new ConfigError(
      `${file}: rollout.zookeeper: missing; rollouts keep their state in ZooKeeper (set it, or use service_config type zookeeper)`,
    );
  const replicaId = r.replicaId ?? `${hostname()}:${cp.listen.slice(cp.listen.lastIndexOf(':') + 1)}`;
  return { ...r, zookeeper, replicaId };
}

function authConfig(a: NonNullable<Compiled['auth']>, raw: readonly Raw[], file: string): AuthConfig {
  const names = new Set<string>();
  const clients = a.clients.map((c, i) => {
    const key = `auth.clients[${i}]`;
    if (names.has(c.name)) throw new ConfigError(`${file}: ${key}.name: "${c.name}" is used twice`);
    names.add(c.name);
    return authClient(c, raw[i]!, key, file);
  });
  return { ...a, clients };
}

/** One `auth.clients` entry: a certificate or a token, and roles, node ids and labels that fit together. */
function authClient(c: CompiledClient, raw: Raw, key: string, file: string): AuthClient {
  const fail = (at: string, message: string) => new ConfigError(`${file}: ${key}${at}: ${message}`);
  // Presence as written: an empty `cert:` or `token_file:` is a mistake here, not "not set".
  if ((raw.cert === undefined) === (raw.token_file === undefined))
    throw fail('', 'expected exactly one of cert or token_file');
  let match: ClientMatch;
  if (raw.cert !== undefined) {
    if (!c.cert) throw fail('.cert', 'expected a mapping, got null');
    if (c.cert.cn === undefined && c.cert.sanDns === undefined && c.cert.sanUri === undefined)
      throw fail('.cert', 'give at least one of cn, san_dns, san_uri (patterns with * allowed)');
    match = { kind: 'cert', ...c.cert };
  } else {
    if (!c.tokenFile)
      throw fail(
        '.token_file',
        `missing; expected ${expected(schemaNode('auth.clients')!.items!.properties!.token_file!)}`,
      );
    match = { kind: 'token', tokenFile: c.tokenFile };
  }
  const agent = c.roles.includes('agent');
  if (agent && c.nodeIds.length === 0)
    throw fail('.node_ids', 'an agent identity needs the node ids it may stream as (e.g. ["{cn}"] or ["web-*"])');
  if (!agent && c.nodeIds.length > 0) throw fail('.node_ids', 'only agent identities have node ids');
  if (match.kind === 'token' && c.nodeIds.some((n) => /\{(cn|san_dns|san_uri)\}/.test(n)))
    throw fail(
      '.node_ids',
      '{cn}, {san_dns} and {san_uri} come from a client certificate; a token entry lists its node ids',
    );
  if ((c.labels !== undefined || c.maxNodeIds !== undefined) && !agent)
    throw fail('', 'labels and max_node_ids are for agent identities (roles: [agent])');
  return {
    name: c.name,
    match,
    roles: c.roles,
    nodeIds: c.nodeIds,
    ...(c.labels !== undefined ? { labels: c.labels } : {}),
    ...(c.maxNodeIds !== undefined ? { maxNodeIds: c.maxNodeIds } : {}),
  };
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
