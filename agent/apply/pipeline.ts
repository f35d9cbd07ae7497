import {
  errorMessage,
  HaproxyConfigError,
  ProxyMgrError,
  StateError,
  StateProblem,
} from '../../common/platform/errors';
import type { DesiredState } from '../../common/protocol/types';
import { plan, reason, Reason } from '../runtime-plan';
import type { RejectedServices } from '../rejected-services';
import type { ApplyResult, Outcome, PreflightResult, Trigger } from '../results';
import type { Binder } from './bind';
import type { Checker } from './check';
import { ApplyContext, holdsOf } from './context';
import type { Execute } from './execute';
import type { LiveState } from './live-state';
import { methodOf, planStep } from './plan-step';
import type { Sanitizer } from './sanitize';

/** The steps of an apply, in the order a desired state walks them. */
export interface PipelineSteps {
  readonly sanitizer: Sanitizer;
  /** Runs once, before the first bind (see takeover.ts). */
  readonly takeOver: (state: DesiredState) => Promise<void>;
  readonly binder: Binder;
  readonly rejected: RejectedServices;
  readonly live: LiveState;
  readonly checker: Checker;
  readonly execute: Execute;
  /** Drains restarted (a draining server desired again): the drain timer is armed again. */
  readonly drainsChanged: () => void;
}

/**
 * One desired state through the apply pipeline — sanitize → bind → plan → check → execute — once: each step a
 * module of agent/apply/ with one job. A state HAProxy would refuse never reaches it; what runs keeps running when
 * a step refuses the state. Throws only on the unexpected (the Agent turns that into a rejection).
 */
export class ApplyPipeline {
  private tookOver = false;
  private problemsOfLast: readonly StateProblem[] = [];

  constructor(
    private readonly ctx: ApplyContext,
    private readonly steps: PipelineSteps,
  ) {}

  /** What the last apply that was not rejected left out or kept. */
  get problemsOfCurrent(): readonly StateProblem[] {
    return this.problemsOfLast;
  }

  async apply(desired: DesiredState, trigger: Trigger): Promise<ApplyResult> {
    const { ctx, steps } = this;
    const started = ctx.clock.now();
    const done = (
      outcome: Outcome,
      reasons: readonly Reason[],
      commands: string[],
      problems: readonly StateProblem[],
      error?: ProxyMgrError,
    ): ApplyResult => this.done(desired, trigger, started, { outcome, reasons, commands, problems, error });

    // 1. sanitize
    let sanitized;
    try {
      sanitized = steps.sanitizer.sanitize(desired);
    } catch (err) {
      if (!(err instanceof StateError)) throw err;
      ctx.counters.rejected++;
      ctx.actions.record(trigger, 'rejected', err.message, 'invalid input');
      return done('rejected', [], [], err.problems, err);
    }
    const problems = sanitized.problems;
    if (!this.tookOver) {
      // Before the first bind: a HAProxy left by the previous agent holds every port. Take it over.
      this.tookOver = true;
      await steps.takeOver(sanitized.state);
    }
    const reject = (err: unknown, reasons: readonly Reason[]): ApplyResult => {
      steps.binder.releaseUnused();
      const error = asProxyMgrError(ctx, err);
      ctx.counters.rejected++;
      ctx.actions.record(trigger, 'rejected', error.message, reasons.map((r) => r.text).join('; ') || 'rejected');
      return done('rejected', reasons, [], problems, error);
    };
    // (After the takeover: what the adopted HAProxy runs is what the servers are kept from.)
    const known = await steps.sanitizer.keepUnknownHosts(sanitized.state, problems);

    // 2. bind
    let state = steps.rejected.withoutKnown(steps.binder.bind(known, problems), ctx.lastGood, problems);
    // A draining server that is desired again is simply desired (the plan readies it).
    if (trigger === 'update' && ctx.drains.forgetDesired(state) > 0) steps.drainsChanged();

    // 3. plan
    const planner = await planStep(ctx, steps.live, state, trigger);
    if (planner.unreadable !== undefined && trigger === 'drift') return done('nothing', [], [], problems); // next round
    let p = planner.planFor(state);

    // 4. check (what a reload would start; runtime commands change nothing HAProxy parses)
    if (p.reloadReasons.length > 0) {
      try {
        // A service HAProxy rejects keeps its previous version (or stays out) and the rest goes ahead.
        const checked = await steps.checker.perService(state, problems);
        if (checked !== state) {
          state = checked;
          p = planner.planFor(state);
        }
      } catch (err) {
        return reject(err, p.reloadReasons);
      }
    }

    // 5. execute
    if (p.reloadReasons.length > 0) {
      try {
        const ran = await steps.execute.reload(state, p.reloadReasons, trigger, problems, true);
        ctx.lastGood = ran.state;
        return done('reload', p.reloadReasons, ran.commands, problems);
      } catch (err) {
        return reject(err, p.reloadReasons);
      }
    }
    if (p.actions.length === 0) {
      if (trigger === 'update') steps.execute.scheduleConfig(state, problems);
      ctx.lastGood = state;
      return done('nothing', [], [], problems);
    }
    let commands: string[];
    try {
      commands = await steps.execute.runtime(p.actions, state, trigger);
    } catch (err) {
      const why = reason('runtime_fallback', `reload: runtime command failed (${errorMessage(err)})`);
      ctx.log.warn({ err: errorMessage(err) }, 'runtime API could not apply the change; falling back to a reload');
      try {
        const ran = await steps.execute.reload(state, [why], trigger, problems, false);
        ctx.lastGood = ran.state;
        return done('reload', [why], ran.commands, problems);
      } catch (err2) {
        return reject(err2, [why]);
      }
    }
    steps.execute.scheduleConfig(state, problems);
    ctx.lastGood = state;
    if (trigger === 'drift') ctx.counters.driftRepairs++;
    return done(
      'runtime',
      p.actions.map((a) => reason(a.kind, a.reason)),
      commands,
      problems,
    );
  }

  /**
   * The checks apply makes — sanitize, bind every new socket, plan, `haproxy -c` of the config it would run with the
   * real fds — and nothing else (see Agent.preflight). The caller closes the sockets opened for it.
   */
  async preflight(desired: DesiredState): Promise<PreflightResult> {
    const { ctx, steps } = this;
    let sanitized;
    try {
      sanitized = steps.sanitizer.sanitize(desired);
    } catch (err) {
      if (!(err instanceof StateError)) throw err;
      return {
        ok: false,
        error: err.message,
        method: 'nothing',
        reasons: [],
        problems: err.problems,
        wholeConfig: true,
      };
    }
    const problems = sanitized.problems;
    let state = steps.binder.bind(sanitized.state, problems);
    // Read for the plan only: the cache stays what the agent's own last change left (overrides are observed there).
    const live = steps.live.cached;
    const actual = ctx.supervisor.running
      ? (live ?? (await ctx.runtime.serversState().catch(() => undefined)))
      : undefined;
    const p = plan(state, ctx.supervisor.running ? ctx.running : undefined, actual, holdsOf(ctx), actual === live);
    const method = methodOf(p);
    const reasons = p.reloadReasons.length > 0 ? p.reloadReasons.map((r) => r.text) : p.actions.map((a) => a.reason);
    try {
      state = await steps.checker.perService(state, problems);
    } catch (err) {
      return {
        ok: false,
        error: errorMessage(err),
        ...(err instanceof HaproxyConfigError ? { haproxyOutput: err.output } : {}),
        method,
        reasons,
        problems,
        wholeConfig: true,
      };
    }
    const services = problems.filter((x) => x.service !== undefined && x.server === undefined);
    if (services.length > 0)
      return {
        ok: false,
        error: services.map((x) => `${x.where}: ${x.message}`).join('; '),
        method,
        reasons,
        problems,
      };
    return { ok: true, method, reasons, problems };
  }

  private done(
    desired: DesiredState,
    trigger: Trigger,
    started: number,
    r: Omit<ApplyResult, 'version' | 'durationMs'>,
  ): ApplyResult {
    const { ctx } = this;
    const result: ApplyResult = { version: desired.version, ...r, durationMs: ctx.clock.now() - started };
    if (r.outcome !== 'rejected') this.problemsOfLast = r.problems;
    if (r.outcome !== 'nothing' || r.problems.length > 0) {
      ctx.log[r.outcome === 'rejected' ? 'error' : 'info'](
        {
          version: desired.version,
          trigger,
          outcome: r.outcome,
          reasons: r.reasons.map((x) => x.text),
          problems: r.problems.map((x) => `${x.where}: ${x.message}`),
          error: r.error?.message,
          duration_ms: result.durationMs,
        },
        `${trigger}: ${r.outcome}`,
      );
    }
    return result;
  }
}

/** ProxyMgrErrors as they are; anything else (an errno from fs or spawn) is counted and becomes IO_FAILED. */
export function asProxyMgrError(ctx: ApplyContext, err: unknown): ProxyMgrError {
  if (err instanceof ProxyMgrError) return err;
  ctx.counters.errors++;
  return new ProxyMgrError('IO_FAILED', errorMessage(err), { cause: err });
}
