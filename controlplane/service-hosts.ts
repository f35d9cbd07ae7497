import { Clock } from '../common/platform/clock';
import { ControlPlaneConfig } from '../common/config/config';
import { ErrorCode, errorMessage } from '../common/platform/errors';
import { Logger } from '../common/platform/log';
import { applyFailStatic, removalBudget } from './fail-static';
import { LastKnownHosts, ProblemOf } from './last-known-hosts';
import { ServiceEntry } from './service-entry';
import { HostReport, Watcher } from './ports';

/** What the handling of one service's host reports needs of discovery. */
export interface HostsContext {
  readonly cp: ControlPlaneConfig;
  readonly clock: Clock;
  readonly log: Logger;
  readonly known: LastKnownHosts;
  readonly problem: ProblemOf;
  readonly stopped: () => boolean;
  /** The hosts of a service changed: a new snapshot is due. */
  readonly changed: () => void;
}

/** A watcher's report: its problems named, then settled (once the known hosts are loaded). */
export function onHosts(ctx: HostsContext, e: ServiceEntry, report: HostReport): void {
  if (e.unavailable) ctx.log.info({ service: e.name }, 'watcher available again');
  e.unavailable = undefined;
  const before = new Map(e.hostProblems.map((p) => [p.where + '\n' + p.message, p]));
  e.hostProblems = report.problems.map((p) => {
    const old = before.get(p.where + '\n' + p.message);
    if (!old) ctx.log.error({ service: e.name, where: p.where }, p.message);
    return old ?? ctx.problem('HOST_INVALID', p.where, p.message);
  });
  e.reported = report.hosts;
  e.unknownReason = undefined;
  e.notePending({
    source: e.config?.watcher.type ?? 'config',
    time: report.changedAt ?? { at: ctx.clock.now(), kind: 'observed' },
  });
  if (ctx.known.loaded) settleHosts(ctx, e); // else once they are: fail static needs them as "previous"
}

/** Applies fail static and the removal cap to the last report; re-runs itself while removals are held back. */
export function settleHosts(ctx: HostsContext, e: ServiceEntry): void {
  if (!e.reported) return;
  const { cp } = ctx;
  // After a restart the hosts persisted by the last replica are "previous": an empty or collapsed first report
  // does not empty the service.
  const previous = e.hosts ?? ctx.known.hosts.get(e.name);
  // The cap holds per step of removal_step_ms, counted from the hosts at the step's start: deletions that
  // arrive one by one (a registry collapsing node after node) are capped like one big deletion.
  const now = ctx.clock.now();
  let step = e.removalStep;
  if (!step || now - step.start >= cp.removalStepMs)
    step = e.removalStep = {
      start: now,
      budget: removalBudget(previous?.length ?? 0, cp.maxRemovalShare),
      removed: 0,
    };
  const r = applyFailStatic(
    previous,
    e.reported,
    cp.maxRemovalShare,
    cp.maxRemovalShare >= 1 ? undefined : Math.max(0, step.budget - step.removed),
  );
  if (previous) {
    const kept = new Set(r.hosts.map((h) => h.name));
    step.removed += previous.filter((h) => !kept.has(h.name)).length;
  }
  if (r.warning) {
    const detail =
      e.hostProblems.length > 0
        ? ` (${e.hostProblems
            .map((p) => `${p.where}: ${p.message}`)
            .slice(0, 3)
            .join('; ')})`
        : '';
    const message = r.warning + detail;
    if (e.warning?.message !== message) ctx.log.warn({ service: e.name }, message);
    e.warning = ctx.problem('FAIL_STATIC', `service ${e.name}`, message, e.warning);
  } else {
    if (e.warning) ctx.log.info({ service: e.name, hosts: r.hosts.length }, 'hosts reported again; fail static lifted');
    e.warning = undefined;
  }
  if (r.hosts !== e.hosts || e.status !== 'reported') {
    e.hosts = r.hosts;
    e.status = 'reported';
    ctx.known.set(e.name, r.hosts, e.source);
    ctx.changed();
  }
  if (r.heldBack > 0) {
    const generation = e.generation;
    ctx.clock.setTimeout(
      () => {
        if (e.generation === generation && !ctx.stopped()) settleHosts(ctx, e);
      },
      Math.max(1, step.start + cp.removalStepMs - now),
    );
  }
}

/** The watcher cannot read: a service that had reported hosts keeps them; one that had not, runs unknown hosts. */
export function onUnavailable(ctx: HostsContext, e: ServiceEntry, reason: string): void {
  const code = reason.includes('zookeeper') ? 'ZK_DISCONNECTED' : 'WATCHER_FAILED';
  if (e.status !== 'reported') return hostsUnknown(ctx, e, code, reason);
  // Hosts this replica had reported stay 'reported' (the last report, kept by fail static): marking them unknown
  // would push every service of a lost ensemble to every agent and back without changing what runs.
  const message = `${reason}; keeping the ${e.hosts?.length ?? 0} previous host(s) (fail static)`;
  if (e.unavailable?.message !== message) ctx.log.warn({ service: e.name }, message);
  e.unavailable = ctx.problem(code, `service ${e.name}`, message, e.unavailable);
}

/**
 * The watcher cannot tell the hosts (it cannot read, or stayed silent): the service runs its last known hosts —
 * those it ran, else those persisted by an earlier replica, else none — marked 'unknown', so that no agent takes
 * it for an affirmative "no hosts".
 */
export function hostsUnknown(ctx: HostsContext, e: ServiceEntry, code: ErrorCode, reason: string): void {
  e.unknownReason = reason;
  const loaded = ctx.known.loaded;
  const last = e.hosts !== undefined && e.hosts.length > 0 ? e.hosts : (ctx.known.hosts.get(e.name) ?? e.hosts ?? []);
  const from = !loaded
    ? ' (the persisted hosts are not loaded yet)'
    : e.hosts === undefined || e.hosts.length === 0
      ? ' (persisted by an earlier control plane)'
      : '';
  const message = `hosts unknown: ${reason}; keeping the ${last.length} previous host(s)${last.length > 0 || !loaded ? from : ''} (fail static)`;
  if (e.unavailable?.message !== message) ctx.log.warn({ service: e.name }, message);
  e.unavailable = ctx.problem(code, `service ${e.name}`, message, e.unavailable);
  if (e.hosts !== last || e.status !== 'unknown') {
    e.hosts = last;
    e.status = 'unknown';
    ctx.changed();
  }
}

/** Runs `watcher` (identified by `id`) for the service; reports of a watcher replaced since are ignored. */
export function startWatcher(ctx: HostsContext, e: ServiceEntry, watcher: Watcher, id: string): void {
  const generation = ++e.generation;
  e.watcher = watcher;
  e.watcherId = id;
  const timeoutMs = ctx.cp.initialSyncTimeoutMs;
  // A watcher that stays silent must not hold the service (or the first snapshot) back forever; its hosts are
  // then unknown, not empty.
  e.timer = ctx.clock.setTimeout(() => {
    if (e.generation !== generation || e.hosts !== undefined || e.reported !== undefined) return;
    hostsUnknown(ctx, e, 'WATCHER_FAILED', `watcher did not report within ${timeoutMs} ms`);
  }, timeoutMs);
  watcher.start({
    hosts: (report) => {
      if (e.generation === generation && !ctx.stopped()) onHosts(ctx, e, report);
    },
    unavailable: (reason) => {
      if (e.generation === generation && !ctx.stopped()) onUnavailable(ctx, e, reason);
    },
  });
}

/** Stops the service's watcher (and its silence timer); resolves once it stopped. */
export async function stopWatcher(ctx: HostsContext, e: ServiceEntry): Promise<void> {
  e.generation++;
  if (e.timer !== undefined) ctx.clock.clearTimeout(e.timer);
  e.timer = undefined;
  const w = e.watcher;
  e.watcher = undefined;
  e.watcherId = undefined;
  if (w)
    await w
      .stop()
      .catch((err) => ctx.log.warn({ service: e.name, err: errorMessage(err) }, 'stopping a watcher failed'));
}
