import { HaproxyConfigError, StateProblem } from '../../common/platform/errors';
import type { DesiredState } from '../../common/protocol/types';
import type { ConfigCheck } from '../ports';
import type { RejectedServices } from '../rejected-services';
import type { Binder } from './bind';
import type { ConfigFiles } from './config-files';
import type { ApplyContext } from './context';

/** How often the rest of a state is checked again after services HAProxy rejected fall back. */
const CHECK_ROUNDS = 3;

/**
 * The check step: `haproxy -c` on the config a reload would start, with the real fds. When every ALERT points at
 * services, those services fall back to their previous version (or are left out when new), are reported as
 * problems, and the rest is checked again; otherwise the whole version is rejected (see RejectedServices).
 */
export class Checker {
  constructor(
    private readonly ctx: ApplyContext,
    private readonly binder: Binder,
    private readonly files: ConfigFiles,
    private readonly checkConfig: ConfigCheck,
    private readonly rejected: RejectedServices,
  ) {}

  /** Resolves with `state`, or `state` with the services HAProxy rejected at their fallback; throws otherwise. */
  async perService(state: DesiredState, problems: StateProblem[]): Promise<DesiredState> {
    let current = state;
    for (let round = 1; ; round++) {
      try {
        await this.whole(current);
        return current;
      } catch (err) {
        if (!(err instanceof HaproxyConfigError) || round >= CHECK_ROUNDS) throw err;
        current = this.rejected.fallBack(current, this.ctx.lastGood, err, problems);
        this.ctx.log.warn(
          { services: err.services, err: err.message },
          'haproxy -c rejected these services; the rest goes ahead',
        );
      }
    }
  }

  /** `haproxy -c` on the state's config, with the real fds (HAProxy checks `bind fd@N` even then). */
  async whole(state: DesiredState): Promise<void> {
    const { binary } = this.ctx.config.haproxy;
    // The config a reload would start: with the servers still draining (see reload).
    const text = this.files.render(this.ctx.drains.withDraining(state));
    await this.files.withCandidate(text, (candidate) =>
      this.checkConfig(binary, candidate, text, this.binder.fdsFor(state, true)),
    );
  }
}
