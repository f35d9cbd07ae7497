/**
 * Simulated agents for the fanout, rollout, pushsize and sustained benchmarks: real gRPC clients of the agent
 * stream (one channel and one TCP connection each, like real agents on their own hosts) that speak stream
 * protocol 2 as real agents do — a hello with PROTOCOL_VERSION and what they hold, every push decoded and taken
 * into what they hold with the agent's own ResourceLedger (agent/sources/held-state.ts), a Resync
 * when a push does not fit — and ACK every push they take at once (nothing is applied), then reconnect with the real agent's
 * backoff — including on RESOURCE_EXHAUSTED from the control plane's new-stream limit. They run in worker
 * processes (`fork` of this file), so the benchmark's own bookkeeping and the clients' decoding never share an
 * event loop with the control plane, nor with each other beyond a share of the CPUs.
 *
 * Bytes received are counted per push: the length of the encoded ControlMessage as grpc-js hands it to the
 * response deserializer (the gRPC frame's 5-byte header and HTTP/2 framing are not included).
 *
 * Change markers (sustained): a server whose address is `11.a.b.c` carries change number (a << 16 | b << 8 | c)
 * (markerAddress). With tracking on, each agent records when it first held each marker, so the parent can tell
 * when every agent had a given change, or a later one on the same host (SimFleet.lag).
 *
 * Timestamps are CLOCK_MONOTONIC milliseconds (monoMs), comparable with the parent's.
 */
import { ChildProcess, fork } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { MAX_PUSH_BYTES, reconnectDelay } from '../agent/sources/grpc';
import { PushMismatch, ResourceLedger } from '../agent/sources/held-state';
import {
  AgentMessage,
  AgentStreamClient,
  AgentStreamService,
  ApplyMethod,
  ControlMessage,
  Hello,
  Push,
} from '../common/gen/proxymgr/v1/stream';
import { say } from './lib-common';
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
  /** Bytes of pushes received in total (encoded ControlMessages). */
  bytes: number;
  /** Resyncs asked for (a push that did not fit what the agent held). */
  resyncs: number;
  /** Over the agents started: the fewest services and servers any of them holds, and the most servers. */
  heldServicesMin: number;
  heldServersMin: number;
  heldServersMax: number;
  /** Over the agents started: the lowest "highest change marker held" (0 when some agent holds none). */
  markerMin: number;
}

/** The address of a server that carries change marker `seq` (1 ≤ seq < 2^24); see the header. */
export function markerAddress(seq: number): string {
  return `11.${(seq >> 16) & 255}.${(seq >> 8) & 255}.${seq & 255}`;
}

/** The change marker of a server address, or 0. */
function markerOf(address: string): number {
  if (!address.startsWith('11.')) return 0;
  const p = address.split('.');
  return (Number(p[1]) << 16) | (Number(p[2]) << 8) | Number(p[3]);
}

/** Per change: when the last agent had it (monotonic ms, -1 if some agent never did) and how many never did. */
export interface LagResult {
  readonly allAt: number[];
  readonly missing: number[];
  /** The most changes any agent had written but not yet received at one time. */
  readonly queueMax: number;
}

type Request =
  | { type: 'connect'; address: string; ids: string[] }
  | { type: 'mark'; round: number }
  | { type: 'progress'; round: number }
  | { type: 'collect'; round: number }
  | { type: 'status' }
  | { type: 'track'; capacity: number }
  | { type: 'lag'; writes: number[]; hosts: number[] }
  | { type: 'disconnect' };
type Reply =
  | { type: 'ok' }
  | { type: 'status'; status: WorkerStatus }
  | { type: 'progress'; pending: number }
  | { type: 'collect'; acksAt: number[]; pending: number; bytes: number }
  | ({ type: 'lag' } & LagResult);

/** Channel options of a real agent (agent/sources/grpc.ts), plus a subchannel of its own: one TCP connection each. */
const CHANNEL_OPTIONS = {
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  // Without this, every client in a process to the same address shares one HTTP/2 connection.
  'grpc.use_local_subchannel_pool': 1,
  'grpc.max_receive_message_length': MAX_PUSH_BYTES,
};

/** Encoded size of each decoded ControlMessage, recorded by the client's response deserializer. */
const receivedBytes = new WeakMap<ControlMessage, number>();

/**
 * The AgentStream client with a deserializer that records each message's encoded length before decoding it (the
 * same decode as the generated client's).
 */
const MeasuringAgentStreamClient = grpc.makeGenericClientConstructor(
  {
    stream: {
      ...AgentStreamService.stream,
      responseDeserialize: (value: Buffer): ControlMessage => {
        const msg = ControlMessage.decode(value);
        receivedBytes.set(msg, value.length);
        return msg;
      },
    },
  },
  'proxymgr.v1.AgentStream',
) as unknown as typeof AgentStreamClient;

// ---------------------------------------------------------------------------------------------- worker side

interface Round {
  readonly id: number;
  /** Agents that have not received a new version since the mark → the version they had then. */
  readonly pending: Map<SimAgent, string>;
  readonly acksAt: number[];
  /** Bytes of pushes received by this worker's agents since the mark. */
  bytes: number;
}

const status: WorkerStatus = {
  connected: 0,
  agents: 0,
  refused: 0,
  drops: 0,
  errors: 0,
  lastError: '',
  pushes: 0,
  bytes: 0,
  resyncs: 0,
  heldServicesMin: 0,
  heldServersMin: 0,
  heldServersMax: 0,
  markerMin: 0,
};
const agents: SimAgent[] = [];
let round: Round | undefined;
/** Change markers tracked (1..capacity), or 0 when tracking is off. */
let trackCapacity = 0;

/** The change markers on the servers a push carries (only services it sends are looked at). */
function* markersIn(push: Push): Generator<number> {
  const services = push.state ? push.state.services : push.upserted.map((r) => r.service);
  for (const s of services)
    if (s)
      for (const v of s.servers) {
        const m = markerOf(v.address);
        if (m > 0) yield m;
      }
}

/**
 * What a simulated agent holds: the agent's own ResourceLedger (agent/sources/held-state.ts: base version, removals of
 * what is held, the digest — the same checks, the same code), keeping each service's server count instead of the
 * service. A real agent holds one state per process; 500 simulated agents per worker holding 10,000 server objects
 * each kept 1.6 GB live per worker, and garbage collection over that heap (not the protocol) made the workers the
 * bottleneck of `sustained`.
 */
class HeldVersions {
  private readonly ledger = new ResourceLedger<number>();
  services = 0;
  servers = 0;

  get version(): string {
    return this.ledger.version;
  }

  hello(): ReturnType<ResourceLedger<number>['hello']> {
    return this.ledger.hello();
  }

  take(push: Push): void {
    if (push.state) {
      // A whole state (protocol 0: the fanout baseline server): counted, holding its version and no resources.
      this.ledger.replace(push.version, '', []);
      this.services = push.state.services.length;
      this.servers = push.state.services.reduce((n, s) => n + s.servers.length, 0);
      return;
    }
    let change;
    try {
      change = this.ledger.take(push, (r) => r.service?.servers.length ?? 0);
    } catch (err) {
      this.services = 0;
      this.servers = 0;
      throw err;
    }
    if (change.full) {
      this.servers = 0;
      for (const e of this.ledger.values()) this.servers += e.value;
    } else {
      for (const n of change.removed) this.servers -= n;
      for (const u of change.upserted) this.servers += u.value - (u.before ?? 0);
    }
    this.services = this.ledger.size;
  }
}

class SimAgent {
  version = '';
  /** What this agent holds (kept across reconnects, as a real agent keeps it). */
  readonly held = new HeldVersions();
  services = 0;
  servers = 0;
  /** With tracking on: per change marker, when this agent first held it (monotonic ms; 0 = not yet). */
  seen: Float64Array | undefined;
  /** The highest change marker this agent has held. */
  marker = 0;
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
    const client = new MeasuringAgentStreamClient(this.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    const call = client.stream();
    this.client = client;
    this.call = call;
    let ended = false;
    /** A push did not fit: only a full one is taken until it comes (as agent/sources/stream-session.ts does). */
    let awaitingFull = false;
    call.write({
      hello: Hello.fromPartial({
        nodeId: this.id,
        labels: { bench: 'fanout' },
        agentVersion: 'sim',
        haproxyVersion: 'none',
        runningVersion: this.held.version,
        ...this.held.hello(),
      }),
    });
    call.on('data', (msg: ControlMessage) => {
      const push = msg.push;
      if (!push) return;
      const bytes = receivedBytes.get(msg) ?? 0;
      status.pushes++;
      status.bytes += bytes;
      if (round) round.bytes += bytes;
      this.attempt = 0;
      if (!this.connected) {
        this.connected = true;
        status.connected++;
      }
      if (awaitingFull && !push.full && !push.state) return;
      try {
        this.held.take(push);
      } catch (err) {
        status.resyncs++;
        awaitingFull = true;
        const reason = err instanceof Error ? err.message : String(err);
        if (!(err instanceof PushMismatch)) {
          status.errors++;
          status.lastError = `taking push ${push.nonce}: ${reason}`;
        }
        call.write({ resync: { nonce: push.nonce, reason } });
        return;
      }
      awaitingFull = false;
      // Taken (decoded, merged, digest checked); ACK, then bookkeeping: the timestamp is taken when the ACK has been
      // handed to grpc-js.
      call.write({
        ack: {
          version: push.version,
          nonce: push.nonce,
          method: ApplyMethod.APPLY_METHOD_NOTHING,
          reasons: [],
          runtimeCommands: 0,
          durationMs: 0,
          warnings: [],
          refusals: [],
          changes: [],
          appliedAgoMs: 0,
          rejectedServices: [],
          counters: [],
        },
      });
      const at = monoMs();
      const had = round?.pending.get(this);
      if (round && had !== undefined && had !== push.version) {
        round.pending.delete(this);
        round.acksAt.push(at);
      }
      this.version = push.version;
      this.services = this.held.services;
      this.servers = this.held.servers;
      if (trackCapacity > 0) {
        const seen = (this.seen ??= new Float64Array(trackCapacity + 1));
        for (const m of markersIn(push)) {
          if (m < seen.length && seen[m] === 0) seen[m] = at;
          if (m > this.marker) this.marker = m;
        }
      }
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
    call.on('error', (err: grpc.ServiceError) =>
      retry(err.code, `${grpc.status[err.code] ?? err.code}: ${err.details || err.message}`),
    );
    call.on('end', () => retry(undefined, 'stream ended by the control plane'));
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.call?.cancel();
    this.client?.close();
  }
}

/**
 * Per change k (1..n, written at writes[k-1] on host key hosts[k-1]): when the last of this worker's agents had it
 * — held marker k or a later marker on the same host — and the most changes one agent had pending at once.
 */
function lag(writes: number[], hosts: number[]): LagResult {
  const n = writes.length;
  const allAt = new Array<number>(n).fill(0);
  const missing = new Array<number>(n).fill(0);
  let queueMax = 0;
  const delivered = new Float64Array(n);
  for (const a of agents) {
    const seen = a.seen;
    // Walking k downwards, `best` holds per host the earliest time the agent held any marker ≥ k on it.
    const best = new Map<number, number>();
    for (let k = n; k >= 1; k--) {
      const h = hosts[k - 1]!;
      let b = best.get(h) ?? Infinity;
      const s = seen && k < seen.length ? seen[k]! : 0;
      if (s > 0 && s < b) {
        b = s;
        best.set(h, b);
      }
      delivered[k - 1] = b;
      if (b === Infinity) missing[k - 1]!++;
      else if (b > allAt[k - 1]!) allAt[k - 1] = b;
    }
    // Pending at time t: changes written by t minus changes delivered by t; it peaks right after a write.
    const sorted = Float64Array.from(delivered).sort();
    let j = 0;
    for (let i = 0; i < n; i++) {
      while (j < n && sorted[j]! <= writes[i]!) j++;
      queueMax = Math.max(queueMax, i + 1 - j);
    }
  }
  return { allAt: allAt.map((t, k) => (missing[k]! > 0 ? -1 : t)), missing, queueMax };
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
      round = { id: req.round, pending, acksAt: [], bytes: 0 };
      return { type: 'ok' };
    }
    case 'progress':
      return { type: 'progress', pending: round?.id === req.round ? round.pending.size : 0 };
    case 'collect': {
      const r = round?.id === req.round ? round : undefined;
      round = undefined;
      return { type: 'collect', acksAt: r?.acksAt ?? [], pending: r?.pending.size ?? 0, bytes: r?.bytes ?? 0 };
    }
    case 'status': {
      let servicesMin = Infinity;
      let serversMin = Infinity;
      let serversMax = 0;
      let markerMin = Infinity;
      for (const a of agents) {
        markerMin = Math.min(markerMin, a.marker);
        servicesMin = Math.min(servicesMin, a.services);
        serversMin = Math.min(serversMin, a.servers);
        serversMax = Math.max(serversMax, a.servers);
      }
      const held =
        agents.length > 0
          ? { heldServicesMin: servicesMin, heldServersMin: serversMin, heldServersMax: serversMax, markerMin }
          : { heldServicesMin: 0, heldServersMin: 0, heldServersMax: 0, markerMin: 0 };
      return { type: 'status', status: { ...status, ...held } };
    }
    case 'track':
      // From now on every agent records when it first holds each marker 1..capacity (markers held already count
      // from their next push).
      trackCapacity = req.capacity;
      for (const a of agents) a.seen = new Float64Array(req.capacity + 1);
      return { type: 'ok' };
    case 'lag':
      return { type: 'lag', ...lag(req.writes, req.hosts) };
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
      this.waiting.set(seq, (r) =>
        r.type === type
          ? resolve(r as Extract<Reply, { type: T }>)
          : reject(new Error(`sim-agent worker: expected ${type}, got ${r.type}`)),
      );
      this.proc.send({ seq, req });
    });
  }
}

export interface RoundResult {
  /** Per agent: monotonic ms at which it sent the ACK of the new version. */
  readonly acksAt: number[];
  /** Agents that had not received the new version when the round ended. */
  readonly missing: number;
  /** Bytes of pushes received by all agents during the round (mark to collect). */
  readonly bytes: number;
}

/** Simulated agents spread over `workers` child processes. */
export class SimFleet {
  private total = 0;
  private rounds = 0;

  private constructor(private readonly workers: WorkerHandle[]) {}

  static async start(workers: number): Promise<SimFleet> {
    const handles = Array.from({ length: workers }, () => {
      const proc = fork(__filename, ['sim-agents'], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        execArgv: [
          '--max-old-space-size=4096',
          ...(process.env.BENCH_SIM_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''),
        ],
      });
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
    const sum: WorkerStatus = {
      connected: 0,
      agents: 0,
      refused: 0,
      drops: 0,
      errors: 0,
      lastError: '',
      pushes: 0,
      bytes: 0,
      resyncs: 0,
      heldServicesMin: Infinity,
      heldServersMin: Infinity,
      heldServersMax: 0,
      markerMin: Infinity,
    };
    for (const { status: s } of all) {
      sum.connected += s.connected;
      sum.agents += s.agents;
      sum.refused += s.refused;
      sum.drops += s.drops;
      sum.errors += s.errors;
      sum.pushes += s.pushes;
      sum.bytes += s.bytes;
      sum.resyncs += s.resyncs;
      if (s.agents > 0) {
        sum.heldServicesMin = Math.min(sum.heldServicesMin, s.heldServicesMin);
        sum.heldServersMin = Math.min(sum.heldServersMin, s.heldServersMin);
        sum.markerMin = Math.min(sum.markerMin, s.markerMin);
      }
      sum.heldServersMax = Math.max(sum.heldServersMax, s.heldServersMax);
      if (s.lastError) sum.lastError = s.lastError;
    }
    if (sum.heldServicesMin === Infinity) sum.heldServicesMin = sum.heldServersMin = sum.markerMin = 0;
    return sum;
  }

  /**
   * Polls until every agent holds at least `services` services and `servers` servers, all agents the same number of
   * servers; returns how long that took, or undefined on timeout.
   */
  async waitHeld(
    services: number,
    servers: number,
    timeoutMs: number,
    onTick?: (s: WorkerStatus) => void,
  ): Promise<number | undefined> {
    const started = monoMs();
    let lastTick = started;
    for (;;) {
      const s = await this.status();
      if (s.heldServicesMin >= services && s.heldServersMin >= servers && s.heldServersMax === s.heldServersMin)
        return monoMs() - started;
      if (onTick && monoMs() - lastTick > 2000) {
        lastTick = monoMs();
        onTick(s);
      }
      if (monoMs() - started > timeoutMs) return undefined;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** From now on every agent records when it first holds each change marker 1..capacity (see markerAddress). */
  async track(capacity: number): Promise<void> {
    await Promise.all(this.workers.map((w) => w.ask({ type: 'track', capacity }, 'ok')));
  }

  /**
   * Per change k (written at monotonic ms writes[k-1] to host key hosts[k-1], carrying marker k): when every agent
   * had it (or a later change of the same host), -1 if some agent never did; and the most changes one agent had
   * written but not yet received at once.
   */
  async lag(writes: number[], hosts: number[]): Promise<LagResult> {
    const parts = await Promise.all(this.workers.map((w) => w.ask({ type: 'lag', writes, hosts }, 'lag')));
    const n = writes.length;
    const allAt = new Array<number>(n).fill(0);
    const missing = new Array<number>(n).fill(0);
    for (const p of parts) {
      for (let k = 0; k < n; k++) {
        missing[k]! += p.missing[k]!;
        allAt[k] = allAt[k]! < 0 || p.allAt[k]! < 0 ? -1 : Math.max(allAt[k]!, p.allAt[k]!);
      }
    }
    return { allAt, missing, queueMax: parts.reduce((m, p) => Math.max(m, p.queueMax), 0) };
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
    return {
      acksAt: parts.flatMap((p) => p.acksAt),
      missing: parts.reduce((n, p) => n + p.pending, 0),
      bytes: parts.reduce((n, p) => n + p.bytes, 0),
    };
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

/** The progress line of SimFleet.waitConnected: `n` agents wanted. */
export function connectProgress(n: number): (s: WorkerStatus) => void {
  return (s) =>
    say(
      `  ${s.connected}/${n} connected (refused so far ${s.refused}, errors ${s.errors}${s.lastError ? `, last: ${s.lastError}` : ''})`,
    );
}
