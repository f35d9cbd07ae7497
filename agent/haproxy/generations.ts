/**
 * Reload accounting for the supervisor: how many reloads, how long each took from the launch of the new process to
 * the exit of the generation it replaced, and which old generations (soft-stopping processes still finishing their
 * connections) are alive. Pure bookkeeping on an injected clock: the supervisor tells it what happened.
 *
 * Durations and ages are measured on the agent's own clock and sent as durations, never as timestamps, so that they
 * read the same wherever they are shown, whatever the other hosts' clocks say.
 */

/** A process that was replaced by a newer one and has not exited yet. */
export interface OldGeneration {
  readonly pid: number;
  /** Since when it soft-stops (the clock's ms). */
  readonly since: number;
  /** Launches that have come after it (1: it was replaced by the current process). */
  readonly reloadsSurvived: number;
  /** Set once the agent stopped it hard (SIGTERM) because more old generations lived than allowed. */
  readonly stopped: boolean;
}

/** What ReloadLedger.snapshot returns: read by the metrics, AgentAdmin and the control plane's StateRequest. */
export interface ReloadSnapshot {
  /** Reloads: launches that replaced a running HAProxy (crash restarts not counted). */
  readonly reloads: number;
  /** Reloads whose replaced generation has exited. */
  readonly completed: number;
  /** The duration (ms, launch to the old generation gone) of the last completed reload; undefined before one. */
  readonly lastDurationMs: number | undefined;
  /** The recent completed reloads' durations (ms), oldest first, at most DURATION_WINDOW. */
  readonly recentDurationsMs: readonly number[];
  /** Old generations alive, oldest first, with their age (ms) now. */
  readonly oldGenerations: readonly (OldGeneration & { readonly ageMs: number })[];
  readonly maxOldGenerations: number;
  /** Old generations stopped hard to keep within maxOldGenerations, and the client connections they still had. */
  readonly generationsStopped: number;
  readonly connectionsCut: number;
}

/** How many completed reloads' durations are kept for the snapshot (the histogram in the metrics has them all). */
export const DURATION_WINDOW = 64;

/** Default of agent.max_old_generations. */
export const DEFAULT_MAX_OLD_GENERATIONS = 3;

export class ReloadLedger {
  reloads = 0;
  private completed = 0;
  private generationsStopped = 0;
  private connectionsCut = 0;
  private readonly old = new Map<number, { since: number; reloadsSurvived: number; stopped: boolean }>();
  /** Reloads in progress: the pid each replaced → when its successor was launched. */
  private readonly pending = new Map<number, number>();
  private readonly durations: number[] = [];
  private lastDuration: number | undefined;
  private readonly listeners: ((durationMs: number) => void)[] = [];

  constructor(
    private readonly now: () => number,
    readonly maxOldGenerations = DEFAULT_MAX_OLD_GENERATIONS,
  ) {
    if (!Number.isInteger(maxOldGenerations) || maxOldGenerations < 1)
      throw new RangeError(`max old generations: expected an integer ≥ 1, got ${maxOldGenerations}`);
  }

  /** Calls `fn` with each completed reload's duration (ms): the metrics' histogram. */
  onCompleted(fn: (durationMs: number) => void): void {
    this.listeners.push(fn);
  }

  /**
   * A launch that began at `launchedAt` answered: `replaced` (the current process before it, if any) and `older`
   * (every other process still alive) soft-stop from now on. Counts a reload when something was replaced.
   */
  launched(launchedAt: number, replaced: number | undefined, older: readonly number[]): void {
    const t = this.now();
    for (const g of this.old.values()) g.reloadsSurvived++;
    for (const pid of new Set([...(replaced === undefined ? [] : [replaced]), ...older]))
      if (!this.old.has(pid)) this.old.set(pid, { since: t, reloadsSurvived: 1, stopped: false });
    if (replaced === undefined) return;
    this.reloads++;
    this.pending.set(replaced, launchedAt);
  }

  /** A process exited (old or not): a reload it was the old generation of completes. */
  exited(pid: number): void {
    this.old.delete(pid);
    const launchedAt = this.pending.get(pid);
    if (launchedAt === undefined) return;
    this.pending.delete(pid);
    const d = Math.max(0, this.now() - launchedAt);
    this.completed++;
    this.lastDuration = d;
    this.durations.push(d);
    if (this.durations.length > DURATION_WINDOW) this.durations.shift();
    for (const fn of this.listeners) fn(d);
  }

  /**
   * The old generations to stop so that at most maxOldGenerations live: the oldest first, those already stopped
   * not counted (they are on their way out).
   */
  excess(): number[] {
    const live = [...this.old.entries()].filter(([, g]) => !g.stopped).sort((a, b) => a[1].since - b[1].since);
    return live.slice(0, Math.max(0, live.length - this.maxOldGenerations)).map(([pid]) => pid);
  }

  /** `pid` was stopped hard to keep the bound, with `connections` client connections still open on it. */
  stopped(pid: number, connections: number): void {
    const g = this.old.get(pid);
    if (!g || g.stopped) return;
    g.stopped = true;
    this.generationsStopped++;
    this.connectionsCut += connections;
  }

  /** Forgets `pid` as an old generation without completing anything (a process the supervisor no longer watches). */
  forget(pid: number): void {
    this.old.delete(pid);
    this.pending.delete(pid);
  }

  snapshot(): ReloadSnapshot {
    const t = this.now();
    return {
      reloads: this.reloads,
      completed: this.completed,
      lastDurationMs: this.lastDuration,
      recentDurationsMs: [...this.durations],
      oldGenerations: [...this.old.entries()]
        .map(([pid, g]) => ({ pid, ...g, ageMs: Math.max(0, t - g.since) }))
        .sort((a, b) => a.since - b.since),
      maxOldGenerations: this.maxOldGenerations,
      generationsStopped: this.generationsStopped,
      connectionsCut: this.connectionsCut,
    };
  }
}

/** The q-quantile (0..1) of `values` (nearest rank); undefined when empty. */
export function quantile(values: readonly number[], q: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** What stopExcessGenerations logs through. */
interface WarnLog {
  warn(fields: Record<string, unknown>, msg: string): void;
}

/**
 * Stops the oldest old generations beyond the ledger's bound with `stop` (SIGTERM: HAProxy's hard stop, what `-st`
 * and master-worker's `mworker-max-reloads` send; SIGUSR1 would only repeat the soft stop they are already in), and
 * counts and logs the client connections that cuts (`connectionsOf`, read just before). `stop` returns false for a
 * process it does not know (forgotten here).
 */
export function stopExcessGenerations(
  ledger: ReloadLedger,
  log: WarnLog,
  connectionsOf: ((pid: number) => number | undefined) | undefined,
  stop: (pid: number) => boolean,
): void {
  for (const pid of ledger.excess()) {
    const g = ledger.snapshot().oldGenerations.find((x) => x.pid === pid);
    const connections = connectionsOf?.(pid);
    if (!stop(pid)) {
      ledger.forget(pid);
      continue;
    }
    ledger.stopped(pid, connections ?? 0);
    log.warn(
      {
        stopped_pid: pid,
        connections_cut: connections ?? 'unknown',
        soft_stopping_ms: g?.ageMs,
        reloads_survived: g?.reloadsSurvived,
      },
      `stopped old haproxy ${pid} (SIGTERM; ${connections ?? 'an unknown number of'} client connection(s) cut): more than agent.max_old_generations (${ledger.maxOldGenerations}) old generations alive`,
    );
  }
}
