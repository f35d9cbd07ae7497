/**
 * `npm run bench -- simulate [--schedules=2000] [--seed=1] [--steps=40]`: the deterministic simulator. The real
 * Agent (with the real HaproxySupervisor) and the real Discovery run on a simulated host and fleet through seeded
 * random schedules of pushes, HAProxy crashes, failing or slow starts and checks, stats-socket stalls, agent
 * restarts and kill -9 with takeover, control-plane restarts, silent or failing watchers and clock jumps; the
 * invariants of lib-sim-invariants.ts are checked after every step. A failing schedule is shrunk (delta debugging)
 * and printed with its seed; `--replay=SEED` runs one schedule again and prints its trace.
 */
import { createLogger } from '../common/platform/log';
import { defineBenchmark, Figures, int, intOrDefault, text } from './harness';
import { UsageError } from '../common/platform/args';
import { INVARIANTS, Invariant } from './lib-sim-invariants';
import { runSteps, RunResult } from './lib-sim-run';
import { describeStep, generateSchedule, shrinkSchedule, Step } from './lib-sim-schedule';
import { Mutant } from './lib-sim-world';

const MUTANTS: readonly Mutant[] = ['none', 'no-soft-stop', 'drain-all'];
/** Kinds of failure shrunk and printed per run (each shrink costs up to --shrink-runs schedules). */
const MAX_SHRUNK = 12;

/** The seed of schedule `i` of a run seeded `seed`. */
export function scheduleSeed(seed: number, i: number): number {
  let h = (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(i + 1, 0xc2b2ae35)) >>> 0;
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d) >>> 0;
  return (h ^ (h >>> 12)) >>> 0;
}

export interface Failure {
  readonly schedule_seed: number;
  readonly invariant: Invariant;
  readonly kind: string;
  /** Schedules of this run that failed this way. */
  readonly schedules: number;
  readonly message: string;
  readonly steps: number;
  /** The shortest failing schedule found, one step a line. */
  readonly shrunk: readonly string[];
  readonly shrunk_message: string;
  readonly replay: string;
}

/**
 * What kind of failure a violation is: its message with pids, ports, times, versions and names taken out, so that
 * two schedules hitting one defect count as one kind (and a shrink keeps to the defect it started from).
 */
export function failureKind(inv: Invariant, message: string): string {
  const shape = message
    .replace(/\([^)]*\)/g, '')
    .replace(/svc\d+/g, 'svc')
    .replace(/\bh\d+\b/g, 'h')
    .replace(/\b[0-9a-f]{8}\b/g, 'v')
    .replace(/\d+/g, 'n')
    .slice(0, 70);
  return `${inv}: ${shape}`;
}

/** Shrinks the failing schedule of `seed` while it fails with the same kind of violation. */
export async function shrinkFailure(
  seed: number,
  steps: number,
  r: RunResult,
  mutant: Mutant,
  budget: number,
): Promise<Failure> {
  const v = r.violation!;
  const schedule = generateSchedule(seed, steps);
  let last = r;
  const { steps: shortest } = await shrinkSchedule(
    schedule,
    async (candidate) => {
      const c = await runSteps(seed, candidate, { mutant });
      if (!c.violation || failureKind(c.violation.inv, c.violation.message) !== failureKind(v.inv, v.message))
        return false;
      last = c;
      return true;
    },
    budget,
  );
  return {
    schedule_seed: seed,
    invariant: v.inv,
    kind: failureKind(v.inv, v.message),
    schedules: 1,
    message: v.message,
    steps: schedule.length,
    shrunk: shortest.map(describeStep),
    shrunk_message: last.violation?.message ?? v.message,
    replay: `npm run bench -- simulate --replay=${seed} --steps=${steps}${mutant !== 'none' ? ` --mutant=${mutant}` : ''}`,
  };
}

export const benchmark = defineBenchmark({
  name: 'simulate',
  summary:
    'the deterministic simulator: the real agent and discovery on a simulated host through seeded fault schedules, invariants checked after every step',
  options: {
    schedules: int(2000, 'schedules to run', 1),
    seed: int(1, 'the seed of the run (schedule i has its own seed, derived from it)'),
    steps: int(40, 'events per schedule', 1),
    replay: intOrDefault('a schedule seed to run alone, printing its trace (-1: none)'),
    mutant: text('none', `a deliberately broken variant, to see the invariants fail: ${MUTANTS.join(', ')}`),
    shrinkRuns: int(300, 'runs delta debugging may spend on each failure shrunk'),
  },
  smoke: { schedules: 300, shrinkRuns: 60 },
  fields: [
    'schedules',
    'steps',
    'invariant_violations',
    'reproducible',
    'seed',
    'elapsed_ms',
    'schedules_per_s',
    'violations_by_invariant',
    'reproducible_checked',
    'failures',
  ],
  run: async (o, ctx) => {
    const mutant = o.mutant as Mutant;
    if (!MUTANTS.includes(mutant)) throw new UsageError(`--mutant: one of ${MUTANTS.join(', ')}`);
    if (o.replay >= 0) return replay(o.replay, o.steps, mutant, (line) => ctx.say(line));
    const started = performance.now();
    const byInvariant = Object.fromEntries(INVARIANTS.map((i) => [i, 0])) as Record<Invariant, number>;
    const digests: string[] = [];
    const failing: { seed: number; result: RunResult }[] = [];
    const counts: Record<string, number> = {};
    const maxima: Record<string, number> = {};
    let steps = 0;
    for (let i = 0; i < o.schedules; i++) {
      const seed = scheduleSeed(o.seed, i);
      const r = await runSteps(seed, generateSchedule(seed, o.steps), { mutant });
      digests.push(r.digest);
      steps += r.steps;
      for (const [k, v] of Object.entries(r.counts)) counts[k] = (counts[k] ?? 0) + v;
      for (const [k, v] of Object.entries(r.maxima)) maxima[k] = Math.max(maxima[k] ?? 0, v);
      if (r.violation) {
        byInvariant[r.violation.inv]++;
        failing.push({ seed, result: r });
        ctx.say(
          `schedule ${i} (seed ${seed}): invariant ${r.violation.inv} violated at step ${r.violation.step}: ${r.violation.message}`,
        );
      }
      if ((i + 1) % 1000 === 0) ctx.say(`${i + 1} schedules, ${failing.length} failing`);
    }
    const elapsed = performance.now() - started;

    // Same seed, same schedule, same result: a sample of the schedules (and every failing one) runs again, and its
    // trace digest must be the one of the first run.
    const sample = new Set<number>();
    const every = Math.max(1, Math.floor(o.schedules / Math.max(10, Math.ceil(o.schedules / 50))));
    for (let i = 0; i < o.schedules; i += every) sample.add(i);
    let reproducible = true;
    for (const i of sample) {
      const seed = scheduleSeed(o.seed, i);
      const again = await runSteps(seed, generateSchedule(seed, o.steps), { mutant });
      if (again.digest !== digests[i]) {
        reproducible = false;
        ctx.say(`schedule ${i} (seed ${seed}) did not replay the same: digest ${again.digest} ≠ ${digests[i]}`);
      }
    }
    for (const f of failing) {
      const again = await runSteps(f.seed, generateSchedule(f.seed, o.steps), { mutant });
      if (again.digest !== f.result.digest || again.violation?.message !== f.result.violation?.message) {
        reproducible = false;
        ctx.say(`failing seed ${f.seed} did not replay the same`);
      }
    }

    // The first failure of each kind (at most MAX_SHRUNK kinds), shrunk.
    const kinds = new Map<string, { first: (typeof failing)[number]; n: number }>();
    for (const f of failing) {
      const k = failureKind(f.result.violation!.inv, f.result.violation!.message);
      const known = kinds.get(k);
      if (known) known.n++;
      else kinds.set(k, { first: f, n: 1 });
    }
    const failures: Failure[] = [];
    for (const [kind, { first, n }] of [...kinds].slice(0, MAX_SHRUNK)) {
      const shrunk = {
        ...(await shrinkFailure(first.seed, o.steps, first.result, mutant, o.shrinkRuns)),
        schedules: n,
      };
      failures.push(shrunk);
      ctx.say(
        `\n${kind} (${n} schedule(s)): seed ${shrunk.schedule_seed}, shrunk from ${shrunk.steps} to ${shrunk.shrunk.length} steps:\n  ${shrunk.shrunk.join('\n  ')}\n  → ${shrunk.shrunk_message}\n  replay: ${shrunk.replay}`,
      );
    }
    const result: Figures = {
      schedules: o.schedules,
      steps,
      invariant_violations: failing.length,
      reproducible,
      seed: o.seed,
      elapsed_ms: Math.round(elapsed),
      schedules_per_s: Math.round((o.schedules / elapsed) * 1000 * 10) / 10,
      violations_by_invariant: byInvariant,
      reproducible_checked: sample.size + failing.length,
      failures,
      failing_seeds: failing.slice(0, 50).map((f) => ({ seed: f.seed, invariant: f.result.violation!.inv })),
      mutant,
      counts,
      maxima,
    };
    return result;
  },
  targets: (r) => [
    {
      name: 'invariant_violations = 0',
      held: r.invariant_violations === 0,
      value: r.invariant_violations,
      smoke: true,
    },
    { name: 'reproducible', held: r.reproducible === true, value: r.reproducible, smoke: true },
  ],
});

async function replay(seed: number, steps: number, mutant: Mutant, say: (msg: string) => void): Promise<Figures> {
  const schedule: Step[] = generateSchedule(seed, steps);
  const started = performance.now();
  // PROXYMGR_SIM_LOG=1: the agent's and discovery's own log lines too (on stderr), to see why.
  const log = process.env.PROXYMGR_SIM_LOG ? createLogger({ sim: seed }, 'info') : undefined;
  const r = await runSteps(seed, schedule, { mutant, keepTrace: true, ...(log ? { log } : {}) });
  const again = await runSteps(seed, schedule, { mutant });
  say(
    `schedule of seed ${seed}:\n  ${schedule.map(describeStep).join('\n  ')}\n\ntrace:\n${(r.trace ?? []).join('\n')}`,
  );
  const byInvariant = Object.fromEntries(INVARIANTS.map((i) => [i, 0])) as Record<Invariant, number>;
  if (r.violation) byInvariant[r.violation.inv]++;
  return {
    schedules: 1,
    steps: r.steps,
    invariant_violations: r.violation ? 1 : 0,
    reproducible: again.digest === r.digest,
    seed,
    elapsed_ms: Math.round(performance.now() - started),
    schedules_per_s: 0,
    violations_by_invariant: byInvariant,
    reproducible_checked: 1,
    failures: r.violation
      ? [
          {
            schedule_seed: seed,
            invariant: r.violation.inv,
            kind: failureKind(r.violation.inv, r.violation.message),
            message: r.violation.message,
          },
        ]
      : [],
    digest: r.digest,
  };
}
