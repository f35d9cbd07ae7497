/**
 * Paced HTTP clients through a set of proxies (bench/lib-gate.ts runs one per agent): each request on a fresh TCP
 * connection, so refused and reset connections are seen as such; every failed request is kept with its time and
 * target, so a benchmark or test can count failures per agent and per time window.
 *
 *   const load = new PacedLoad([{ ip: '127.0.0.1', port }], 40);   // 40 requests/s through each target
 *   load.failures(t0, t1, new Set([1, 2]))                         // failed requests of targets 1 and 2 in [t0, t1]
 */
import * as net from 'node:net';
import { sleep } from '../testkit/net';

export interface FailedRequest {
  /** Wall-clock ms when it ended. */
  readonly at: number;
  /** Index of the target (the agent). */
  readonly agent: number;
  /** "status 503", "ECONNREFUSED", "timeout", … */
  readonly what: string;
}

/**
 * `concurrency` clients per target, each sending at most ratePerAgent / concurrency requests a second (HTTP/1.0, a
 * fresh connection each). A 2xx status is a success; anything else (another status, an error, a timeout) a failure,
 * kept with its time and target (the first 100,000).
 */
export class PacedLoad {
  readonly ok: number[];
  readonly failed: number[];
  readonly failedLog: FailedRequest[] = [];
  private running = true;
  private readonly paused = new Set<number>();
  private readonly workers: Promise<void>[] = [];

  constructor(
    private readonly targets: readonly { readonly ip: string; readonly port: number }[],
    ratePerAgent: number,
    concurrency = 2,
  ) {
    this.ok = targets.map(() => 0);
    this.failed = targets.map(() => 0);
    const intervalMs = (1000 * concurrency) / ratePerAgent;
    targets.forEach((_, agent) => {
      for (let w = 0; w < concurrency; w++)
        this.workers.push(this.worker(agent, intervalMs, (w * intervalMs) / concurrency));
    });
  }

  private async worker(agent: number, intervalMs: number, offsetMs: number): Promise<void> {
    await sleep(offsetMs);
    while (this.running) {
      if (this.paused.has(agent)) {
        await sleep(20);
        continue;
      }
      const t = Date.now();
      const what = await this.one(agent);
      if (what === '') this.ok[agent]!++;
      else {
        this.failed[agent]!++;
        if (this.failedLog.length < 100_000) this.failedLog.push({ at: Date.now(), agent, what });
      }
      const wait = intervalMs - (Date.now() - t);
      if (wait > 0) await sleep(wait);
    }
  }

  /** One request: "" when it got a 2xx, else what went wrong. */
  private one(agent: number): Promise<string> {
    const { ip, port } = this.targets[agent]!;
    return new Promise((resolve) => {
      const sock = net.connect({ port, host: ip });
      let data = '';
      let done = false;
      const end = (what: string) => {
        if (done) return;
        done = true;
        sock.destroy();
        resolve(what);
      };
      sock.setTimeout(5000);
      sock.on('connect', () => sock.write('GET / HTTP/1.0\r\nHost: load\r\n\r\n'));
      sock.on('data', (c) => (data += c.toString()));
      sock.on('timeout', () => end('timeout'));
      sock.on('error', (err: NodeJS.ErrnoException) => end(err.code ?? err.message));
      sock.on('close', () => {
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
        end(!m ? `reply ${JSON.stringify(data.slice(0, 40))}` : m[1]!.startsWith('2') ? '' : `status ${m[1]}`);
      });
    });
  }

  /** Stops sending through agent `i` until resume(i). */
  pause(i: number): void {
    this.paused.add(i);
  }

  resume(i: number): void {
    this.paused.delete(i);
  }

  /** Failed requests in [from, to] (wall-clock ms), optionally only of some agents. */
  failures(from: number, to: number, agents?: ReadonlySet<number>): FailedRequest[] {
    return this.failedLog.filter((f) => f.at >= from && f.at <= to && (!agents || agents.has(f.agent)));
  }

  total(): number {
    return this.ok.reduce((a, b) => a + b, 0) + this.failed.reduce((a, b) => a + b, 0);
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
  }
}
