import { unrefTimer, Timer } from '../../common/platform/clock';
import { errorMessage } from '../../common/platform/errors';
import type { DesiredState } from '../../common/protocol/types';
import { drainId } from '../drains';
import { endOfDrain, Running, RuntimeAction } from '../runtime-plan';
import { serverFromRuntime } from '../unknown-hosts';
import type { ConfigFiles } from './config-files';
import type { ApplyContext } from './context';
import type { DrainJournal } from './drain-journal';
import type { Executor } from './executor';
import type { LiveState } from './live-state';

/** How often deleting a drained server is tried (once a second) before it is left in maint. */
const DRAIN_DELETE_ATTEMPTS = 30;

/**
 * Drains on a timer: starts a drain for each server an apply set to drain, and when a drain's timeout passes,
 * ends it through the executor (maint, sessions shut down, `del server`), so that HAProxy's server list does not
 * grow with churn. HAProxy refuses the deletion while connections (idle ones included) remain: retried every
 * second, at most DRAIN_DELETE_ATTEMPTS times; then the server stays in maint until the next reload.
 */
export class DrainSweeper {
  private timer: Timer | undefined;

  constructor(
    private readonly ctx: ApplyContext,
    private readonly parts: {
      readonly executor: Executor;
      readonly live: LiveState;
      readonly files: ConfigFiles;
      readonly journal: DrainJournal;
      /** Runs the sweep ahead of queued applies (serialized with them). */
      readonly runFirst: (fn: () => Promise<void>) => void;
      /** Whether the agent runs (no sweep once it stops or hands over). */
      readonly active: () => boolean;
    },
  ) {}

  /** Servers this apply set to drain (they left the desired state): their drain starts now. */
  started(actions: readonly RuntimeAction[], desired: DesiredState): void {
    let started = false;
    for (const a of actions) {
      if (a.kind !== 'drain') continue;
      // A server HAProxy has that the agent never ran (its config was not one this agent would write, a server-state
      // file from before) drains with what HAProxy says of it: without an entry it would never be deleted, and every
      // drift check would set it to drain again.
      const live = this.parts.live.cached?.get(a.backend)?.get(a.server);
      const def =
        this.ctx.running?.services.find((x) => x.name === a.backend)?.servers.find((v) => v.name === a.server) ??
        (live && serverFromRuntime(live));
      if (!def) continue;
      this.ctx.drains.started(
        a.backend,
        def,
        desired.services.find((x) => x.name === a.backend),
        this.ctx.clock.now(),
      );
      started = true;
    }
    if (started) this.arm();
  }

  /** Sets the timer for the next deadline (none: no timer). */
  arm(): void {
    this.cancel();
    const at = this.ctx.drains.nextDeadline();
    if (at === undefined || !this.parts.active()) return;
    this.timer = this.ctx.clock.setTimeout(
      () => this.parts.runFirst(() => this.sweep()),
      Math.max(20, at - this.ctx.clock.now()),
    );
    unrefTimer(this.timer);
  }

  cancel(): void {
    this.ctx.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Ends the drains whose timeout passed. Never rejects (it runs from a timer). */
  async sweep(): Promise<void> {
    const { ctx } = this;
    try {
      if (!this.parts.active()) return;
      const now = ctx.clock.now();
      if (!ctx.supervisor.running) {
        // HAProxy is (re)starting: try again in a second (not in a tight loop on a past deadline).
        for (const d of ctx.drains.due(now)) d.deadline = now + 1000;
        return;
      }
      let deleted = false;
      for (const d of ctx.drains.due(now)) {
        const id = drainId(d);
        const why = `drain of ${id} ended after ${Math.round((now - d.since) / 1000)} s: sessions shut down, server deleted`;
        try {
          // Each attempt from the start: HAProxy may have restarted in between and have the server ready or draining
          // again, and it deletes only a server in maint.
          await this.parts.executor.run(endOfDrain(d.backend, d.server.name, why), 'update', true);
        } catch (err) {
          d.attempts++;
          if (d.attempts < DRAIN_DELETE_ATTEMPTS) {
            d.deadline = now + 1000;
            continue;
          }
          ctx.drains.delete(d);
          ctx.log.warn(
            { server: id, err: errorMessage(err) },
            'drained server could not be deleted; it stays in maint until the next reload',
          );
          continue;
        }
        ctx.drains.delete(d);
        deleted = true;
        ctx.running = withoutServer(ctx.running, d.backend, d.server.name);
        this.parts.live.deleted(d.backend, d.server.name);
        ctx.actions.record('update', 'runtime', `del server ${id}`, why);
        ctx.log.info({ server: id, drained_ms: now - d.since }, 'drained server deleted');
      }
      if (deleted && ctx.lastGood) this.parts.files.schedule(ctx.lastGood);
      await this.parts.journal.save(); // (only written when the set changed: deleted or given up)
    } catch (err) {
      ctx.counters.errors++;
      ctx.log.error({ err: errorMessage(err) }, 'sweeping drained servers failed; retrying');
    } finally {
      this.arm();
    }
  }
}

/** `running` without one server (deleted at runtime). */
function withoutServer(running: Running | undefined, backend: string, server: string): Running | undefined {
  if (!running) return running;
  return {
    ...running,
    services: running.services.map((s) =>
      s.name === backend ? { ...s, servers: s.servers.filter((v) => v.name !== server) } : s,
    ),
  };
}
