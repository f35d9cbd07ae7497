import type { ProxyMgrError, StateProblem } from '../common/platform/errors';
import type { ApplyMethod } from '../common/protocol/apply-method';
import type { Reason } from './runtime-plan';

/** What the agent answers for one desired state, a preflight, and each action it took: the core's results. */

export type { ApplyMethod } from '../common/protocol/apply-method';

/** What became of a state: applied by one of the methods, or rejected (what runs keeps running). */
export type Outcome = ApplyMethod | 'rejected';

/** What started an apply: a new desired state, or a drift check (periodic, or after a crash restart). */
export type Trigger = 'update' | 'drift';

/** What the agent counts (metrics). `errors`: I/O and other unexpected failures caught; the agent kept serving. */
export interface AgentCounters {
  reloads: number;
  runtimeCommands: number;
  rejected: number;
  driftRepairs: number;
  errors: number;
}

export interface ApplyResult {
  readonly version: string;
  readonly outcome: Outcome;
  /** Reload reasons, or the reasons of the runtime commands sent: each a kind and its sentence. */
  readonly reasons: readonly Reason[];
  readonly commands: readonly string[];
  /** Parts of the input that were rejected (the rest was applied). */
  readonly problems: readonly StateProblem[];
  /** Set when the whole state was rejected; the previous one keeps running. */
  readonly error?: ProxyMgrError;
  readonly durationMs: number;
}

/** What a preflight found (see Agent.preflight). */
export interface PreflightResult {
  /** The state would apply whole. */
  readonly ok: boolean;
  readonly error?: string;
  readonly haproxyOutput?: string;
  /** How it would be applied, and why. */
  readonly method: ApplyMethod;
  readonly reasons: readonly string[];
  /** What would be left out (services, servers) and why. */
  readonly problems: readonly StateProblem[];
  /** It failed as a whole (not only services left out): invalid input, the whole config refused, the check not run. */
  readonly wholeConfig?: boolean;
}

export interface ActionRecord {
  readonly at: string;
  readonly trigger: Trigger;
  readonly kind: Exclude<Outcome, 'nothing'> | 'override';
  readonly detail: string;
  readonly reason: string;
}
