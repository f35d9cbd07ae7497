import { Logger } from '../../common/platform/log';
import { ensembleOf } from '../../common/config/zk-ensembles';
import { ChildrenListener, ZkChildrenWatch } from './children-watch';
import { ZkDigest } from './digest';
import { ZkSession, ZkSessionOptions } from './session';

/** Credentials that belong to one ensemble: sent to a session only when every server it names is one of `servers`. */
export interface ZkCredential {
  readonly servers: string;
  readonly digest: ZkDigest;
}

export interface ZkLease {
  readonly session: ZkSession;
  /** Gives the session back; the last release closes it. */
  release(): void;
}

/**
 * One session per ensemble: sources and watchers that name the same ensemble (in any order of its servers)
 * share one connection and one set of watches, as the original ProxyMgr did. Credentials are per ensemble: a
 * session gets the digest of the one credential whose servers include every server it connects to, and none when
 * there is no such credential (node-zookeeper-client sends its auth info to whatever server it was given).
 */
export class ZkSessionManager {
  private readonly sessions = new Map<string, { session: ZkSession; refs: number }>();
  /** Sessions released and still closing: closeAll waits for them too. */
  private readonly closing = new Set<Promise<void>>();

  constructor(
    private readonly options: Omit<ZkSessionOptions, 'log' | 'digest'> & {
      log: Logger;
      readonly credentials?: readonly ZkCredential[];
    },
  ) {}

  /** The digest a session to `connectString` authenticates with, if one belongs to that ensemble. */
  digestFor(connectString: string): ZkDigest | undefined {
    const match = ensembleOf(connectString, this.options.credentials ?? []);
    return match.ok ? match.ensemble.digest : undefined;
  }

  acquire(connectString: string): ZkLease {
    const key = normalizeEnsemble(connectString);
    let entry = this.sessions.get(key);
    if (!entry) {
      const { credentials: _credentials, ...options } = this.options;
      const digest = this.digestFor(key);
      entry = { session: new ZkSession(key, { ...options, ...(digest ? { digest } : {}) }), refs: 0 };
      this.sessions.set(key, entry);
      entry.session.start();
    }
    entry.refs++;
    const e = entry;
    let released = false;
    return {
      session: e.session,
      release: () => {
        if (released) return;
        released = true;
        if (--e.refs === 0) {
          const closed = e.session.close();
          this.closing.add(closed);
          void closed.finally(() => this.closing.delete(closed));
          if (this.sessions.get(key) === e) this.sessions.delete(key);
        }
      },
    };
  }

  /** Follows the children of `path` on the shared session of `connectString`; stop() also gives the session back. */
  watchChildren(connectString: string, path: string, listener: ChildrenListener, log: Logger): { stop(): void } {
    const lease = this.acquire(connectString);
    const watch = new ZkChildrenWatch(lease.session, path, listener, log);
    watch.start();
    return {
      stop: () => {
        watch.stop();
        lease.release();
      },
    };
  }

  /** Number of open sessions (for tests and metrics). */
  get size(): number {
    return this.sessions.size;
  }

  /** Closes every session; resolves once their connections are closed. */
  async closeAll(): Promise<void> {
    const open = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all([...open.map((e) => e.session.close()), ...this.closing]);
  }
}

/** "b:2181, a:2181" and "a:2181,b:2181" are one ensemble. */
export function normalizeEnsemble(connectString: string): string {
  const [hosts, ...chroot] = connectString.split('/');
  const sorted = (hosts ?? '')
    .split(',')
    .map((h) => h.trim())
    .filter((h) => h !== '')
    .sort();
  return sorted.join(',') + (chroot.length ? '/' + chroot.join('/') : '');
}
