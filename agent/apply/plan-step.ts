import { errorMessage } from '../../common/platform/errors';
import type { DesiredState } from '../../common/protocol/types';
import type { RuntimeState } from '../haproxy/servers-state';
import { plan, Plan, reason } from '../runtime-plan';
import type { ApplyMethod, Trigger } from '../results';
import { ApplyContext, holdsOf } from './context';
import type { LiveState } from './live-state';

/** What the plan step read of HAProxy, and the plan it makes of a state (again after the check drops services). */
export interface Planner {
  /** `show servers state` could not be read: drift repair waits for its next round; an update reloads. */
  readonly unreadable: string | undefined;
  planFor(state: DesiredState): Plan;
}

/**
 * The plan step: what HAProxy runs (the state the last change left, for updates; read afresh, with operator overrides
 * observed, for drift checks and before anything ran) against `state`, compared by the pure planner (runtime-plan.ts).
 */
export async function planStep(
  ctx: ApplyContext,
  live: LiveState,
  state: DesiredState,
  trigger: Trigger,
): Promise<Planner> {
  let actual: RuntimeState | undefined;
  let unreadable: string | undefined;
  /** Planning against the cache: services that are the very objects HAProxy runs need no look (see plan). */
  let fromCache = false;
  if (ctx.supervisor.running) {
    try {
      // Updates plan against the state read after the last change (saves parsing every backend's servers on every
      // host event); drift repair always reads it afresh and corrects whatever changed behind our back.
      if (trigger === 'update' && live.cached) {
        actual = live.cached;
        fromCache = true;
      } else {
        actual = await live.read();
        live.observe(actual, state);
      }
    } catch (err) {
      unreadable = errorMessage(err);
      ctx.log.warn({ err: unreadable, trigger }, 'cannot read show servers state');
    }
  }
  return {
    unreadable,
    planFor: (s) =>
      unreadable !== undefined
        ? // Without the live state the runtime path is blind; the config file holds the full state, so reload it.
          {
            reloadReasons: [reason('state_unreadable', `reload: cannot read show servers state (${unreadable})`)],
            actions: [],
          }
        : plan(s, ctx.supervisor.running ? ctx.running : undefined, actual, holdsOf(ctx), fromCache),
  };
}

/** How a plan applies: a reload when it has reasons for one, runtime commands when it has actions, else nothing. */
export function methodOf(p: Plan): ApplyMethod {
  return p.reloadReasons.length > 0 ? 'reload' : p.actions.length > 0 ? 'runtime' : 'nothing';
}
