import type { Clock } from '../../common/platform/clock';
import type { ActionRecord, Trigger } from '../results';

/** The most recent reloads, runtime commands, rejections and overrides, with their reasons (the admin API shows them). */
export class ActionLog {
  private readonly recent: ActionRecord[] = [];

  constructor(
    private readonly clock: Clock,
    private readonly keep = 200,
  ) {}

  record(trigger: Trigger, kind: ActionRecord['kind'], detail: string, reason: string): void {
    this.recent.push({
      at: new Date(this.clock.now()).toISOString(),
      trigger,
      kind,
      detail,
      reason: trigger === 'drift' ? `drift: ${reason}` : reason,
    });
    if (this.recent.length > this.keep) this.recent.splice(0, this.recent.length - this.keep);
  }

  /** Newest last. */
  list(): readonly ActionRecord[] {
    return this.recent;
  }
}
