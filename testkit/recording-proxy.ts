import * as net from 'node:net';
import { freePort } from './net';

/** A TCP listener on 127.0.0.1 that records every byte clients send it; see startRecordingProxy. */
export interface RecordingProxy {
  readonly port: number;
  /** "127.0.0.1:PORT" */
  readonly connectString: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Everything clients sent, in arrival order, all connections together. */
  received(): Buffer;
  /** Stops accepting, cuts every connection and resolves once the listener is closed. */
  close(): Promise<void>;
}

/**
 * A "server" that keeps a copy of what clients send it: in front of a real server (`targetPort`) it relays both
 * ways, so a client gets real answers and goes on to send what it sends a real server (a ZooKeeper client its
 * credentials, which it sends only once connected); without a target it only listens and records. It stands for a
 * server an attacker runs.
 */
export async function startRecordingProxy(targetPort?: number): Promise<RecordingProxy> {
  const chunks: Buffer[] = [];
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((client) => {
    connections++;
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    client.on('data', (c: Buffer) => chunks.push(Buffer.from(c)));
    if (targetPort === undefined) return;
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort });
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => undefined);
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  const port = await freePort();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    port,
    connectString: `127.0.0.1:${port}`,
    get connections() {
      return connections;
    },
    received: () => Buffer.concat(chunks),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
