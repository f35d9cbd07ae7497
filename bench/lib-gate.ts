/**
 * Shared by bench/gate.ts and test/e2e/gate.test.ts: a real fleet for preflight and traffic gates — ZooKeeper, one or
 * more control planes (the built CLI), N agents each with its own HAProxy on its own 127.0.0.x (agent.bind_address),
 * real HTTP backends, and paced HTTP clients through every agent the whole time, which count every non-2xx or
 * failed request per agent and when it happened.
 *
 *   const f = await GateFleet.start({ cli, start, bakeMs: 8000 });   // every agent on the first revision, load on
 *   const doc = await f.waitDoc((d) => …, 30_000, 'what');            // the rollout document, read from ZooKeeper
 *   f.load.failures(t0, t1)                                           // failed requests in a time window
 *
 * The cases themselves (a bad revision, one that fails preflight on one agent, a good one) are in lib-gate-cases.ts.
 */
import { ChildProcess, execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { decodeNode } from '../controlplane/ha/node-codec';
import { FleetDoc } from '../controlplane/rollout/engine';
import { Backend, startBackends } from '../testkit/backends';
import { freePort, sleep, tempDir } from '../testkit/net';
import { connectZk, ZkTestClient } from '../testkit/zk-client';
import { startZooKeeper, ZooKeeper } from '../testkit/zookeeper';
import { PacedLoad } from './lib-paced-load';

/** A CLI child process as the caller starts it (the bench: logs to a file; the test: the test helper). */
export interface FleetProcess {
  readonly proc: ChildProcess;
  /** Everything it logged so far (JSON lines; the control plane must log at debug: pushes are debug lines). */
  logs(): string;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
  /** SIGTERM (an agent then stops its HAProxy) and wait for the exit. */
  stop(): Promise<unknown>;
}

/** Starts `proxymgr ARGS…`; `name` names the process (e.g. its log file in `dir`, the fleet's temp dir). */
export type StartProcess = (args: string[], name: string, dir: string) => FleetProcess;

export interface GateFleetOptions {
  /** The built CLI (dist/bin/proxymgr.js), for `ctl`. */
  readonly cli: string;
  readonly start: StartProcess;
  /** At least 5 (default 5). */
  readonly agents?: number;
  /** Control-plane replicas (default 1); agents spread over them. */
  readonly controlPlanes?: number;
  readonly bakeMs: number;
  readonly sampleMs?: number;
  readonly minRequests?: number;
  readonly baselineMs?: number;
  /** Requests per second through each agent (default 40). */
  readonly ratePerAgent?: number;
  readonly say?: (msg: string) => void;
}

/** `ctl rollout status --json` (RolloutStatus as JSON: fields with default values are left out). */
export interface StatusJson {
  replica?: string;
  leader?: string;
  stableRevision?: string;
  rollout?: {
    id: string;
    fromRevision?: string;
    toRevision: string;
    state: string;
    reason?: string;
    createdAt?: string;
    finishedAt?: string;
    waves?: {
      index: number;
      spec: string;
      agents?: string[];
      startedAt?: string;
      ackedAt?: string;
      completedAt?: string;
      gate?: GateJson;
    }[];
    preflight?: {
      passed?: number;
      failed?: number;
      unanswered?: number;
      completedAt?: string;
      failures?: { nodeId: string; error?: string }[];
    };
  };
  agents?: {
    nodeId: string;
    connected?: boolean;
    replica?: string;
    wave?: number;
    releasedRevision?: string;
    runningRevision?: string;
    status?: string;
    error?: string;
    preflight?: string;
  }[];
}

export interface GateJson {
  verdict: string;
  reason?: string;
  at?: string;
  figures?: {
    key: string;
    metric: string;
    canary?: number;
    hasStable?: boolean;
    stable?: number;
    hasBefore?: boolean;
    before?: number;
    threshold?: number;
    requests?: string | number;
    regressed?: boolean;
  }[];
}

export interface FleetAgentInfo {
  readonly id: string;
  readonly ip: string;
  proc?: FleetProcess;
}

export interface FleetCp {
  readonly id: string;
  readonly port: number;
  proc?: FleetProcess;
}

/** `p`, or an error naming `what` after `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>(
        (_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)),
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export const TERMINAL_STATES = ['completed', 'rolled_back', 'aborted', 'superseded'];

/** The fleet; see the file comment. */
export class GateFleet {
  readonly cps: FleetCp[] = [];
  readonly agents: FleetAgentInfo[] = [];
  load!: PacedLoad;
  zk!: ZooKeeper;
  zkc!: ZkTestClient;
  backends: Backend[] = [];
  webPort = 0;
  /** The X-Rev of the fleet's stable revision (what the web service's config says once no change is pending). */
  stableRev = 'v1';
  private readonly tmp = tempDir('proxymgr-gate-');
  private readonly say: (msg: string) => void;

  private constructor(readonly opts: GateFleetOptions) {
    this.say = opts.say ?? (() => undefined);
  }

  /** Starts everything; every agent serves the first revision (X-Rev v1) and the load runs through each. */
  static async start(opts: GateFleetOptions): Promise<GateFleet> {
    const f = new GateFleet(opts);
    try {
      await f.boot();
    } catch (err) {
      await f.close().catch(() => undefined);
      throw err;
    }
    return f;
  }

  get tmpDir(): string {
    return this.tmp.dir;
  }

  private async boot(): Promise<void> {
    const o = this.opts;
    const nAgents = o.agents ?? 5;
    if (nAgents < 5 || nAgents > 250) throw new Error(`agents: expected 5..250, got ${nAgents}`);
    [this.zk, this.backends] = await Promise.all([startZooKeeper(), startBackends(['a', 'b'])]);
    this.zkc = await connectZk(this.zk.connectString);
    this.webPort = await freePort();
    await this.setWeb('v1');
    for (const [i, b] of this.backends.entries())
      await this.put(`/services/web/h${i}`, JSON.stringify({ address: '127.0.0.1', port: b.port }));
    for (let i = 0; i < (o.controlPlanes ?? 1); i++) {
      const id = `cp${i}`;
      const port = await freePort();
      const config = path.join(this.tmp.dir, `${id}.yml`);
      writeFileSync(
        config,
        `haproxy:
  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]
service_config: {type: zookeeper, servers: "${this.zk.connectString}", path: /service_config}
controlplane: {listen: "127.0.0.1:${port}", zk_session_timeout_ms: 2000}
rollout:
  replica_id: ${id}
  waves: [1, "50%", "100%"]
  bake_ms: ${o.bakeMs}
  auto_rollback: true
  preflight: {enabled: true, max_failures: 0, timeout_ms: 15000}
  gate: {enabled: true, min_requests: ${o.minRequests ?? 20}, sample_ms: ${o.sampleMs ?? 1000}, baseline_ms: ${o.baselineMs ?? 20_000}}
`,
      );
      const cp: FleetCp = { id, port };
      this.cps.push(cp);
      cp.proc = o.start(['controlplane', '--config', config], id, this.tmp.dir);
    }
    for (const cp of this.cps) await this.waitLog(cp.proc!, /control plane started/, 20_000, cp.id);
    for (let i = 0; i < nAgents; i++) {
      const id = `agent${i}`;
      const ip = `127.0.0.${i + 1}`;
      const dir = path.join(this.tmp.dir, id);
      mkdirSync(dir);
      const config = path.join(dir, 'proxymgr.yml');
      // Agents spread over the replicas; each lists every replica (its own first), so a replica that dies hands its
      // agents to the others.
      const order = this.cps.map((_, k) => this.cps[(i + k) % this.cps.length]!);
      writeFileSync(
        config,
        `haproxy: {config_path: ${dir}/haproxy.cfg, socket_path: ${dir}/haproxy.sock}
agent:
  state_dir: ${dir}
  node_id: ${id}
  controlplanes: [${order.map((c) => `"127.0.0.1:${c.port}"`).join(', ')}]
  admin_listen: ""
  bind_address: ${ip}
`,
      );
      const a: FleetAgentInfo = { id, ip };
      this.agents.push(a);
      a.proc = o.start(['agent', '--config', config], id, this.tmp.dir);
    }
    const t0 = Date.now();
    await this.until(
      async () =>
        (await Promise.all(this.agents.map((a) => this.hit(a.ip)))).every((h) => h.status === 200 && h.rev === 'v1'),
      30_000,
      'every agent serving the first revision (X-Rev v1)',
    );
    const doc = await this.waitDoc((d) => d.stable !== '', 20_000, 'the first revision released');
    await this.until(
      async () => {
        const s = await this.status();
        return (s.agents ?? []).filter((a) => a.connected && a.runningRevision === doc.stable).length === nAgents;
      },
      20_000,
      `all ${nAgents} agents connected and reporting revision ${doc.stable}`,
    );
    this.say(
      `fleet: ${this.cps.length} control plane(s), ${nAgents} agents (127.0.0.1-${nAgents}, each its own HAProxy) on revision ${doc.stable} in ${Date.now() - t0} ms`,
    );
    this.load = new PacedLoad(
      this.agents.map((a) => ({ ip: a.ip, port: this.webPort })),
      o.ratePerAgent ?? 40,
    );
  }

  /** The web service's config: `X-Rev rev` on every response, plus `extra` listen options. */
  setWeb(rev: string, extra: string[] = []): Promise<void> {
    return this.put(
      '/service_config/web',
      JSON.stringify({
        type: 'zookeeper',
        path: '/services/web',
        port: this.webPort,
        listen_options: ['mode http', `http-response set-header X-Rev ${rev}`, ...extra],
      }),
    );
  }

  /** A ZooKeeper write that throws instead of hanging when ZooKeeper does not answer. */
  put(zkPath: string, data: string): Promise<void> {
    return within(this.zkc.put(zkPath, data), 10_000, `writing ${zkPath} to ZooKeeper`);
  }

  remove(zkPath: string): Promise<void> {
    return within(this.zkc.remove(zkPath), 10_000, `removing ${zkPath} from ZooKeeper`);
  }

  /** Waits until discovery is back on the stable revision: `ctl rollout plan` shows nothing pending. */
  async waitNothingPending(timeoutMs = 15_000): Promise<void> {
    await this.until(
      async () => {
        const p = await this.ctl(this.liveCp(), 'plan', '--json');
        return p.code === 0 && !(JSON.parse(p.stdout) as { pending?: boolean }).pending;
      },
      timeoutMs,
      'ctl rollout plan to show nothing pending',
    );
  }

  /** `proxymgr ctl --controlplane <cp> rollout ARGS…`. */
  ctl(cp: number, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) =>
      execFile(
        process.execPath,
        [this.opts.cli, 'ctl', '--controlplane', `127.0.0.1:${this.cps[cp]!.port}`, 'rollout', ...args],
        { timeout: 30_000 },
        (err, stdout, stderr) =>
          resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      ),
    );
  }

  /** `ctl rollout status --json` of replica `cp` (default: the first one still running). */
  async status(cp = this.liveCp()): Promise<StatusJson> {
    const r = await this.ctl(cp, 'status', '--json');
    if (r.code !== 0) throw new Error(`ctl rollout status failed (${r.code}): ${r.stderr.slice(0, 500)}`);
    return JSON.parse(r.stdout) as StatusJson;
  }

  /** The first replica whose process still runs. */
  liveCp(): number {
    const i = this.cps.findIndex((c) => c.proc && c.proc.proc.exitCode === null && c.proc.proc.signalCode === null);
    if (i < 0) throw new Error('no control plane is running');
    return i;
  }

  /** The rollout document, read from ZooKeeper directly (ctl does not show gateStart or baseline). */
  readDoc(): Promise<FleetDoc> {
    const read = new Promise<FleetDoc>((resolve, reject) =>
      this.zkc.client.getData('/proxymgr/rollout', (err, data) =>
        err ? reject(err) : resolve(decodeNode(data) as FleetDoc),
      ),
    );
    return within(read, 10_000, 'reading the rollout document from ZooKeeper');
  }

  async waitDoc(pred: (d: FleetDoc) => boolean, timeoutMs: number, what: string): Promise<FleetDoc> {
    let last: FleetDoc | undefined;
    await this.until(
      async () => {
        last = await this.readDoc();
        return pred(last);
      },
      timeoutMs,
      what,
      () =>
        JSON.stringify(
          last?.current
            ? {
                id: last.current.id,
                state: last.current.state,
                waves: last.current.waves.length,
                reason: last.current.reason,
              }
            : last,
        ),
    );
    return last!;
  }

  /**
   * Polls `check` every 100 ms; throws naming `what` (and `detail()`) after `timeoutMs`. A check that does not
   * answer within 10 s counts as failed (a ZooKeeper read or a ctl call must not hang the run).
   */
  async until(check: () => Promise<boolean>, timeoutMs: number, what: string, detail?: () => string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastErr = '';
    for (;;) {
      try {
        if (await within(check(), 10_000, 'a check')) return;
      } catch (err) {
        lastErr = (err as Error).message;
      }
      if (Date.now() > deadline)
        throw new Error(
          `timed out after ${timeoutMs} ms waiting for ${what}${detail ? `; last: ${detail()}` : ''}${lastErr ? `; last error: ${lastErr}` : ''}`,
        );
      await sleep(100);
    }
  }

  /** Waits for a log line matching `re`; throws at once if the process exits, or after `timeoutMs`. */
  private async waitLog(p: FleetProcess, re: RegExp, timeoutMs: number, name: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(p.logs())) {
      if (p.proc.exitCode !== null || p.proc.signalCode !== null)
        throw new Error(
          `${name} exited (${p.proc.exitCode ?? p.proc.signalCode}) before logging ${re}: ${p.logs().slice(-2000)}`,
        );
      if (Date.now() > deadline)
        throw new Error(`${name}: no log line matching ${re} within ${timeoutMs} ms: ${p.logs().slice(-2000)}`);
      await sleep(50);
    }
  }

  /** Every push of a version of `revision`, from every replica's logs: which agent, when. */
  pushesOf(revision: string): { node: string; time: number }[] {
    const out: { node: string; time: number }[] = [];
    for (const cp of this.cps) {
      for (const line of (cp.proc?.logs() ?? '').split('\n')) {
        if (!line.includes('pushed desired state')) continue;
        let l: { node_id?: string; version?: string; time?: number };
        try {
          l = JSON.parse(line) as typeof l;
        } catch {
          continue; // a line still being written
        }
        if (l.version?.startsWith(revision + '.')) out.push({ node: String(l.node_id), time: Number(l.time) });
      }
    }
    return out;
  }

  /** One request through an agent: its status and X-Rev header. */
  hit(ip: string): Promise<{ status: number; rev: string }> {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port: this.webPort, host: ip });
      let data = '';
      sock.setTimeout(3000);
      sock.on('connect', () => sock.write('GET / HTTP/1.0\r\nHost: probe\r\n\r\n'));
      sock.on('data', (c) => (data += c.toString()));
      sock.on('timeout', () => sock.destroy(new Error('timeout')));
      sock.on('error', reject);
      sock.on('close', () =>
        resolve({
          status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(data)?.[1] ?? 0),
          rev: /\r\nx-rev: *([^\r]*)/i.exec(data)?.[1] ?? '',
        }),
      );
    });
  }

  /** Waits until every agent answers 200 with X-Rev `rev`. */
  async waitServing(rev: string, timeoutMs = 20_000): Promise<void> {
    await this.until(
      async () =>
        (await Promise.all(this.agents.map((a) => this.hit(a.ip)))).every((h) => h.status === 200 && h.rev === rev),
      timeoutMs,
      `every agent serving X-Rev ${rev}`,
    );
  }

  /** Agent index by node id. */
  indexOf(nodeId: string): number {
    return this.agents.findIndex((a) => a.id === nodeId);
  }

  /**
   * Stops the load, every process (agents first: each stops its HAProxy), ZooKeeper and the backends; removes the
   * temp dir (with the processes' log files, if the caller wrote them there) unless `keepDir`.
   */
  async close(keepDir = false): Promise<void> {
    await this.load?.stop();
    await Promise.allSettled(this.agents.map(async (a) => a.proc?.stop()));
    await Promise.allSettled(this.cps.map(async (c) => c.proc?.stop()));
    this.zkc?.close();
    await this.zk?.stop();
    await Promise.all(this.backends.map((b) => b.close()));
    if (!keepDir) this.tmp.cleanup();
  }
}
