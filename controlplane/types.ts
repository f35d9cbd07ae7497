/**
 * The seams of discovery: a service-config source feeds raw service configs, one watcher per service feeds its
 * hosts, and the pure builder turns the accepted view into a DesiredState.
 */
import { ErrorCode } from '../common/platform/errors';

/** One backend host as a watcher reports it, already validated. */
export interface Host {
  /** Stable server name, `[A-Za-z0-9_.:-]+` (ZK child name, Nerve `name`, or `address_port`). */
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  readonly options: readonly string[];
  /** Nerve labels, kept for later use (not rendered). */
  readonly labels?: Readonly<Record<string, string>>;
}

/** The watcher part of a service config; `type` picks the implementation. */
export type WatcherSpec =
  | { readonly type: 'zookeeper'; readonly server?: string; readonly path: string }
  | { readonly type: 'dns'; readonly backends: readonly DnsBackend[]; readonly nameservers?: readonly string[] }
  | { readonly type: 'file'; readonly file: string }
  | { readonly type: 'static'; readonly hosts: readonly Host[] };

export type DnsBackend =
  | { readonly kind: 'a'; readonly name: string; readonly port: number }
  | { readonly kind: 'srv'; readonly name: string };

/** A parsed, valid service config: the `listen` section plus how to find its hosts. */
export interface ServiceConfig {
  readonly name: string;
  readonly port: number;
  readonly bindAddress: string;
  readonly listenOptions: readonly string[];
  readonly serverOptions: readonly string[];
  readonly watcher: WatcherSpec;
  /**
   * Label selector (`"agents": {"zone": "eu"}`, matchLabels semantics): only agents whose hello labels include
   * every pair get this service. Absent = every agent. Used by rollouts (controlplane/rollout).
   */
  readonly agents?: Readonly<Record<string, string>>;
  /** `drain_timeout_ms`: how long a removed server drains before it is deleted (absent: the agent's default). */
  readonly drainTimeoutMs?: number;
  /** `zone_label`: zone-aware routing by this host/agent label (see Service.zoneLabel). */
  readonly zoneLabel?: string;
  /** `canary`: hosts matching `labels` get `share` (0..1) of the service's traffic through their weights. */
  readonly canary?: { readonly labels: Readonly<Record<string, string>>; readonly share: number };
}

/** A service config as a source delivers it: unparsed text plus where it came from (for error messages). */
export interface RawServiceConfig {
  readonly name: string;
  readonly text: string;
  /** A ZooKeeper path or a file path. */
  readonly origin: string;
  /** `json` (ZooKeeper, *.json) or `yaml` (*.yml, *.yaml); JSON is valid YAML, but errors read better per format. */
  readonly format: 'json' | 'yaml';
}

/** Something worth telling an operator about one service; exposed through `Discovery.errors()`. */
export interface Problem {
  readonly code: ErrorCode;
  /** What it is about: a ZooKeeper path, a file:line, a DNS name. */
  readonly where: string;
  readonly message: string;
  /** Epoch ms when it was first seen. */
  readonly since: number;
}
