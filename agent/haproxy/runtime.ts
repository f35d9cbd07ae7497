import * as net from 'node:net';
import { RuntimeApiError } from '../../common/errors';
import { parseServersState, RuntimeState } from './servers-state';

/** The HAProxy runtime API (stats socket), one command per connection. */
export interface RuntimeApi {
  /** Sends one command and returns HAProxy's whole reply. */
  command(cmd: string): Promise<string>;
  /** `show servers state [backend]`: every backend, or only the one named. */
  serversState(backend?: string): Promise<RuntimeState>;
  /** The pid of the process answering on the socket. */
  pid(): Promise<number>;
}

export class StatsSocketClient implements RuntimeApi {
  constructor(
    private readonly socketPath: string,
    private readonly timeoutMs = 5000,
  ) {}

  command(cmd: string): Promise<string> {
    if (/[\n\r;]/.test(cmd))
      return Promise.reject(
        new RuntimeApiError(`refusing runtime command with a newline or ';': ${JSON.stringify(cmd)}`),
      );
    return new Promise((resolve, reject) => {
      const sock = net.connect(this.socketPath);
      const chunks: Buffer[] = [];
      const timer = setTimeout(() => sock.destroy(new Error(`no reply within ${this.timeoutMs} ms`)), this.timeoutMs);
      sock.on('connect', () => sock.end(`${cmd}\n`)); // half-close after writing: HAProxy answers and closes
      sock.on('data', (c) => chunks.push(c));
      sock.on('error', (err) => {
        clearTimeout(timer);
        reject(new RuntimeApiError(`runtime API ${this.socketPath}: "${cmd}": ${err.message}`, { cause: err }));
      });
      sock.on('close', (hadError) => {
        clearTimeout(timer);
        if (!hadError) resolve(Buffer.concat(chunks).toString('utf8'));
      });
    });
  }

  async serversState(backend?: string): Promise<RuntimeState> {
    return parseServersState(await this.command(backend ? `show servers state ${backend}` : 'show servers state'));
  }

  async pid(): Promise<number> {
    const info = await this.command('show info');
    const m = /^Pid: (\d+)$/m.exec(info);
    if (!m) throw new RuntimeApiError(`show info: no Pid line in ${JSON.stringify(info.slice(0, 200))}`);
    return Number(m[1]);
  }
}
