import { Client } from 'node-zookeeper-client';
import { silentLogger } from '../../common/platform/log';
import { ZkSession } from '../../controlplane/zk/session';
import { eventually } from '../../testkit/net';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';

jest.setTimeout(60_000);

describe('ZkSession against a real ZooKeeper', () => {
  let zk: ZooKeeper;
  beforeAll(async () => {
    zk = await startZooKeeper();
  });
  afterAll(async () => {
    await zk?.stop();
  });

  test('a reply the client library cannot parse drops the connection instead of the process; the session resumes; the request it answered fails', async () => {
    const session = new ZkSession(zk.connectString, { sessionTimeoutMs: 4000, log: silentLogger });
    const seen: string[] = [];
    let client: Client | undefined;
    session.subscribe({
      connected: (c, { newSession }) => {
        client = c;
        seen.push(newSession ? 'new session' : 'resumed');
      },
      disconnected: () => seen.push('disconnected'),
    });
    session.start();
    try {
      expect(await eventually(() => seen.includes('new session'))).toBe(true);
      const sessionId = client!.getSessionId().toString('hex');
      // A 4-byte frame where a reply header (16 bytes) belongs: node-zookeeper-client throws from its socket handler.
      const manager = (client as unknown as { connectionManager: { onSocketData(b: Buffer): void } }).connectionManager;
      expect(() => manager.onSocketData(Buffer.from([0, 0, 0, 4, 0, 0, 0, 1]))).not.toThrow();
      expect(await eventually(() => seen.join() === 'new session,disconnected,resumed')).toBe(true);
      expect(client!.getSessionId().toString('hex')).toBe(sessionId);

      // A reply to a request in flight with an error code the library does not know ("Unknown code: …", the crash
      // seen when ZooKeeper came back): that request fails with CONNECTION_LOSS instead of never answering.
      const live = (
        client as unknown as {
          connectionManager: {
            onSocketData(b: Buffer): void;
            pendingQueue: { request: { header: { xid: number } } }[];
          };
        }
      ).connectionManager;
      const answer = new Promise<string>((resolve) =>
        client!.exists('/zookeeper', (err) => resolve(err ? err.name : 'no error')),
      );
      const xid = live.pendingQueue[0]!.request.header.xid;
      const frame = Buffer.alloc(20);
      frame.writeInt32BE(16, 0);
      frame.writeInt32BE(xid, 4);
      frame.writeInt32BE(472317952, 16);
      expect(() => live.onSocketData(frame)).not.toThrow();
      expect(await answer).toBe('CONNECTION_LOSS');
      expect(await eventually(() => seen.join() === 'new session,disconnected,resumed,disconnected,resumed')).toBe(
        true,
      );
    } finally {
      await session.close();
    }
  });

  test('a closed session whose close request goes unanswered still lets go of its connection', async () => {
    const session = new ZkSession(zk.connectString, { sessionTimeoutMs: 10_000, log: silentLogger });
    let client: Client | undefined;
    session.subscribe({ connected: (c) => (client = c), disconnected: () => undefined });
    session.start();
    expect(await eventually(() => client !== undefined)).toBe(true);
    const toZk = () =>
      (process as unknown as { _getActiveHandles(): { remotePort?: number; destroyed?: boolean }[] })
        ._getActiveHandles()
        .filter((h) => h.remotePort === zk.port && !h.destroyed).length;
    expect(toZk()).toBe(1);
    // The close request never reaches the server (as when a client is closed mid-handshake or between attempts).
    const socket = (client as unknown as { connectionManager: { socket: { write(b: Buffer): boolean } } })
      .connectionManager.socket;
    socket.write = () => true;
    await session.close();
    // Without a reply the server would hold the connection until the 10 s session expires.
    expect(await eventually(() => toZk() === 0, 3000)).toBe(true);
  });
});
