import { DesiredState, Server, Service } from '../common/protocol/types';
import { Overrides, OverrideState } from './runtime-plan';

/** One server that left the desired state and drains until `deadline`. */
export interface Drain {
  readonly backend: string;
  /** Its definition as HAProxy runs it (kept in haproxy.cfg while it drains, so a reload keeps it). */
  readonly server: Server;
  readonly since: number;
  /** When it is deleted (moved on by a second after a failed attempt). */
  deadline: number;
  /** Failed attempts to delete it (the deletion is retried; see apply/drain-sweep.ts). */
  attempts: number;
}

/** "backend/server": how a drain is named in logs, the runtime API and the journal (and keyed here). */
export function drainId(d: Pick<Drain, 'backend' | 'server'>): string {
  return `${d.backend}/${d.server.name}`;
}

/** The comment block at the end of haproxy.cfg that carries the drains to the next agent (see Drains.trailer). */
const TRAILER_HEAD = '# proxymgr agent: servers draining on their way out (read back by the next agent on takeover)';
const TRAILER_LINE = '# draining ';
/** The longest drain timeout proxymgr.yml and service configs allow (24 h). */
const MAX_DRAIN_MS = 86_400_000;

/**
 * Servers draining on their way out: a server that leaves discovery is set to `drain` (no new sessions;
 * current ones finish); after its service's drain timeout it is put in maint, its remaining sessions are shut down
 * and it is deleted, so HAProxy's server list does not grow with churn. A server that comes back while draining is
 * simply desired again (the plan readies it). A reload in between keeps draining servers in the config and drain
 * state (withDraining, holds).
 */
export class Drains {
  private readonly entries = new Map<string, Drain>();

  constructor(private readonly defaultTimeoutMs: number) {}

  get size(): number {
    return this.entries.size;
  }

  list(): readonly Drain[] {
    return [...this.entries.values()];
  }

  /** The ids (drainId) of the servers draining. */
  ids(): string[] {
    return [...this.entries.keys()];
  }

  /** A server the agent just set to drain (its own removal); an entry already there keeps its deadline. */
  started(backend: string, server: Server, service: Service | undefined, now: number): void {
    const id = drainId({ backend, server });
    if (this.entries.has(id)) return;
    const timeout = service?.drainTimeoutMs ?? this.defaultTimeoutMs;
    this.entries.set(id, { backend, server, since: now, deadline: now + timeout, attempts: 0 });
  }

  /** Servers desired again (or whose service is gone) stop draining: returns how many did. */
  forgetDesired(state: DesiredState): number {
    if (this.entries.size === 0) return 0;
    const services = new Map(state.services.map((s) => [s.name, s]));
    let n = 0;
    for (const [id, d] of this.entries) {
      const s = services.get(d.backend);
      if (!s || s.servers.some((v) => v.name === d.server.name)) {
        this.entries.delete(id);
        n++;
      }
    }
    return n;
  }

  /**
   * Comment lines for the end of haproxy.cfg, one JSON object per draining server (empty when none drains). They
   * travel with the config HAProxy runs, written in the same atomic write, so an agent that takes the running
   * HAProxy over (a restart, an upgrade, a kill -9) finds the drains of exactly that config: see `restore`.
   */
  trailer(): string {
    if (this.entries.size === 0) return '';
    const lines = [...this.entries.values()]
      .sort((a, b) => (drainId(a) < drainId(b) ? -1 : 1))
      .map((d) => TRAILER_LINE + drainJson(d));
    return `${TRAILER_HEAD}\n${lines.join('\n')}\n`;
  }

  /**
   * Takes over the drains a previous agent wrote into `configText` (its haproxy.cfg), for servers of `state`'s
   * services that `state` no longer has. Entries that do not parse are skipped; the caller keeps them only if the
   * config then renders to exactly `configText` (so nothing read here reaches HAProxy unless it already runs it).
   * Returns how many were taken.
   */
  restore(configText: string, state: DesiredState, now: number): number {
    const services = new Map(state.services.map((s) => [s.name, s]));
    let n = 0;
    for (const line of configText.split('\n')) {
      if (!line.startsWith(TRAILER_LINE)) continue;
      const d = parseDrain(line.slice(TRAILER_LINE.length));
      const service = d && services.get(d.backend);
      if (!d || !service || service.servers.some((v) => v.name === d.server.name)) continue;
      // A deadline from a skewed clock (or a file written by hand) is held to the longest drain timeout allowed.
      d.deadline = Math.min(d.deadline, now + MAX_DRAIN_MS);
      this.entries.set(drainId(d), d);
      n++;
    }
    return n;
  }

  clear(): void {
    this.entries.clear();
  }

  delete(d: Drain): void {
    this.entries.delete(drainId(d));
  }

  /** Drains whose deadline passed. */
  due(now: number): Drain[] {
    return [...this.entries.values()].filter((d) => d.deadline <= now);
  }

  /** When the next deadline falls (undefined: nothing drains). */
  nextDeadline(): number | undefined {
    let at: number | undefined;
    for (const d of this.entries.values()) if (at === undefined || d.deadline < at) at = d.deadline;
    return at;
  }

  /** `overrides` plus every draining server, held as 'draining' (the plan re-applies drain if HAProxy lost it). */
  holds(overrides: Overrides): Overrides {
    if (this.entries.size === 0) return overrides;
    const out = new Map<string, Map<string, OverrideState | 'draining'>>(
      [...overrides].map(([b, m]) => [b, new Map(m)]),
    );
    for (const d of this.entries.values()) {
      let m = out.get(d.backend);
      if (!m) out.set(d.backend, (m = new Map<string, OverrideState | 'draining'>()));
      m.set(d.server.name, 'draining');
    }
    return out;
  }

  /** `state` with the draining servers of its services added back (what HAProxy runs and haproxy.cfg holds). */
  withDraining(state: DesiredState): DesiredState {
    if (this.entries.size === 0) return state;
    const byBackend = new Map<string, Server[]>();
    for (const d of this.entries.values()) byBackend.set(d.backend, [...(byBackend.get(d.backend) ?? []), d.server]);
    let changed = false;
    const services = state.services.map((s) => {
      const extra = (byBackend.get(s.name) ?? []).filter((v) => !s.servers.some((x) => x.name === v.name));
      if (extra.length === 0) return s;
      changed = true;
      return {
        ...s,
        servers: [...s.servers, ...extra].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
      };
    });
    return changed ? { ...state, services } : state;
  }
}

/** The drainIds of the servers a config's trailer says are draining (entries that do not parse are skipped). */
export function drainingIn(configText: string): string[] {
  return configText
    .split('\n')
    .filter((l) => l.startsWith(TRAILER_LINE))
    .flatMap((l) => {
      const d = parseDrain(l.slice(TRAILER_LINE.length));
      return d ? [drainId(d)] : [];
    });
}

/** A drain as one line of JSON, its keys in a fixed order (restore re-renders it byte for byte). */
function drainJson(d: Drain): string {
  const v = d.server;
  const server = {
    name: v.name,
    address: v.address,
    port: v.port,
    weight: v.weight,
    options: v.options,
    ...(v.zone !== undefined ? { zone: v.zone } : {}),
  };
  return JSON.stringify({ backend: d.backend, server, since: d.since, deadline: d.deadline });
}

/** One trailer line's JSON, or undefined when it is not a drain (see Drains.restore for why this may be loose). */
function parseDrain(json: string): Drain | undefined {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    return undefined;
  }
  const o = v as { backend?: unknown; server?: Record<string, unknown>; since?: unknown; deadline?: unknown };
  const server = o?.server;
  if (
    typeof o?.backend !== 'string' ||
    typeof server !== 'object' ||
    server === null ||
    typeof server.name !== 'string' ||
    typeof server.address !== 'string' ||
    typeof server.port !== 'number' ||
    typeof server.weight !== 'number' ||
    !Array.isArray(server.options) ||
    !server.options.every((x) => typeof x === 'string') ||
    (server.zone !== undefined && typeof server.zone !== 'string') ||
    typeof o.since !== 'number' ||
    typeof o.deadline !== 'number' ||
    !Number.isFinite(o.since) ||
    !Number.isFinite(o.deadline)
  )
    return undefined;
  return {
    backend: o.backend,
    server: {
      name: server.name,
      address: server.address,
      port: server.port,
      weight: server.weight,
      options: server.options,
      ...(server.zone !== undefined ? { zone: server.zone } : {}),
    },
    since: o.since,
    deadline: o.deadline,
    attempts: 0,
  };
}
