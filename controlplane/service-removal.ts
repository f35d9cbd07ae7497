import { removalBudget } from './fail-static';

/** One step of the service-removal cap: when it began, how many removals it allows, how many it made. */
export interface RemovalStep {
  readonly start: number;
  readonly budget: number;
  readonly removed: number;
}

export interface ServiceRemovalDecision {
  /** Services to remove now. */
  readonly remove: readonly string[];
  /** Services held back: still served with their last config and hosts until a later step. */
  readonly held: readonly string[];
  /** The step to pass next time (a step begins only when something is gone). */
  readonly step: RemovalStep | undefined;
  /** When the next step starts (only when some are held). */
  readonly retryAt?: number;
}

/**
 * Caps how many services go when their configs disappear: within each step of `stepMs`, at most `maxShare` of the
 * services served at the step's start (at least one). A `/service_config` emptied by a bad restore looks exactly like
 * every service being deleted; the cap turns "every listener of the fleet closes at once" into a pace an operator can
 * see in status and stop. Those removed first sort first by name, so the choice is the same on every replica. Pure.
 */
export function serviceRemovals(
  gone: readonly string[],
  served: number,
  step: RemovalStep | undefined,
  now: number,
  maxShare: number,
  stepMs: number,
): ServiceRemovalDecision {
  if (gone.length === 0) return { remove: [], held: [], step };
  let s = step;
  if (!s || now - s.start >= stepMs) s = { start: now, budget: removalBudget(served, maxShare), removed: 0 };
  const sorted = [...gone].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const allowed = maxShare >= 1 ? sorted.length : Math.max(0, s.budget - s.removed);
  const remove = sorted.slice(0, allowed);
  const held = sorted.slice(allowed);
  return {
    remove,
    held,
    step: { ...s, removed: s.removed + remove.length },
    ...(held.length > 0 ? { retryAt: s.start + stepMs } : {}),
  };
}

/**
 * The first step of a replica that just started, when earlier replicas removed services within the last step (as
 * their known-hosts records say, epoch ms in `removedAt`): those removals count against it, so that restarts do not
 * speed the pace up. Undefined when none is that recent.
 */
export function persistedRemovalStep(
  removedAt: readonly number[],
  served: number,
  now: number,
  maxShare: number,
  stepMs: number,
): RemovalStep | undefined {
  const recent = removedAt.filter((t) => t <= now && now - t < stepMs);
  if (recent.length === 0) return undefined;
  return {
    start: Math.min(...recent),
    budget: removalBudget(served + recent.length, maxShare),
    removed: recent.length,
  };
}
