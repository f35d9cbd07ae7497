import { Clock } from '../common/platform/clock';
import { ErrorCode, errorMessage } from '../common/platform/errors';
import { Logger } from '../common/platform/log';
import { KnownHostsStore } from './known-hosts';
import { Host, Problem, RawServiceConfig } from './types';

/** A failed load of the known hosts is tried again after min, doubling up to max (ms). */
const KNOWN_RETRY_MS = { min: 5000, max: 60_000 };

/** Makes (or keeps, when unchanged) the problem discovery reports. */
export type ProblemOf = (code: ErrorCode, where: string, message: string, previous?: Problem) => Problem;

/**
 * Discovery's last known hosts per service: loaded from the store at start (what earlier replicas persisted), then
 * what each service last ran as reported. Until they are loaded (or could not be), fail static has no "previous"
 * and discovery publishes nothing. A failed load is tried again with backoff: a replica started during a ZooKeeper
 * outage would otherwise never have them.
 */
export class LastKnownHosts {
  /** The last known hosts per service. */
  readonly hosts = new Map<string, readonly Host[]>();
  /** Loaded, or failed to load (nothing is held back for them any more); true from the start without a store. */
  loaded: boolean;
  /** A load is in flight; the last one failed (and none succeeded since). */
  loading = false;
  failed = false;
  problem: Problem | undefined;
  private retry: { timer: unknown; delayMs: number } | undefined;
  /**
   * The configs earlier replicas served, from the known-hosts records (until the first snapshot): a service whose
   * config vanished while no replica ran is restored from them once, so that its removal is capped as if seen; one
   * whose config no longer parses is served with it, as a running replica keeps a config's previous version.
   */
  persistedConfigs: ReadonlyMap<string, RawServiceConfig> | undefined;
  persistedRestored = false;
  /** When services were removed, as their records say: removals of earlier replicas count in the first step. */
  persistedRemovals: number[] = [];

  constructor(
    readonly store: KnownHostsStore | undefined,
    private readonly deps: {
      readonly clock: Clock;
      readonly log: Logger;
      readonly problem: ProblemOf;
      readonly stopped: () => boolean;
      /** Nothing was published yet: the persisted configs and removals still matter. */
      readonly beforeFirstSnapshot: () => boolean;
    },
  ) {
    this.loaded = store === undefined;
  }

  /**
   * Reads the store once (bounded by the store's own timeout). True when it was read, false when it failed (then
   * `again` is called after a backoff of KNOWN_RETRY_MS), undefined when discovery stopped meanwhile.
   */
  async load(store: KnownHostsStore, again: () => void): Promise<boolean | undefined> {
    this.loading = true;
    let loaded = false;
    try {
      const r = await store.load();
      loaded = true;
      for (const [name, hosts] of r.hosts) if (!this.hosts.has(name)) this.hosts.set(name, hosts);
      // Configs only before anything was published: a service a published snapshot left out is gone for agents.
      if (this.deps.beforeFirstSnapshot()) {
        this.persistedConfigs = r.configs;
        this.persistedRemovals = [...(r.removed?.values() ?? [])];
      }
      const first = r.problems.slice(0, 3).map((p) => `${p.where}: ${p.message}`);
      this.problem =
        r.problems.length > 0
          ? this.deps.problem('HOST_INVALID', 'known hosts', `${r.problems.length} refused: ${first.join('; ')}`)
          : undefined;
      this.deps.log.info({ services: r.hosts.size, refused: r.problems.length }, 'last known hosts loaded');
    } catch (err) {
      const delayMs = Math.min(KNOWN_RETRY_MS.max, this.retry ? this.retry.delayMs * 2 : KNOWN_RETRY_MS.min);
      const message =
        `cannot read the last known hosts (${errorMessage(err)}); a service whose watcher cannot read runs without ` +
        `them until they are read (trying again in ${Math.round(delayMs / 1000)} s)`;
      if (this.problem?.message.split('(trying')[0] !== message.split('(trying')[0]) this.deps.log.warn({}, message);
      this.problem = this.deps.problem('ZK_DISCONNECTED', 'known hosts', message, this.problem);
      if (!this.deps.stopped()) this.retry = { delayMs, timer: this.deps.clock.setTimeout(again, delayMs) };
    }
    if (this.deps.stopped()) return undefined;
    this.loading = false;
    this.failed = !loaded;
    this.loaded = true;
    if (loaded) this.retry = undefined;
    return loaded;
  }

  /** Cancels a pending retry (a load starts at once, or discovery stops). */
  cancelRetry(): void {
    this.deps.clock.clearTimeout(this.retry?.timer);
  }

  /** Records `hosts` as what the service runs (and persists them, with the config it is served with). */
  set(name: string, hosts: readonly Host[], config?: RawServiceConfig): void {
    this.hosts.set(name, hosts);
    this.store?.save(name, hosts, config);
  }
}
