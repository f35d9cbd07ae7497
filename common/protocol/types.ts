/**
 * Domain types shared by the control plane and the agent. Proto messages (common/gen) are converted to these
 * at the edge (common/protocol/state-codec.ts); the rest of the code only sees these.
 */

export interface Server {
  /** Stable HAProxy server name, `[A-Za-z0-9_.:-]+`. */
  readonly name: string;
  /** IPv4/IPv6 literal or a hostname (hostnames force a reload path: HAProxy 2.6 `add server` takes IPs only). */
  readonly address: string;
  readonly port: number;
  /** HAProxy weight 0..256. */
  readonly weight: number;
  /** Per-server options appended after the service's server_options. */
  readonly options: readonly string[];
  /** The host's value of the service's `zoneLabel` (zone-aware routing); absent when the service has none. */
  readonly zone?: string;
}

export interface Service {
  /** The HAProxy `listen` section name. */
  readonly name: string;
  readonly port: number;
  /** IPv4 or IPv6 literal the agent binds. */
  readonly bindAddress: string;
  readonly listenOptions: readonly string[];
  readonly serverOptions: readonly string[];
  readonly servers: readonly Server[];
  /** How long a removed server drains before it is deleted (absent: the agent's `drain_timeout_ms`). */
  readonly drainTimeoutMs?: number;
  /** Zone-aware routing: the agent label naming its zone; servers of other zones are backups (absent: off). */
  readonly zoneLabel?: string;
  /**
   * Whether the control plane knows the hosts (unknown is not empty): 'reported' — `servers` is what discovery
   * reported, none is an affirmative "no hosts"; 'unknown' — discovery cannot read them, `servers` is the last it
   * knew. Absent (an older control plane): as given, except that it never takes a running service to no servers.
   */
  readonly hosts?: HostsStatus;
}

export type HostsStatus = 'reported' | 'unknown';

export interface HaproxyGlobals {
  readonly global: readonly string[];
  readonly defaults: readonly string[];
}

/** An immutable, versioned snapshot of everything an agent must run. */
export interface DesiredState {
  readonly version: string;
  readonly haproxy: HaproxyGlobals;
  readonly services: readonly Service[];
}

export const DEFAULT_WEIGHT = 1;
export const DEFAULT_BIND_ADDRESS = '0.0.0.0';
