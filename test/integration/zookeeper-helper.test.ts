import zookeeper from 'node-zookeeper-client';
import { startZooKeeper } from '../../testkit/zookeeper';

test('the ZooKeeper helper starts a real server that takes writes and restarts with its data', async () => {
  const zk = await startZooKeeper();
  try {
    const write = (path: string) =>
      new Promise<void>((resolve, reject) => {
        const c = zookeeper.createClient(zk.connectString, { sessionTimeout: 2000 });
        c.once('connected', () =>
          c.create(path, Buffer.from('x'), (err) => {
            c.close();
            if (err) reject(err);
            else resolve();
          }),
        );
        c.connect();
      });
    const exists = () =>
      new Promise<boolean>((resolve, reject) => {
        const c = zookeeper.createClient(zk.connectString, { sessionTimeout: 2000 });
        c.once('connected', () =>
          c.exists('/probe', (err, stat) => {
            c.close();
            if (err) reject(err);
            else resolve(!!stat);
          }),
        );
        c.connect();
      });
    await write('/probe');
    await zk.kill();
    await zk.restart();
    expect(await exists()).toBe(true);
  } finally {
    await zk.stop();
  }
});
