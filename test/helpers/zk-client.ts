import zookeeper, { Client } from 'node-zookeeper-client';

/** A small promise wrapper over node-zookeeper-client for tests and benchmarks that write to ZooKeeper. */
export interface ZkTestClient {
  readonly client: Client;
  /** Creates the node (and its parents) or sets its data. */
  put(path: string, data: string | Buffer): Promise<void>;
  remove(path: string): Promise<void>;
  /** Removes a node and everything under it; a missing node is fine. */
  removeTree(path: string): Promise<void>;
  close(): void;
}

export async function connectZk(connectString: string, sessionTimeout = 5000): Promise<ZkTestClient> {
  const client = zookeeper.createClient(connectString, { sessionTimeout, spinDelay: 100, retries: 0 });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ZooKeeper connection to ${connectString}`)), 10_000);
    client.once('connected', () => {
      clearTimeout(t);
      resolve();
    });
    client.connect();
  });
  const cb =
    <T>(resolve: (v: T) => void, reject: (e: unknown) => void) =>
    (err: unknown, v?: T) =>
      err ? reject(err) : resolve(v as T);
  const exists = (p: string) =>
    new Promise<boolean>((resolve, reject) => client.exists(p, (err, stat) => (err ? reject(err) : resolve(!!stat))));
  const children = (p: string) =>
    new Promise<string[]>((resolve, reject) => client.getChildren(p, (err, c) => (err ? reject(err) : resolve(c))));
  const api: ZkTestClient = {
    client,
    put: async (p, data) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
      if (await exists(p)) {
        await new Promise((resolve, reject) => client.setData(p, buf, cb(resolve, reject)));
      } else {
        const parent = p.slice(0, p.lastIndexOf('/'));
        if (parent) await new Promise((resolve, reject) => client.mkdirp(parent, cb(resolve, reject)));
        await new Promise((resolve, reject) => client.create(p, buf, cb(resolve, reject)));
      }
    },
    remove: (p) => new Promise<void>((resolve, reject) => client.remove(p, (err) => (err ? reject(err) : resolve()))),
    removeTree: async (p) => {
      if (!(await exists(p))) return;
      for (const c of await children(p)) await api.removeTree(`${p}/${c}`);
      await api.remove(p);
    },
    close: () => client.close(),
  };
  return api;
}
