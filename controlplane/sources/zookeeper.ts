import { Logger } from '../../common/log';
import { RawServiceConfig, ServiceConfigSource, SourceListener } from '../types';
import { ZkChildrenWatch } from '../zk/children-watch';
import { ZkLease, ZkSessionManager } from '../zk/manager';

export interface ZookeeperSourceOptions {
  readonly zk: ZkSessionManager;
  /** "host:port,host:port" */
  readonly servers: string;
  /** e.g. /service_config; each child is one service, named after the node. */
  readonly path: string;
  readonly log: Logger;
}

/** Service configs from the children of a ZooKeeper path (the original ProxyMgr layout), followed live. */
export class ZookeeperSource implements ServiceConfigSource {
  private lease: ZkLease | undefined;
  private watch: ZkChildrenWatch | undefined;

  constructor(private readonly options: ZookeeperSourceOptions) {}

  start(listener: SourceListener): void {
    const { zk, servers, path, log } = this.options;
    this.lease = zk.acquire(servers);
    this.watch = new ZkChildrenWatch(
      this.lease.session,
      path,
      {
        children: (data) => {
          const configs = new Map<string, RawServiceConfig>();
          for (const [name, buf] of data) {
            configs.set(name, { name, text: buf.toString('utf8'), origin: `zookeeper ${path}/${name}`, format: 'json' });
          }
          listener.configs(configs);
        },
        missing: () => listener.unavailable(`${path} does not exist in zookeeper ${servers}`),
        unavailable: (reason) => listener.unavailable(reason),
      },
      log.child({ component: 'source-zookeeper', path }),
    );
    this.watch.start();
  }

  async stop(): Promise<void> {
    this.watch?.stop();
    this.lease?.release();
    this.watch = undefined;
    this.lease = undefined;
  }
}
