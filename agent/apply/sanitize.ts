import { errorMessage, StateProblem } from '../../common/platform/errors';
import type { DesiredState } from '../../common/protocol/types';
import { sanitizeState } from '../../common/haproxy/validate-state';
import type { PreviousHaproxy } from '../ports';
import {
  keepUnknownHosts,
  RunningServers,
  runningServersFromActual,
  runningServersFromConfig,
  runningServersOf,
} from '../unknown-hosts';
import type { ApplyContext } from './context';
import type { LiveState } from './live-state';

/**
 * The sanitize step: a desired state made safe to render — checked against the agent's own proxymgr.yml
 * service_options (a control plane of another version, or a compromised one, cannot get past them), with parts that
 * fail left out as problems — and services whose hosts are unknown keeping the servers HAProxy runs.
 */
export class Sanitizer {
  /** See distrust. */
  private lastRunTrusted = true;

  constructor(
    private readonly ctx: ApplyContext,
    private readonly previous: PreviousHaproxy,
    private readonly live: LiveState,
  ) {}

  /** Throws StateError when the state as a whole is invalid (nothing of it applies). */
  sanitize(desired: DesiredState): { state: DesiredState; problems: StateProblem[] } {
    const sanitized = sanitizeState(desired, this.ctx.lastGood, this.ctx.config.serviceOptions);
    return { state: sanitized.state, problems: [...sanitized.problems] };
  }

  /** `state` with services whose hosts are unknown at the servers HAProxy runs for them (see keepUnknownHosts). */
  async keepUnknownHosts(state: DesiredState, problems: StateProblem[]): Promise<DesiredState> {
    return keepUnknownHosts(state, await this.runningServers(state), problems);
  }

  /** The config file HAProxy last ran is too old to keep servers from (see Agent.distrustLastRun). */
  distrust(): void {
    this.lastRunTrusted = false;
  }

  /**
   * What HAProxy runs per service: the last state applied, or — before anything was applied — the `show servers
   * state` of an adopted HAProxy, or the config file HAProxy last ran when none runs (read only when `desired` has a
   * service without servers that may keep some).
   */
  private async runningServers(desired: DesiredState): Promise<RunningServers | undefined> {
    // (Checked first: on the path of every host change, most states have nothing to keep.)
    if (!desired.services.some((s) => s.servers.length === 0 && s.hosts !== 'reported')) return undefined;
    if (this.ctx.lastGood) return runningServersOf(this.ctx.lastGood);
    if (!this.ctx.supervisor.running)
      return this.lastRunTrusted
        ? runningServersFromConfig(await this.previous.readFile(this.ctx.config.haproxy.configPath))
        : undefined;
    try {
      return runningServersFromActual(await this.live.read());
    } catch (err) {
      this.ctx.log.warn({ err: errorMessage(err) }, 'cannot read what the adopted HAProxy runs; no servers to keep');
      return undefined;
    }
  }
}
