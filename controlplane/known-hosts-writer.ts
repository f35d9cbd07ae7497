import { Clock, Timer, unrefTimer } from '../common/platform/clock';
import { errorMessage } from '../common/platform/errors';
import { Logger } from '../common/platform/log';
import { encodeKnownHosts, hostsText, KnownHostsError, storableName } from './known-hosts';
import { Host, RawServiceConfig } from './types';

/** Where the writer puts a record: one node (or file) per service. */
export interface KnownHostsSink {
  put(service: string, data: Buffer): Promise<void>;
}

interface Pending {
  readonly hosts: readonly Host[];
  readonly config?: RawServiceConfig;
  readonly removedAt?: number;
}

/** What makes two records equal: the config they name and their hosts. */
function recordText(hostsJson: string, config: RawServiceConfig | undefined): string {
  return config ? `${config.format}\n${config.origin}\n${config.text}\n${hostsJson}` : hostsJson;
}

/**
 * Coalesces the known-hosts writes of discovery: `save` only records the latest hosts of a service (constant time,
 * whatever the size of the list), and a flush at most every `intervalMs` encodes and writes each changed service
 * once. A host change at 10,000 servers therefore costs the push path nothing; the JSON, the gzip and the write
 * happen here, later. A record that did not change since it was stored or loaded is not written again.
 */
export class KnownHostsWriter {
  private readonly pending = new Map<string, Pending>();
  /** What is stored per service (recordText), so an unchanged record is not written again. */
  private readonly stored = new Map<string, string>();
  private readonly refused = new Set<string>();
  private timer: Timer | undefined;
  private lastFlush = -Infinity;
  private flushing: Promise<void> | undefined;
  private closed = false;
  /** Writes done (for tests and the bench). */
  writes = 0;

  constructor(
    private readonly sink: KnownHostsSink,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly intervalMs = 1000,
  ) {}

  /** What a load found stored (a record equal to it is not rewritten). */
  loaded(service: string, hosts: readonly Host[], config?: RawServiceConfig): void {
    this.stored.set(service, recordText(hostsText(hosts), config));
  }

  save(service: string, hosts: readonly Host[], config?: RawServiceConfig): void {
    this.queue(service, { hosts, ...(config ? { config } : {}) });
  }

  /** Marks the service's record removed, keeping its last hosts (replicas serving an older revision use them). */
  remove(service: string, lastHosts: readonly Host[]): void {
    this.queue(service, { hosts: lastHosts, removedAt: this.clock.now() });
  }

  private queue(service: string, p: Pending): void {
    if (this.closed) return;
    if (!storableName(service)) {
      if (!this.refused.has(service)) this.log.warn({ service }, 'service name cannot name a record; hosts not stored');
      this.refused.add(service);
      return;
    }
    this.pending.set(service, p);
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== undefined || this.flushing || this.pending.size === 0 || this.closed) return;
    const wait = Math.max(0, this.lastFlush + this.intervalMs - this.clock.now());
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.flushing = this.flush().finally(() => {
        this.flushing = undefined;
        this.schedule();
      });
    }, wait);
    unrefTimer(this.timer);
  }

  /** Writes every pending record once; a failed write stays pending (unless a newer one replaced it). */
  async flush(): Promise<void> {
    this.lastFlush = this.clock.now();
    const batch = [...this.pending];
    this.pending.clear();
    for (const [service, p] of batch) {
      const text = hostsText(p.hosts);
      const record = recordText(text, p.config);
      if (p.removedAt === undefined && this.stored.get(service) === record) continue;
      try {
        const extras = { text, ...(p.config ? { config: p.config } : {}) };
        const data = await encodeKnownHosts(service, p.hosts, this.clock.now(), { ...extras, removedAt: p.removedAt });
        await this.sink.put(service, data);
        this.writes++;
        this.stored.set(service, p.removedAt === undefined ? record : '');
      } catch (err) {
        if (err instanceof KnownHostsError) {
          this.log.error({ service, err: err.message }, 'known hosts not stored');
          continue;
        }
        this.log.warn({ service, err: errorMessage(err) }, 'storing known hosts failed; retrying');
        if (!this.pending.has(service)) this.pending.set(service, p);
      }
    }
  }

  /** Flushes what is pending, waiting at most `waitMs`; later saves are ignored. */
  async close(waitMs = 2000): Promise<void> {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    const last = (async () => {
      await this.flushing;
      if (this.pending.size > 0) await this.flush();
    })();
    this.closed = true;
    let t: Timer | undefined;
    await Promise.race([last, new Promise<void>((r) => (t = this.clock.setTimeout(r, waitMs)))]);
    this.clock.clearTimeout(t);
  }
}
