import { errorMessage, StateProblem } from '../../common/platform/errors';
import type { DesiredState } from '../../common/protocol/types';
import { plan, Reason, Running, RuntimeAction } from '../runtime-plan';
import type { Trigger } from '../results';
import type { Binder } from './bind';
import type { Checker } from './check';
import type { ConfigFiles } from './config-files';
import { ApplyContext, holdsOf } from './context';
import type { DrainJournal } from './drain-journal';
import type { DrainSweeper } from './drain-sweep';
import type { Executor } from './executor';
import type { LiveState } from './live-state';
import { vacate } from './rebind';

/** The steps the execute step hands work to. */
export interface ExecuteParts {
  readonly binder: Binder;
  readonly files: ConfigFiles;
  readonly checker: Checker;
  readonly executor: Executor;
  readonly live: LiveState;
  readonly sweeper: DrainSweeper;
  readonly journal: DrainJournal;
}

/**
 * The execute step: a plan carried out on HAProxy — its runtime commands through the executor, or a seamless
 * reload (with a runtime pass right after it) — and what runs recorded.
 */
export class Execute {
  constructor(
    private readonly ctx: ApplyContext,
    private readonly parts: ExecuteParts,
  ) {}

  /** haproxy.cfg for a state that runs without a reload, written within agent.write_delay_ms (see ConfigFiles). */
  scheduleConfig(state: DesiredState, problems: StateProblem[]): void {
    this.parts.files.schedule(state, problems);
  }

  /**
   * Runs `actions` for `state`; resolves with the commands sent. Servers set to drain are journaled before HAProxy
   * hears of them: an agent that takes over after a kill -9 must not read them as an operator's (haproxy.cfg and the
   * state cache are written only within agent.write_delay_ms). Throws when a command fails (some may have gone through).
   */
  async runtime(actions: readonly RuntimeAction[], state: DesiredState, trigger: Trigger): Promise<string[]> {
    const { live, journal } = this.parts;
    const draining = actions.filter((a) => a.kind === 'drain').map((a) => `${a.backend}/${a.server}`);
    if (draining.length > 0) await journal.save(draining);
    let commands: string[];
    try {
      commands = await this.parts.executor.run(actions, trigger);
    } catch (err) {
      live.forget();
      throw err;
    }
    await live.refresh(actions);
    this.ctx.running = mergeRunning(this.ctx.running!, state);
    this.parts.sweeper.started(actions, state);
    await journal.save();
    return commands;
  }

  /**
   * Validates (unless `checked`), writes and (re)starts HAProxy on the state, then fixes server states at runtime.
   * Resolves with the state that runs (see rebind.ts). Once the new HAProxy answers, the reload stands: a failing
   * runtime pass after it is a warning in `problems` (drift repair makes up for it), not a rejection of a config
   * that is running.
   */
  async reload(
    state: DesiredState,
    reasons: readonly Reason[],
    trigger: Trigger,
    problems: StateProblem[],
    checked: boolean,
  ): Promise<{ state: DesiredState; commands: string[] }> {
    const { ctx } = this;
    const { binder, files, live } = this.parts;
    if (!checked) await this.parts.checker.whole(state);
    state = await vacate(ctx, binder, files, state, problems, trigger);
    // Draining servers stay in the config (and in drain) until their deadline: a reload does not cut them short.
    const full = ctx.drains.withDraining(state);
    const text = files.configText(state);
    const fds = binder.fdsFor(state);
    await files.saveServerState();
    const pid = await files.launch(text, fds);
    ctx.counters.reloads++;
    ctx.running = full;
    for (const r of reasons) ctx.actions.record(trigger, 'reload', `haproxy pid ${pid}`, r.text);
    binder.releaseUnused();
    try {
      // Saved states may say maint for a server that is desired again (or not say drain for one draining): one
      // runtime pass right after.
      const actual = await live.read();
      live.observe(actual, state);
      const after = plan(full, ctx.running, actual, holdsOf(ctx));
      if (after.reloadReasons.length > 0 || after.actions.length === 0) return { state, commands: [] };
      const sent = await this.parts.executor.run(after.actions, trigger);
      await live.refresh(after.actions);
      this.parts.sweeper.started(after.actions, state);
      await this.parts.journal.save();
      return { state, commands: sent };
    } catch (err) {
      live.forget();
      const message = `runtime pass after the reload failed (${errorMessage(err)}); HAProxy runs the new config, drift repair finishes the server states`;
      ctx.log.warn({ err: errorMessage(err) }, message);
      problems.push({ where: 'haproxy', message });
      return { state, commands: [] };
    }
  }
}

/**
 * After runtime changes: the desired servers, plus removed ones HAProxy still holds (in maint). A service that is
 * the same object as before, or lost no server, stays the desired object itself: identity is what lets the next
 * plan skip it (work per change proportional to the change).
 */
function mergeRunning(running: Running, state: DesiredState): Running {
  const byName = new Map(running.services.map((s) => [s.name, s]));
  return {
    ...running,
    services: state.services.map((s) => {
      const was = byName.get(s.name);
      if (!was || was === s) return s;
      const wanted = new Set(s.servers.map((v) => v.name));
      const held = was.servers.filter((v) => !wanted.has(v.name));
      return held.length === 0 ? s : { ...s, servers: [...s.servers, ...held] };
    }),
  };
}
