/** Stable error codes; they become gRPC statuses only at the edge. */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'STATE_INVALID'
  | 'HAPROXY_CONFIG_INVALID'
  | 'HAPROXY_RUNTIME'
  | 'HAPROXY_START_FAILED'
  | 'HAPROXY_CHECK_FAILED'
  | 'IO_FAILED'
  | 'SOCKET_BIND_FAILED'
  | 'ZK_SESSION_EXPIRED'
  | 'WATCHER_FAILED'
  | 'SERVICE_CONFIG_INVALID'
  | 'HOST_INVALID'
  | 'ZK_DISCONNECTED'
  | 'FAIL_STATIC'
  | 'LIFECYCLE_INVALID'
  | 'USAGE'
  | 'FILE_REFUSED'
  | 'ROLLOUT_NONE'
  | 'ROLLOUT_BAD_STATE'
  | 'ROLLOUT_WRONG_ID'
  | 'UNAVAILABLE';

/**
 * Base class of every error ProxyMgr raises on purpose, each with a stable code. They become gRPC statuses in one
 * place, common/platform/grpc.ts's toStatus, and exit codes in the CLI; nothing else looks at messages.
 */
export class ProxyMgrError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

export class ConfigError extends ProxyMgrError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CONFIG_INVALID', message, options);
  }
}

/** One rejected part of a desired state: `where` names it (service or server), `message` says what is wrong. */
export interface StateProblem {
  readonly service?: string;
  /** Set when only this server of `service` was left out (the service itself was applied). */
  readonly server?: string;
  readonly where: string;
  readonly message: string;
  /** A retry of the same input may succeed (a port taken for a moment, a file write that failed). */
  readonly transient?: boolean;
  /** The service was left out whole (none of it runs); unset when it keeps its previous version or that is unknown. */
  readonly leftOut?: boolean;
}

export class StateError extends ProxyMgrError {
  readonly problems: readonly StateProblem[];

  constructor(problems: readonly StateProblem[]) {
    super('STATE_INVALID', problems.map((p) => `${p.where}: ${p.message}`).join('; '));
    this.problems = problems;
  }
}

export class HaproxyConfigError extends ProxyMgrError {
  /** HAProxy's own `-c` output, quoted to the operator. */
  readonly output: string;
  /** The services (listen sections) HAProxy's alerts point at. */
  readonly services: readonly string[];
  /** Alerts that point at no service (global, defaults, or no location): the whole config is to blame. */
  readonly unattributed: readonly string[];
  /** Per service, the alerts that point at it. */
  readonly alertsByService: ReadonlyMap<string, readonly string[]>;

  constructor(
    message: string,
    output: string,
    services: readonly string[],
    unattributed: readonly string[] = [],
    alertsByService: ReadonlyMap<string, readonly string[]> = new Map(),
  ) {
    super('HAPROXY_CONFIG_INVALID', message);
    this.output = output;
    this.services = services;
    this.unattributed = unattributed;
    this.alertsByService = alertsByService;
  }
}

/** An operation the component's lifecycle state does not allow (e.g. start after stop, apply after stop). */
export class LifecycleError extends ProxyMgrError {
  constructor(message: string) {
    super('LIFECYCLE_INVALID', message);
  }
}

export class RuntimeApiError extends ProxyMgrError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('HAPROXY_RUNTIME', message, options);
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
