import { HostsStatus } from '../common/protocol/types';
import { Host, Problem, RawServiceConfig, ServiceConfig } from './types';
import { Watcher } from './ports';
import { PendingSource } from './trace/source-changes';

/**
 * What discovery holds about one service: its config as last read (and what was wrong with it), its watcher, the
 * hosts it runs (after fail static) and every problem to report. Mutable: discovery updates it as reports arrive.
 */
export class ServiceEntry {
  raw?: string;
  config?: ServiceConfig;
  /** The source's config the service is served with (`config` parsed from it), persisted with its known hosts. */
  source?: RawServiceConfig;
  watcher?: Watcher;
  watcherId?: string;
  /** Bumped whenever the watcher is replaced, so late reports of a stopped watcher are ignored. */
  generation = 0;
  /** The hosts that run (after fail static); undefined until the watcher first reported. */
  hosts?: readonly Host[];
  /** What the watcher last reported (before fail static). */
  reported?: readonly Host[];
  /**
   * 'reported' once the watcher reported and while it can read; 'unknown' while it cannot (or stayed silent): then
   * `hosts` are the last known, and never taken for an affirmative "no hosts".
   */
  status?: HostsStatus;
  /** Why the hosts are unknown (kept to restate the problem when the last known hosts arrive later). */
  unknownReason?: string;
  /** Its config is gone but the service-removal cap holds it back: served with its last config and hosts. */
  removalHeld?: Problem;
  configProblem?: Problem;
  hostProblems: Problem[] = [];
  unavailable?: Problem;
  warning?: Problem;
  buildProblems: Problem[] = [];
  timer?: unknown;
  /** The current removal-cap step: when it began, how many removals it allows, how many it made. */
  removalStep?: { start: number; budget: number; removed: number };
  /** Where the service's change not yet published came from, and since when (the change trace's source time). */
  pending?: PendingSource;

  constructor(
    readonly name: string,
    public origin: string,
  ) {}

  /** Notes an event that may change the service: the earliest since the last published state times its change. */
  notePending(p: PendingSource): void {
    if (!this.pending?.time || (p.time && p.time.at < this.pending.time.at)) this.pending = p;
  }

  /** Everything wrong with the service now, most fundamental first (config, availability, fail static, hosts, build). */
  problems(): Problem[] {
    return [
      this.removalHeld,
      this.configProblem,
      this.unavailable,
      this.warning,
      ...this.hostProblems,
      ...this.buildProblems,
    ].filter((p): p is Problem => p !== undefined);
  }
}
