import { ServiceOptionsPolicy } from '../common/config/config';
import { StateProblem } from '../common/platform/errors';
import { DesiredState, HaproxyGlobals } from '../common/protocol/types';
import { listenKey } from '../common/haproxy/validate-state';
import { buildDesiredStateChecked, ServiceView } from './builder';
import { ServiceEntry } from './service-entry';

/** A snapshot built from discovery's services, and what the build refused. */
export interface ComposedSnapshot {
  readonly state: DesiredState;
  readonly problems: readonly StateProblem[];
  /** Every `agents` selector of the services served, as one string: a change of it alone is news too. */
  readonly selectors: string;
}

/**
 * The desired state of `entries` (pure). Undefined while the first snapshot still waits for a watcher (bounded by
 * its timer); later, a new service appears once its watcher reported, in one revision with its hosts.
 */
export function composeSnapshot(
  entries: Iterable<ServiceEntry>,
  previous: DesiredState | undefined,
  haproxy: HaproxyGlobals,
  policy: ServiceOptionsPolicy,
): ComposedSnapshot | undefined {
  const all = [...entries];
  const views: ServiceView[] = [];
  // A service whose removal is held back yields its port to a service whose config is here (a config moved onto
  // the port of a deleted one): the cap protects what is served, not a port from its new owner.
  const claimed = new Set<string>();
  for (const e of all) if (e.config && !e.removalHeld) claimed.add(listenKey(e.config));
  for (const e of all) {
    if (!e.config) continue;
    if (e.removalHeld && claimed.has(listenKey(e.config))) continue;
    if (e.hosts === undefined) {
      if (previous === undefined) return undefined;
      continue;
    }
    views.push({ config: e.config, hosts: e.hosts, status: e.status ?? 'reported' });
  }
  const { state, problems } = buildDesiredStateChecked({ haproxy, services: views, previous, policy });
  const selectors = JSON.stringify(views.filter((v) => v.config.agents).map((v) => [v.config.name, v.config.agents]));
  return { state, problems, selectors };
}
