import { ProxyMgrError } from '../../common/platform/errors';
import type { RuntimeAction } from '../runtime-plan';
import type { Trigger } from '../results';
import type { ApplyContext } from './context';

/**
 * The only sender of runtime commands (plans, the runtime pass after a reload, drain sweeps): each action's command
 * in order, its answer checked against what the action expects. The first unexpected answer stops the run with
 * HAPROXY_RUNTIME; the commands before it went through.
 */
export class Executor {
  constructor(private readonly ctx: ApplyContext) {}

  /**
   * Sends `actions`; resolves with the commands sent. Each is recorded as a runtime action of `trigger`, and told
   * to the override tracker — unless `quiet` (a drain sweep records the deletion as one action of its own).
   */
  async run(actions: readonly RuntimeAction[], trigger: Trigger, quiet = false): Promise<string[]> {
    const sent: string[] = [];
    for (const a of actions) {
      const reply = (await this.ctx.runtime.command(a.command)).trim();
      this.ctx.counters.runtimeCommands++;
      if (!a.ok.test(reply)) throw new ProxyMgrError('HAPROXY_RUNTIME', `"${a.command}" answered: ${reply}`);
      sent.push(a.command);
      if (quiet) continue;
      this.ctx.overrides.applied(a);
      this.ctx.actions.record(trigger, 'runtime', a.command, a.reason);
    }
    return sent;
  }
}
