import { Host } from './types';

export interface FailStaticResult {
  /** The hosts to run. */
  readonly hosts: readonly Host[];
  /** Why the reported list was not taken as is; undefined when it was. */
  readonly warning?: string;
  /** How many removals were held back by the removal cap (a later step removes them). */
  readonly heldBack: number;
}

/**
 * Decides which hosts to run given what ran before and what a watcher reports now. An empty report never
 * empties a backend that had hosts (a deleted path, a wiped registry or a bad deploy look exactly like that);
 * removals beyond `maxRemovalShare` of the previous hosts are held back (the ones sorting last by name) for a
 * later step. `allowedRemovals` overrides the count the share gives (discovery passes what is left of the current
 * step's budget, so a burst of one-by-one deletions is capped like one big one). Pure.
 */
export function applyFailStatic(
  previous: readonly Host[] | undefined,
  reported: readonly Host[],
  maxRemovalShare = 1,
  allowedRemovals?: number,
): FailStaticResult {
  if (!previous || previous.length === 0) return { hosts: reported, heldBack: 0 };
  if (reported.length === 0) {
    return {
      hosts: previous,
      heldBack: 0,
      warning: `watcher reported no hosts; keeping the ${previous.length} previous host(s) (fail static)`,
    };
  }
  if (maxRemovalShare >= 1) return { hosts: reported, heldBack: 0 };
  const reportedNames = new Set(reported.map((h) => h.name));
  const removed = previous
    .filter((h) => !reportedNames.has(h.name))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const allowed = allowedRemovals ?? removalBudget(previous.length, maxRemovalShare);
  if (removed.length <= allowed) return { hosts: reported, heldBack: 0 };
  const kept = removed.slice(allowed);
  return {
    hosts: [...reported, ...kept],
    heldBack: kept.length,
    warning:
      `${removed.length} of ${previous.length} host(s) removed exceeds max_removal_share ${maxRemovalShare} for this step; ` +
      `removing ${allowed} now, holding back ${kept.length} (${kept
        .map((h) => h.name)
        .slice(0, 5)
        .join(', ')}${kept.length > 5 ? ', ...' : ''})`,
  };
}

/** How many of `hosts` one step may remove: the share, rounded down, but at least one (or nothing could ever go). */
export function removalBudget(hosts: number, maxRemovalShare: number): number {
  return maxRemovalShare >= 1 ? hosts : Math.max(1, Math.floor(hosts * maxRemovalShare));
}
