import { promises as dns } from 'node:dns';
import { Logger } from '../../common/platform/log';
import { DEFAULT_WEIGHT } from '../../common/protocol/types';
import { addressPortName } from '../host';
import { DnsBackend, Host } from '../types';
import { Watcher, WatcherListener } from '../ports';

export interface DnsWatcherOptions {
  readonly backends: readonly DnsBackend[];
  /** "ip" or "ip:port"; empty = the system's resolvers. */
  readonly nameservers: readonly string[];
  /** Answers are re-resolved after their TTL clamped to [minTtlMs, maxTtlMs] (SRV answers: after minTtlMs). */
  readonly minTtlMs: number;
  readonly maxTtlMs: number;
  readonly timeoutMs?: number;
  readonly log: Logger;
}

/** Codes that say "this name has no such records" — an answer, not an outage. */
const NO_RECORDS = new Set(['ENODATA', 'ENOTFOUND', 'NOTFOUND', 'NODATA']);

/**
 * One question's answer: its records, or none — with `doubt` when "none" came from a nameserver listed after one
 * that failed for this question, which makes it no answer (see DnsWatcher.ask).
 */
interface Answer<T> {
  readonly records: T[];
  readonly doubt?: string;
}

interface Resolved {
  hosts: Host[];
  problems: { where: string; message: string }[];
  ttlMs: number;
}

/**
 * Hosts from DNS: A/AAAA records of `{"name","port"}` backends and the targets of SRV records (`{"srv": name}`,
 * port and weight from the SRV answer). A name without records is reported (and skipped); a timeout or server
 * failure makes the watcher unavailable, which keeps the previous hosts. Nameservers are asked in their order, each
 * one after the previous failed (see ask).
 */
export class DnsWatcher implements Watcher {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastKey: string | undefined;
  /** One resolver per nameserver, in their configured order (the system's when none are configured). */
  private readonly resolvers: readonly { readonly server: string; readonly resolver: dns.Resolver }[];

  constructor(private readonly options: DnsWatcherOptions) {
    const resolver = (server?: string) => {
      const r = new dns.Resolver({ timeout: options.timeoutMs ?? 1000, tries: 2 });
      if (server !== undefined) r.setServers([server]);
      return r;
    };
    const servers = options.nameservers.length > 0 ? options.nameservers : resolver().getServers();
    this.resolvers =
      servers.length > 0
        ? servers.map((server) => ({ server, resolver: resolver(server) }))
        : [{ server: 'the system resolver', resolver: resolver() }];
  }

  start(listener: WatcherListener): void {
    const loop = async () => {
      if (this.stopped) return;
      let next = this.options.minTtlMs;
      try {
        const r = await this.resolveAll();
        next = clamp(r.ttlMs, this.options.minTtlMs, this.options.maxTtlMs);
        const key = JSON.stringify(r.hosts) + JSON.stringify(r.problems);
        if (!this.stopped && key !== this.lastKey) {
          this.lastKey = key;
          listener.hosts({ hosts: r.hosts, problems: r.problems, changedAt: { at: Date.now(), kind: 'arrival' } });
        }
      } catch (err) {
        const reason = `dns lookup failed: ${(err as Error).message}`;
        if (!this.stopped && this.lastKey !== reason) listener.unavailable(reason);
        this.lastKey = reason;
      }
      if (!this.stopped) this.timer = setTimeout(() => void loop(), next);
    };
    void loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const r of this.resolvers) r.resolver.cancel();
  }

  private async resolveAll(): Promise<Resolved> {
    const parts = await Promise.all(
      this.options.backends.map((b) =>
        b.kind === 'a' ? this.resolveA(b.name, b.port, DEFAULT_WEIGHT) : this.resolveSrv(b.name),
      ),
    );
    const seen = new Set<string>();
    const hosts: Host[] = [];
    for (const h of parts.flatMap((p) => p.hosts)) {
      if (seen.has(h.name)) continue;
      seen.add(h.name);
      hosts.push(h);
    }
    hosts.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return {
      hosts,
      problems: parts.flatMap((p) => p.problems),
      ttlMs: Math.min(...parts.map((p) => p.ttlMs), this.options.maxTtlMs),
    };
  }

  private async resolveA(name: string, port: number, weight: number): Promise<Resolved> {
    const [v4, v6] = await Promise.all([
      this.ask((r) => r.resolve4(name, { ttl: true })),
      this.ask((r) => r.resolve6(name, { ttl: true })),
    ]);
    const answers = [...v4.records, ...v6.records];
    // A name with addresses of one family is not held back by a doubtful "none" of the other (a fallback asked for
    // AAAA while the primary fails): only a name left with no address at all must be an answer to be reported.
    const doubt = v4.doubt ?? v6.doubt;
    if (answers.length === 0 && doubt !== undefined) throw new Error(`${name}: ${doubt}`);
    if (answers.length === 0)
      return {
        hosts: [],
        problems: [{ where: `dns ${name}`, message: 'no A or AAAA records' }],
        ttlMs: this.options.minTtlMs,
      };
    return {
      hosts: answers.map((a) => ({
        name: addressPortName(a.address, port),
        address: a.address,
        port,
        weight,
        options: [],
      })),
      problems: [],
      ttlMs: Math.min(...answers.map((a) => a.ttl * 1000)),
    };
  }

  private async resolveSrv(name: string): Promise<Resolved> {
    const answer = await this.ask((r) => r.resolveSrv(name));
    const srv = answer.records;
    if (srv.length === 0 && answer.doubt !== undefined) throw new Error(`${name}: ${answer.doubt}`);
    if (srv.length === 0)
      return {
        hosts: [],
        problems: [{ where: `dns ${name}`, message: 'no SRV records' }],
        ttlMs: this.options.minTtlMs,
      };
    // Only the best (lowest) priority is used, as SRV clients do; SRV weight 0 means "no preference", not "off".
    const best = Math.min(...srv.map((s) => s.priority));
    const targets = await Promise.all(
      srv
        .filter((s) => s.priority === best)
        .map((s) => this.resolveA(s.name, s.port, Math.min(256, Math.max(1, s.weight)))),
    );
    return {
      hosts: targets.flatMap((t) => t.hosts),
      problems: targets.flatMap((t) =>
        t.problems.map((p) => ({ ...p, message: `${p.message} (SRV target of ${name})` })),
      ),
      ttlMs: Math.min(this.options.minTtlMs, ...targets.map((t) => t.ttlMs)),
    };
  }

  /**
   * Asks the nameservers one after the other, in their configured order, as a stub resolver does: one that fails
   * (timeout, refused, SERVFAIL) passes the question to the next, and records count whichever nameserver gives them.
   * "No such records" (NXDOMAIN, NODATA) is an answer only from a nameserver none before which failed for this
   * question: a fallback that knows nothing of a name while the primary cannot answer is often another view of DNS
   * (a public resolver behind an internal zone), and believing it would take the service to no hosts on every agent.
   * Such a "none" comes back with its doubt, for the caller to treat as a failed lookup (the service keeps its hosts).
   * Throws the first nameserver's error when every one failed.
   */
  private async ask<T>(lookup: (resolver: dns.Resolver) => Promise<T[]>): Promise<Answer<T>> {
    let failed: { server: string; err: Error } | undefined;
    for (const { server, resolver } of this.resolvers) {
      let records: T[];
      try {
        records = await lookup(resolver);
      } catch (err) {
        if (this.stopped) throw err; // cancelled: no question goes to the next nameserver after stop()
        if (!NO_RECORDS.has((err as NodeJS.ErrnoException).code ?? '')) {
          failed ??= { server, err: err as Error };
          continue;
        }
        records = [];
      }
      if (records.length > 0 || failed === undefined) return { records };
      const why = `${server} answered no records, not believed while ${failed.server} (listed before it) fails: ${failed.err.message}`;
      return { records, doubt: why };
    }
    throw failed!.err;
  }
}

function clamp(v: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, Number.isFinite(v) ? v : min));
}
