import { randomBytes } from 'node:crypto';
import { Clock } from '../../common/platform/clock';
import { clipText, plainText } from '../../common/platform/text';
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
  /** Changes kept per service: one service whose hosts flap does not push every other's out. */
  readonly perService?: number;
  /** Called for every (change, agent) applied: the propagation histogram's sample. */
  readonly onApplied?: (method: string, seconds: number) => void;
}

const SLOWEST = 3;
/** Pending changes read per agent for the oldest-unapplied age. */
const OLDEST_SCAN = 16;
/** Every pending mark is this one object (nothing changes a mark in place): a change brought to 10,000 agents costs one map entry each. */
const PENDING_MARK: ChangeMark = { state: 'pending' };
const PENDING = (): ChangeMark => PENDING_MARK;
/** A refusal's message as the trace keeps it (what ctl and the page show). */
const MAX_MESSAGE = 300;

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
  /** Per agent, the changes it should run and has neither applied nor refused. */
  private readonly pending = new Map<string, Set<TracedChange>>();
  /**
   * Per agent and service, the newest change it refused: a later ACK that brings it (a retry that succeeded) applies
   * it. Older refusals of the service are final. Kept apart from `pending` so that a service every agent refuses
   * while its hosts flap costs one entry per agent, not one per change (pushes and answers walk these sets).
   */
  private readonly refusedOpen = new Map<string, Map<string, TracedChange>>();
  /**
   * Per agent, the oldest source time of a change forgotten (beyond `keep`) while it was still pending there: the
   * oldest-unapplied age keeps counting from it until the agent has caught up with every change still followed.
   */
  private readonly lostPending = new Map<string, number>();
  private readonly keep: number;
  private readonly detailed: number;
  /** Changes before this seq hold no applied agent's detail. */
  private undetailed = 1;

  private readonly perService: number;

  constructor(private readonly opts: ChangeTraceOptions) {
    this.keep = opts.keep ?? 1000;
    this.detailed = opts.detailed ?? 50;
    this.perService = opts.perService ?? 100;
  }

  /**
   * Gives each change an id. The agents that should run one are those later sent a state that brings it
   * (`released`); `expected(change)` names any known at once (tests).
   */
  record(
    changes: readonly SourceChange[],
    expected: (change: SourceChange) => Iterable<string> = () => [],
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
        t.marks.set(node, PENDING());
        t.expected++;
        let set = this.pending.get(node);
        if (!set) this.pending.set(node, (set = new Set()));
        set.add(t);
      }
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
   * `node`, which held `before` (service → version), is sent a state with `resources`: each of the `detailed` most
   * recent changes this push brings it — the service is at the change's version or a later change's, and was not
   * so before — becomes a change it should run. Without rollouts that is the push right after discovery published
   * it; with rollouts, the push of the wave that releases it. An agent's first state (nothing held: a new agent, a
   * full resync) brings no change: it was not running the service before it. The cost is one look per recent change.
   */
  released(
    node: string,
    before: ReadonlyMap<string, string> | undefined,
    resources: ReadonlyMap<string, string>,
  ): void {
    if (!before) return;
    for (let seq = this.seq; seq > this.seq - this.detailed && seq > 0; seq--) {
      const c = this.changes.get(`${this.prefix}-${seq}`);
      if (!c || c.marks.has(node)) continue;
      const now = resources.get(c.service) ?? '';
      if (now === (before.get(c.service) ?? '')) continue; // this push does not change the service here
      if (!(this.byService.get(c.service) ?? []).some((l) => l.seq >= c.seq && l.version === now)) continue;
      c.marks.set(node, PENDING());
      c.expected++;
      let set = this.pending.get(node);
      if (!set) this.pending.set(node, (set = new Set()));
      set.add(c);
    }
  }

  /**
   * The changes `node` has not applied that a state with these resources (service → version) brings it: those
   * pending, and (`withRefused`) the newest it refused of each service.
   */
  covered(node: string, resources: ReadonlyMap<string, string>, withRefused = true): TracedChange[] {
    const mine = new Set(this.pending.get(node));
    if (withRefused) for (const c of this.refusedOpen.get(node)?.values() ?? []) mine.add(c);
    if (mine.size === 0) return [];
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
    // An agent that ACKs a state (or connects running one) with nothing followed left pending has caught up: a change
    // forgotten while it was away (lostPending) no longer ages the gauge. Without this an agent back and in sync
    // after its service flapped past the per-service cap raised the oldest-unapplied age for ever.
    if ((this.pending.get(node)?.size ?? 0) === 0) this.lostPending.delete(node);
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
    const older = (at: number) => (oldest === undefined || at < oldest ? at : oldest);
    for (const [node, set] of this.pending) {
      if (!connected(node)) continue;
      // A pending set is in the order changes were recorded (or released): the oldest are first. A few are read, so
      // a scrape costs one step per agent however far behind agents are.
      let n = 0;
      for (const c of set) {
        oldest = older(c.sourceTime.at);
        if (++n === OLDEST_SCAN) break;
      }
    }
    for (const [node, at] of this.lostPending) if (connected(node)) oldest = older(at);
    return oldest === undefined ? 0 : Math.max(0, this.opts.clock.now() - oldest);
  }

  private mark(c: TracedChange, node: string, m: ChangeMark): void {
    const was = c.marks.get(node);
    if (!was || was.state === 'applied') return;
    if (was.state === 'refused') c.refused--;
    if (m.message !== undefined) m.message = clipText(plainText(m.message), MAX_MESSAGE, true);
    c.marks.set(node, m);
    this.pending.get(node)?.delete(c);
    if (this.pending.get(node)?.size === 0) {
      this.pending.delete(node);
      this.lostPending.delete(node); // caught up with every change still followed
    }
    let open = this.refusedOpen.get(node);
    if (m.state === 'refused') {
      c.refused++;
      if (!open) this.refusedOpen.set(node, (open = new Map<string, TracedChange>()));
      if ((open.get(c.service)?.seq ?? 0) < c.seq) open.set(c.service, c);
      return;
    }
    if (open?.get(c.service) === c) open.delete(c.service);
    if (open?.size === 0) this.refusedOpen.delete(node);
    c.applied++;
    if (c.frozen) c.frozen.max = Math.max(c.frozen.max, m.propagationMs!);
    else c.times.push(m.propagationMs!);
    c.slowest.push({ node, ms: m.propagationMs! });
    c.slowest.sort((a, b) => b.ms - a.ms);
    if (c.slowest.length > SLOWEST) c.slowest.length = SLOWEST;
    if (c.frozen) c.marks.delete(node);
  }

  /** Stops following `c`; an agent it was still pending on keeps its age (lostPending). */
  private forget(c: TracedChange): void {
    this.changes.delete(c.id);
    const list = this.byService.get(c.service)!;
    list.splice(list.indexOf(c), 1);
    if (list.length === 0) this.byService.delete(c.service);
    for (const [node, m] of c.marks) {
      if (m.state === 'pending' && this.pending.get(node)?.delete(c))
        this.lostPending.set(node, Math.min(this.lostPending.get(node) ?? Infinity, c.sourceTime.at));
      const open = this.refusedOpen.get(node);
      if (open?.get(c.service) === c) open.delete(c.service);
      if (open?.size === 0) this.refusedOpen.delete(node);
    }
  }

  /** Forgets the oldest changes beyond `keep`; drops applied agents' details beyond `detailed`. */
  private trim(): void {
    for (const list of this.byService.values()) while (list.length > this.perService) this.forget(list[0]!);
    for (const c of this.changes.values()) {
      if (this.changes.size <= this.keep) break;
      this.forget(c);
    }
    for (const [node, set] of this.pending) if (set.size === 0) this.pending.delete(node);
    for (; this.undetailed <= this.seq - this.detailed; this.undetailed++) {
      const old = this.changes.get(`${this.prefix}-${this.undetailed}`);
      if (!old) continue;
      for (const [node, m] of old.marks) if (m.state === 'applied') old.marks.delete(node);
      const sorted = old.times.sort((a, b) => a - b);
      old.frozen = { p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted[sorted.length - 1] ?? 0 };
      old.times.length = 0;
    }
  }
}
