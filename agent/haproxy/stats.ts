import { ProxyMgrError } from '../../common/platform/errors';
import type { RuntimeApi } from '../ports';

/** Per-service counters from HAProxy's `show stat` (monotonic) and gauges (current values). */
export interface ServiceCounters {
  /** HTTP requests received (frontend req_tot; 0 for tcp services). */
  requests: number;
  /** 5xx responses sent to clients, HAProxy's own 503s included (frontend hrsp_5xx). */
  responses5xx: number;
  /** Client sessions (frontend stot): the request count of tcp services. */
  sessions: number;
  /** Failed connections to servers (backend econ). */
  connectionErrors: number;
  /** Failed or aborted server responses (backend eresp). */
  responseErrors: number;
  /** Connection retries and redispatches (backend wretr + wredis). */
  retries: number;
}

export interface ServiceGauges {
  /** Servers in the backend whose status is DOWN (maint and drain excluded: those are someone's decision). */
  serversDown: number;
  serversTotal: number;
  /** Requests waiting for a server (backend qcur). */
  queue: number;
  /**
   * The backend's average response time in ms over its last 1,024 requests (backend rtime; 0 before the first
   * request of this HAProxy process: a reload starts it again).
   */
  rtimeMs: number;
}

export interface ServiceStats {
  readonly counters: ServiceCounters;
  readonly gauges: ServiceGauges;
}

const COUNTERS: readonly (keyof ServiceCounters)[] = [
  'requests',
  'responses5xx',
  'sessions',
  'connectionErrors',
  'responseErrors',
  'retries',
];

/** Parses `show stat` (CSV with a `# pxname,svname,…` header) into per-proxy stats; unknown columns are ignored. */
export function parseShowStat(text: string): Map<string, ServiceStats> {
  const lines = text.split('\n');
  const header = lines[0]?.replace(/^#\s*/, '').split(',') ?? [];
  const col = new Map(header.map((h, i) => [h, i]));
  // An error reply or a cut one must not read as zeros (a reset, carried into the base twice).
  for (const needed of [
    'pxname',
    'svname',
    'stot',
    'econ',
    'eresp',
    'wretr',
    'wredis',
    'status',
    'qcur',
    'hrsp_5xx',
    'req_tot',
  ]) {
    if (!col.has(needed))
      throw new ProxyMgrError(
        'HAPROXY_RUNTIME',
        `show stat: no "${needed}" column in ${JSON.stringify((lines[0] ?? '').slice(0, 120))}`,
      );
  }
  const num = (row: string[], name: string) => {
    const i = col.get(name);
    const v = i === undefined ? '' : (row[i] ?? '');
    return v === '' ? 0 : Number(v) || 0;
  };
  const str = (row: string[], name: string) => {
    const i = col.get(name);
    return i === undefined ? '' : (row[i] ?? '');
  };
  const out = new Map<string, ServiceStats>();
  const entry = (name: string): ServiceStats => {
    let e = out.get(name);
    if (!e) {
      e = {
        counters: { requests: 0, responses5xx: 0, sessions: 0, connectionErrors: 0, responseErrors: 0, retries: 0 },
        gauges: { serversDown: 0, serversTotal: 0, queue: 0, rtimeMs: 0 },
      };
      out.set(name, e);
    }
    return e;
  };
  for (const line of lines.slice(1)) {
    if (line.trim() === '') continue;
    const row = line.split(',');
    if (row.length < header.length - 1)
      throw new ProxyMgrError(
        'HAPROXY_RUNTIME',
        `show stat: a row with ${row.length} of ${header.length} columns (a cut reply)`,
      );
    const px = row[0]!;
    const sv = row[1] ?? '';
    const e = entry(px);
    if (sv === 'FRONTEND') {
      e.counters.requests = num(row, 'req_tot');
      e.counters.responses5xx = num(row, 'hrsp_5xx');
      e.counters.sessions = num(row, 'stot');
    } else if (sv === 'BACKEND') {
      e.counters.connectionErrors = num(row, 'econ');
      e.counters.responseErrors = num(row, 'eresp');
      e.counters.retries = num(row, 'wretr') + num(row, 'wredis');
      e.gauges.queue = num(row, 'qcur');
      e.gauges.rtimeMs = num(row, 'rtime');
    } else {
      e.gauges.serversTotal++;
      if (/^DOWN/.test(str(row, 'status'))) e.gauges.serversDown++;
    }
  }
  return out;
}

/** How long a service HAProxy no longer runs keeps its count for a return (see ServiceStatsTracker.forgetGone). */
export const DEFAULT_FORGET_SERVICE_AFTER_MS = 3_600_000;

export interface ServiceStatsTrackerOptions {
  /** The clock (ms since the epoch); Date.now by default. */
  readonly now?: () => number;
  /** A service absent from HAProxy this long is forgotten (default DEFAULT_FORGET_SERVICE_AFTER_MS). */
  readonly forgetAfterMs?: number;
}

/**
 * Per-service counters that survive reloads: HAProxy 2.6 starts every new process at zero, so when the process
 * answering changes, what the old one had counted is carried into a per-service base. Counts the old process makes
 * after the last sample (soft-stopping connections) are not seen; sampling often (`sample` on every scrape and on a
 * timer) keeps that small.
 */
export class ServiceStatsTracker {
  private pid: number | undefined;
  private readonly base = new Map<string, ServiceCounters>();
  private readonly last = new Map<string, ServiceCounters>();
  private gauges = new Map<string, ServiceGauges>();
  /** When the last sample was folded in (ms since the epoch; 0 = never). */
  sampledAt = 0;
  /** Samples run one at a time, in order: two answers folded in out of order would read as a reset. */
  private chain: Promise<void> = Promise.resolve();
  /** When each service with a base or a last sample was last seen in HAProxy's answer (ms since the epoch). */
  private readonly seenAt = new Map<string, number>();
  private readonly now: () => number;
  private readonly forgetAfterMs: number;

  /**
   * `countsFromZero(pid)`: whether this tracker's first sample of `pid` is its zero point. True for a HAProxy taken
   * over from a previous agent: what it counted before was reported by that agent (with that agent's base for the
   * processes before it), so counting it again would put hours of traffic into one interval of the rollout gates.
   */
  constructor(
    private readonly runtime: Pick<RuntimeApi, 'command'>,
    private readonly countsFromZero: (pid: number) => boolean = () => false,
    options: ServiceStatsTrackerOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.forgetAfterMs = options.forgetAfterMs ?? DEFAULT_FORGET_SERVICE_AFTER_MS;
  }

  /** How many services the tracker holds counts for (those HAProxy runs, and those gone less than the forget age). */
  get tracked(): number {
    return new Set([...this.base.keys(), ...this.last.keys()]).size;
  }

  /** Reads `show stat` from HAProxy `pid` (the supervisor's current process) and folds it in, after any sample in progress. */
  sample(pid: number | undefined): Promise<void> {
    const next = this.chain.then(() => this.sampleNow(pid));
    this.chain = next.catch(() => undefined);
    return next;
  }

  private async sampleNow(pid: number | undefined): Promise<void> {
    if (pid === undefined) return;
    // Frontend and backend rows only (`-1 3 -1`): two rows per service, however many servers (a 2,000 × 20 HAProxy's
    // full `show stat` is some 16 MB). Servers DOWN come from the agent's `show servers state` (Agent.serverCounts).
    // Asked before the read: a reload meanwhile makes another process current, but this answer is the adopted one's.
    const fromZero = this.pid === undefined && this.countsFromZero(pid);
    const stats = parseShowStat(await this.runtime.command('show stat -1 3 -1'));
    const restarted = this.pid !== undefined && pid !== this.pid;
    if (fromZero) for (const [name, s] of stats) this.base.set(name, negated(s.counters));
    this.pid = pid;
    for (const [name, s] of stats) {
      const last = this.last.get(name);
      const base = this.base.get(name) ?? zero();
      // A new process, or a counter that went backwards (a restart the pid did not show): carry the old counts.
      if (last && (restarted || COUNTERS.some((k) => s.counters[k] < last[k])))
        for (const k of COUNTERS) base[k] += last[k];
      this.base.set(name, base);
      this.last.set(name, { ...s.counters });
    }
    // A service the new process does not run (yet): what it had counted goes into its base, so a return is not a reset.
    if (restarted) {
      for (const [name, last] of this.last) {
        if (stats.has(name)) continue;
        const base = this.base.get(name) ?? zero();
        for (const k of COUNTERS) base[k] += last[k];
        this.base.set(name, base);
        this.last.delete(name);
      }
    }
    this.gauges = new Map([...stats].map(([name, s]) => [name, s.gauges]));
    const now = this.now();
    for (const name of stats.keys()) this.seenAt.set(name, now);
    this.forgetGone(now);
    this.sampledAt = now;
  }

  /**
   * A service HAProxy has not run for `forgetAfterMs` is forgotten (its count restarts from zero if it returns, a
   * counter reset Prometheus and the rollout gates read as one): without this, every service name an agent ever ran
   * would be held for the life of the process.
   */
  private forgetGone(now: number): void {
    const cutoff = now - this.forgetAfterMs;
    for (const name of new Set([...this.base.keys(), ...this.last.keys()])) {
      if ((this.seenAt.get(name) ?? -Infinity) >= cutoff) continue;
      this.base.delete(name);
      this.last.delete(name);
      this.seenAt.delete(name);
    }
    for (const name of this.seenAt.keys()) if (!this.base.has(name) && !this.last.has(name)) this.seenAt.delete(name);
  }

  /** Monotonic counters and current gauges per service (services HAProxy runs now). */
  current(): Map<string, ServiceStats> {
    const out = new Map<string, ServiceStats>();
    for (const [name, gauges] of this.gauges) {
      const base = this.base.get(name) ?? zero();
      const last = this.last.get(name) ?? zero();
      const counters = zero();
      for (const k of COUNTERS) counters[k] = base[k] + last[k];
      out.set(name, { counters, gauges });
    }
    return out;
  }
}

function zero(): ServiceCounters {
  return { requests: 0, responses5xx: 0, sessions: 0, connectionErrors: 0, responseErrors: 0, retries: 0 };
}

/** Counters that cancel `c` (a base that makes what a process counted so far read as zero). */
function negated(c: ServiceCounters): ServiceCounters {
  const out = zero();
  for (const k of COUNTERS) out[k] = -c[k];
  return out;
}
