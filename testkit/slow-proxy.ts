import * as net from 'node:net';

/** A TCP proxy on 127.0.0.1 that delays what it relays; see startSlowProxy. */
export interface SlowProxy {
  readonly port: number;
  /** "127.0.0.1:PORT": give this to a client instead of the target's address. */
  readonly connectString: string;
  /** Changes the delays for data relayed from now on (replies: target → client; requests: client → target). */
  setDelay(replyDelayMs: number, requestDelayMs?: number): void;
  /** Cuts every relayed connection (both ends), as a network fault would; the proxy keeps accepting. */
  cutAll(): void;
  /** Stops accepting, cuts every connection and resolves once the listener is closed. */
  close(): Promise<void>;
}

/**
 * A small TCP proxy in front of a real server (ZooKeeper, a control plane) that holds every chunk for a while
 * before passing it on, in order. A slow ensemble or a busy event loop on either side looks exactly like this,
 * and it shows start-up races that a fast loopback hides. Used by tests and benchmarks.
 *
 *   const p = await startSlowProxy(zk.port, { replyDelayMs: 300 });
 *   … connect to p.connectString …
 *   await p.close();
 */
export async function startSlowProxy(
  targetPort: number,
  opts: { replyDelayMs: number; requestDelayMs?: number; targetHost?: string },
): Promise<SlowProxy> {
  let replyDelay = opts.replyDelayMs;
  let requestDelay = opts.requestDelayMs ?? 0;
  const sockets = new Set<net.Socket>();
  let closing = false;
  const timers = new Set<NodeJS.Timeout>();

  /** Relays `from` → `to`, each chunk (and the end) after `delay()` ms; equal delays keep the order. */
  const relay = (from: net.Socket, to: net.Socket, delay: () => number) => {
    const later = (fn: () => void) => {
      const ms = delay();
      if (ms <= 0) return fn();
      const t = setTimeout(() => {
        timers.delete(t);
        fn();
      }, ms);
      timers.add(t);
    };
    from.on('data', (chunk) => later(() => !to.destroyed && to.write(chunk)));
    from.on('end', () => later(() => !to.destroyed && to.end()));
  };

  const server = net.createServer((client) => {
    const upstream = net.connect({ port: targetPort, host: opts.targetHost ?? '127.0.0.1' });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      s.on('close', () => {
        sockets.delete(s);
        // A connection that closes on one side closes on the other too, after the data still held has gone.
        const other = s === client ? upstream : client;
        if (closing) return void other.destroy();
        const ms = s === client ? requestDelay : replyDelay;
        const t = setTimeout(() => {
          timers.delete(t);
          other.destroy();
        }, ms + 1);
        timers.add(t);
      });
    }
    relay(client, upstream, () => requestDelay);
    relay(upstream, client, () => replyDelay);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  const cutAll = () => {
    for (const s of sockets) s.destroy();
  };
  return {
    port,
    connectString: `127.0.0.1:${port}`,
    setDelay: (reply, request) => {
      replyDelay = reply;
      if (request !== undefined) requestDelay = request;
    },
    cutAll,
    close: async () => {
      closing = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const t of timers) clearTimeout(t);
      cutAll();
      timers.clear();
      await closed;
    },
  };
}
