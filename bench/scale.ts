/**
 * scale: how the agent's pure core and `haproxy -c` cope with a big host: 2,000 services × 20 servers (40,000
 * server lines). Figures, each a median over repetitions:
 * - render_ms: renderHaproxyConfig of the whole state (baseline: JSON.stringify of the same state, V8's native
 *   serializer, as the floor for walking and printing that much data);
 * - validate_ms: what the agent does before a reload — write the candidate and run `haproxy -c` with every
 *   listening fd handed over (baseline: `haproxy -c` of a one-service config, the process start-up floor);
 * - plan_one_change_ms: plan() for a desired state one host event away from what runs (add, remove, weight or
 *   address of one random server; seeded), baseline: plan() of an unchanged state.
 * Then (unless --no-live) a live agent on the same state: its first start, `--applies` (1,000) one-host-change applies (weight or
 * address of one server, end to end: sanitize, plan, runtime commands, the coalesced haproxy.cfg write scheduled)
 * → live_change_p50_ms / live_change_p99_ms, with the floor interleaved: the same kind of runtime command alone on
 * the stats socket → live_floor_p50_ms / live_floor_p99_ms; and one reload (printed).
 *
 * `npm run bench -- scale [--services=2000] [--servers=20] [--no-live]`
 * → {"services":2000,"servers_per_service":20,"render_ms":…,"validate_ms":…,"plan_one_change_ms":…,"live_change_p50_ms":…,"live_change_p99_ms":…,"live_floor_p50_ms":…,"live_floor_p99_ms":…}
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { checkConfig } from '../agent/haproxy/config-check';
import { listenOrder, renderHaproxyConfig, RenderOptions } from '../agent/haproxy/render';
import { parseServersState } from '../agent/haproxy/servers-state';
import { NativeSocketPool } from '../agent/haproxy/sockets';
import { plan } from '../agent/runtime-plan';
import { DesiredState, Server, Service } from '../common/protocol/types';
import { sanitizeState } from '../common/haproxy/validate-state';
import { HTTP_DEFAULTS, startTestAgent } from '../testkit/agent';
import { bulkPortRange, tempDir } from '../testkit/net';
import {
  describeTimings,
  killAgentNow,
  median,
  ms,
  onInterrupt,
  pickIndex,
  quantile,
  repeat,
  say,
  seededRandom,
} from './lib-common';
import { defineBenchmark, Figures, flag, int, num, OptionsOf } from './harness';

const SEED = 20_000;

type LiveAgent = Awaited<ReturnType<typeof startTestAgent>>;

const options = {
  services: int(2000, 'services', 1),
  servers: int(20, 'servers per service', 1),
  noLive: flag('skip the live agent (render, validate and plan only)'),
  applies: int(1000, 'one-host changes applied by the live agent (and as many floor samples)', 1),
};

async function run(o: OptionsOf<typeof options>): Promise<Figures> {
  const { services: serviceCount, servers: perService } = o;
  const live = !o.noLive;
  say(`scale: ${serviceCount} services × ${perService} servers = ${serviceCount * perService} servers`);

  const tmp = tempDir('proxymgr-bench-scale-');
  let liveAgent: LiveAgent | undefined;
  const removeHandlers = onInterrupt(() => {
    killAgentNow(liveAgent);
    tmp.cleanup();
  });
  // HAProxy checks `bind fd@N` even with -c, so validation needs one real listening fd per service: 2,000 fds
  // handed over through spawn's stdio array (fine below `ulimit -n`; the agent does exactly this).
  const pool = new NativeSocketPool(128);
  try {
    const ports = acquirePorts(pool, serviceCount);
    const desired = bigState(ports, perService, ['check inter 2000']);
    const opts: RenderOptions = {
      socketPath: path.join(tmp.dir, 'haproxy.sock'),
      serverStateFile: path.join(tmp.dir, 'server-state'),
      hardStopAfterMs: 30_000,
    };

    // Render.
    const text = renderHaproxyConfig(desired, opts);
    renderHaproxyConfig(structuredClone(desired), opts); // warm-up: the first calls run before V8 has optimized anything
    // Cold: fresh service objects each time (the render memoizes each service's section per object).
    const clones = Array.from({ length: 10 }, () => structuredClone(desired));
    const renders = await repeat(10, (i) => renderHaproxyConfig(clones[i]!, opts));
    // Warm, as after a runtime change: one service changed, the others' sections already rendered.
    const renderRand = seededRandom(SEED + 1);
    const oneChanged = Array.from({ length: 20 }, () => oneHostChange(desired, renderRand, ['weight']).state);
    const renderOne = await repeat(20, (i) => renderHaproxyConfig(oneChanged[i]!, opts));
    const jsons = await repeat(10, () => JSON.stringify(desired));
    say(`render: ${describeTimings(renders)}; ${(text.length / 1e6).toFixed(1)} MB, ${text.split('\n').length} lines`);
    say(`  after one host change (other sections memoized): ${describeTimings(renderOne)}`);
    say(`  baseline JSON.stringify of the state: ${describeTimings(jsons)}`);

    // Validate, as the agent does it: candidate file + `haproxy -c` with every fd in listen order.
    const fds = listenOrder(desired).map((s) => pool.acquire(s.bindAddress, s.port));
    const candidate = path.join(tmp.dir, 'haproxy.cfg.candidate');
    const validates = await repeat(3, async () => {
      await fsp.writeFile(candidate, text);
      await checkConfig('haproxy', candidate, text, fds);
    });
    const one = bigState(ports.slice(0, 1), perService, ['check inter 2000']);
    const oneText = renderHaproxyConfig(one, opts);
    const floors = await repeat(3, async () => {
      await fsp.writeFile(candidate, oneText);
      await checkConfig('haproxy', candidate, oneText, fds.slice(0, 1));
    });
    say(`validate (haproxy -c, ${fds.length} fds): ${describeTimings(validates)}`);
    say(`  baseline haproxy -c of one service: ${describeTimings(floors)}`);

    // Plan one host change against what runs. `actual` is parsed from a `show servers state` text in HAProxy
    // 2.6's format, as the agent reads it on every apply.
    const stateText = serversStateText(desired);
    const parses = await repeat(5, () => parseServersState(stateText));
    const actual = parseServersState(stateText);
    const sanitizes = await repeat(5, () => sanitizeState(desired, desired));
    const rand = seededRandom(SEED);
    // Fresh objects, as a state decoded from the gRPC stream is: nothing shared with what runs.
    const changes = Array.from({ length: 200 }, () => oneHostChange(desired, rand)).map((c) => ({
      ...c,
      state: structuredClone(c.state),
    }));
    for (const c of changes.slice(0, 20)) plan(c.state, desired, actual); // warm-up
    const plans: number[] = [];
    for (const c of changes) {
      const start = performance.now();
      const p = plan(c.state, desired, actual);
      plans.push(performance.now() - start);
      if (p.reloadReasons.length > 0 || p.actions.length === 0)
        throw new Error(`plan of "${c.what}": expected runtime actions, got ${JSON.stringify(p).slice(0, 300)}`);
    }
    // As the agent plans an update from the stream (protocol 2): unchanged services are the objects that run, and
    // only the changed one is looked at server by server (plan's skipSame).
    const deltaRand = seededRandom(SEED + 2);
    const deltas = Array.from({ length: 200 }, () => oneHostChange(desired, deltaRand));
    const deltaPlans: number[] = [];
    for (const c of deltas) {
      const start = performance.now();
      const p = plan(c.state, desired, actual, undefined, true);
      deltaPlans.push(performance.now() - start);
      if (p.reloadReasons.length > 0 || p.actions.length === 0)
        throw new Error(`delta plan of "${c.what}": expected runtime actions, got ${JSON.stringify(p).slice(0, 300)}`);
    }
    const fresh = structuredClone(desired);
    const unchanged = await repeat(50, () => plan(fresh, desired, actual));
    say(`plan of one host change (add/remove/weight/address), every server compared: ${describeTimings(plans)}`);
    say(
      `  the same, unchanged services skipped by identity (what an update from the stream does): ${describeTimings(deltaPlans)}`,
    );
    say(`  baseline plan of an unchanged state: ${describeTimings(unchanged)}`);
    say(`also on every apply: sanitizeState ${describeTimings(sanitizes)}`);
    say(
      `                     parse show servers state (${(stateText.length / 1e6).toFixed(1)} MB): ${describeTimings(parses)}`,
    );
    const cpuPath = median(sanitizes) + median(parses) + median(plans) + median(renders);
    say(
      `  → CPU of one runtime apply of a whole new state (sanitize + parse + full plan + cold render): ~${ms(cpuPath)} ms; an update from the stream skips most of it (see the live figures)`,
    );

    const result = {
      services: serviceCount,
      servers_per_service: perService,
      render_ms: ms(median(renders)),
      validate_ms: ms(median(validates)),
      plan_one_change_ms: ms(median(plans)),
      plan_one_change_delta_ms: ms(median(deltaPlans)),
      render_one_change_ms: ms(median(renderOne)),
    };

    pool.closeAll();
    if (!live) return result;
    const figures = await liveApplies(ports, perService, o.applies, rand, (t) => (liveAgent = t));
    return { ...result, ...figures };
  } finally {
    pool.closeAll();
    tmp.cleanup();
    removeHandlers();
  }
}

/**
 * A real agent on the same state, minus health checks (40,000 checks against addresses that do not exist would
 * load the 2 cores and measure the checks, not the agent): first start, then one-host-change applies.
 */
async function liveApplies(
  ports: number[],
  perService: number,
  count: number,
  rand: () => number,
  started: (t: LiveAgent) => void,
): Promise<{
  live_change_p50_ms: number;
  live_change_p99_ms: number;
  live_floor_p50_ms: number;
  live_floor_p99_ms: number;
  live_change_p99_over_floor_ms: number;
  live_change_cpu_ms: number;
  live_applies: number;
}> {
  const t = await startTestAgent();
  started(t);
  try {
    const start = bigState(ports, perService, []);
    const first = await t.agent.apply(start);
    if (first.outcome !== 'reload')
      throw new Error(`live agent did not start: ${first.outcome} ${first.error?.message ?? ''}`);
    say(`live agent: first start (sanitize, render, haproxy -c, start, show servers state) ${first.durationMs} ms`);
    let current = start;
    const applies: number[] = [];
    const floor: number[] = [];
    let cpuMicros = 0;
    for (let i = 0; i < count; i++) {
      // Weight and address changes keep the state the same size, so every apply sees the same work.
      const next = oneHostChange(current, rand, ['weight', 'address']).state;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const r = await t.agent.apply(next);
      applies.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpuMicros += c.user + c.system;
      if (r.outcome !== 'runtime')
        throw new Error(
          `live apply ${i}: expected runtime, got ${r.outcome} ${r.reasons.map((x) => x.text).join('; ')}`,
        );
      current = next;
      // The floor, interleaved: the runtime command alone, sent straight to the stats socket.
      const svc = current.services[pickIndex(rand, current.services.length)]!;
      const f0 = performance.now();
      await t.runtime.command(`set server ${svc.name}/${svc.servers[0]!.name} weight ${svc.servers[0]!.weight}`);
      floor.push(performance.now() - f0);
    }
    await t.agent.flushFiles();
    say(
      `live agent: one host change applied at runtime: ${describeTimings(applies)}; reloads after start ${t.agent.counters.reloads - 1}`,
    );
    say(`  floor: the same kind of runtime command alone on the stats socket: ${describeTimings(floor)}`);
    const q = (xs: number[], p: number) => ms(quantile(xs, p));
    // One shape change for comparison: a reload at this size (validate, new process on 2,000 fds, -sf).
    const [svc0, ...rest] = current.services;
    const reshaped = {
      ...current,
      version: `${current.version}+reshape`,
      services: [{ ...svc0!, listenOptions: [...svc0!.listenOptions, 'option forwardfor'] }, ...rest],
    };
    const reload = await t.agent.apply(reshaped);
    if (reload.outcome !== 'reload')
      throw new Error(`live reload: expected reload, got ${reload.outcome} ${reload.error?.message ?? ''}`);
    say(
      `live agent: one listen_options change → reload in ${reload.durationMs} ms (${reload.reasons.map((x) => x.text).join('; ')})`,
    );
    say(
      `  the agent's CPU per apply (this process: sanitize, plan, commands, file writes): ${ms(cpuMicros / 1000 / count)} ms`,
    );
    return {
      live_change_p50_ms: q(applies, 0.5),
      live_change_p99_ms: q(applies, 0.99),
      live_floor_p50_ms: q(floor, 0.5),
      live_floor_p99_ms: q(floor, 0.99),
      live_change_p99_over_floor_ms: ms(quantile(applies, 0.99) - quantile(floor, 0.99)),
      live_change_cpu_ms: ms(cpuMicros / 1000 / count),
      live_applies: count,
    };
  } finally {
    await t.close();
  }
}

/** Listens on `n` ports of the kit's bulk range (bulkPortRange), skipping ports in use. */
function acquirePorts(pool: NativeSocketPool, n: number): number[] {
  const ports: number[] = [];
  const { low, high } = bulkPortRange();
  for (let port = low; ports.length < n; port++) {
    if (port > high) throw new Error(`cannot find ${n} free ports between ${low} and ${high}`);
    try {
      pool.acquire('127.0.0.1', port);
      ports.push(port);
    } catch {
      // in use: next one
    }
  }
  return ports;
}

function bigState(ports: readonly number[], perService: number, serverOptions: string[]): DesiredState {
  const services: Service[] = ports.map((port, i) => ({
    name: `svc-${String(i).padStart(4, '0')}`,
    port,
    bindAddress: '127.0.0.1',
    listenOptions: ['mode http', 'balance roundrobin', 'option httpchk GET /health'],
    serverOptions,
    servers: Array.from({ length: perService }, (_, j) => host(i, j)),
  }));
  return { version: `scale-${ports.length}x${perService}`, haproxy: { global: [], defaults: HTTP_DEFAULTS }, services };
}

function host(service: number, j: number, weight = 1): Server {
  return {
    name: `h${String(j).padStart(3, '0')}`,
    address: `10.${(service >> 8) & 255}.${service & 255}.${10 + (j % 240)}`,
    port: 8080,
    weight,
    options: [],
  };
}

type ChangeKind = 'add' | 'remove' | 'weight' | 'address';

/**
 * `state` with one random host event in one random service; the other services are shared, as in an immutable
 * snapshot the control plane would send.
 */
function oneHostChange(
  state: DesiredState,
  rand: () => number,
  kinds: ChangeKind[] = ['add', 'remove', 'weight', 'address'],
): { state: DesiredState; what: string } {
  const si = pickIndex(rand, state.services.length);
  const svc = state.services[si]!;
  const kind = kinds[pickIndex(rand, kinds.length)]!;
  const hi = pickIndex(rand, svc.servers.length);
  const h = svc.servers[hi]!;
  let servers: Server[];
  switch (kind) {
    case 'add':
      servers = [
        ...svc.servers,
        {
          ...host(si, 0),
          name: `n${Math.floor(rand() * 1e9)}`,
          address: `10.200.${si & 255}.${1 + pickIndex(rand, 250)}`,
        },
      ];
      break;
    case 'remove':
      servers = svc.servers.filter((_, k) => k !== hi);
      break;
    case 'weight':
      servers = svc.servers.map((s, k) =>
        k === hi ? { ...s, weight: s.weight === 1 ? 2 + pickIndex(rand, 50) : 1 } : s,
      );
      break;
    case 'address':
      servers = svc.servers.map((s, k) =>
        k === hi
          ? { ...s, address: `10.201.${si & 255}.${1 + pickIndex(rand, 250)}`, port: 9000 + pickIndex(rand, 1000) }
          : s,
      );
      break;
  }
  const services = state.services.map((s, k) => (k === si ? { ...svc, servers } : s));
  return { state: { ...state, version: `${state.version}+${kind}`, services }, what: `${kind} ${svc.name}/${h.name}` };
}

/** `show servers state` as HAProxy 2.6 prints it for `state` (every server up, not in maint). */
function serversStateText(state: DesiredState): string {
  const lines = [
    '1',
    '# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port',
  ];
  listenOrder(state).forEach((svc, i) =>
    svc.servers.forEach((s, j) =>
      lines.push(
        `${i + 2} ${svc.name} ${j + 1} ${s.name} ${s.address} 2 0 ${s.weight} ${s.weight} 0 6 3 4 6 0 0 0 - ${s.port} - 0 0 - - 0`,
      ),
    ),
  );
  return lines.join('\n') + '\n';
}

export const benchmark = defineBenchmark({
  name: 'scale',
  summary: 'render, haproxy -c, plan and live one-host applies at 2,000 services × 20 servers, each against a floor',
  options,
  smoke: { services: 40, servers: 5, applies: 50 },
  fields: [
    'render_ms',
    'validate_ms',
    'plan_one_change_ms',
    'live_change_p50_ms',
    'live_change_p99_ms',
    'live_floor_p99_ms',
  ],
  run,
  targets: (r) => {
    const wallClock = 'wall clock on 2 shared cores; judged against the stats socket floor measured in the same run';
    const offline = [
      {
        name: 'plan_one_change_delta_ms ≤ 5 ms',
        held: num(r.plan_one_change_delta_ms) <= 5,
        value: r.plan_one_change_delta_ms,
      },
      { name: 'render_ms ≤ 200 ms', held: num(r.render_ms) <= 200, value: r.render_ms },
    ];
    if (r.live_change_p50_ms === undefined) return offline; // --no-live
    return [
      ...offline,
      {
        name: 'live_change_p50_ms − live_floor_p50_ms ≤ 5 ms',
        held: num(r.live_change_p50_ms) - num(r.live_floor_p50_ms) <= 5,
        value: ms(num(r.live_change_p50_ms) - num(r.live_floor_p50_ms)),
      },
      {
        name: 'live_change_p99_ms − live_floor_p99_ms ≤ 20 ms',
        held: num(r.live_change_p99_over_floor_ms) <= 20,
        value: r.live_change_p99_over_floor_ms,
      },
      {
        name: 'live_change_p50_ms ≤ 5 ms',
        held: num(r.live_change_p50_ms) <= 5,
        value: r.live_change_p50_ms,
        notJudged: wallClock,
      },
      {
        name: 'live_change_p99_ms ≤ 20 ms',
        held: num(r.live_change_p99_ms) <= 20,
        value: r.live_change_p99_ms,
        notJudged: wallClock,
      },
    ];
  },
});
