import { Logger } from '../../common/platform/log';
import { RawServiceConfig } from '../types';
import { ServiceConfigSource, SourceListener } from '../ports';
import { ZkSessionManager } from '../zk/manager';

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
  private watch: { stop(): void } | undefined;

  constructor(private readonly options: ZookeeperSourceOptions) {}

  start(listener: SourceListener): void {
    const { zk, servers, path, log } = this.options;
    this.watch = zk.watchChildren(
      servers,
      path,
      {
        children: (data) => {
          const configs = new Map<string, RawServiceConfig>();
          for (const [name, buf] of data) {
            configs.set(name, {
              name,
              text: buf.toString('utf8'),
              origin: `zookeeper ${path}/${name}`,
              format: 'json',
            });
          }
          listener.configs(configs);
        },
        missing: () => listener.unavailable(`${path} does not exist in zookeeper ${servers}`),
        unavailable: (reason) => listener.unavailable(reason),
      },
      log.child({ component: 'source-zookeeper', path }),
    );
  }

  async stop(): Promise<void> {
    this.watch?.stop();
    this.watch = undefined;
  }
}
