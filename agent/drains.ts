import { DesiredState, Server, Service } from '../common/types';
import { Overrides, OverrideState } from './plan';

/** One server that left the desired state and drains until `deadline`. */
export interface Drain {
  readonly backend: string;
  /** Its definition as HAProxy runs it (kept in haproxy.cfg while it drains, so a reload keeps it). */
  readonly server: Server;
  readonly since: number;
  /** When it is deleted (moved on by a second after a failed attempt). */
  deadline: number;
  /** Failed attempts to delete it (the deletion is retried; see Agent.sweepDrains). */
  attempts: number;
}

/**
 * Servers draining on their way out (issue 12): a server that leaves discovery is set to `drain` (no new sessions;
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

  /** A server the agent just set to drain (its own removal); an entry already there keeps its deadline. */
  started(backend: string, server: Server, service: Service | undefined, now: number): void {
    const id = `${backend}/${server.name}`;
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

  delete(d: Drain): void {
    this.entries.delete(`${d.backend}/${d.server.name}`);
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
      if (!m) out.set(d.backend, (m = new Map()));
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
