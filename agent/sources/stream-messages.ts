import { errorMessage, HaproxyConfigError, StateProblem } from '../../common/platform/errors';
import { clipText } from '../../common/platform/text';
import { ApplyMethod, applyMethodToWire } from '../../common/protocol/apply-method';
import { ServiceCounters } from '../../common/gen/proxymgr/v1/counters';
import {
  AgentMessage,
  AppliedChange,
  Hello,
  Nack,
  Push,
  PreflightReport,
  ServiceRefusal,
} from '../../common/gen/proxymgr/v1/stream';
import { ApplyResult, PreflightResult } from '../results';
import { HeldState } from './held-state';

// The messages an agent writes on its stream, built from what it knows (docs/protocol.md). Pure: the session
// (stream-session.ts) gathers the inputs (the running version, fresh counters) and sends what these return.

/** How often the agent sends its per-service counters between ACKs, unless the control plane's AgentSettings say otherwise. */
export const STATS_INTERVAL_MS = 10_000;
/** The shortest stats interval the agent takes from a control plane. */
export const MIN_STATS_INTERVAL_MS = 200;

/** Who an agent is, as its hello says. */
export interface AgentIdentity {
  readonly nodeId: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly agentVersion: string;
  readonly haproxyVersion: string;
}

/**
 * The hello a stream opens with: who the agent is, what it runs, what it holds (`base`, so that the control plane
 * sends only what differs) and what it can do beyond pushes (AgentSettings; preflights when it has a preflight).
 */
export function helloOf(
  agent: AgentIdentity,
  runningVersion: string,
  base: ReturnType<HeldState['hello']>,
  canPreflight: boolean,
): Hello {
  return {
    nodeId: agent.nodeId,
    labels: { ...agent.labels },
    agentVersion: agent.agentVersion,
    haproxyVersion: agent.haproxyVersion,
    runningVersion,
    ...base,
    capabilities: ['settings', ...(canPreflight ? ['preflight'] : [])],
  };
}

/** The services left out whole (problems naming a service and no server), each once. */
function rejectedServicesOf(problems: readonly StateProblem[]): string[] {
  return [...new Set(problems.flatMap((p) => (p.service !== undefined && p.server === undefined ? [p.service] : [])))];
}

const warningsOf = (problems: readonly StateProblem[]) => problems.map((p) => `${p.where}: ${p.message}`);

/** Each service left out whole with why (its problems' messages joined), each once. */
function refusalsOf(problems: readonly StateProblem[]): ServiceRefusal[] {
  const by = new Map<string, ServiceRefusal>();
  for (const p of problems) {
    if (p.service === undefined || p.server !== undefined) continue;
    const was = by.get(p.service);
    by.set(p.service, {
      service: p.service,
      message: was ? `${was.message}; ${p.message}` : p.message,
      leftOut: (was?.leftOut ?? false) || p.leftOut === true,
    });
  }
  return [...by.values()];
}

/** The services HAProxy's message blames for a NACK, each with the alerts that point at it. */
function nackRefusalsOf(err: unknown): ServiceRefusal[] {
  if (!(err instanceof HaproxyConfigError)) return [];
  return err.services.map((service) => ({
    service,
    message: (err.alertsByService.get(service) ?? []).join(' | ') || err.message,
    leftOut: false,
  }));
}

/** The NACK of `push` when the agent rejected its state (`runningVersion`: what it keeps running). */
export function nackOf(push: Push, result: ApplyResult, runningVersion: string): AgentMessage {
  return nack(push, {
    reason: result.error?.message ?? 'rejected',
    haproxyOutput: result.error instanceof HaproxyConfigError ? result.error.output : '',
    runningVersion,
    refusals: nackRefusalsOf(result.error),
  });
}

/** The NACK of `push` when applying it threw. */
export function nackOfError(push: Push, err: unknown, runningVersion: string): AgentMessage {
  return nack(push, { reason: errorMessage(err), haproxyOutput: '', runningVersion, refusals: nackRefusalsOf(err) });
}

function nack(push: Push, why: Pick<Nack, 'reason' | 'haproxyOutput' | 'runningVersion' | 'refusals'>): AgentMessage {
  return { nack: { version: push.version, nonce: push.nonce, ...why } };
}

/** An apply that was not rejected: its state runs, in whole or in part. */
export type Applied = ApplyResult & { readonly outcome: ApplyMethod };

/** Whether `result`'s state runs (it is ACKed) rather than was rejected (NACKed). */
export const wasApplied = (result: ApplyResult): result is Applied => result.outcome !== 'rejected';

/**
 * The ACK of `push` applied as `result` says, with the counters sampled right after it and what the change trace
 * needs: the changes the apply brought (each with the time it waited on this agent) and how long ago it ended.
 */
export function ackOf(
  push: Push,
  result: Applied,
  counters: ServiceCounters[],
  traced: { readonly changes: AppliedChange[]; readonly appliedAgoMs: number } = { changes: [], appliedAgoMs: 0 },
): AgentMessage {
  return {
    ack: {
      version: push.version,
      nonce: push.nonce,
      method: applyMethodToWire(result.outcome),
      reasons: result.reasons.map((r) => r.text),
      runtimeCommands: result.commands.length,
      durationMs: result.durationMs,
      warnings: warningsOf(result.problems),
      rejectedServices: rejectedServicesOf(result.problems),
      counters,
      refusals: refusalsOf(result.problems),
      changes: traced.changes,
      appliedAgoMs: Math.min(traced.appliedAgoMs, 0xffffffff),
    },
  };
}

/** The report answering PreflightRequest `id` with what the preflight found. */
export function preflightReportOf(id: string, r: PreflightResult): PreflightReport {
  return {
    id,
    ok: r.ok,
    error: r.error ?? '',
    haproxyOutput: r.haproxyOutput ?? '',
    method: applyMethodToWire(r.method),
    reasons: [...r.reasons],
    rejectedServices: rejectedServicesOf(r.problems),
    warnings: warningsOf(r.problems),
    wholeConfig: !r.ok && r.wholeConfig === true,
  };
}

/** The report answering PreflightRequest `id` when no preflight could be run: the state fails as a whole. */
export function preflightFailure(id: string, err: unknown): PreflightReport {
  return {
    id,
    ok: false,
    error: errorMessage(err),
    haproxyOutput: '',
    method: applyMethodToWire('unspecified'),
    reasons: [],
    rejectedServices: [],
    warnings: [],
    wholeConfig: true,
  };
}

/** The stats interval AgentSettings ask for: 0 is the default, anything else at least MIN_STATS_INTERVAL_MS. */
export function statsIntervalOf(statsIntervalMs: number): number {
  return statsIntervalMs === 0 ? STATS_INTERVAL_MS : Math.max(MIN_STATS_INTERVAL_MS, statsIntervalMs);
}

/**
 * `msg` (already fitted to the control plane's limit) with a note on what was cut added to its warnings when it is
 * an ACK or a preflight report, so the control plane's operator sees it too; other messages are returned as they are.
 */
export function withCutNote(msg: AgentMessage, cut: readonly string[]): AgentMessage {
  const note = clipText(`cut to fit the control plane's message limit: ${cut.join('; ')}`, 2048);
  let out = msg;
  if (out.ack) out = { ack: { ...out.ack, warnings: [...out.ack.warnings, note] } };
  if (out.preflightReport)
    out = { preflightReport: { ...out.preflightReport, warnings: [...out.preflightReport.warnings, note] } };
  return out;
}
