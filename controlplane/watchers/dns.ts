import { promises as dns } from 'node:dns';
import { Logger } from '../../common/log';
import { DEFAULT_WEIGHT } from '../../common/types';
import { addressPortName } from '../host';
import { DnsBackend, Host, Watcher, WatcherListener } from '../types';

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

interface Resolved {
  hosts: Host[];
  problems: { where: string; message: string }[];
  ttlMs: number;
}

/**
 * Hosts from DNS: A/AAAA records of `{"name","port"}` backends and the targets of SRV records (`{"srv": name}`,
 * port and weight from the SRV answer). A name without records is reported (and skipped); a timeout or server
 * failure makes the watcher unavailable, which keeps the previous hosts.
 */
export class DnsWatcher implements Watcher {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastKey: string | undefined;
  private readonly resolver: dns.Resolver;

  constructor(private readonly options: DnsWatcherOptions) {
    this.resolver = new dns.Resolver({ timeout: options.timeoutMs ?? 1000, tries: 2 });
    if (options.nameservers.length > 0) this.resolver.setServers([...options.nameservers]);
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
          listener.hosts({ hosts: r.hosts, problems: r.problems });
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
    this.resolver.cancel();
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
      this.records(() => this.resolver.resolve4(name, { ttl: true })),
      this.records(() => this.resolver.resolve6(name, { ttl: true })),
    ]);
    const answers = [...v4, ...v6];
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
    const srv = await this.records(() => this.resolver.resolveSrv(name));
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

  /** Runs a lookup; "no such records" is an empty answer, anything else (timeout, refused, SERVFAIL) throws. */
  private async records<T>(lookup: () => Promise<T[]>): Promise<T[]> {
    try {
      return await lookup();
    } catch (err) {
      if (NO_RECORDS.has((err as NodeJS.ErrnoException).code ?? '')) return [];
      throw err;
    }
  }
}

function clamp(v: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, Number.isFinite(v) ? v : min));
}
