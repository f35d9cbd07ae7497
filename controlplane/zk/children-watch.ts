import zookeeper, { Client, Event } from 'node-zookeeper-client';
import { Logger } from '../../common/platform/log';
import { Clock, systemClock } from '../../common/platform/clock';
import { ZkSession } from './session';

export interface ChildrenListener {
  /**
   * The complete current children of the path with their data, after every change; `changedAt`: the newest mtime
   * (ZooKeeper's clock, ms) of a child whose data is new or changed since the last report (undefined when only
   * deletions or nothing of the data changed — ZooKeeper records no time of a deletion — and on the first report).
   */
  children(data: ReadonlyMap<string, Buffer>, changedAt?: number): void;
  /** The path itself does not exist (it is watched and followed once created). */
  missing(): void;
  /** The session is disconnected or lost: what was reported last may be stale. */
  unavailable(reason: string): void;
}

const RETRY_MS = 1000;
/**
 * A stream of changes that never lets the in-flight count reach zero still gets reported this often — once the
 * path was read in full (see `synced`); before that, nothing is reported however long the replies take.
 */
const MAX_QUIET_MS = 100;

/**
 * Follows the children of one ZooKeeper path and each child's data, with ZooKeeper's one-shot watches re-armed on
 * every read. A children event reads only the new children; a data event re-reads only that child. After every
 * (re)connection the whole path is read again, because events may have been missed meanwhile. Reports are sent
 * when the reads in flight have all come back, so a listener never sees half of a resync. The first report after
 * every (re)connection waits for the full read — the child list and the data of every child in it — however slow
 * ZooKeeper answers: a list reported while its data was still on the way looked empty (or short) to discovery,
 * which published a state without those services or servers.
 */
export class ZkChildrenWatch {
  private client: Client | undefined;
  private epoch = 0;
  private inFlight = 0;
  private dirty = false;
  private lastReport = 0;
  /** Whether the latest full read has completed: only then may a report go out with reads still in flight. */
  private synced = false;
  /** Children named by the latest full read whose data has not come back yet (undefined: the list itself has not). */
  private awaiting: Set<string> | undefined;
  private stopped = false;
  private unsubscribe: (() => void) | undefined;
  private retryTimer: unknown;
  private readonly data = new Map<string, Buffer>();
  /** The newest mtime of a child whose data changed since the last report. */
  private changedAt: number | undefined;
  /**
   * Whether a report went out: the first one's children are new to this watch, not changes — a host registered days
   * ago would time a change (a new service, a new watch) days long; it is observed instead.
   */
  private reported = false;
  private readonly dataWatchers = new Map<string, (e: Event) => void>();
  private readonly clock: Clock;

  constructor(
    private readonly session: ZkSession,
    readonly path: string,
    private readonly listener: ChildrenListener,
    private readonly log: Logger,
    clock?: Clock,
  ) {
    this.clock = clock ?? systemClock;
  }

  start(): void {
    this.unsubscribe = this.session.subscribe({
      connected: (client) => {
        this.client = client;
        this.epoch++;
        this.inFlight = 0;
        this.lastReport = this.clock.now();
        this.readChildren(true);
      },
      disconnected: (reason) => {
        this.client = undefined;
        this.epoch++;
        this.inFlight = 0;
        this.listener.unavailable(reason);
      },
    });
  }

  stop(): void {
    this.stopped = true;
    this.epoch++;
    this.unsubscribe?.();
    if (this.retryTimer !== undefined) this.clock.clearTimeout(this.retryTimer);
  }

  private readonly childrenWatcher = (): void => {
    if (!this.stopped) this.readChildren(false);
  };

  private readonly existsWatcher = (): void => {
    if (!this.stopped) this.readChildren(true);
  };

  private dataWatcher(child: string): (e: Event) => void {
    let w = this.dataWatchers.get(child);
    if (!w) {
      w = (e: Event) => {
        if (!this.stopped && e.getType() === Event.NODE_DATA_CHANGED && this.data.has(child)) this.readChild(child);
      };
      this.dataWatchers.set(child, w);
    }
    return w;
  }

  /** Reads the children (re-arming the watch); `full` re-reads every child's data too. */
  private readChildren(full: boolean): void {
    const client = this.client;
    if (!client) return;
    const epoch = this.epoch;
    if (full) {
      this.synced = false;
      this.awaiting = undefined;
    }
    this.inFlight++;
    client.getChildren(this.path, this.childrenWatcher, (err, children) => {
      if (epoch !== this.epoch) return;
      this.inFlight--;
      if (err) {
        if ((err as { code?: number }).code === zookeeper.Exception.NO_NODE) {
          this.watchExistence(client, epoch);
        } else {
          this.retryLater(`reading children of ${this.path} failed: ${String(err)}`, err);
        }
        this.maybeReport();
        return;
      }
      const present = new Set(children);
      for (const known of [...this.data.keys()]) {
        if (!present.has(known)) {
          this.data.delete(known);
          this.dataWatchers.delete(known);
          this.dirty = true;
        }
      }
      if (full) {
        this.dirty = true;
        this.awaiting = new Set(children);
      } else if (this.awaiting) {
        // A change while the full read is still completing: follow the list it names.
        for (const known of [...this.awaiting]) if (!present.has(known)) this.awaiting.delete(known);
        for (const child of children) if (!this.data.has(child)) this.awaiting.add(child);
      }
      for (const child of children) {
        if (full || !this.data.has(child)) this.readChild(child);
      }
      this.maybeReport();
    });
  }

  private readChild(child: string): void {
    const client = this.client;
    if (!client) return;
    const epoch = this.epoch;
    this.inFlight++;
    client.getData(`${this.path}/${child}`, this.dataWatcher(child), (err, data, stat) => {
      if (epoch !== this.epoch) return;
      this.inFlight--;
      if (err) {
        if ((err as { code?: number }).code === zookeeper.Exception.NO_NODE) {
          // Deleted between the children read and this one; the children watch reports the deletion too.
          this.dirty = this.data.delete(child) || this.dirty;
          this.awaiting?.delete(child);
        } else {
          // Stays awaited: the retry's full read starts the count again.
          this.retryLater(`reading ${this.path}/${child} failed: ${String(err)}`, err);
        }
      } else {
        const buf = data ?? Buffer.alloc(0);
        const was = this.data.get(child);
        if (!was || !was.equals(buf)) {
          const mtime = mtimeOf(stat);
          if (mtime !== undefined && (this.changedAt === undefined || mtime > this.changedAt)) this.changedAt = mtime;
        }
        this.data.set(child, buf);
        this.awaiting?.delete(child);
        this.dirty = true;
      }
      this.maybeReport();
    });
  }

  private watchExistence(client: Client, epoch: number): void {
    this.inFlight++;
    client.exists(this.path, this.existsWatcher, (err, stat) => {
      if (epoch !== this.epoch) return;
      this.inFlight--;
      if (err) {
        this.retryLater(`checking ${this.path} failed: ${String(err)}`, err);
      } else if (stat) {
        this.readChildren(true); // created between the two reads
      } else {
        this.data.clear();
        this.dataWatchers.clear();
        this.dirty = false;
        this.awaiting = undefined;
        this.listener.missing();
      }
    });
  }

  private maybeReport(): void {
    if (!this.dirty) return;
    if (!this.synced) {
      // Nothing before the full read is in: neither the list (awaiting undefined) nor a child's data may be missing.
      if (this.awaiting === undefined || this.awaiting.size > 0) return;
      this.synced = true;
      this.awaiting = undefined;
    } else if (this.inFlight > 0 && this.clock.now() - this.lastReport < MAX_QUIET_MS) {
      return;
    }
    const now = this.clock.now();
    this.dirty = false;
    this.lastReport = now;
    const changedAt = this.reported ? this.changedAt : undefined;
    this.changedAt = undefined;
    this.reported = true;
    this.listener.children(new Map(this.data), changedAt);
  }

  /** Errors other than a lost connection (which a reconnect resolves): try a full read again shortly. */
  private retryLater(why: string, err?: unknown): void {
    const code = (err as { code?: number } | undefined)?.code;
    if (code === zookeeper.Exception.CONNECTION_LOSS || code === zookeeper.Exception.SESSION_EXPIRED) return;
    this.log.warn({ path: this.path }, `${why}; retrying in ${RETRY_MS} ms`);
    if (this.retryTimer !== undefined) return;
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.stopped) this.readChildren(true);
    }, RETRY_MS);
  }
}

/** A node's mtime in ms since the epoch (ZooKeeper sends it as a signed 64-bit integer). */
function mtimeOf(stat: { mtime?: Buffer } | undefined): number | undefined {
  const b = stat?.mtime;
  if (!b || b.length !== 8) return undefined;
  const ms = Number(b.readBigInt64BE(0));
  return ms > 0 ? ms : undefined;
}
