/**
 * churn: 1,000 random host events (add, remove, re-add, weight, address) applied one by one to a live agent
 * whose HAProxy fronts real HTTP backends, while a few clients keep sending requests. Each event is a new
 * desired state; apply time is measured around `agent.apply` (show servers state, plan, runtime commands,
 * config file rewrite). The events come from a fixed seed, so runs are comparable.
 *
 * Baselines (same run): one runtime API round trip (`show info` over the stats socket; an apply needs at least
 * two: read `show servers state`, send one command) and one atomic rewrite of the config file (temp file, fsync,
 * rename), which every runtime apply also does. Together they are the floor under an apply.
 * Removed hosts drain for `--drain-ms` and are then deleted: every 10 events the benchmark counts the
 * servers HAProxy has and the servers desired; HAProxy's may exceed the desired ones only by the servers draining
 * (`"bound_exceeded"` counts samples where it did more), so HAProxy's server list does not grow with churn.
 * At the end (after the last drains) `show servers state` and the config file must match the desired state
 * exactly, or the benchmark fails.
 *
 * `npm run bench -- churn [--events=1000] [--seed=42] [--clients=1] [--drain-ms=2000]` (clients per service; 0 = no traffic)
 * → {"events":1000,"reloads":R,"apply_p50_ms":…,"apply_p99_ms":…,"haproxy_servers_max":…,"desired_servers_max":…,"draining_max":…}
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { ADMF_FMAINT } from '../agent/haproxy/servers-state';
import { writeFileAtomic } from '../common/platform/fs';
import { DesiredState, Server } from '../common/protocol/types';
import { server, service, startTestAgent, state } from '../testkit/agent';
import { freePort, sleep } from '../testkit/net';
import {
  describeTimings,
  killAgentNow,
  ms,
  onInterrupt,
  pickIndex,
  quantile,
  repeat,
  say,
  seededRandom,
} from './lib-common';
import { BackendInfo, startTraffic, Traffic } from './lib-traffic';
import { defineBenchmark, Figures, int, OptionsOf } from './harness';

const SERVICES = 4;
const INITIAL_HOSTS = 5;
/** Real backends, spread over several loopback addresses so that address events change the IP, not just the port. */
const BACKENDS = 24;
const MIN_HOSTS = 2;

type EventKind = 'add' | 'remove' | 're-add' | 'weight' | 'address';
const KINDS: EventKind[] = ['add', 'remove', 're-add', 'weight', 'address'];

/** One service's hosts as the control plane sees them: present ones, and removed ones that may come back. */
interface Pool {
  readonly name: string;
  readonly port: number;
  present: Map<string, Server>;
  removed: Map<string, Server>;
  nextId: number;
}

const options = {
  events: int(1000, 'host events (add, remove, re-add, weight, address)'),
  seed: int(42, 'seed of the event sequence'),
  clients: int(1, 'HTTP clients per service (0: no traffic)'),
  drainMs: int(2000, 'how long a removed server drains'),
};

async function run(o: OptionsOf<typeof options>): Promise<Figures> {
  const events = o.events;
  const seed = o.seed;
  const clients = o.clients;
  const drainMs = o.drainMs;
  const rand = seededRandom(seed);
  say(`churn: ${events} host events (seed ${seed}) over ${SERVICES} services, ${BACKENDS} real backends`);

  // Backends and clients run on a worker thread, off the agent's event loop (see lib-traffic.ts).
  const traffic: Traffic = await startTraffic(
    Array.from({ length: BACKENDS }, (_, k) => ({ name: `b${k}`, host: `127.0.0.${2 + (k % 8)}` })),
  );
  const backends = traffic.backends;
  const t = await startTestAgent(`  drain_timeout_ms: ${drainMs}\n`);
  const removeHandlers = onInterrupt(() => killAgentNow(t));
  try {
    const pools: Pool[] = [];
    for (let i = 0; i < SERVICES; i++) {
      const pool: Pool = { name: `svc${i}`, port: await freePort(), present: new Map(), removed: new Map(), nextId: 0 };
      for (let j = 0; j < INITIAL_HOSTS; j++) addHost(pool, backends[pickIndex(rand, BACKENDS)]!);
      pools.push(pool);
    }
    const first = await t.agent.apply(toState(pools));
    if (first.outcome !== 'reload')
      throw new Error(`agent did not start: ${first.outcome} ${first.error?.message ?? ''}`);

    // Baselines, measured under the same traffic as the applies. The runtime API's own round trip:
    if (clients > 0)
      await traffic.startLoad(
        pools.map((p) => p.port),
        clients,
      );
    await sleep(200);
    const floor = await repeat(300, () => t.runtime.command('show info'));
    say(`baseline: runtime API round trip (show info) ${describeTimings(floor)}`);
    // Every runtime apply also rewrites the config file atomically (temp file, fsync, rename): its own cost.
    const text = readFileSync(t.config.haproxy.configPath, 'utf8');
    const scratch = path.join(t.dir, 'scratch.cfg');
    const writes = await repeat(100, (i) => writeFileAtomic(scratch, `${text}# ${i}\n`));
    say(`baseline: atomic write of the ${text.length}-byte config file (fsync) ${describeTimings(writes)}`);

    const reloadsBefore = t.agent.counters.reloads;
    const pidBefore = t.agent.supervisor.pid;
    const applies: number[] = [];
    const byKind = new Map<EventKind, number[]>();
    const outcomes = new Map<string, number>();
    // HAProxy's server list against the desired one (and the servers draining), sampled every 10 events.
    const size = { haproxy: 0, desired: 0, draining: 0, exceeded: 0, samples: 0 };
    const sampleSizes = async () => {
      const live = await t.runtime.serversState();
      const haproxy = [...live.values()].reduce((n, be) => n + be.size, 0);
      const desired = pools.reduce((n, p) => n + p.present.size, 0);
      const draining = t.agent.draining().filter((d) => d.deadline !== undefined).length;
      size.haproxy = Math.max(size.haproxy, haproxy);
      size.desired = Math.max(size.desired, desired);
      size.draining = Math.max(size.draining, draining);
      size.samples++;
      if (haproxy > desired + draining) size.exceeded++;
    };
    const started = performance.now();
    for (let e = 0; e < events; e++) {
      const pool = pools[pickIndex(rand, pools.length)]!;
      const kind = randomEvent(pool, rand, backends);
      const desired = toState(pools);
      const start = performance.now();
      const r = await t.agent.apply(desired);
      const took = performance.now() - start;
      applies.push(took);
      if (!byKind.has(kind)) byKind.set(kind, []);
      byKind.get(kind)!.push(took);
      outcomes.set(r.outcome, (outcomes.get(r.outcome) ?? 0) + 1);
      if (r.outcome === 'rejected')
        throw new Error(`event ${e} (${kind} in ${pool.name}) rejected: ${r.error?.message}`);
      if ((e + 1) % 10 === 0) await sampleSizes();
      if ((e + 1) % 250 === 0)
        say(
          `  ${e + 1} events, ${t.agent.counters.reloads - reloadsBefore} reloads, ${describeTimings(applies)}; servers: HAProxy ≤ ${size.haproxy}, desired ≤ ${size.desired}, draining ≤ ${size.draining}`,
        );
    }
    const churnMs = performance.now() - started;
    await sleep(200);
    const results = await traffic.stopLoad();
    const reloads = t.agent.counters.reloads - reloadsBefore;

    say(
      `apply: ${describeTimings(applies)} over ${Math.round(churnMs)} ms; outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`,
    );
    for (const k of KINDS) if (byKind.has(k)) say(`  ${k.padEnd(7)} ${describeTimings(byKind.get(k)!)}`);
    say(
      `  vs baselines (p50): runtime round trip ${ms(quantile(floor, 0.5))} ms, atomic config write ${ms(quantile(writes, 0.5))} ms`,
    );
    say(
      `reloads during churn: ${reloads}; haproxy pid ${pidBefore === t.agent.supervisor.pid ? 'unchanged' : `changed ${pidBefore} → ${t.agent.supervisor.pid}`}`,
    );
    const ok = results.reduce((a, r) => a + r.ok, 0);
    const failed = results.reduce((a, r) => a + r.refused + r.reset + r.empty + r.other, 0);
    say(
      `traffic during churn: ${ok} requests ok, ${failed} failed${failed > 0 ? ` (${[...new Set(results.flatMap((r) => r.errors))].slice(0, 5).join(', ')})` : ''}`,
    );

    say(
      `servers (every 10 events): HAProxy at most ${size.haproxy}, desired at most ${size.desired}, draining at most ${size.draining}; HAProxy above desired + draining in ${size.exceeded} of ${size.samples} samples`,
    );
    // The last drains end (deleted), and the file follows.
    for (let i = 0; i < 100 && t.agent.draining().some((d) => d.deadline !== undefined); i++)
      await sleep(Math.max(50, drainMs / 20));
    await t.agent.flushFiles();
    const mismatches = await verify(t, pools);
    if (mismatches.length > 0)
      throw new Error(`HAProxy does not run the desired state after churn:\n${mismatches.slice(0, 20).join('\n')}`);
    say('end state: show servers state and the config file match the desired state');

    return {
      events,
      reloads,
      apply_p50_ms: ms(quantile(applies, 0.5)),
      apply_p99_ms: ms(quantile(applies, 0.99)),
      drain_ms: drainMs,
      haproxy_servers_max: size.haproxy,
      desired_servers_max: size.desired,
      draining_max: size.draining,
      bound_exceeded: size.exceeded,
    };
  } finally {
    await t.close();
    await traffic.close();
    removeHandlers();
  }
}

function addHost(pool: Pool, b: BackendInfo): void {
  const name = `h${pool.nextId++}`;
  pool.present.set(name, server(name, b.port, { address: b.host }));
}

/** Applies one random event to `pool` (falling back to `add` when the drawn one is impossible); returns its kind. */
function randomEvent(pool: Pool, rand: () => number, backends: readonly BackendInfo[]): EventKind {
  let kind = KINDS[pickIndex(rand, KINDS.length)]!;
  if (kind === 're-add' && pool.removed.size === 0) kind = 'add';
  if (kind === 'remove' && pool.present.size <= MIN_HOSTS) kind = 'add';
  const names = [...pool.present.keys()];
  const name = names[pickIndex(rand, names.length)]!;
  const cur = pool.present.get(name)!;
  switch (kind) {
    case 'add':
      addHost(pool, backends[pickIndex(rand, backends.length)]!);
      break;
    case 'remove':
      pool.present.delete(name);
      pool.removed.set(name, cur);
      break;
    case 're-add': {
      const gone = [...pool.removed.keys()];
      const back = gone[pickIndex(rand, gone.length)]!;
      pool.present.set(back, pool.removed.get(back)!);
      pool.removed.delete(back);
      break;
    }
    case 'weight': {
      const weight = 1 + ((cur.weight + pickIndex(rand, 15)) % 16); // 1..16, never the current one
      pool.present.set(name, { ...cur, weight });
      break;
    }
    case 'address': {
      const others = backends.filter((b) => b.port !== cur.port);
      const b = others[pickIndex(rand, others.length)]!;
      pool.present.set(name, { ...cur, address: b.host, port: b.port });
      break;
    }
  }
  return kind;
}

function toState(pools: readonly Pool[]): DesiredState {
  return state(pools.map((p) => service(p.name, p.port, [...p.present.values()])));
}

/** Differences between what HAProxy runs (and the config file says) and the desired state; empty when equal. */
async function verify(t: Awaited<ReturnType<typeof startTestAgent>>, pools: readonly Pool[]): Promise<string[]> {
  const actual = await t.runtime.serversState();
  const sections = configServers(readFileSync(t.config.haproxy.configPath, 'utf8'));
  const out: string[] = [];
  for (const p of pools) {
    const live = actual.get(p.name);
    const inFile = sections.get(p.name) ?? new Map<string, string>();
    for (const [name, s] of p.present) {
      const cur = live?.get(name);
      if (!cur) out.push(`${p.name}/${name}: missing`);
      else if ((cur.adminState & ADMF_FMAINT) !== 0) out.push(`${p.name}/${name}: in maint`);
      else if (cur.address !== s.address || cur.port !== s.port || cur.weight !== s.weight) {
        out.push(
          `${p.name}/${name}: runs ${cur.address}:${cur.port} weight ${cur.weight}, wanted ${s.address}:${s.port} weight ${s.weight}`,
        );
      }
      if (inFile.get(name) !== `${s.address}:${s.port} weight ${s.weight}`)
        out.push(`${p.name}/${name}: config file has ${JSON.stringify(inFile.get(name))}`);
    }
    for (const name of inFile.keys())
      if (!p.present.has(name)) out.push(`${p.name}/${name}: in the config file but not desired`);
    // Drained servers are deleted at their deadline: nothing else is left.
    for (const cur of live?.values() ?? [])
      if (!p.present.has(cur.name)) out.push(`${p.name}/${cur.name}: not desired but still in HAProxy`);
  }
  return out;
}

/** listen section → server name → the rest of its `server` line, from a rendered config. */
function configServers(text: string): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  for (const line of text.split('\n')) {
    const section = /^listen (\S+)/.exec(line);
    if (section) out.set(section[1]!, (current = new Map()));
    const srv = /^\s+server (\S+) (.*)$/.exec(line);
    if (srv && current) current.set(srv[1]!, srv[2]!);
  }
  return out;
}

export const benchmark = defineBenchmark({
  name: 'churn',
  summary:
    '1,000 seeded host events applied one by one to a live agent with traffic, against a runtime round trip and a config write',
  options,
  smoke: { events: 30, drainMs: 200 },
  fields: [
    'events',
    'reloads',
    'apply_p50_ms',
    'apply_p99_ms',
    'haproxy_servers_max',
    'desired_servers_max',
    'bound_exceeded',
  ],
  run,
  targets: (r) => [
    { name: 'reloads = 0', held: r.reloads === 0, value: r.reloads, smoke: true },
    {
      name: 'bound_exceeded = 0 (HAProxy holds no more servers than desired + draining)',
      held: r.bound_exceeded === 0,
      value: r.bound_exceeded,
      smoke: true,
    },
  ],
});
