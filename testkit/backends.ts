import * as http from 'node:http';
import { AddressInfo } from 'node:net';

export interface Backend {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** Requests answered so far. */
  hits(): number;
  close(): Promise<void>;
}

/** A plain HTTP server on loopback that answers every request with its own name. */
export async function startBackend(name: string, host = '127.0.0.1', port = 0): Promise<Backend> {
  let hits = 0;
  const server = http.createServer((req, res) => {
    hits++;
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'x-backend': name });
    res.end(`${name}\n`);
  });
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  return {
    name,
    host,
    port: actual,
    hits: () => hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export async function startBackends(names: string[]): Promise<Backend[]> {
  return Promise.all(names.map((n) => startBackend(n)));
}
