/**
 * The typed proxymgr.yml: what the loader (common/config/config.ts) compiles from the schema (common/config/config.schema.json). Its
 * fields are the schema's keys in camelCase; test/unit/config-schema.test.ts checks that the two list the same keys.
 */
import type { TlsConfig } from '../platform/grpc';
import type { ServiceOptionsPolicy } from '../haproxy/option-policy';
import type { WatcherEnsemble } from './zk-ensembles';

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

export type { ServiceOptionsPolicy } from '../haproxy/option-policy';

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
   * Label name → value patterns an agent of this identity may claim (see common/config/auth-labels.ts); names not listed
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
  /** The most old HAProxy generations (soft-stopping processes) alive at once; the oldest beyond it are stopped hard. */
  readonly maxOldGenerations: number;
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

export type GateMetric = 'http_5xx' | 'errors' | 'retries' | 'servers_down' | 'queue' | 'rtime';
export const GATE_METRICS: readonly GateMetric[] = ['http_5xx', 'errors', 'retries', 'servers_down', 'queue', 'rtime'];

export interface GatePolicy {
  readonly enabled: boolean;
  /** A key is judged on its ratios only once the new revision's agents served this many requests in the window. */
  readonly minRequests: number;
  /**
   * The largest regression allowed per metric: for ratios (5xx, connection + response errors, retries per request;
   * servers DOWN per server) an increase in share (0.05 = 5 points), for queue an increase in requests queued per
   * agent, for rtime an increase in milliseconds of the agents' average response time (HAProxy's `rtime`).
   */
  readonly thresholds: Readonly<Record<GateMetric, number>>;
  /**
   * How often a bake may halt a good revision by chance (0.01: one bake in 100), split over every share test of the
   * bake. Absent in rollout documents written before the setting: 0.01.
   */
  readonly falseHaltRate?: number;
  /** A wave whose bake ends with too few requests to judge: 'pass' (said in status and log) or 'halt'. */
  readonly onInsufficientTraffic: 'pass' | 'halt';
  /** How often agents report counters and replicas publish sums while a rollout runs. */
  readonly sampleMs: number;
  /** How far back an agent's "before" window reaches from its ACK. */
  readonly baselineMs: number;
}

export interface PreflightPolicy {
  readonly enabled: boolean;
  /** More agents failing preflight than this halt the rollout before any agent runs the revision. */
  readonly maxFailures: number;
  /** Agents that have not answered by then are not waited for (they are listed). */
  readonly timeoutMs: number;
}

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
