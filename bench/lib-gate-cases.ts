/**
 * The three cases of preflight and traffic gates, run against a GateFleet (lib-gate.ts) by bench/gate.ts and
 * test/e2e/gate.test.ts. Each returns what it saw (rollout document, ctl status, pushes from the control planes'
 * logs, failed requests); the bench reports figures from it, the test asserts on it.
 *
 *   bad:       HAProxy accepts the revision but it answers 503 → the canary's gate fails, the rollout rolls back
 *   blocked:   a new service on a port taken on one agent's IP → that agent's preflight fails, nobody gets it
 *   good:      a harmless change → every wave's gate passes, the rollout completes
 *   poisoned:  the bad revision while one more (raw) agent floods Stats claiming huge 5xx counts as a stable agent
 */
import * as grpc from '@grpc/grpc-js';
import * as net from 'node:net';
import { Ack, AgentStreamClient, ControlMessage, Hello } from '../common/gen/proxymgr/v1/stream';
import { FleetDoc, RolloutDoc } from '../controlplane/rollout/engine';
import { freePort, sleep } from '../testkit/net';
import { GateFleet, StatusJson, TERMINAL_STATES } from './lib-gate';
import { FailedRequest } from './lib-paced-load';

/** A rollout that differs from the one current in `before`, once it left `running`/`paused` (or timed out). */
async function nextRolloutSettled(
  f: GateFleet,
  before: FleetDoc,
  timeoutMs: number,
  what: string,
  settled: (r: RolloutDoc) => boolean,
): Promise<RolloutDoc> {
  const doc = await f.waitDoc(
    (d) => !!d.current && d.current.id !== before.current?.id && settled(d.current),
    timeoutMs,
    what,
  );
  return doc.current!;
}

/** Failed requests per agent (node id → count). */
export function byAgent(f: GateFleet, failures: readonly FailedRequest[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of failures) out[f.agents[x.agent]!.id] = (out[f.agents[x.agent]!.id] ?? 0) + 1;
  return out;
}

export interface BadCase {
  readonly rollout: RolloutDoc;
  readonly status: StatusJson;
  readonly statusText: string;
  readonly canary: readonly string[];
  /** Distinct agents pushed a version of the revision (control-plane logs). */
  readonly pushedTo: readonly string[];
  readonly failuresOutsideCanary: readonly FailedRequest[];
  readonly failuresCanary: readonly FailedRequest[];
  /** From the canary's first failed request to its last (the time clients saw the bad revision). */
  readonly canaryBadMs: number;
  /** finishedAt − wave 1 ackedAt. */
  readonly detectMs: number;
  readonly requests: number;
}

/** (a) A revision HAProxy accepts that answers every request with 503: the traffic gate must stop it at the canary. */
export async function badRevisionCase(f: GateFleet, rev = 'bad', timeoutMs = 60_000): Promise<BadCase> {
  const before = await f.readDoc();
  const t0 = Date.now();
  const n0 = f.load.total();
  await f.setWeb(rev, ['http-request return status 503']);
  const r = await nextRolloutSettled(
    f,
    before,
    timeoutMs,
    `the rollout of the 503 revision (${rev}) to end`,
    (x) => x.state !== 'running' && x.state !== 'paused',
  );
  // The canary got the stable revision back: every agent answers 200 again.
  await f.until(
    async () => (await Promise.all(f.agents.map((a) => f.hit(a.ip)))).every((h) => h.status === 200),
    20_000,
    'every agent answering 200 after the rollback',
  );
  await sleep(1000); // requests in flight settle
  const t1 = Date.now();
  // The rollback left the 503 config in ZooKeeper: put the stable one back, so the next case starts from it.
  await f.setWeb(f.stableRev);
  await f.waitNothingPending();
  const canary = r.waves[0]?.agents ?? [];
  const canaryIdx = new Set(canary.map((id) => f.indexOf(id)));
  const outside = new Set(f.agents.map((_, i) => i).filter((i) => !canaryIdx.has(i)));
  const failuresCanary = f.load.failures(t0, t1, canaryIdx);
  const [status, text] = await Promise.all([f.status(), f.ctl(f.liveCp(), 'status')]);
  return {
    rollout: r,
    status,
    statusText: text.stdout,
    canary,
    pushedTo: [...new Set(f.pushesOf(r.to).map((p) => p.node))].sort(),
    failuresOutsideCanary: f.load.failures(t0, t1, outside),
    failuresCanary,
    canaryBadMs: failuresCanary.length > 0 ? failuresCanary[failuresCanary.length - 1]!.at - failuresCanary[0]!.at : 0,
    detectMs: r.finishedAt !== undefined && r.waves[0]?.ackedAt !== undefined ? r.finishedAt - r.waves[0].ackedAt : NaN,
    requests: f.load.total() - n0,
  };
}

export interface BlockedCase {
  readonly rollout: RolloutDoc;
  readonly status: StatusJson;
  readonly statusText: string;
  readonly plan: {
    toRevision?: string;
    servicesAdded?: string[];
    agents?: { nodeId: string; preflight?: string; error?: string; services?: string[] }[];
  };
  readonly blockedAgent: string;
  readonly port: number;
  readonly pushes: number;
  readonly abort: { code: number; state: string };
  readonly failures: readonly FailedRequest[];
}

/**
 * (b) A new service on a port that something else holds on one agent's IP (a plain listening socket): every other
 * agent can bind it, that one cannot, so its preflight fails and the rollout halts before wave 1. Then the halted
 * rollout is aborted (ctl), the service removed and the port freed, so the next case starts clean.
 */
export async function preflightBlockedCase(f: GateFleet, blockIndex = 2, timeoutMs = 40_000): Promise<BlockedCase> {
  const agent = f.agents[blockIndex]!;
  const port = await freePort();
  const blocker = net.createServer((s) => s.destroy());
  await new Promise<void>((resolve, reject) => {
    blocker.once('error', reject);
    blocker.listen(port, agent.ip, () => resolve());
  });
  try {
    const before = await f.readDoc();
    const t0 = Date.now();
    await f.put(
      '/service_config/extra',
      JSON.stringify({ type: 'zookeeper', path: '/services/web', port, listen_options: ['mode http'] }),
    );
    const halted = await nextRolloutSettled(
      f,
      before,
      timeoutMs,
      `the rollout adding service extra on port ${port} to halt`,
      (x) => x.state !== 'running' && x.state !== 'paused',
    );
    // It halts at the first failure; the answers that come later are still tallied (and listed): wait for them all.
    const r =
      halted.state !== 'halted'
        ? halted
        : (
            await f.waitDoc(
              (d) => d.current?.id === halted.id && (d.current.preflight?.unanswered ?? 0) === 0,
              20_000,
              'every agent to answer the preflight',
            )
          ).current!;
    const [status, text, planOut] = await Promise.all([
      f.status(),
      f.ctl(f.liveCp(), 'status'),
      f.ctl(f.liveCp(), 'plan', '--json'),
    ]);
    const pushes = f.pushesOf(r.to).length;
    const aborted = await f.ctl(f.liveCp(), 'abort', '--json', '--id', r.id);
    const abortState =
      aborted.code === 0 ? ((JSON.parse(aborted.stdout) as StatusJson).rollout?.state ?? '') : aborted.stderr.trim();
    await f.remove('/service_config/extra');
    await f.waitNothingPending();
    return {
      rollout: r,
      status,
      statusText: text.stdout,
      plan: JSON.parse(planOut.stdout) as BlockedCase['plan'],
      blockedAgent: agent.id,
      port,
      pushes,
      abort: { code: aborted.code, state: abortState },
      failures: f.load.failures(t0, Date.now()),
    };
  } finally {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  }
}

export interface GoodCase {
  readonly rollout: RolloutDoc;
  readonly status: StatusJson;
  readonly statusText: string;
  /** Each judged wave's verdict, in wave order. */
  readonly verdicts: readonly string[];
  readonly failures: readonly FailedRequest[];
  readonly failuresByAgent: Record<string, number>;
  readonly totalMs: number;
  readonly requests: number;
}

/** (c) A harmless change (another X-Rev value): no gate may fail it; it completes and every agent serves it. */
export async function goodRevisionCase(f: GateFleet, rev = 'good', timeoutMs = 120_000): Promise<GoodCase> {
  const before = await f.readDoc();
  const t0 = Date.now();
  const n0 = f.load.total();
  await f.setWeb(rev);
  const r = await nextRolloutSettled(
    f,
    before,
    timeoutMs,
    `the rollout of the good revision (${rev}) to end`,
    (x) => TERMINAL_STATES.includes(x.state) || x.state === 'halted',
  );
  if (r.state === 'completed') {
    await f.waitServing(rev);
    f.stableRev = rev;
  }
  const t1 = Date.now();
  const failures = f.load.failures(t0, t1);
  const [status, text] = await Promise.all([f.status(), f.ctl(f.liveCp(), 'status')]);
  return {
    rollout: r,
    status,
    statusText: text.stdout,
    verdicts: r.waves.filter((w) => w.gate !== undefined).map((w) => w.gate!.verdict),
    failures,
    failuresByAgent: byAgent(f, failures),
    totalMs: (r.finishedAt ?? t1) - r.createdAt,
    requests: f.load.total() - n0,
  };
}

export interface PoisonedCase {
  readonly bad: BadCase;
  /** Stats messages the poisoner wrote, and how long it flooded. */
  readonly statsSent: number;
  readonly floodMs: number;
  /** Whether the traffic gate halted the rollout (or rolled it back) before every agent had it, despite the flood. */
  readonly halted: boolean;
}

/**
 * (d) The 503 revision again, while one more agent — a raw gRPC client, not a real agent — streams as a stable agent
 * (node id zz-poison: it sorts last, so the real agent0 stays the canary) and writes Stats as fast as its stream
 * takes them, each claiming a million more requests for service web, every one a 5xx: pooled, that raises the stable
 * reference to about 100 % and the 503 canary would not stand out. The gate must still halt it.
 */
export async function poisonedCase(f: GateFleet, timeoutMs = 60_000): Promise<PoisonedCase> {
  const client = new AgentStreamClient(`127.0.0.1:${f.cps[f.liveCp()]!.port}`, grpc.credentials.createInsecure());
  const call = client.stream();
  let stop = false;
  let sent = 0;
  let n = 0;
  call.on('data', (m: ControlMessage) => {
    // ACK every push: it runs what the control plane says (the stable revision), as an honest agent would claim.
    if (m.push) call.write({ ack: Ack.fromPartial({ nonce: m.push.nonce, version: m.push.version }) });
  });
  call.on('error', () => undefined);
  call.write({ hello: Hello.fromPartial({ nodeId: 'zz-poison', agentVersion: 'poison', haproxyVersion: '2.6' }) });
  const flood = async () => {
    while (!stop) {
      n += 1_000_000;
      const ok = call.write({
        stats: {
          runningVersion: '',
          counters: [
            {
              service: 'web',
              requests: n,
              responses5xx: n,
              sessions: n,
              connectionErrors: 0,
              responseErrors: 0,
              retries: 0,
              serversDown: 0,
              servers: 1,
              queue: 0,
              rtimeMs: 0,
            },
          ],
        },
      });
      sent++;
      // As fast as the stream takes them: wait only when grpc-js's buffer is full (and yield now and then).
      if (!ok) await new Promise<void>((resolve) => call.once('drain', () => resolve()));
      else if (sent % 200 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
    }
  };
  await sleep(3000); // connected, ACKed, and counted as a stable agent with samples before the rollout
  const t0 = Date.now();
  const flooding = flood();
  try {
    const bad = await badRevisionCase(f, 'poisoned', timeoutMs);
    const halted =
      (bad.rollout.state === 'rolled_back' || bad.rollout.state === 'halted') &&
      bad.pushedTo.length < f.agents.length &&
      /traffic gate/.test(bad.rollout.reason);
    return { bad, statsSent: sent, floodMs: Date.now() - t0, halted };
  } finally {
    stop = true;
    await flooding;
    call.cancel();
    client.close();
  }
}
