import zookeeper, { Client, State } from 'node-zookeeper-client';
import { Logger } from '../../common/platform/log';
import { backoffMs } from '../../common/platform/backoff';
import { Clock, systemClock, Timer } from '../../common/platform/clock';
import { ZkDigest } from './digest';

/** The parts of node-zookeeper-client's (untyped) ConnectionManager that the code below touches. */
interface ConnectionManager {
  state: number;
  socket?: { destroy(): void; destroyed?: boolean; once(event: 'close', fn: () => void): unknown };
  pendingBuffer?: Buffer | null;
  pendingQueue?: { callback?: (err: Error) => void }[];
  onSocketData(buffer: Buffer): void;
}

let repliesGuarded = false;

/** The library's own CONNECTION_LOSS error (its `Exception.create` is not in the typings). */
const connectionLoss = () =>
  (zookeeper.Exception as unknown as { create(code: number): Error }).create(zookeeper.Exception.CONNECTION_LOSS);

/**
 * node-zookeeper-client parses replies inside its socket 'data' handler, so a reply it cannot make sense of throws out
 * of an event handler and kills the process ("Unknown code: …"; alexguan/node-zookeeper-client#23, #70, open for
 * years). Seen here when a client that had not finished its handshake was closed (its close request takes xid 0,
 * and the connect response, read as a reply header with xid 0, yields a garbage error code): a control plane died
 * when ZooKeeper came back from an outage. The guard does what the library does itself for a reply out of order —
 * drop the socket: a closing client then just closes, a live one reconnects and resumes its session.
 */
function guardReplyParsing(log: Logger): void {
  if (repliesGuarded) return;
  repliesGuarded = true;
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a file inside the package (not an exported module, no typings)
  const proto = (require('node-zookeeper-client/lib/ConnectionManager') as { prototype: ConnectionManager }).prototype;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with .call() on each connection
  const parse = proto.onSocketData;
  proto.onSocketData = function (this: ConnectionManager, buffer: Buffer) {
    const head = this.pendingQueue?.[0];
    try {
      parse.call(this, buffer);
    } catch (err) {
      log.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'unparsable ZooKeeper reply; dropping the connection',
      );
      this.pendingBuffer = null;
      this.socket?.destroy(); // fails every other pending request with CONNECTION_LOSS
      // The request whose reply did not parse was already taken off the queue: fail it the same way, or its caller
      // would wait forever.
      if (head && this.pendingQueue?.[0] !== head) head.callback?.(connectionLoss());
    }
  };
}

/** node-zookeeper-client's connection states (ConnectionManager.STATES). */
const CLOSING = -1;
const CLOSED = -2;
/** How long a closed client may take to finish its close handshake before its socket is cut. */
const CLOSE_GRACE_MS = 1000;

/**
 * Closes a client for good. The library's close is a request queued to the server; a client closed mid-handshake
 * or between reconnect attempts can miss it and keep a socket to ZooKeeper open forever (seen: a stopped control
 * plane that never exited). After a grace period its socket is destroyed in the CLOSING state, which the library
 * ends in CLOSED without reconnecting.
 */
function abandon(client: Client): Promise<void> {
  client.removeAllListeners();
  client.close();
  const cm = (client as unknown as { connectionManager?: ConnectionManager }).connectionManager;
  const socket = cm?.socket;
  // Resolves once the socket is closed (the server answered the close, or the grace ran out and it was cut).
  const closed = new Promise<void>((resolve) => {
    if (!socket || socket.destroyed) return resolve();
    socket.once('close', () => resolve());
    setTimeout(resolve, CLOSE_GRACE_MS + 500).unref(); // never wait longer than the cut below
  });
  setTimeout(() => {
    if (!cm || cm.state === CLOSED) return;
    cm.state = CLOSING;
    cm.socket?.destroy();
  }, CLOSE_GRACE_MS).unref();
  return closed;
}

export interface ZkSessionOptions {
  /** Requested session timeout; the server clamps it (2..20 ticks). */
  readonly sessionTimeoutMs: number;
  /**
   * Within a session the client library reconnects by itself, waiting a random 0..spinDelayMs between rounds over
   * the ensemble (jitter, and it keeps the session and its watches).
   */
  readonly spinDelayMs?: number;
  /** A new session (after expiry, or when none could be opened) waits with exponential backoff and jitter. */
  readonly backoffInitialMs?: number;
  readonly backoffMaxMs?: number;
  /** A client that never connected within this long is replaced (next server list round, new backoff step). */
  readonly connectTimeoutMs?: number;
  /**
   * Disconnected this long (default 2 × session timeout) means the session is gone even if the server never said
   * so (e.g. an ensemble rebuilt with an older zxid refuses the old session forever): open a fresh one.
   */
  readonly giveUpSessionAfterMs?: number;
  readonly log: Logger;
  /**
   * The credentials of this session's ensemble (ZkSessionManager picks them; never another ensemble's): every client
   * of the session authenticates with them before its first request (the client library re-sends them on every
   * reconnect; a new session gets a new client, added again).
   */
  readonly digest?: ZkDigest;
  readonly clock?: Clock;
  readonly random?: () => number;
  /** For tests: how a client is made. */
  readonly createClient?: (
    connectString: string,
    options: { sessionTimeout: number; spinDelay: number; retries: number },
  ) => Client;
}

export interface ZkSessionListener {
  /** Connected; `newSession` is true for the first connection of every session (nothing is watched yet). */
  connected(client: Client, info: { readonly newSession: boolean }): void;
  /** The connection or the session is gone; watches may have missed events and must be resynced. */
  disconnected(reason: string): void;
}

export type ZkSessionState = 'connecting' | 'connected' | 'disconnected' | 'closed';

/**
 * One ZooKeeper session for one ensemble, shared by every source and watcher that uses the ensemble. Listeners
 * hear `connected` after every (re)connection — they re-arm their one-shot watches and resync in full — and
 * `disconnected` when the connection drops or the session expires; an expired session is replaced by a new one.
 */
export class ZkSession {
  private client: Client | undefined;
  private generation = 0;
  private connectedOnce = false;
  private attempts = 0;
  private timer: Timer | undefined;
  private lostTimer: Timer | undefined;
  private stateValue: ZkSessionState = 'connecting';
  private readonly listeners = new Set<ZkSessionListener>();
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly log: Logger;

  constructor(
    readonly connectString: string,
    private readonly options: ZkSessionOptions,
  ) {
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.log = options.log.child({ component: 'zk-session', ensemble: connectString });
    guardReplyParsing(options.log);
  }

  get state(): ZkSessionState {
    return this.stateValue;
  }

  /** The live client while connected. */
  get current(): Client | undefined {
    return this.stateValue === 'connected' ? this.client : undefined;
  }

  start(): void {
    if (this.client || this.stateValue === 'closed') return;
    this.open();
  }

  /** Adds a listener; if the session is connected it hears `connected` at once. Returns the unsubscribe. */
  subscribe(listener: ZkSessionListener): () => void {
    this.listeners.add(listener);
    if (this.stateValue === 'connected' && this.client) listener.connected(this.client, { newSession: true });
    return () => this.listeners.delete(listener);
  }

  /** Closes the session; resolves once its connection to ZooKeeper is closed (at most about a second). */
  close(): Promise<void> {
    this.stateValue = 'closed';
    this.clearTimers();
    this.generation++;
    const closing = this.client ? abandon(this.client) : Promise.resolve();
    this.client = undefined;
    this.listeners.clear();
    return closing;
  }

  private open(): void {
    const gen = ++this.generation;
    const make = this.options.createClient ?? ((cs, o) => zookeeper.createClient(cs, o));
    const client = make(this.connectString, {
      sessionTimeout: this.options.sessionTimeoutMs,
      spinDelay: this.options.spinDelayMs ?? 1000,
      retries: 0,
    });
    if (this.options.digest) client.addAuthInfo('digest', this.options.digest.authInfo());
    this.client = client;
    this.connectedOnce = false;
    this.stateValue = 'connecting';
    client.on('state', (s: State) => {
      if (gen === this.generation) this.onState(client, s);
    });
    const connectTimeout = this.options.connectTimeoutMs ?? Math.max(2000, this.options.sessionTimeoutMs);
    this.timer = this.clock.setTimeout(() => {
      if (gen === this.generation && !this.connectedOnce)
        this.replace(`no connection to ${this.connectString} within ${connectTimeout} ms`);
    }, connectTimeout);
    client.connect();
  }

  private onState(client: Client, s: State): void {
    if (s === State.SYNC_CONNECTED || s === State.CONNECTED_READ_ONLY) {
      const newSession = !this.connectedOnce;
      this.connectedOnce = true;
      this.attempts = 0;
      this.clearTimers();
      this.stateValue = 'connected';
      this.log.info({ newSession, sessionTimeoutMs: client.getSessionTimeout() }, 'zookeeper connected');
      for (const l of [...this.listeners]) l.connected(client, { newSession });
    } else if (s === State.DISCONNECTED) {
      if (this.stateValue !== 'connected') return;
      this.stateValue = 'disconnected';
      this.log.warn({}, 'zookeeper connection lost; reconnecting (the session and its watches survive a short outage)');
      this.emitDisconnected('zookeeper connection lost');
      const giveUp = this.options.giveUpSessionAfterMs ?? 2 * this.options.sessionTimeoutMs;
      const gen = this.generation;
      this.lostTimer = this.clock.setTimeout(() => {
        if (gen === this.generation && this.stateValue !== 'connected')
          this.replace(`disconnected for more than ${giveUp} ms; the session cannot be resumed`);
      }, giveUp);
    } else if (s === State.EXPIRED || s === State.AUTH_FAILED) {
      const reason = s === State.EXPIRED ? 'zookeeper session expired' : 'zookeeper authentication failed';
      if (this.stateValue !== 'connected') this.emitDisconnected(reason);
      this.replace(reason);
    }
  }

  private emitDisconnected(reason: string): void {
    for (const l of [...this.listeners]) l.disconnected(reason);
  }

  /** Drops the current client and opens a new session after exponential backoff with jitter. */
  private replace(reason: string): void {
    this.clearTimers();
    const old = this.client;
    this.generation++;
    this.client = undefined;
    if (this.stateValue === 'connected') this.emitDisconnected(reason);
    this.stateValue = 'disconnected';
    if (old) void abandon(old); // closes in the background: a reconnect does not wait for the old socket
    const delay = backoffMs(this.attempts, {
      baseMs: this.options.backoffInitialMs ?? 200,
      maxMs: this.options.backoffMaxMs ?? 30_000,
      jitter: 'equal',
      random: this.random,
    });
    this.attempts++;
    this.log.warn({ reason, retryInMs: delay, attempt: this.attempts }, 'opening a new zookeeper session');
    this.timer = this.clock.setTimeout(() => {
      if (this.stateValue !== 'closed') this.open();
    }, delay);
  }

  private clearTimers(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    if (this.lostTimer !== undefined) this.clock.clearTimeout(this.lostTimer);
    this.timer = undefined;
    this.lostTimer = undefined;
  }
}
