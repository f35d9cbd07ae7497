import { clipText as clipAt, plainText } from '../../common/platform/text';
import { MAX_COUNTED_SERVICES } from '../../common/protocol/resources';
import { ServiceCounters } from '../../common/gen/proxymgr/v1/counters';
import { ReloadStats } from '../../common/gen/proxymgr/v1/reloads';
import { PreflightReport, ServiceRefusal, StateReport } from '../../common/gen/proxymgr/v1/stream';
import { resourceSet } from '../../common/protocol/resources';
import { DesiredState } from '../../common/protocol/types';
import type { ReportedRefusal } from '../service-status';

/** Version strings an agent sends (hello, Stats, a NACK's running version) are kept at most this long. */
export const MAX_VERSION_FIELD = 128;

/** An agent's free text (NACK reasons, ACK reasons and warnings) is kept and logged only this long. */
const MAX_TEXT = 4096;
const MAX_ITEMS = 100;

/** `s` without control characters. */
export const plain = (s: string): string => plainText(s);

/** `s` clipped to MAX_TEXT characters. */
export const clipText = (s: string): string => clipAt(s, MAX_TEXT, true);

/** At most MAX_ITEMS of `items`, each clipped, and a line saying how many more were left out. */
export const clip = (items: readonly string[]): string[] => [
  ...items.slice(0, MAX_ITEMS).map(clipText),
  ...(items.length > MAX_ITEMS ? [`… ${items.length - MAX_ITEMS} more`] : []),
];

/** Counters from an agent, as hostile input: at most MAX_COUNTED_SERVICES, names clipped and plain, numbers finite. */
export function checkedCounters(counters: readonly ServiceCounters[]): ServiceCounters[] {
  const n = (v: number) => (Number.isFinite(v) && v >= 0 ? v : 0);
  return counters.slice(0, MAX_COUNTED_SERVICES).map((c) => ({
    service: plain(c.service).slice(0, 253),
    requests: n(c.requests),
    responses5xx: n(c.responses5xx),
    sessions: n(c.sessions),
    connectionErrors: n(c.connectionErrors),
    responseErrors: n(c.responseErrors),
    retries: n(c.retries),
    serversDown: n(c.serversDown),
    servers: n(c.servers),
    queue: n(c.queue),
    rtimeMs: n(c.rtimeMs),
  }));
}

/** A state report as hostile input like any answer: every text clipped and stripped of control characters. */
export function checkedStateReport(r: StateReport): StateReport {
  const t = (s: string) => plain(s).slice(0, 256);
  return {
    id: r.id,
    error: plain(clipText(r.error)),
    runningVersion: t(r.runningVersion),
    reloads: r.reloads ? checkedReloadStats(r.reloads) : undefined,
    servers: r.servers.map((s) => ({
      backend: t(s.backend),
      name: t(s.name),
      address: t(s.address),
      port: s.port,
      weight: s.weight,
      adminState: t(s.adminState),
      operState: t(s.operState),
    })),
  };
}

/** The most old generations of one agent kept from its report (the agent bounds them at 50). */
const MAX_OLD_GENERATIONS = 64;

/** An agent's reload figures as hostile input: at most MAX_OLD_GENERATIONS old generations listed. */
export function checkedReloadStats(r: ReloadStats): ReloadStats {
  return {
    ...r,
    oldGenerations: r.oldGenerations
      .slice(0, MAX_OLD_GENERATIONS)
      .map((g) => ({ pid: g.pid, ageMs: g.ageMs, reloadsSurvived: g.reloadsSurvived, stopped: g.stopped })),
  };
}

/** A preflight report as hostile input: every text clipped and stripped of control characters. */
export function checkedPreflightReport(r: PreflightReport): PreflightReport {
  return {
    id: r.id,
    ok: r.ok,
    error: plain(clipText(r.error)),
    haproxyOutput: plain(clipText(r.haproxyOutput)),
    method: r.method,
    reasons: clip(r.reasons).map(plain),
    rejectedServices: clip(r.rejectedServices).map((x) => plain(x).slice(0, 256)),
    warnings: clip(r.warnings).map(plain),
    wholeConfig: r.wholeConfig,
  };
}

/** A refusal's message is kept this long (one per agent and service). */
export const MAX_REFUSAL_TEXT = 1024;

/**
 * An answer's refusals as hostile input: only services of `state` (the pushed state the answer is about, so names
 * are the control plane's own and their count its state's), each once, at most MAX_ITEMS, messages plain and clipped.
 */
export function checkedRefusals(refusals: readonly ServiceRefusal[], state: DesiredState): ReportedRefusal[] {
  const names = resourceSet(state).resources;
  const out = new Map<string, ReportedRefusal>();
  for (const r of refusals) {
    if (out.size >= MAX_ITEMS) break;
    if (!names.has(r.service) || out.has(r.service)) continue;
    out.set(r.service, {
      service: r.service,
      message: plain(clipAt(r.message, MAX_REFUSAL_TEXT, true)),
      leftOut: r.leftOut === true,
    });
  }
  return [...out.values()];
}
