import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';

/** A page served next to /metrics: its content type and body. */
export interface Page {
  readonly type: string;
  readonly body: string;
  readonly headers?: Readonly<Record<string, string>>;
}
export type Route = () => Promise<Page> | Page;

export interface HttpOptions {
  /** More pages by path (the control plane's status page). */
  readonly routes?: Readonly<Record<string, Route>>;
  /** Refuses a request (a status and a sentence) or lets it through (undefined); every path, /metrics included. */
  readonly authorize?: (req: http.IncomingMessage) => { status: number; message: string } | undefined;
}

/** Serves `GET /metrics` for a prom-client registry (and `routes`) on "host:port"; resolves with the bound port. */
export async function serveMetrics(
  registry: Registry,
  listen: string,
  opts: HttpOptions = {},
): Promise<{ port: number; close: () => Promise<void> }> {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(listen.slice(i + 1));
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]!;
    const route =
      path === '/metrics'
        ? async (): Promise<Page> => ({ type: String(registry.contentType), body: await registry.metrics() })
        : opts.routes?.[path];
    if (!route || req.method !== 'GET') {
      res
        .writeHead(404, { 'content-type': 'text/plain' })
        .end(
          `${req.method} ${path.slice(0, 100)}: not here; see ${['/metrics', ...Object.keys(opts.routes ?? {})].join(', ')}\n`,
        );
      return;
    }
    const refused = opts.authorize?.(req);
    if (refused) {
      res
        .writeHead(refused.status, {
          'content-type': 'text/plain',
          ...(refused.status === 401 ? { 'www-authenticate': 'Bearer' } : {}),
        })
        .end(`${refused.message}\n`);
      return;
    }
    Promise.resolve()
      .then(route)
      .then(
        ({ type, body, headers }) =>
          res
            .writeHead(200, {
              ...headers,
              'content-type': type,
              'cache-control': 'no-store',
              'x-content-type-options': 'nosniff',
            })
            .end(body),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // a scrape in flight (or a kept-alive scraper) must not hold up a stop
      }),
  };
}

/** "set server web/a state maint" → "set_state_maint"; "add server web/c …" → "add_server". */
export function commandKind(command: string): string {
  const w = command.split(' ');
  if (w[0] === 'set' && w[1] === 'server') return `set_${w[3] ?? ''}${w[3] === 'state' ? `_${w[4]}` : ''}`;
  return `${w[0]}_${w[1]}`;
}

/**
 * The standard process and Node.js metrics (prom-client's defaults), minus three gauges it names with a `_total`
 * suffix (nodejs_active_handles_total, …), which `promtool check metrics` rejects: Prometheus reserves `_total` for
 * counters. The same figures remain as their per-type breakdowns (nodejs_active_handles{type}, …).
 */
export function collectStandardMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'])
    registry.removeSingleMetric(name);
}
