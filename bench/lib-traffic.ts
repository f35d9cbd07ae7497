/**
 * Real HTTP backends and fresh-connection clients (testkit) on a worker thread. A benchmark that times the
 * agent must not share its event loop with thousands of requests per second: in production the agent is its own
 * process and traffic only passes through HAProxy. Measured here: with backends and clients on the agent's
 * thread, churn's apply p50 doubled.
 */
import * as path from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { Backend, startBackend } from '../testkit/backends';
import { LoadResult, startLoad } from '../testkit/load';

export interface BackendSpec {
  readonly name: string;
  readonly host: string;
}

export interface BackendInfo extends BackendSpec {
  readonly port: number;
}

/** A load target: a port on 127.0.0.1, or "host:port". */
export type LoadTarget = number | string;

type ToWorker =
  { type: 'load'; ports: LoadTarget[]; clients: number; pauseMs: number } | { type: 'stop' } | { type: 'close' };
type FromWorker =
  | { type: 'ready'; backends: BackendInfo[] }
  | { type: 'loading' }
  | { type: 'stopped'; results: LoadResult[] }
  | { type: 'closed' }
  | { type: 'error'; message: string };

export interface Traffic {
  readonly backends: readonly BackendInfo[];
  /**
   * Starts `clients` fresh-connection clients on each port (127.0.0.1) or "host:port", each pausing `pauseMs` after
   * every reply (0: none).
   */
  startLoad(ports: readonly LoadTarget[], clients: number, pauseMs?: number): Promise<void>;
  /** Stops the clients; one result per port. */
  stopLoad(): Promise<LoadResult[]>;
  /** Stops clients and backends and ends the worker. */
  close(): Promise<void>;
}

/** Starts the backends on a worker thread; resolves once they listen. */
export async function startTraffic(specs: readonly BackendSpec[]): Promise<Traffic> {
  const worker = new Worker(path.join(__dirname, 'lib-traffic.js'), { workerData: { role: 'traffic', specs } });
  const waiting: ((m: FromWorker) => void)[] = [];
  let failure: Error | undefined;
  worker.on('message', (m: FromWorker) => waiting.shift()?.(m));
  worker.on('error', (err) => {
    failure = err;
    for (const w of waiting.splice(0)) w({ type: 'error', message: err.message });
  });
  const next = <T extends FromWorker['type']>(type: T, msg?: ToWorker): Promise<Extract<FromWorker, { type: T }>> =>
    new Promise((resolve, reject) => {
      if (failure) return reject(failure);
      waiting.push((m) =>
        m.type === type
          ? resolve(m as Extract<FromWorker, { type: T }>)
          : reject(new Error(`traffic worker: ${m.type === 'error' ? m.message : `expected ${type}, got ${m.type}`}`)),
      );
      if (msg) worker.postMessage(msg);
    });
  const ready = await next('ready');
  let closed = false;
  return {
    backends: ready.backends,
    startLoad: async (ports, clients, pauseMs = 0) =>
      void (await next('loading', { type: 'load', ports: [...ports], clients, pauseMs })),
    stopLoad: async () => (await next('stopped', { type: 'stop' })).results,
    close: async () => {
      if (closed) return;
      closed = true;
      await next('closed', { type: 'close' }).catch(() => undefined);
      await worker.terminate();
    },
  };
}

/** The worker side. */
async function runWorker(specs: readonly BackendSpec[]): Promise<void> {
  const port = parentPort!;
  const backends: Backend[] = [];
  for (const s of specs) backends.push(await startBackend(s.name, s.host));
  let loads: ReturnType<typeof startLoad>[] = [];
  const send = (m: FromWorker) => port.postMessage(m);
  send({ type: 'ready', backends: backends.map((b) => ({ name: b.name, host: b.host, port: b.port })) });
  port.on('message', (m: ToWorker) => {
    void (async () => {
      try {
        if (m.type === 'load') {
          loads.push(
            ...m.ports.map((p) =>
              typeof p === 'number'
                ? startLoad(p, m.clients, undefined, m.pauseMs)
                : startLoad(
                    Number(p.slice(p.lastIndexOf(':') + 1)),
                    m.clients,
                    p.slice(0, p.lastIndexOf(':')),
                    m.pauseMs,
                  ),
            ),
          );
          send({ type: 'loading' });
        } else if (m.type === 'stop') {
          const results = await Promise.all(loads.map((l) => l.stop()));
          loads = [];
          send({ type: 'stopped', results });
        } else {
          await Promise.all(loads.map((l) => l.stop()));
          await Promise.all(backends.map((b) => b.close()));
          send({ type: 'closed' });
        }
      } catch (err) {
        send({ type: 'error', message: (err as Error).message });
      }
    })();
  });
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === 'traffic') {
  void runWorker((workerData as { specs: BackendSpec[] }).specs);
}
