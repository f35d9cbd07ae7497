import * as net from 'node:net';
import { RuntimeApiError } from '../../common/platform/errors';
import { parseServersState, RuntimeState } from './servers-state';
import type { RuntimeApi } from '../ports';

/** `serversState` and `pid` on top of `command`, for every way of reaching the runtime API. */
export abstract class RuntimeCommands implements RuntimeApi {
  abstract command(cmd: string): Promise<string>;

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

/** A command with a newline or `;` would be two commands to HAProxy. */
export function refusedCommand(cmd: string): RuntimeApiError | undefined {
  return /[\n\r;]/.test(cmd)
    ? new RuntimeApiError(`refusing runtime command with a newline or ';': ${JSON.stringify(cmd)}`)
    : undefined;
}

/**
 * One command on a connected socket: writes it, half-closes (HAProxy answers and closes) and resolves with the
 * reply. `where` names the socket in errors.
 */
export function converse(sock: net.Socket, cmd: string, where: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => sock.destroy(new Error(`no reply within ${timeoutMs} ms`)), timeoutMs);
    const send = () => sock.end(`${cmd}\n`);
    if (sock.connecting) sock.once('connect', send);
    else send();
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(new RuntimeApiError(`runtime API ${where}: "${cmd}": ${err.message}`, { cause: err }));
    });
    sock.on('close', (hadError) => {
      clearTimeout(timer);
      if (!hadError) resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

/**
 * A `stats socket` with a path. The agent renders one at `haproxy.socket_path` for operators and tools, read-only
 * by default (`haproxy.socket_level: user`); the agent's own commands go through its admin channel
 * (admin-channel.ts), which has no path.
 */
export class StatsSocketClient extends RuntimeCommands {
  constructor(
    private readonly socketPath: string,
    private readonly timeoutMs = 5000,
  ) {
    super();
  }

  command(cmd: string): Promise<string> {
    const refused = refusedCommand(cmd);
    if (refused) return Promise.reject(refused);
    return converse(net.connect(this.socketPath), cmd, this.socketPath, this.timeoutMs);
  }
}
