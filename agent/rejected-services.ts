import { HaproxyConfigError, StateProblem } from '../common/platform/errors';
import { DesiredState, Service } from '../common/protocol/types';

/**
 * Services `haproxy -c` rejected (docs/agent-faults.md). A blamed service falls back to its previous
 * version (the one in the last applied state) or is left out when new, and is reported; the exact input it failed
 * with is remembered, so later versions that still carry it skip the check for it. Pure apart from that memory.
 */
export class RejectedServices {
  /** name → the input HAProxy rejected (the service and the haproxy sections) and what it said. */
  private readonly known = new Map<string, { input: string; alerts: string }>();

  /** Services rejected before with exactly this input: their previous version (or nothing) right away. */
  withoutKnown(state: DesiredState, previous: DesiredState | undefined, problems: StateProblem[]): DesiredState {
    if (this.known.size === 0) return state;
    const prevByName = new Map((previous?.services ?? []).map((s) => [s.name, s]));
    let changed = false;
    const services: Service[] = [];
    for (const s of state.services) {
      const known = this.known.get(s.name);
      if (!known || known.input !== inputOf(s, state)) {
        if (known) this.known.delete(s.name); // changed since: it gets a fresh check
        services.push(s);
        continue;
      }
      changed = true;
      const prev = fallback(s, prevByName.get(s.name), state.services);
      if (prev) services.push(prev);
      problems.push(problem(s.name, prev !== undefined, known.alerts));
    }
    for (const name of this.known.keys()) if (!state.services.some((s) => s.name === name)) this.known.delete(name);
    return changed ? { ...state, services } : state;
  }

  /**
   * The state without the services `err` blames (each at its previous version, or left out), with problems added.
   * Throws `err` when the whole version is to blame: an ALERT names no service, or a blamed service is the very
   * version that runs (its own change did not break it: globals or defaults did).
   */
  fallBack(
    state: DesiredState,
    previous: DesiredState | undefined,
    err: HaproxyConfigError,
    problems: StateProblem[],
  ): DesiredState {
    if (err.unattributed.length > 0 || err.services.length === 0) throw err;
    const prevByName = new Map((previous?.services ?? []).map((s) => [s.name, s]));
    const blamed = new Set(err.services);
    const services: Service[] = [];
    for (const s of state.services) {
      if (!blamed.has(s.name)) {
        services.push(s);
        continue;
      }
      const was = prevByName.get(s.name);
      if (was !== undefined && JSON.stringify(was) === JSON.stringify(s)) throw err;
      const prev = fallback(s, was, state.services);
      if (prev) services.push(prev);
      const alerts = (err.alertsByService.get(s.name) ?? []).join(' | ');
      this.known.set(s.name, { input: inputOf(s, state), alerts });
      problems.push(problem(s.name, prev !== undefined, alerts));
    }
    return { ...state, services };
  }
}

/** The previous version, unless its port is now another service's. */
function fallback(s: Service, prev: Service | undefined, all: readonly Service[]): Service | undefined {
  return prev !== undefined && !all.some((o) => o.name !== s.name && o.port === prev.port) ? prev : undefined;
}

/** What `haproxy -c` judged of a service: the service and the sections around it. */
function inputOf(service: Service, state: DesiredState): string {
  return JSON.stringify([service, state.haproxy]);
}

function problem(name: string, kept: boolean, alerts: string): StateProblem {
  return {
    service: name,
    where: `service ${name}`,
    message: `haproxy -c rejected it (${kept ? 'kept its previous version' : 'left out'}): ${alerts}`,
    ...(kept ? {} : { leftOut: true }),
  };
}
