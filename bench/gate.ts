/**
 * gate: preflight and traffic gates against real components — ZooKeeper, one control plane (the built CLI), N
 * agents (default 5) each with its own HAProxy on its own 127.0.0.x, real HTTP backends, and paced HTTP clients
 * through every agent the whole time (bench/lib-gate.ts). Policy: waves 1, 50 %, 100 %; bake `--bake-ms`; gate
 * sample_ms 1000, min_requests 20; auto_rollback. Three cases in sequence (bench/lib-gate-cases.ts):
 *
 *   (a) a revision HAProxy accepts but that answers 503 → halted at wave 1 by the traffic gate, rolled back; only
 *       the canary was given it and only the canary's clients saw failures; detect_ms = finishedAt − wave 1 ackedAt
 *   (b) a new service on a port taken on one agent's IP → preflight halts the rollout, nobody is given it
 *   (c) a harmless change → every judged wave passes, the rollout completes (no false positive)
 *   (d) poisoned: the 503 revision again while one more agent (a raw gRPC client) floods Stats as a stable agent,
 *       each claiming a million more requests, all 5xx → the gate still halts at wave 1 (poisoned_halted)
 *
 * And noisy cases on simulated traffic judged by the product's gate (bench/lib-gate-noisy.ts, seconds of CPU):
 * `--good-revisions` good revisions over a per-agent background of 1–2 % 5xx → `false_halts`; `--bad-revisions`
 * each of +3 and +10 points over 1 % and +200 ms of response time → `missed`, `detect_ms_p50`.
 *
 * Baseline, same run, same fleet and load: failed requests over a quiet period before any rollout.
 *
 * `npm run bench -- gate [--agents=5] [--bake-ms=8000] [--rate=40] [--quiet-ms=12000]`
 * → {"halted_at_wave":1,"rolled_back":true,"agents_given_bad_revision":1,"failed_requests_outside_canary":0,
 *    "detect_ms":…,"bake_ms":8000,"preflight_blocked":true,"agents_given_preflight_failing_revision":0,
 *    "good_completed":true,"good_gate_verdicts":["pass","pass"],"false_positive":false,…}
 */
import * as path from 'node:path';
import { sleep } from '../testkit/net';
import { say } from './lib-common';
import { badRevisionCase, byAgent, goodRevisionCase, poisonedCase, preflightBlockedCase } from './lib-gate-cases';
import { GateFleet } from './lib-gate';
import { CLI, onInterruptStopChildren, startCli } from './lib-grpc';
import { defineBenchmark, Figures, int, OptionsOf } from './harness';
import { runNoisy } from './lib-gate-noisy';
import { DEFAULT_GATE_POLICY, GatePolicy } from '../common/config/config';

const options = {
  agents: int(5, 'agents, each with a real HAProxy', 5),
  bakeMs: int(8000, 'bake per wave'),
  rate: int(40, 'requests per second through each agent', 1),
  quietMs: int(12000, 'traffic before the first rollout (the failure baseline)'),
  goodRevisions: int(20, 'noisy cases: good revisions over a 1–2 % background of 5xx (simulated traffic)'),
  badRevisions: int(5, 'noisy cases: rollouts of each bad kind (+3 points, +10 points, +200 ms)', 1),
  noisyBakeMs: int(30000, 'noisy cases: bake per wave (simulated clock)', 1000),
  noisyRate: int(40, 'noisy cases: requests per second through each agent (simulated)', 1),
  seed: int(22, 'noisy cases: the seed of the simulated traffic'),
};

/**
 * The gate policy of the noisy cases: the bench's fleet policy with shares allowed +1 point (a +3 points regression
 * must be able to halt) and the product's defaults otherwise (false_halt_rate 0.01, rtime +100 ms).
 */
const NOISY_POLICY: GatePolicy = {
  ...DEFAULT_GATE_POLICY,
  minRequests: 20,
  sampleMs: 1000,
  thresholds: { ...DEFAULT_GATE_POLICY.thresholds, http_5xx: 0.01, errors: 0.01, retries: 0.01 },
};

async function run(o: OptionsOf<typeof options>): Promise<Figures> {
  const agents = o.agents;
  const bakeMs = o.bakeMs;
  const rate = o.rate;
  // The quiet period is the failure baseline, and gives every agent time to send two counter samples (every 10 s
  // outside rollouts) before the first rollout: the gates' "before" figure needs two samples of an agent before its ACK.
  const quietMs = o.quietMs;
  const sampleMs = 1000;
  const minRequests = 20;
  say(
    `gate: ${agents} agents (real HAProxy each), 1 control plane, waves 1,50%,100%, bake ${bakeMs} ms, gate sample_ms ${sampleMs} min_requests ${minRequests}, ${rate} req/s through each agent`,
  );
  // The noisy cases first: simulated traffic judged by the product's gate, seconds of CPU.
  const n0s = Date.now();
  const noisy = runNoisy({
    agents,
    ratePerAgent: o.noisyRate,
    bakeMs: o.noisyBakeMs,
    sampleMs,
    policy: NOISY_POLICY,
    goodRevisions: o.goodRevisions,
    badRevisions: o.badRevisions,
    seed: o.seed,
  });
  for (const x of noisy.runs)
    if (x.halted || x.kind !== 'good')
      say(
        `(noisy) ${x.kind}: ${x.halted ? `halted at wave ${x.wave} after ${x.detectMs} ms: ${x.reason}` : 'not halted'}`,
      );
  say(
    `(noisy) ${o.goodRevisions} good revision(s): ${noisy.falseHalts} halted; ${3 * o.badRevisions} bad: ${noisy.missed} missed, detection p50 ${noisy.detectMsP50} ms (${Date.now() - n0s} ms of CPU)`,
  );
  let fleet: GateFleet | undefined;
  const offInterrupt = onInterruptStopChildren(async () => {
    await fleet?.close();
  });
  const t0 = Date.now();
  try {
    fleet = await GateFleet.start({
      cli: CLI,
      // Control planes log at debug: the pushes counted per agent are debug lines.
      start: (argv, name, dir) => {
        const c = startCli(argv, path.join(dir, `${name}.log`), 'debug');
        return { proc: c.proc, logs: () => c.logs(), kill: () => c.stop(0, 'SIGKILL'), stop: () => c.stop() };
      },
      agents,
      controlPlanes: 1,
      bakeMs,
      sampleMs,
      minRequests,
      ratePerAgent: rate,
      say,
    });
    const f = fleet;

    // Baseline: the same load through every agent, no rollout.
    const q0 = Date.now();
    const n0 = f.load.total();
    await sleep(quietMs);
    const quietFailures = f.load.failures(q0, Date.now());
    say(`baseline: ${f.load.total() - n0} requests in a ${quietMs} ms quiet period, ${quietFailures.length} failed`);

    say('(a) a revision HAProxy accepts but that answers 503 …');
    const a = await badRevisionCase(f);
    const wave1 = a.rollout.waves[0];
    say(`(a) rollout ${a.rollout.id}: ${a.rollout.state} after ${a.rollout.waves.length} wave(s): ${a.rollout.reason}`);
    say(
      `(a) canary ${a.canary.join(',')}; pushed to ${a.pushedTo.join(',') || 'nobody'}; detect ${a.detectMs} ms after wave 1 ACKed (bake ${bakeMs} ms); canary clients saw ${a.failuresCanary.length} failures over ${a.canaryBadMs} ms; outside the canary ${a.failuresOutsideCanary.length} of ${a.requests} requests failed`,
    );
    say(a.statusText);

    say("(b) a new service on a port taken on one agent's IP …");
    const b = await preflightBlockedCase(f);
    say(`(b) rollout ${b.rollout.id}: ${b.rollout.state}: ${b.rollout.reason}`);
    say(`(b) pushes of it: ${b.pushes}; abort → ${b.abort.state}; ${b.failures.length} failed requests meanwhile`);
    say(b.statusText);

    say('(c) a harmless change …');
    const c = await goodRevisionCase(f);
    say(
      `(c) rollout ${c.rollout.id}: ${c.rollout.state} in ${c.totalMs} ms: ${c.rollout.reason}; gate verdicts ${c.verdicts.join(',')}; ${c.failures.length} of ${c.requests} requests failed`,
    );
    say(c.statusText);

    say(
      '(d) poisoned: the 503 revision while one more agent floods Stats claiming huge 5xx counts as a stable agent …',
    );
    const d = await poisonedCase(f);
    say(
      `(d) rollout ${d.bad.rollout.id}: ${d.bad.rollout.state} after ${d.bad.rollout.waves.length} wave(s): ${d.bad.rollout.reason}; the poisoner wrote ${d.statsSent} Stats in ${d.floodMs} ms`,
    );
    say(d.bad.statusText);
    const d5xx = d.bad.rollout.waves[0]?.gate?.figures.find((x) => x.key === 'web' && x.metric === 'http_5xx');

    const figures = wave1?.gate?.figures ?? [];
    const regressed = figures
      .filter((x) => x.regressed)
      .map((x) => `${x.key}:${x.metric}=${+(x.canary * 100).toFixed(1)}%`);
    const all5xx = figures.find((x) => x.key === '*' && x.metric === 'http_5xx');
    return {
      agents,
      control_planes: 1,
      bake_ms: bakeMs,
      gate_sample_ms: sampleMs,
      gate_min_requests: minRequests,
      requests_per_s_per_agent: rate,
      baseline_request_failures_before_rollouts: quietFailures.length,
      baseline_quiet_ms: quietMs,
      // (a)
      bad_state: a.rollout.state,
      halted_at_wave: a.rollout.waves.length,
      rolled_back: a.rollout.state === 'rolled_back',
      bad_reason_is_traffic_gate: /traffic gate/.test(a.rollout.reason),
      bad_gate_verdict: wave1?.gate?.verdict ?? '',
      bad_gate_regressed: regressed,
      // The figure that failed it, over all services: the canary's 5xx share vs the stable agents' in the same window
      // and the canary's own before its ACK (absent: fewer than min_requests there).
      bad_gate_http_5xx_all: all5xx
        ? { canary: all5xx.canary, stable: all5xx.stable, before: all5xx.before, requests: all5xx.requests }
        : null,
      agents_given_bad_revision: a.pushedTo.length,
      failed_requests_outside_canary: a.failuresOutsideCanary.length,
      failed_requests_canary: a.failuresCanary.length,
      canary_clients_saw_bad_ms: a.canaryBadMs,
      detect_ms: a.detectMs,
      detect_within_bake_plus_5s: a.detectMs <= bakeMs + 5000,
      // (b)
      preflight_blocked: b.rollout.state === 'halted' && b.rollout.reason.startsWith('preflight failed'),
      preflight_failed_agents: b.rollout.preflight?.failed.map((x) => x.nodeId) ?? [],
      preflight_blocked_agent: b.blockedAgent,
      agents_given_preflight_failing_revision: b.pushes,
      preflight_aborted: b.abort.state === 'aborted',
      failed_requests_during_preflight_case: b.failures.length,
      // (c)
      good_completed: c.rollout.state === 'completed',
      good_gate_verdicts: c.verdicts,
      false_positive: c.rollout.state !== 'completed' || c.verdicts.some((v) => v !== 'pass'),
      good_total_ms: c.totalMs,
      failed_requests_during_good_rollout: c.failures.length,
      failed_requests_by_agent_good: byAgent(f, c.failures),
      // (d)
      poisoned_halted: d.halted,
      poisoned_state: d.bad.rollout.state,
      poisoned_reason: d.bad.rollout.reason,
      poisoned_stats_sent: d.statsSent,
      poisoned_stats_per_s: Math.round(d.statsSent / Math.max(0.001, d.floodMs / 1000)),
      poisoned_agents_given_bad_revision: d.bad.pushedTo.length,
      poisoned_gate_http_5xx_web: d5xx
        ? { canary: d5xx.canary, stable: d5xx.stable, before: d5xx.before, median: d5xx.median, voices: d5xx.voices }
        : null,
      // Noisy cases (simulated traffic, the product's judge; bench/lib-gate-noisy.ts)
      false_halts: noisy.falseHalts,
      missed: noisy.missed,
      detect_ms_p50: noisy.detectMsP50,
      noisy_detect_ms_p50_by_kind: noisy.detectMsByKind,
      noisy_good_revisions: o.goodRevisions,
      noisy_bad_revisions: 3 * o.badRevisions,
      noisy_bake_ms: o.noisyBakeMs,
      noisy_requests_per_s_per_agent: o.noisyRate,
      noisy_threshold_http_5xx: NOISY_POLICY.thresholds.http_5xx,
      noisy_false_halt_rate: NOISY_POLICY.falseHaltRate,
      noisy_halt_reason_example: noisy.runs.find((x) => x.kind === 'bad+3' && x.halted)?.reason ?? '',
      requests_total: f.load.total(),
      total_s: Math.round((Date.now() - t0) / 100) / 10,
    };
  } catch (err) {
    // Keep the logs of a failed run (control plane at debug, agents) for a look.
    if (fleet) say(`failed; logs kept in ${fleet.tmpDir}`);
    await fleet?.close(true);
    fleet = undefined;
    throw err;
  } finally {
    await fleet?.close();
    offInterrupt();
  }
}

export const benchmark = defineBenchmark({
  name: 'gate',
  summary:
    'preflight and traffic gates against real HAProxy and traffic: a bad canary halted, a good revision completed',
  options,
  smoke: { bakeMs: 2000, quietMs: 3000, rate: 20, goodRevisions: 3, badRevisions: 1, noisyBakeMs: 30000 },
  fields: [
    'bad_state',
    'rolled_back',
    'preflight_blocked',
    'good_completed',
    'false_positive',
    'poisoned_halted',
    'detect_ms',
    'false_halts',
    'missed',
    'detect_ms_p50',
  ],
  run,
  targets: (r) => [
    { name: 'a bad canary is rolled back', held: r.rolled_back === true, value: String(r.bad_state), smoke: true },
    {
      name: 'preflight blocks a revision HAProxy refuses',
      held: r.preflight_blocked === true,
      value: String(r.preflight_blocked),
      smoke: true,
    },
    {
      name: 'a canary poisoned by one flooding agent still halts',
      held: r.poisoned_halted === true,
      value: String(r.poisoned_state),
      smoke: true,
    },
    {
      name: 'noisy: no good revision halted by chance',
      held: r.false_halts === 0,
      value: r.false_halts,
      smoke: true,
    },
    { name: 'noisy: every bad revision halted', held: r.missed === 0, value: r.missed, smoke: true },
    {
      name: 'a good revision completes (no false positive)',
      held: r.false_positive === false,
      value: String(r.good_completed),
    },
  ],
});
