import { DesiredState } from '../common/protocol/types';
import { ADMF_FDRAIN, ADMF_FMAINT, RuntimeState } from './haproxy/servers-state';
import { Overrides, OverrideState, RuntimeAction } from './runtime-plan';

/** A change of the overrides, for the log and RecentActions. */
export interface OverrideEvent {
  readonly server: string;
  readonly what: string;
}

/**
 * Operator overrides (docs/agent-faults.md). The agent itself only ever drains (then puts in maint)
 * servers that left the desired state, and readies servers that enter it; so a desired server found in drain or
 * maint after the agent had seen it ready was put there by someone else — an operator on the stats socket, or an
 * agent-check — and is left alone until it is ready again or leaves the desired state. Right after a HAProxy crash
 * restart the states come from the server-state file of the last reload and say nothing about operators: no
 * override is taken from them, and known ones that came back ready stay (the plan re-applies them).
 */
export class OverrideTracker {
  /** Desired servers seen ready since they (re)entered the desired state: backend → servers. */
  private readonly seenReady = new Map<string, Set<string>>();
  private readonly held = new Map<string, Map<string, OverrideState>>();
  private restored = false;
  private adoption = false;
  /** At adoption: servers the previous agent itself drained (its journal), which are therefore not overrides. */
  private agentDrained: ReadonlySet<string> = new Set();

  /** backend → server → state, for plan(). */
  get current(): Overrides {
    return this.held;
  }

  list(): { server: string; state: OverrideState }[] {
    return [...this.held]
      .flatMap(([backend, servers]) => [...servers].map(([name, state]) => ({ server: `${backend}/${name}`, state })))
      .sort((a, b) => (a.server < b.server ? -1 : a.server > b.server ? 1 : 0));
  }

  /**
   * The agent took over a HAProxy a previous agent left running and knows nothing that one saw. Agents drain only
   * servers that left the desired state, so in the next observation a desired server in drain was drained by
   * someone else (an operator, an agent-check): an override, kept across the restart. Maint is not taken: a previous
   * agent killed between `add server` and `state ready` leaves a desired server in maint, which must not stay there.
   */
  adopted(agentDrained: ReadonlySet<string> = new Set()): void {
    this.adoption = true;
    this.agentDrained = agentDrained;
  }

  /** HAProxy was restarted after a crash: the next observation comes from an older server-state file. */
  restarted(): void {
    this.restored = true;
  }

  /** Takes a fresh `show servers state` into account; returns what changed. */
  observe(actual: RuntimeState, desired: DesiredState): OverrideEvent[] {
    const events: OverrideEvent[] = [];
    const restored = this.restored;
    this.restored = false;
    const adoption = this.adoption;
    this.adoption = false;
    const agentDrained = this.agentDrained;
    this.agentDrained = new Set();
    const wanted = new Set(desired.services.map((s) => s.name));
    for (const backend of this.seenReady.keys()) if (!wanted.has(backend)) this.seenReady.delete(backend);
    for (const backend of this.held.keys()) if (!wanted.has(backend)) this.held.delete(backend);
    for (const service of desired.services) {
      let seen = this.seenReady.get(service.name);
      let held = this.held.get(service.name);
      if (seen !== undefined || held !== undefined) {
        const names = new Set(service.servers.map((v) => v.name));
        for (const n of seen ?? []) if (!names.has(n)) seen!.delete(n);
        for (const n of held?.keys() ?? []) if (!names.has(n)) held!.delete(n);
      }
      const live = actual.get(service.name);
      if (!live) continue;
      for (const server of service.servers) {
        const cur = live.get(server.name);
        if (!cur) continue;
        const admin = cur.adminState & (ADMF_FMAINT | ADMF_FDRAIN);
        const hold = held?.get(server.name);
        const id = () => `${service.name}/${server.name}`;
        if (admin === 0) {
          if (hold !== undefined && restored) continue; // lost in the crash: the plan puts it back
          if (!seen) this.seenReady.set(service.name, (seen = new Set()));
          seen.add(server.name);
          if (hold !== undefined) {
            held!.delete(server.name);
            events.push({ server: id(), what: `ready again: override (${hold}) ended` });
          }
          continue;
        }
        const state: OverrideState = (admin & ADMF_FMAINT) !== 0 ? 'maint' : 'drain';
        if (hold !== undefined) {
          if (hold !== state) held!.set(server.name, state);
        } else if (
          !restored &&
          (seen?.has(server.name) || (adoption && state === 'drain' && !agentDrained.has(id())))
        ) {
          if (!held) this.held.set(service.name, (held = new Map<string, OverrideState>()));
          held.set(server.name, state);
          events.push({
            server: id(),
            what: `found in ${state}: an operator override, left alone until it is ready again or leaves the desired state`,
          });
        }
      }
    }
    return events;
  }

  /** What the agent's own successful commands mean: it readied the server, or drained it as it left the desired state. */
  applied(a: RuntimeAction): void {
    if (a.kind === 'ready') {
      let seen = this.seenReady.get(a.backend);
      if (!seen) this.seenReady.set(a.backend, (seen = new Set()));
      seen.add(a.server);
    } else if (a.kind === 'drain') {
      this.seenReady.get(a.backend)?.delete(a.server);
      this.held.get(a.backend)?.delete(a.server);
    }
  }
}
