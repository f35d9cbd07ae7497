import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import yaml from 'js-yaml';
import { ConfigError } from './errors';

/**
 * proxymgr.yml, parsed and validated once at start. The original ProxyMgr's keys are kept as they were
 * (`haproxy.config_path`, `socket_path`, `path`, `global`, `defaults`; `service_config.type/servers/path`);
 * everything else is an addition with a default.
 */
export interface HaproxyConfig {
  /** haproxy.cfg the agent writes. */
  readonly configPath: string;
  /** The admin stats socket the agent talks to. */
  readonly socketPath: string;
  /** The HAProxy binary. */
  readonly binary: string;
  readonly global: readonly string[];
  readonly defaults: readonly string[];
}

export type ServiceConfigSource =
  | { readonly type: 'zookeeper'; readonly servers: string; readonly path: string }
  | { readonly type: 'file'; readonly path: string };

export interface AgentConfig {
  /** Where the agent keeps the server-state file and its cache of the last applied desired state. */
  readonly stateDir: string;
  readonly driftCheckIntervalMs: number;
  /** Upper bound for old HAProxy processes after a reload (`hard-stop-after`). */
  readonly hardStopAfterMs: number;
  /** Kernel backlog of every listening socket the agent owns. */
  readonly backlog: number;
}

export interface ProxyMgrConfig {
  readonly file: string;
  readonly haproxy: HaproxyConfig;
  readonly serviceConfig?: ServiceConfigSource;
  readonly agent: AgentConfig;
}

type Raw = Record<string, unknown>;

/** Reads and validates a proxymgr.yml file; every error names the file, the key and what is expected. */
export function loadConfig(file: string): ProxyMgrConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`${file}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  return parseConfig(text, file);
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
  const stateDir = resolvePath(base, optionalString(agentRaw.state_dir, file, 'agent.state_dir') ?? '/var/lib/proxymgr');
  const haproxyRaw = optionalObject(root.haproxy, file, 'haproxy');
  const haproxy: HaproxyConfig = {
    configPath: resolvePath(base, optionalString(haproxyRaw.config_path, file, 'haproxy.config_path') ?? path.join(stateDir, 'haproxy.cfg')),
    socketPath: resolvePath(base, optionalString(haproxyRaw.socket_path, file, 'haproxy.socket_path') ?? path.join(stateDir, 'haproxy.sock')),
    binary: optionalString(haproxyRaw.path, file, 'haproxy.path') ?? 'haproxy',
    global: optionalLines(haproxyRaw.global, file, 'haproxy.global'),
    defaults: optionalLines(haproxyRaw.defaults, file, 'haproxy.defaults'),
  };
  const agent: AgentConfig = {
    stateDir,
    driftCheckIntervalMs: optionalInt(agentRaw.drift_check_interval_ms, file, 'agent.drift_check_interval_ms', 100, 3_600_000) ?? 10_000,
    hardStopAfterMs: optionalInt(agentRaw.hard_stop_after_ms, file, 'agent.hard_stop_after_ms', 1000, 86_400_000) ?? 30_000,
    backlog: optionalInt(agentRaw.backlog, file, 'agent.backlog', 1, 65535) ?? 4096,
  };
  const config: ProxyMgrConfig = { file, haproxy, agent };
  if (root.service_config !== undefined) {
    return { ...config, serviceConfig: parseServiceConfigSource(root.service_config, file, base) };
  }
  return config;
}

function parseServiceConfigSource(value: unknown, file: string, base: string): ServiceConfigSource {
  const raw = expectObject(value, file, 'service_config');
  const type = raw.type;
  if (type === 'zookeeper') {
    const servers = requiredString(raw.servers, file, 'service_config.servers', 'a "host:port,host:port" list');
    for (const hp of servers.split(',')) {
      if (!/^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/.test(hp.trim())) {
        throw new ConfigError(`${file}: service_config.servers: "${hp}" is not host:port (expected e.g. "zk1:2181,zk2:2181")`);
      }
    }
    const zkPath = requiredString(raw.path, file, 'service_config.path', 'a ZooKeeper path such as /service_config');
    if (!zkPath.startsWith('/')) throw new ConfigError(`${file}: service_config.path: "${zkPath}" must start with "/"`);
    return { type, servers, path: zkPath };
  }
  if (type === 'file') {
    return { type, path: resolvePath(base, requiredString(raw.path, file, 'service_config.path', 'a directory or file of service configs')) };
  }
  throw new ConfigError(`${file}: service_config.type: expected "zookeeper" or "file", got ${JSON.stringify(type)}`);
}

function resolvePath(base: string, p: string): string {
  return path.isAbsolute(p) ? p : path.join(base, p);
}

function expectObject(value: unknown, file: string, key: string): Raw {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(`${file}: ${key}: expected a mapping, got ${describe(value)}`);
  }
  return value as Raw;
}

function optionalObject(value: unknown, file: string, key: string): Raw {
  return value === undefined || value === null ? {} : expectObject(value, file, key);
}

function optionalString(value: unknown, file: string, key: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value === '') throw new ConfigError(`${file}: ${key}: expected a non-empty string, got ${describe(value)}`);
  return value;
}

function requiredString(value: unknown, file: string, key: string, what: string): string {
  const s = optionalString(value, file, key);
  if (s === undefined) throw new ConfigError(`${file}: ${key}: missing; expected ${what}`);
  return s;
}

function optionalInt(value: unknown, file: string, key: string, min: number, max: number): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${file}: ${key}: expected an integer ${min}..${max}, got ${describe(value)}`);
  }
  return value;
}

function optionalLines(value: unknown, file: string, key: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new ConfigError(`${file}: ${key}: expected a list of lines, got ${describe(value)}`);
  return value.map((line, i) => {
    if (typeof line !== 'string') throw new ConfigError(`${file}: ${key}[${i}]: expected a string, got ${describe(line)}`);
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f]/.test(line)) throw new ConfigError(`${file}: ${key}[${i}]: contains a newline or control character`);
    return line;
  });
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}
