import type { Clock } from '../../common/platform/clock';
import type { ProxyMgrConfig } from '../../common/config/config';
import type { Logger } from '../../common/platform/log';
import type { DesiredState } from '../../common/protocol/types';
import type { Drains } from '../drains';
import type { OverrideTracker } from '../overrides';
import type { Overrides, Running } from '../runtime-plan';
import type { RuntimeApi, Supervisor } from '../ports';
import type { AgentCounters } from '../results';
import type { ActionLog } from './action-log';

/**
 * What the steps of an apply share: the adapters they talk through, and the one record of what HAProxy runs. Made
 * by the Agent; each step module takes it (and the other steps it calls) when it is built.
 */
export interface ApplyContext {
  readonly config: ProxyMgrConfig;
  readonly log: Logger;
  readonly clock: Clock;
  readonly runtime: RuntimeApi;
  readonly supervisor: Supervisor;
  readonly counters: AgentCounters;
  readonly actions: ActionLog;
  /** Servers that left the desired state and drain until their service's drain timeout. */
  readonly drains: Drains;
  /** Operator overrides (servers someone else put in drain or maint). */
  readonly overrides: OverrideTracker;
  /**
   * What HAProxy runs per service (the plan's `running`): set by a launch, by runtime changes and drain deletions,
   * and by a takeover whose config is the one this agent would write.
   */
  running: Running | undefined;
  /** The state applied last (what runs, as desired). */
  lastGood: DesiredState | undefined;
}

/** What the plan must leave as it is: operator overrides, and the servers draining on their way out (held in drain). */
export function holdsOf(ctx: ApplyContext): Overrides {
  return ctx.drains.holds(ctx.overrides.current);
}
