/**
 * Simulated agents for the fanout benchmark: real gRPC clients of the agent stream (one channel and one TCP
 * connection each, like real agents on their own hosts) that say hello, ACK every push at once and reconnect
 * with the real agent's backoff — including on RESOURCE_EXHAUSTED from the control plane's new-stream limit.
 * They run in worker processes (`fork` of this file), so the benchmark's own bookkeeping and the clients'
 * decoding never share an event loop with the control plane, nor with each other beyond a share of the CPUs.
 *
 * Timestamps are CLOCK_MONOTONIC milliseconds (monoMs), comparable with the parent's.
 */
import { ChildProcess, fork } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { reconnectDelay } from '../agent/sources/grpc';
import { AgentMessage, AgentStreamClient, ApplyMethod, ControlMessage, Hello } from '../common/gen/proxymgr/v1/stream';
import { monoMs, trackChild } from './lib-grpc';

export interface WorkerStatus {
  /** Agents whose stream is open and has delivered at least one push. */
  connected: number;
  /** Agents started and not stopped. */
  agents: number;
  /** Streams refused with RESOURCE_EXHAUSTED (the control plane's new-stream limit) so far. */
  refused: number;
  /** Streams that ended after delivering a push (the "stays connected" failures). */
  drops: number;
  /** Other failed stream attempts. */
  errors: number;
  lastError: string;
  /** Pushes received in total. */
  pushes: number;
}

type Request =
  | { type: 'connect'; address: string; ids: string[] }
  | { type: 'mark'; round: number }
  | { type: 'progress'; round: number }
  | { type: 'collect'; round: number }
  | { type: 'status' }
  | { type: 'disconnect' };
type Reply =
  | { type: 'ok' }
  | { type: 'status'; status: WorkerStatus }
  | { type: 'progress'; pending: number }
  | { type: 'collect'; acksAt: number[]; pending: number };

/** Channel options of a real agent (agent/sources/grpc.ts), plus a subchannel of its own: one TCP connection each. */
const CHANNEL_OPTIONS = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  // Without this, every client in a process to the same address shares one HTTP/2 connection.
  'grpc.use_local_subchannel_pool': 1,
};

// ---------------------------------------------------------------------------------------------- worker side

interface Round {
  readonly id: number;
  /** Agents that have not received a new version since the mark → the version they had then. */
  readonly pending: Map<SimAgent, string>;
  readonly acksAt: number[];
}

const status: WorkerStatus = { connected: 0, agents: 0, refused: 0, drops: 0, errors: 0, lastError: '', pushes: 0 };
const agents: SimAgent[] = [];
let round: Round | undefined;

class SimAgent {
  version = '';
  private connected = false;
  private stopped = false;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private client: InstanceType<typeof AgentStreamClient> | undefined;
  private call: grpc.ClientDuplexStream<AgentMessage, ControlMessage> | undefined;

  constructor(
    readonly id: string,
    private readonly address: string,
  ) {}

  get isConnected(): boolean {
    return this.connected;
  }

  start(): void {
    if (this.stopped) return;
    const client = new AgentStreamClient(this.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    const call = client.stream();
    this.client = client;
    this.call = call;
    let ended = false;
    call.write({ hello: Hello.fromPartial({ nodeId: this.id, labels: { bench: 'fanout' }, agentVersion: 'sim', haproxyVersion: 'none', runningVersion: this.version }) });
    call.on('data', (msg: ControlMessage) => {
      const push = msg.push;
      if (!push) return;
      // ACK first, then bookkeeping: the timestamp is taken when the ACK has been handed to grpc-js.
      call.write({ ack: { version: push.version, nonce: push.nonce, method: ApplyMethod.APPLY_METHOD_NOTHING, reasons: [], runtimeCommands: 0, durationMs: 0, warnings: [], rejectedServices: [] } });
      const at = monoMs();
      status.pushes++;
      this.attempt = 0;
      if (!this.connected) {
        this.connected = true;
        status.connected++;
      }
      const had = round?.pending.get(this);
      if (round && had !== undefined && had !== push.version) {
        round.pending.delete(this);
        round.acksAt.push(at);
      }
      this.version = push.version;
    });
    const retry = (code: grpc.status | undefined, why: string) => {
      if (ended) return;
      ended = true;
      client.close();
      if (this.connected) {
        this.connected = false;
        status.connected--;
        if (!this.stopped) status.drops++;
      }
      if (this.stopped) return;
      if (code === grpc.status.RESOURCE_EXHAUSTED) status.refused++;
      else {
        status.errors++;
        status.lastError = why;
      }
      this.timer = setTimeout(() => this.start(), reconnectDelay(this.attempt++, 200, 10_000));
    };
    call.on('error', (err: grpc.ServiceError) => retry(err.code, `${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`));
    call.on('end', () => retry(undefined, 'stream ended by the control plane'));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.call?.cancel();
    this.client?.close();
  }
}

function handle(req: Request): Reply {
  switch (req.type) {
    case 'connect':
      for (const id of req.ids) {
        const a = new SimAgent(id, req.address);
        agents.push(a);
        status.agents++;
        a.start();
      }
      return { type: 'ok' };
    case 'mark': {
      const pending = new Map<SimAgent, string>();
      for (const a of agents) if (a.isConnected) pending.set(a, a.version);
      round = { id: req.round, pending, acksAt: [] };
      return { type: 'ok' };
    }
    case 'progress':
      return { type: 'progress', pending: round?.id === req.round ? round.pending.size : 0 };
    case 'collect': {
      const r = round?.id === req.round ? round : undefined;
      round = undefined;
      return { type: 'collect', acksAt: r?.acksAt ?? [], pending: r?.pending.size ?? 0 };
    }
    case 'status':
      return { type: 'status', status: { ...status } };
    case 'disconnect':
      for (const a of agents.splice(0)) a.stop();
      status.agents = 0;
      return { type: 'ok' };
  }
}

function runWorker(): void {
  process.on('message', (m: { seq: number; req: Request }) => process.send!({ seq: m.seq, reply: handle(m.req) }));
  process.on('disconnect', () => process.exit(0));
  process.send!({ seq: 0, reply: { type: 'ok' } });
}

if (require.main === module && process.argv[2] === 'sim-agents') runWorker();

// ---------------------------------------------------------------------------------------------- parent side

class WorkerHandle {
  private seq = 0;
  private readonly waiting = new Map<number, (r: Reply) => void>();
  readonly ready: Promise<void>;

  constructor(readonly proc: ChildProcess) {
    let resolveReady: () => void;
    this.ready = new Promise((r) => (resolveReady = r));
    this.waiting.set(0, () => resolveReady());
    proc.on('message', (m: { seq: number; reply: Reply }) => {
      const w = this.waiting.get(m.seq);
      this.waiting.delete(m.seq);
      w?.(m.reply);
    });
  }

  ask<T extends Reply['type']>(req: Request, type: T): Promise<Extract<Reply, { type: T }>> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      if (!this.proc.connected) return reject(new Error(`sim-agent worker ${this.proc.pid} is gone`));
      this.waiting.set(seq, (r) => (r.type === type ? resolve(r as Extract<Reply, { type: T }>) : reject(new Error(`sim-agent worker: expected ${type}, got ${r.type}`))));
      this.proc.send({ seq, req });
    });
  }
}

export interface RoundResult {
  /** Per agent: monotonic ms at which it sent the ACK of the new version. */
  readonly acksAt: number[];
  /** Agents that had not received the new version when the round ended. */
  readonly missing: number;
}

/** Simulated agents spread over `workers` child processes. */
export class SimFleet {
  private total = 0;
  private rounds = 0;

  private constructor(private readonly workers: WorkerHandle[]) {}

  static async start(workers: number): Promise<SimFleet> {
    const handles = Array.from({ length: workers }, () => {
      const proc = fork(__filename, ['sim-agents'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: ['--max-old-space-size=4096'] });
      trackChild(proc);
      return new WorkerHandle(proc);
    });
    await Promise.all(handles.map((h) => h.ready));
    return new SimFleet(handles);
  }

  /** Adds agents `sim-<i>` until there are `total`, spread round-robin over the workers. */
  async grow(address: string, total: number): Promise<void> {
    const ids: string[][] = this.workers.map(() => []);
    for (let i = this.total; i < total; i++) ids[i % this.workers.length]!.push(`sim-${String(i).padStart(5, '0')}`);
    this.total = Math.max(this.total, total);
    await Promise.all(this.workers.map((w, i) => w.ask({ type: 'connect', address, ids: ids[i]! }, 'ok')));
  }

  get size(): number {
    return this.total;
  }

  async status(): Promise<WorkerStatus> {
    const all = await Promise.all(this.workers.map((w) => w.ask({ type: 'status' }, 'status')));
    const sum: WorkerStatus = { connected: 0, agents: 0, refused: 0, drops: 0, errors: 0, lastError: '', pushes: 0 };
    for (const { status: s } of all) {
      sum.connected += s.connected;
      sum.agents += s.agents;
      sum.refused += s.refused;
      sum.drops += s.drops;
      sum.errors += s.errors;
      sum.pushes += s.pushes;
      if (s.lastError) sum.lastError = s.lastError;
    }
    return sum;
  }

  /** Polls until `n` agents are connected; returns how long that took, or undefined on timeout. */
  async waitConnected(n: number, timeoutMs: number, onTick?: (s: WorkerStatus) => void): Promise<number | undefined> {
    const started = monoMs();
    let lastTick = 0;
    for (;;) {
      const s = await this.status();
      if (s.connected >= n) return monoMs() - started;
      if (onTick && monoMs() - lastTick > 2000) {
        lastTick = monoMs();
        onTick(s);
      }
      if (monoMs() - started > timeoutMs) return undefined;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * Starts a round: every connected agent now waits for a version other than the one it runs. Resolve before
   * making the change, so no push can arrive before its agent is counted.
   */
  async mark(): Promise<number> {
    const id = ++this.rounds;
    await Promise.all(this.workers.map((w) => w.ask({ type: 'mark', round: id }, 'ok')));
    return id;
  }

  /** Waits until every marked agent has ACKed a new version (or `timeoutMs`), then collects the timestamps. */
  async finish(id: number, timeoutMs: number): Promise<RoundResult> {
    const deadline = monoMs() + timeoutMs;
    for (;;) {
      const progress = await Promise.all(this.workers.map((w) => w.ask({ type: 'progress', round: id }, 'progress')));
      if (progress.every((p) => p.pending === 0) || monoMs() > deadline) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const parts = await Promise.all(this.workers.map((w) => w.ask({ type: 'collect', round: id }, 'collect')));
    return { acksAt: parts.flatMap((p) => p.acksAt), missing: parts.reduce((n, p) => n + p.pending, 0) };
  }

  /** Closes every agent's stream (the workers stay). */
  async disconnectAll(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.ask({ type: 'disconnect' }, 'ok')));
    this.total = 0;
  }

  async close(): Promise<void> {
    await this.disconnectAll().catch(() => undefined);
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.proc.exitCode !== null || w.proc.signalCode !== null) return resolve();
            w.proc.once('exit', () => resolve());
            w.proc.disconnect();
            setTimeout(() => w.proc.kill('SIGKILL'), 5000).unref();
          }),
      ),
    );
  }
}
