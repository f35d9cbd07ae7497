import { Logger } from '../../common/platform/log';
import { parseHostNode } from '../host';
import { Host } from '../types';
import { Watcher, WatcherListener } from '../ports';
import { ZkSessionManager } from '../zk/manager';

export interface ZookeeperWatcherOptions {
  readonly zk: ZkSessionManager;
  /** The service's own `server` ensemble, or the service-config source's. */
  readonly servers: string;
  readonly path: string;
  readonly log: Logger;
}

/**
 * Hosts from the children of a ZooKeeper path: `{"address","port"}` or Nerve's `{"host","port","name",...}`.
 * Only changed children are re-read (see ZkChildrenWatch); a malformed node is skipped and named by its path.
 */
export class ZookeeperWatcher implements Watcher {
  private watch: { stop(): void } | undefined;
  /** Parsed hosts by the exact bytes they came from, so a report re-parses only the nodes that changed. */
  private parsed = new Map<string, { data: Buffer; host?: Host; error?: string }>();

  constructor(private readonly options: ZookeeperWatcherOptions) {}

  start(listener: WatcherListener): void {
    const { zk, servers, path, log } = this.options;
    this.watch = zk.watchChildren(
      servers,
      path,
      {
        children: (data, changedAt) => {
          const next = new Map<string, { data: Buffer; host?: Host; error?: string }>();
          const hosts: Host[] = [];
          const problems: { where: string; message: string }[] = [];
          for (const [child, buf] of data) {
            let entry = this.parsed.get(child);
            if (!entry || !entry.data.equals(buf)) {
              try {
                entry = { data: buf, host: parseHostNode(child, buf) };
              } catch (err) {
                entry = { data: buf, error: (err as Error).message };
              }
            }
            next.set(child, entry);
            if (entry.host) hosts.push(entry.host);
            else
              problems.push({
                where: `zookeeper ${path}/${child}`,
                message: `malformed host node skipped: ${entry.error}`,
              });
          }
          this.parsed = next;
          listener.hosts({ hosts, problems, changedAt: changedAt ? { at: changedAt, kind: 'source' } : undefined });
        },
        missing: () => {
          this.parsed.clear();
          listener.hosts({ hosts: [], problems: [{ where: `zookeeper ${path}`, message: 'path does not exist' }] });
        },
        unavailable: (reason) => listener.unavailable(reason),
      },
      log.child({ component: 'watcher-zookeeper', path }),
    );
  }

  async stop(): Promise<void> {
    this.watch?.stop();
    this.watch = undefined;
  }
}
