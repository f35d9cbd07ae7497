import { createHash } from 'node:crypto';
import type { ReportedMethod } from '../common/protocol/apply-method';
import { resourceSet } from '../common/protocol/resources';
import { DesiredState } from '../common/protocol/types';

/**
 * Per agent, per service: the version of the service the agent runs (its resource version, a hash of its content,
 * the one delta pushes name it by), the method of the apply that brought that version, and the version it refused
 * with HAProxy's message. Pure.
 *
 * An agent's view is an immutable object made by a transition from its previous view and one answer (an ACK of a
 * pushed state by a method with refusals, or a NACK naming services). Agents that take the same pushes the same way
 * go through the same transitions, which are cached: a fleet of 10,000 agents that all run the same 500 services
 * holds one view, not 5,000,000 entries. An agent that differs (a refusal of its own) gets a view of its own.
 */

/** What an agent runs of one service. */
export interface RunningService {
  readonly version: string;
  /** 'unspecified': the version came with an apply this control plane did not see (before the agent reconnected). */
  readonly method: ReportedMethod;
}

/** A version of a service the agent refused, and why. */
export interface ServiceRefusalRecord {
  readonly version: string;
  readonly message: string;
}

/** One agent's services as its answers said. */
export interface ServiceView {
  readonly running: ReadonlyMap<string, RunningService>;
  readonly refused: ReadonlyMap<string, ServiceRefusalRecord>;
}

/** A refusal as the agent reported it (already checked: a service of the pushed state, text clipped and plain). */
export interface ReportedRefusal {
  readonly service: string;
  readonly message: string;
  readonly leftOut: boolean;
}

/**
 * What an agent held before a push, as service name → resource version (used when no view is known yet), with a key
 * that is equal for equal sets.
 */
export interface HeldResources {
  readonly key: string;
  readonly resources: ReadonlyMap<string, string>;
}

const EMPTY: ServiceView = { running: new Map(), refused: new Map() };

/** Transitions kept: a push answered the same way by the whole fleet is computed once. */
const MAX_CACHED_TRANSITIONS = 256;

const ids = new WeakMap<object, number>();
let nextId = 1;
function idOf(o: object): number {
  let id = ids.get(o);
  if (id === undefined) ids.set(o, (id = nextId++));
  return id;
}

const transitions = new Map<string, ServiceView>();

function cached(longKey: string, make: () => ServiceView): ServiceView {
  // Refusal messages make long keys: a hash of them bounds the cache's memory.
  const key = longKey.length <= 256 ? longKey : createHash('sha256').update(longKey).digest('hex');
  const hit = transitions.get(key);
  if (hit) {
    transitions.delete(key); // re-inserted: most recently used last
    transitions.set(key, hit);
    return hit;
  }
  const made = make();
  // Views equal in content are one object, so agents that came to the same place by other paths (after a
  // control-plane restart, each from what it declared) share their next transitions too.
  const content = contentOf(made);
  const view = interned.get(content) ?? made;
  interned.delete(content);
  interned.set(content, view);
  if (interned.size > MAX_CACHED_TRANSITIONS) interned.delete(interned.keys().next().value!);
  if (transitions.size >= MAX_CACHED_TRANSITIONS) transitions.delete(transitions.keys().next().value!);
  transitions.set(key, view);
  return view;
}

const interned = new Map<string, ServiceView>();

/** A hash of a view's content (a state of 10,000 services would make keys of a megabyte). */
function contentOf(v: ServiceView): string {
  const parts: string[] = [];
  for (const [name, r] of v.running) parts.push(`${name}\0${r.version}\0${r.method}`);
  parts.push('');
  for (const [name, r] of v.refused) parts.push(`${name}\0${r.version}\0${r.message}`);
  return createHash('sha256').update(parts.join('\n')).digest('hex');
}

const refusalsKey = (refusals: readonly ReportedRefusal[]) =>
  refusals.map((r) => `${r.service}\0${r.leftOut ? 1 : 0}\0${r.message}`).join('\0\0');

/**
 * The view after the agent ACKed `state` applied by `method`, without the services of `refusals`. A service whose
 * version changed came with this apply (its method); an unchanged one keeps the method of the apply that brought it.
 * With no previous view (the first ACK on this control plane), `held` says what the agent had: a service it already
 * had at this version came with an apply not seen here ('unspecified').
 */
export function afterAck(
  prev: ServiceView | undefined,
  state: DesiredState,
  method: ReportedMethod,
  refusals: readonly ReportedRefusal[],
  held: HeldResources | undefined,
): ServiceView {
  const key = `a\0${prev ? idOf(prev) : held ? `h${held.key}` : '-'}\0${idOf(state)}\0${method}\0${refusalsKey(refusals)}`;
  return cached(key, () => {
    const versions = resourceSet(state).resources;
    const refusedNow = new Map(refusals.map((r) => [r.service, r]));
    const running = new Map<string, RunningService>();
    const refused = new Map<string, ServiceRefusalRecord>();
    for (const [name, version] of versions) {
      const was = prev?.running.get(name);
      const r = refusedNow.get(name);
      if (r) {
        refused.set(name, { version, message: r.message });
        if (was && !r.leftOut) running.set(name, was);
        continue;
      }
      if (was?.version === version) running.set(name, was);
      else if (!prev && held?.resources.get(name) === version) running.set(name, { version, method: 'unspecified' });
      else running.set(name, { version, method });
    }
    return { running, refused };
  });
}

/**
 * The view after the agent NACKed `state`: it runs what it ran; each service HAProxy's message blamed is refused
 * at its version in `state` (a refusal of a service `state` does not have is dropped).
 */
export function afterNack(
  prev: ServiceView | undefined,
  state: DesiredState,
  refusals: readonly ReportedRefusal[],
): ServiceView | undefined {
  if (refusals.length === 0) return prev;
  const key = `n\0${prev ? idOf(prev) : '-'}\0${idOf(state)}\0${refusalsKey(refusals)}`;
  return cached(key, () => {
    const base = prev ?? EMPTY;
    const versions = resourceSet(state).resources;
    const refused = new Map(base.refused);
    for (const r of refusals) {
      const version = versions.get(r.service);
      if (version !== undefined) refused.set(r.service, { version, message: r.message });
    }
    return { running: base.running, refused };
  });
}

/** One agent's part in a service's status. */
export interface AgentServiceStatus {
  readonly nodeId: string;
  readonly connected: boolean;
  readonly running?: RunningService;
  readonly refused?: ServiceRefusalRecord;
  /** The version of the service in the state this control plane wants the agent to run ('' when it has none). */
  readonly desiredVersion: string;
  /** No view: no apply of this agent has been seen here since it connected. */
  readonly unknown: boolean;
}

/** What the status of one service is built from, per agent. */
export interface AgentServiceInput {
  readonly nodeId: string;
  readonly connected: boolean;
  readonly view: ServiceView | undefined;
  readonly desired: DesiredState | undefined;
}

/** The agents that run, refused or should run service `name`, as AgentServiceStatus. */
export function agentsOfService(name: string, agents: Iterable<AgentServiceInput>): AgentServiceStatus[] {
  const out: AgentServiceStatus[] = [];
  for (const a of agents) {
    const running = a.view?.running.get(name);
    const refused = a.view?.refused.get(name);
    const desiredVersion = a.desired ? (resourceSet(a.desired).resources.get(name) ?? '') : '';
    if (!running && !refused && desiredVersion === '') continue;
    out.push({
      nodeId: a.nodeId,
      connected: a.connected,
      ...(running ? { running } : {}),
      ...(refused ? { refused } : {}),
      desiredVersion,
      unknown: a.view === undefined,
    });
  }
  return out.sort(
    (x, y) => (x.refused ? 0 : 1) - (y.refused ? 0 : 1) || (x.nodeId < y.nodeId ? -1 : x.nodeId > y.nodeId ? 1 : 0),
  );
}

/** A service's status summed over agents. */
export interface ServiceSummary {
  readonly agents: number;
  /** Agents that run the version their desired state has. */
  readonly current: number;
  readonly byVersion: Record<string, number>;
  readonly byMethod: Record<string, number>;
  readonly refused: number;
  /** One refusal's message (the first agent's by node id), to show beside the counts. */
  readonly refusal?: { readonly nodeId: string; readonly version: string; readonly message: string };
}

/** Counts of `statuses` (from agentsOfService). */
export function summarize(statuses: readonly AgentServiceStatus[]): ServiceSummary {
  const byVersion: Record<string, number> = {};
  const byMethod: Record<string, number> = {};
  let current = 0;
  let refused = 0;
  let refusal: ServiceSummary['refusal'];
  for (const s of statuses) {
    const v = s.running?.version ?? '';
    byVersion[v] = (byVersion[v] ?? 0) + 1;
    if (s.running) byMethod[s.running.method] = (byMethod[s.running.method] ?? 0) + 1;
    if (s.running && s.running.version === s.desiredVersion) current++;
    if (s.refused) {
      refused++;
      refusal ??= { nodeId: s.nodeId, version: s.refused.version, message: s.refused.message };
    }
  }
  return { agents: statuses.length, current, byVersion, byMethod, refused, ...(refusal ? { refusal } : {}) };
}

/** One service's row of the fleet table (status page, /status.json). */
export interface FleetServiceRow extends ServiceSummary {
  readonly name: string;
  readonly desiredVersion: string;
}

/**
 * Summaries of services `names` (at most `maxRows`; then the services with refusals and names not in `names`) over
 * `agents`. Agents are grouped by (view, desired state) first: a fleet shares a few of each, so the cost is services
 * × groups, not services × agents.
 */
export function fleetSummaries(
  names: readonly string[],
  desired: DesiredState | undefined,
  agents: Iterable<AgentServiceInput>,
  maxRows: number,
): FleetServiceRow[] {
  type Group = Map<DesiredState | undefined, { n: number; first: string }>;
  const groups = new Map<ServiceView | undefined, Group>();
  for (const a of agents) {
    let byDesired = groups.get(a.view);
    if (!byDesired) groups.set(a.view, (byDesired = new Map() as Group));
    const g = byDesired.get(a.desired);
    if (!g) byDesired.set(a.desired, { n: 1, first: a.nodeId });
    else {
      g.n++;
      if (a.nodeId < g.first) g.first = a.nodeId;
    }
  }
  const all = new Set(names.slice(0, maxRows));
  for (const view of groups.keys())
    for (const name of view?.refused.keys() ?? []) if (all.size < maxRows) all.add(name);
  const want = desired ? resourceSet(desired).resources : new Map<string, string>();
  const rows: FleetServiceRow[] = [];
  for (const name of all) {
    const byVersion: Record<string, number> = {};
    const byMethod: Record<string, number> = {};
    let count = 0;
    let current = 0;
    let refused = 0;
    let refusal: ServiceSummary['refusal'];
    for (const [view, byDesired] of groups)
      for (const [state, g] of byDesired) {
        const running = view?.running.get(name);
        const r = view?.refused.get(name);
        const desiredVersion = state ? (resourceSet(state).resources.get(name) ?? '') : '';
        if (!running && !r && desiredVersion === '') continue;
        count += g.n;
        const v = running?.version ?? '';
        byVersion[v] = (byVersion[v] ?? 0) + g.n;
        if (running) byMethod[running.method] = (byMethod[running.method] ?? 0) + g.n;
        if (running && running.version === desiredVersion) current += g.n;
        if (r) {
          refused += g.n;
          if (!refusal || g.first < refusal.nodeId)
            refusal = { nodeId: g.first, version: r.version, message: r.message };
        }
      }
    rows.push({
      name,
      desiredVersion: want.get(name) ?? '',
      agents: count,
      current,
      byVersion,
      byMethod,
      refused,
      ...(refusal ? { refusal } : {}),
    });
  }
  return rows;
}
