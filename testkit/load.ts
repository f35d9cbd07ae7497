import * as net from 'node:net';

export interface LoadResult {
  ok: number;
  refused: number;
  reset: number;
  empty: number;
  other: number;
  errors: string[];
}

/**
 * `concurrency` clients that each open a fresh TCP connection per request, send a minimal HTTP/1.0 GET and
 * read the reply, until stop() is called: without pause, or `pauseMs` after each reply. Refused, reset and empty
 * replies are counted apart: keep-alive load generators would hide exactly these. Unpaced, each client takes about
 * a third of a core (with HAProxy and the backend): tests whose point is not a gap of a millisecond pace theirs.
 */
export function startLoad(port: number, concurrency: number, host = '127.0.0.1', pauseMs = 0) {
  const result: LoadResult = { ok: 0, refused: 0, reset: 0, empty: 0, other: 0, errors: [] };
  let running = true;
  const one = () =>
    new Promise<void>((resolve) => {
      const sock = net.connect({ port, host });
      let data = '';
      sock.setTimeout(10_000);
      sock.on('connect', () => sock.write('GET / HTTP/1.0\r\nHost: load\r\n\r\n'));
      sock.on('data', (c) => (data += c.toString()));
      sock.on('timeout', () => sock.destroy(new Error('timeout')));
      sock.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNREFUSED') result.refused++;
        else if (err.code === 'ECONNRESET' || err.code === 'EPIPE') result.reset++;
        else result.other++;
        if (result.errors.length < 20) result.errors.push(err.code ?? err.message);
        resolve();
      });
      sock.on('close', (hadError) => {
        if (hadError) return;
        if (/^HTTP\/1\.[01] 200/.test(data)) result.ok++;
        else {
          result.empty++;
          if (result.errors.length < 20) result.errors.push(`reply: ${JSON.stringify(data.slice(0, 80))}`);
        }
        resolve();
      });
    });
  const workers = Array.from({ length: concurrency }, async () => {
    while (running) {
      await one();
      if (pauseMs > 0 && running) await new Promise((r) => setTimeout(r, pauseMs));
    }
  });
  return {
    result,
    async stop(): Promise<LoadResult> {
      running = false;
      await Promise.all(workers);
      return result;
    },
  };
}
