import zookeeper, { ACL, Client, Exception, Stat } from 'node-zookeeper-client';
import { Clock, systemClock } from '../../common/platform/clock';
import { errorMessage, ProxyMgrError } from '../../common/platform/errors';
import { Logger } from '../../common/platform/log';
import { decodeKnownHosts, KnownHostsStore, LoadedKnownHosts } from '../known-hosts';
import { KnownHostsWriter } from '../known-hosts-writer';
import { Host, RawServiceConfig } from '../types';
import { ensurePath, secureNodes } from './acl';
import { call, call2, ignore, zkCode } from './calls';
import { ZkDigest } from './digest';
import { ZkLease, ZkSessionManager } from './manager';

export interface ZkKnownHostsOptions {
  readonly zk: ZkSessionManager;
  /** The service-config ensemble. */
  readonly servers: string;
  /** e.g. /proxymgr/known_hosts: one child per service. */
  readonly path: string;
  /** `controlplane.zk_digest_file`: records get its ACLs, and a record others could have written is not believed. */
  readonly digest?: ZkDigest;
  readonly log: Logger;
  readonly clock?: Clock;
  /** How long load() waits for a connection before it gives up. */
  readonly loadTimeoutMs: number;
  /** Records of services removed longer ago than this are deleted at load. */
  readonly retainRemovedMs?: number;
  readonly writeIntervalMs?: number;
}

const DAY_MS = 24 * 3600 * 1000;

/** Last known hosts in ZooKeeper, one gzip-compressed node per service (see KnownHostsStore). */
export class ZkKnownHostsStore implements KnownHostsStore {
  private lease: ZkLease | undefined;
  private readonly writer: KnownHostsWriter;
  private readonly acls: ACL[];
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly lastHosts = new Map<string, readonly Host[]>();
  private pathReady = false;
  /** Records whose ACL this replica checked (a record from before zk_digest_file gets its ACLs on its first write). */
  private readonly secured = new Set<string>();

  constructor(private readonly opts: ZkKnownHostsOptions) {
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log.child({ component: 'known-hosts', zk_path: opts.path });
    this.acls = opts.digest
      ? opts.digest.acls()
      : [new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('world', 'anyone'))];
    this.writer = new KnownHostsWriter(
      { put: (service, data) => this.put(service, data) },
      this.clock,
      this.log,
      opts.writeIntervalMs,
    );
  }

  /** The writer's count of writes done (tests, bench). */
  get writes(): number {
    return this.writer.writes;
  }

  async load(): Promise<LoadedKnownHosts> {
    const client = await this.connected();
    const { path, digest } = this.opts;
    const names = await call<string[]>((cb) => client.getChildren(path, cb)).catch((err: unknown) => {
      if (zkCode(err) === Exception.NO_NODE) return [] as string[];
      throw err;
    });
    const hosts = new Map<string, readonly Host[]>();
    const configs = new Map<string, RawServiceConfig>();
    const removed = new Map<string, number>();
    const problems: { where: string; message: string }[] = [];
    const now = this.clock.now();
    await Promise.all(
      names.map(async (name) => {
        const where = `zookeeper ${path}/${name}`;
        try {
          const [data] = await call2<Buffer, Stat>((cb) => client.getData(`${path}/${name}`, cb));
          if (digest) {
            const [acls] = await call2<ACL[], Stat>((cb) => client.getACL(`${path}/${name}`, cb));
            if (digest.isOpen(acls))
              throw new ProxyMgrError(
                'HOST_INVALID',
                `${where}: writable by others (its ACL is not the control plane's); not believed`,
              );
          }
          const r = await decodeKnownHosts(data ?? Buffer.alloc(0), where, name);
          problems.push(...r.problems);
          if (r.removedAt !== undefined && now - r.removedAt > (this.opts.retainRemovedMs ?? 7 * DAY_MS)) {
            await call<void>((cb) => client.remove(`${path}/${name}`, -1, cb)).catch(() => undefined);
            return;
          }
          hosts.set(name, r.hosts);
          if (r.config && r.removedAt === undefined) configs.set(name, r.config);
          if (r.removedAt !== undefined) removed.set(name, r.removedAt);
          this.lastHosts.set(name, r.hosts);
          this.writer.loaded(name, r.hosts, r.removedAt === undefined ? r.config : undefined);
        } catch (err) {
          if (zkCode(err) === Exception.NO_NODE) return;
          // A record that cannot be believed is left out; one that could not be read (connection lost, a timeout)
          // fails the load, which is tried again: its service must not start without its hosts and config.
          if (!(err instanceof ProxyMgrError)) throw err;
          problems.push({ where, message: errorMessage(err) });
        }
      }),
    );
    for (const p of problems) this.log.warn({ where: p.where }, `known hosts: ${p.message}`);
    return { hosts, configs, removed, problems };
  }

  save(service: string, hosts: readonly Host[], config?: RawServiceConfig): void {
    this.lastHosts.set(service, hosts);
    this.writer.save(service, hosts, config);
  }

  remove(service: string): void {
    const last = this.lastHosts.get(service);
    if (last) this.writer.remove(service, last);
  }

  async close(): Promise<void> {
    await this.writer.close();
    this.lease?.release();
    this.lease = undefined;
  }

  private async put(service: string, data: Buffer): Promise<void> {
    const client = this.session().current;
    if (!client) throw new ProxyMgrError('ZK_DISCONNECTED', 'ZooKeeper is not connected');
    const node = `${this.opts.path}/${service}`;
    if (!this.pathReady) {
      await ensurePath(client, this.opts.path, this.acls);
      // A parent created before zk_digest_file was set would let anyone delete the records under it.
      if (this.opts.digest) await secureNodes(client, [this.opts.path], this.opts.digest, this.log);
      this.pathReady = true;
    }
    try {
      await call<Stat>((cb) => client.setData(node, data, -1, cb));
    } catch (err) {
      if (zkCode(err) !== Exception.NO_NODE) throw err;
      await call<string>((cb) => client.create(node, data, this.acls, cb)).catch(ignore(Exception.NODE_EXISTS));
    }
    if (this.opts.digest && !this.secured.has(service)) {
      await secureNodes(client, [node], this.opts.digest, this.log);
      this.secured.add(service);
    }
  }

  private session() {
    return (this.lease ??= this.opts.zk.acquire(this.opts.servers)).session;
  }

  /** The session's client once connected; rejects after loadTimeoutMs. */
  private connected(): Promise<Client> {
    const session = this.session();
    if (session.current) return Promise.resolve(session.current);
    return new Promise((resolve, reject) => {
      const timer = this.clock.setTimeout(() => {
        off();
        reject(
          new ProxyMgrError(
            'ZK_DISCONNECTED',
            `no ZooKeeper connection to ${this.opts.servers} within ${this.opts.loadTimeoutMs} ms`,
          ),
        );
      }, this.opts.loadTimeoutMs);
      const off = session.subscribe({
        connected: (client) => {
          this.clock.clearTimeout(timer);
          off();
          resolve(client);
        },
        disconnected: () => undefined,
      });
    });
  }
}
