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
  const removeOnce = (p: string) =>
    new Promise<void>((resolve, reject) => client.remove(p, (err) => (err ? reject(err) : resolve())));
  const api: ZkTestClient = {
    client,
    // A write is retried (from its start) while the connection is being re-established: on 2 busy cores the
    // client's connection can drop for a moment (a missed ping), and the library fails requests meanwhile.
    put: (p, data) =>
      retryOnConnectionLoss(async () => {
        const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
        if (await exists(p)) {
          await new Promise((resolve, reject) => client.setData(p, buf, cb(resolve, reject)));
        } else {
          const parent = p.slice(0, p.lastIndexOf('/'));
          if (parent) await new Promise((resolve, reject) => client.mkdirp(parent, cb(resolve, reject)));
          await new Promise((resolve, reject) => client.create(p, buf, cb(resolve, reject))).catch((err: unknown) => {
            if (zkCode(err) !== NODE_EXISTS) throw err;
            return new Promise((resolve, reject) => client.setData(p, buf, cb(resolve, reject))); // a retried create
          });
        }
      }),
    remove: async (p) => {
      let lost = false;
      await retryOnConnectionLoss(async () => {
        try {
          await removeOnce(p);
        } catch (err) {
          lost ||= zkCode(err) === CONNECTION_LOSS;
          if (lost && zkCode(err) === NO_NODE) return; // removed by the attempt whose answer was lost
          throw err;
        }
      });
    },
    removeTree: async (p) => {
      if (!(await exists(p))) return;
      for (const c of await children(p)) await api.removeTree(`${p}/${c}`);
      await api.remove(p);
    },
    close: () => client.close(),
  };
  return api;
}

const CONNECTION_LOSS = -4;
const NO_NODE = -101;
const NODE_EXISTS = -110;

function zkCode(err: unknown): number | undefined {
  return (err as { getCode?: () => number })?.getCode?.();
}

/** Runs `op` again (up to 5 s) while it fails with CONNECTION_LOSS. */
async function retryOnConnectionLoss<T>(op: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      if (zkCode(err) !== CONNECTION_LOSS || attempt >= 25) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
