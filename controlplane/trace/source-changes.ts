import { DesiredState, Service } from '../../common/protocol/types';
import { resourceVersion } from '../../common/protocol/resources';

/**
 * What discovery saw change, service by service, between two desired states, with where each change came from and
 * when it happened at its source. Pure: the trace (change-trace.ts) gives each an identity and follows it to every
 * agent.
 */

/** Where a change came from: the watcher type of the service, its config, or the config's removal. */
export type ChangeSource = 'zookeeper' | 'file' | 'dns' | 'static' | 'config' | 'removed';

/**
 * How a change's source time is known: 'source' — the source's own record (ZooKeeper's mtime of the node, a
 * file's mtime); 'arrival' — a DNS answer's arrival; 'observed' — the source records no time (a deleted node, an
 * expired ephemeral, a config change), so the time discovery saw it; 'skewed' — the source's time was later than
 * this control plane saw the change (its clock is ahead), so the time discovery saw it.
 */
export type SourceTimeKind = 'source' | 'arrival' | 'observed' | 'skewed';

/** When a change happened at its source, and how that is known. */
export interface SourceTime {
  readonly at: number;
  readonly kind: SourceTimeKind;
}

/** One service's change between two published states. */
export interface SourceChange {
  readonly service: string;
  readonly source: ChangeSource;
  readonly what: string;
  /** The service's resource version after the change ('' when the change removed it). */
  readonly version: string;
  readonly sourceTime: SourceTime;
  /** When discovery published the state with it (this control plane's clock). */
  readonly observedAt: number;
}

/**
 * What discovery knows of a service's change not yet published: its watcher type, and the earliest source time of
 * the events since the last state (a change coalesced from several events is timed from the first).
 */
export interface PendingSource {
  readonly source: ChangeSource;
  readonly time?: SourceTime;
}

/**
 * The changes from `previous` to `state`, one per service whose resource version differs. `pending(service)` says
 * where the service's change came from and since when (undefined: a config change, observed now). A source time
 * later than `now` (a source whose clock runs ahead of this control plane's) is replaced by `now`, marked
 * 'skewed': a change cannot have reached an agent before it was seen here. The first state is no change.
 */
export function changesBetween(
  previous: DesiredState | undefined,
  state: DesiredState,
  pending: (service: string) => PendingSource | undefined,
  now: number,
): SourceChange[] {
  if (!previous) return [];
  const before = new Map(previous.services.map((s) => [s.name, s]));
  const out: SourceChange[] = [];
  const timeOf = (p: PendingSource | undefined): SourceTime => {
    const t = p?.time;
    // Not a time a source could have recorded for a change seen now (a file's mtime can be set to anything).
    if (!t || !Number.isFinite(t.at) || t.at <= 0) return { at: now, kind: 'observed' };
    return t.at > now ? { at: now, kind: 'skewed' } : t;
  };
  for (const s of state.services) {
    const was = before.get(s.name);
    before.delete(s.name);
    const version = resourceVersion(s);
    if (was && resourceVersion(was) === version) continue;
    const p = pending(s.name);
    const what = was ? describe(was, s) : `service added (${s.servers.length} hosts)`;
    const source: ChangeSource = !was || what === 'config' ? 'config' : (p?.source ?? 'config');
    out.push({ service: s.name, source, what, version, sourceTime: timeOf(p), observedAt: now });
  }
  for (const was of before.values())
    out.push({
      service: was.name,
      source: 'removed',
      what: `service removed (${was.servers.length} hosts)`,
      version: '',
      sourceTime: { at: now, kind: 'observed' },
      observedAt: now,
    });
  return out;
}

/**
 * "hosts +1 -0 (20 → 21)" when only the servers differ, "hosts unknown (20)" when discovery lost (or "hosts reported"
 * regained) sight of them, else "config" (a change of the service's own settings).
 */
function describe(was: Service, now: Service): string {
  const { servers: a, hosts: statusA, ...restA } = was;
  const { servers: b, hosts: statusB, ...restB } = now;
  if (JSON.stringify(restA) !== JSON.stringify(restB)) return 'config';
  // Discovery can no longer (or can again) read the hosts: the last known ones stay, marked so.
  if (statusA !== statusB) return `hosts ${statusB ?? 'as given'} (${b.length})`;
  const key = (s: Service['servers'][number]) => JSON.stringify(s);
  const old = new Set(a.map(key));
  const cur = new Set(b.map(key));
  let added = 0;
  let removed = 0;
  for (const k of cur) if (!old.has(k)) added++;
  for (const k of old) if (!cur.has(k)) removed++;
  return `hosts +${added} -${removed} (${a.length} → ${b.length})`;
}
