import { randomBytes } from 'node:crypto';
import { Clock } from '../../common/platform/clock';
import { SourceChange } from './source-changes';

/** The value at quantile `q` of sorted `xs` (nearest rank); 0 for none. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * The change trace: every change discovery publishes (source-changes.ts) gets an identity, and is followed to every
 * agent that should run it, until each has applied it (ACKed a state that has it), refused it, or the change is too
 * old to keep. Which changes a state brings an agent is decided by content: the state has the service at the
 * change's version, or at the version of a later change of the same service (changes coalesced into one push, or
 * folded together on the agent, are each applied by it). Pushes carry the ids and agents echo them with the time
 * each waited on them; the control plane times an apply by its own clock (the ACK's arrival less the agent's
 * "applied so long ago"), so no two hosts' clocks are compared. The source time is the source's clock (ZooKeeper's,
 * a file system's): one later than this control plane saw the change is replaced (source-changes.ts, 'skewed').
 */

export type ChangeAgentState = 'pending' | 'applied' | 'refused';

/** One agent's part in one change. */
export interface ChangeMark {
  state: ChangeAgentState;
  /** How it was applied ('runtime', 'reload', 'nothing'), or the refusal's message. */
  method?: string;
  message?: string;
  /** Source → applied (ms), and of it the time it waited on the agent (received → applied; its own clock). */
  propagationMs?: number;
  queuedMs?: number;
}

export interface TracedChange extends SourceChange {
  readonly id: string;
  readonly seq: number;
  /** Per agent that should run it. Emptied of applied agents' details once the change is old (see `detailed`). */
  readonly marks: Map<string, ChangeMark>;
  expected: number;
  applied: number;
  refused: number;
  /**
   * Source → applied (ms) of every agent that applied it while the change is among the `detailed` most recent; then
   * its quantiles are kept instead (`frozen`), and a later apply only adds to `applied` and the maximum.
   */
  readonly times: number[];
  frozen?: { p50: number; p99: number; max: number };
  /** The slowest agents that applied it (slowest first). */
  slowest: { node: string; ms: number }[];
}

export interface ChangeTraceOptions {
  readonly clock: Clock;
  /** Changes kept (the oldest beyond are forgotten). */
  readonly keep?: number;
  /** The most recent changes keep every agent's detail; older ones only pending and refused agents'. */
  readonly detailed?: number;
  /** Called for every (change, agent) applied: the propagation histogram's sample. */
  readonly onApplied?: (method: string, seconds: number) => void;
}

const SLOWEST = 3;

/** What an ACK says of the changes it covers. */
export interface AppliedReport {
  readonly method: string;
  /** When the apply ended, on this control plane's clock. */
  readonly at: number;
  /** Per change id the agent named: how long it waited on the agent (ms). */
  readonly queued: ReadonlyMap<string, number>;
  /** Services of the state the agent refused (left out), with HAProxy's message. */
  readonly refusals: ReadonlyMap<string, string>;
}

export class ChangeTrace {
  private seq = 0;
  /** Ids are unique across restarts of this control plane and between replicas: a random prefix per process. */
  private readonly prefix = randomBytes(3).toString('hex');
  private readonly changes = new Map<string, TracedChange>();
  private readonly byService = new Map<string, TracedChange[]>();
  /** Per agent, the changes it should run and has not applied. */
  private readonly pending = new Map<string, Set<TracedChange>>();
  /**
   * Per agent, changes it was connected for but not sent when they were recorded (a rollout releases the revision
   * that has them wave by wave, later): it should run one once it is sent a state that brings it (`released`).
   */
  private readonly held = new Map<string, Set<TracedChange>>();
  /** The agents each change was held back from, to forget it there once it is no longer followed. */
  private readonly heldBy = new Map<TracedChange, string[]>();
  private readonly keep: number;
  private readonly detailed: number;
  /** Changes before this seq hold no applied agent's detail. */
  private undetailed = 1;

  constructor(private readonly opts: ChangeTraceOptions) {
    this.keep = opts.keep ?? 1000;
    this.detailed = opts.detailed ?? 50;
  }

  /**
   * Gives each change an id; `expected(change)` names the agents that should run it, `later(change)` those that
   * may be sent it later (followed from then on, if it is among the `detailed` most recent).
   */
  record(
    changes: readonly SourceChange[],
    expected: (change: SourceChange) => Iterable<string>,
    later: (change: SourceChange) => Iterable<string> = () => [],
  ): TracedChange[] {
    const out: TracedChange[] = [];
    for (const c of changes) {
      const seq = ++this.seq;
      const t: TracedChange = {
        ...c,
        id: `${this.prefix}-${seq}`,
        seq,
        marks: new Map(),
        expected: 0,
        applied: 0,
        refused: 0,
        times: [],
        slowest: [],
      };
      for (const node of expected(c)) {
        t.marks.set(node, { state: 'pending' });
        t.expected++;
        let set = this.pending.get(node);
        if (!set) this.pending.set(node, (set = new Set()));
        set.add(t);
      }
      const heldBy: string[] = [];
      for (const node of later(c)) {
        if (t.marks.has(node)) continue;
        let set = this.held.get(node);
        if (!set) this.held.set(node, (set = new Set()));
        set.add(t);
        heldBy.push(node);
      }
      if (heldBy.length > 0) this.heldBy.set(t, heldBy);
      this.changes.set(t.id, t);
      const list = this.byService.get(c.service);
      if (list) list.push(t);
      else this.byService.set(c.service, [t]);
      out.push(t);
    }
    this.trim();
    return out;
  }

  /**
   * `node` is sent a state with these resources: the changes it was held back from that the state brings (at their
   * version, or at a later change's of the service) become changes it should run.
   */
  released(node: string, resources: ReadonlyMap<string, string>): void {
    const held = this.held.get(node);
    if (!held) return;
    for (const c of held) {
      const version = resources.get(c.service) ?? '';
      if (!(this.byService.get(c.service) ?? []).some((l) => l.seq >= c.seq && l.version === version)) continue;
      held.delete(c);
      c.marks.set(node, { state: 'pending' });
      c.expected++;
      let set = this.pending.get(node);
      if (!set) this.pending.set(node, (set = new Set()));
      set.add(c);
    }
    if (held.size === 0) this.held.delete(node);
  }

  /** The changes `node` has not applied that a state with these resources (service → version) brings it. */
  covered(node: string, resources: ReadonlyMap<string, string>): TracedChange[] {
    const mine = this.pending.get(node);
    if (!mine || mine.size === 0) return [];
    const services = new Set<string>();
    for (const c of mine) services.add(c.service);
    const out: TracedChange[] = [];
    for (const service of services) {
      const list = this.byService.get(service) ?? [];
      const version = resources.get(service) ?? '';
      let upTo = -1;
      for (let i = list.length - 1; i >= 0; i--)
        if (list[i]!.version === version) {
          upTo = list[i]!.seq;
          break;
        }
      for (const c of list) if (c.seq <= upTo && mine.has(c)) out.push(c);
    }
    return out.sort((a, b) => a.seq - b.seq);
  }

  /** `node` ACKed a state with `resources`: the changes it brings are applied (or refused, for a service left out). */
  applied(node: string, resources: ReadonlyMap<string, string>, report: AppliedReport): void {
    for (const c of this.covered(node, resources)) {
      const refusal = report.refusals.get(c.service);
      if (refusal !== undefined) {
        this.mark(c, node, { state: 'refused', message: refusal });
        continue;
      }
      const ms = Math.max(0, report.at - c.sourceTime.at);
      const queued = report.queued.get(c.id);
      this.mark(c, node, {
        state: 'applied',
        method: report.method,
        propagationMs: ms,
        queuedMs: queued === undefined ? undefined : Math.min(queued, ms),
      });
      this.opts.onApplied?.(report.method, ms / 1000);
    }
  }

  /** `node` NACKed a state with `resources`: the changes it would have brought are refused, with the reason. */
  refused(node: string, resources: ReadonlyMap<string, string>, reason: string): void {
    for (const c of this.covered(node, resources)) this.mark(c, node, { state: 'refused', message: reason });
  }

  get(id: string): TracedChange | undefined {
    return this.changes.get(id);
  }

  /** The most recent changes, newest first. */
  recent(limit: number): TracedChange[] {
    const all = [...this.changes.values()];
    return all.slice(Math.max(0, all.length - limit)).reverse();
  }

  /**
   * How old (ms, from its source time) the oldest change is that some connected agent that should run it has not
   * applied nor refused; 0 when none. Agents that are disconnected are behind too (ListChanges names them) but do
   * not age this: a host that is down is its own alert.
   */
  oldestUnappliedMs(connected: (node: string) => boolean): number {
    let oldest: number | undefined;
    for (const [node, set] of this.pending) {
      if (!connected(node)) continue;
      for (const c of set)
        if (c.marks.get(node)?.state === 'pending' && (oldest === undefined || c.sourceTime.at < oldest))
          oldest = c.sourceTime.at;
    }
    return oldest === undefined ? 0 : Math.max(0, this.opts.clock.now() - oldest);
  }

  private mark(c: TracedChange, node: string, m: ChangeMark): void {
    const was = c.marks.get(node);
    if (!was || was.state === 'applied') return;
    if (was.state === 'refused') c.refused--;
    c.marks.set(node, m);
    if (m.state === 'refused') {
      c.refused++;
      return;
    }
    c.applied++;
    this.pending.get(node)?.delete(c);
    if (c.frozen) c.frozen.max = Math.max(c.frozen.max, m.propagationMs!);
    else c.times.push(m.propagationMs!);
    c.slowest.push({ node, ms: m.propagationMs! });
    c.slowest.sort((a, b) => b.ms - a.ms);
    if (c.slowest.length > SLOWEST) c.slowest.length = SLOWEST;
    if (c.frozen) c.marks.delete(node);
  }

  /** `c` is no longer followed to the agents it was held back from. */
  private unhold(c: TracedChange): void {
    for (const node of this.heldBy.get(c) ?? []) {
      const set = this.held.get(node);
      set?.delete(c);
      if (set?.size === 0) this.held.delete(node);
    }
    this.heldBy.delete(c);
  }

  /** Forgets the oldest changes beyond `keep`; drops applied agents' details beyond `detailed`. */
  private trim(): void {
    for (const c of this.changes.values()) {
      if (this.changes.size <= this.keep) break;
      this.changes.delete(c.id);
      const list = this.byService.get(c.service)!;
      list.splice(list.indexOf(c), 1);
      if (list.length === 0) this.byService.delete(c.service);
      for (const node of c.marks.keys()) this.pending.get(node)?.delete(c);
      this.unhold(c);
    }
    for (const [node, set] of this.pending) if (set.size === 0) this.pending.delete(node);
    for (; this.undetailed <= this.seq - this.detailed; this.undetailed++) {
      const old = this.changes.get(`${this.prefix}-${this.undetailed}`);
      if (!old) continue;
      // No longer among the `detailed` most recent: not followed to agents sent it only from now on.
      this.unhold(old);
      for (const [node, m] of old.marks) if (m.state === 'applied') old.marks.delete(node);
      const sorted = old.times.sort((a, b) => a - b);
      old.frozen = { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted[sorted.length - 1] ?? 0 };
      old.times.length = 0;
    }
  }
}
