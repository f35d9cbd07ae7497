/**
 * The fanout benchmark's baseline: the least a ZooKeeper-to-gRPC fan-out can do on this machine. A bare grpc-js
 * server (the same AgentStream service, so the same simulated agents connect to it) with one ZooKeeper
 * children watch: on every watch event it re-reads the children and writes one push to every open stream at
 * once — no discovery, no coalescing, no builder, no rate limits, no per-agent bookkeeping, no logs.
 * Runs as its own child process (`fork` of this file), like the control plane it is compared with.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ChildProcess, fork } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import zookeeper from 'node-zookeeper-client';
import { AgentMessage, AgentStreamService, ControlMessage, Push } from '../common/gen/proxymgr/v1/stream';
import { DesiredState } from '../common/gen/proxymgr/v1/state';
import { trackChild } from './lib-grpc';

interface Options {
  readonly zk: string;
  /** The watched path, e.g. /services/web. */
  readonly path: string;
  readonly service: string;
  readonly port: number;
  readonly defaults: string[];
}

function runServer(opts: Options): void {
  const streams = new Set<grpc.ServerDuplexStream<AgentMessage, ControlMessage>>();
  let current: DesiredState | undefined;
  const push = (call: grpc.ServerDuplexStream<AgentMessage, ControlMessage>) => {
    if (current)
      call.write({
        push: Push.fromPartial({ version: current.version, nonce: randomBytes(8).toString('hex'), state: current }),
      });
  };

  const server = new grpc.Server({
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5000,
  });
  server.addService(AgentStreamService, {
    stream(call: grpc.ServerDuplexStream<AgentMessage, ControlMessage>) {
      call.on('data', (msg: AgentMessage) => {
        if (msg.hello) {
          streams.add(call);
          if (current && current.version !== msg.hello.runningVersion) push(call);
        }
      });
      const close = () => streams.delete(call);
      call.on('end', () => {
        close();
        call.end();
      });
      call.on('cancelled', close);
      call.on('error', close);
      call.on('close', close);
    },
  });

  const client = zookeeper.createClient(opts.zk, { sessionTimeout: 10_000, spinDelay: 100, retries: 0 });
  const read = () =>
    client.getChildren(opts.path, read, (err, names) => {
      if (err) {
        console.error(`baseline: getChildren ${opts.path}: ${String(err)}`);
        return;
      }
      const sorted = [...names].sort();
      const version = createHash('sha256').update(sorted.join('\n')).digest('hex').slice(0, 16);
      current = DesiredState.fromPartial({
        version,
        haproxy: { global: [], defaults: opts.defaults },
        services: [
          {
            name: opts.service,
            port: opts.port,
            bindAddress: '0.0.0.0',
            listenOptions: ['mode http'],
            serverOptions: [],
            servers: sorted.map((n, i) => ({ name: n, address: '127.0.0.1', port: 20000 + i, weight: 1, options: [] })),
          },
        ],
      });
      for (const s of streams) push(s);
    });
  client.once('connected', () => {
    read();
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err) throw err;
      process.send!({ type: 'listening', port });
    });
  });
  client.connect();
  process.on('disconnect', () => {
    server.forceShutdown();
    client.close();
    process.exit(0);
  });
}

if (require.main === module && process.argv[2] === 'baseline-server')
  runServer(JSON.parse(process.argv[3]!) as Options);

/** Starts the baseline server in a child process; resolves with its pid, port and a stop function. */
export async function startBaselineServer(
  opts: Options,
): Promise<{ pid: number; port: number; proc: ChildProcess; stop: () => Promise<void> }> {
  const proc = fork(__filename, ['baseline-server', JSON.stringify(opts)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  trackChild(proc);
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('baseline server: not listening after 20 s')), 20_000);
    proc.once('message', (m: { port: number }) => {
      clearTimeout(t);
      resolve(m.port);
    });
    proc.once('exit', (code) => reject(new Error(`baseline server exited with ${code}`)));
  });
  return {
    pid: proc.pid!,
    port,
    proc,
    stop: () =>
      new Promise<void>((resolve) => {
        if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
        proc.once('exit', () => resolve());
        proc.disconnect();
        setTimeout(() => proc.kill('SIGKILL'), 5000).unref();
      }),
  };
}
