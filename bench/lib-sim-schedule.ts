/**
 * Schedules of `bench simulate`: seeded random sequences of events (each with the time that passes after it), their
 * text form for reports, and delta debugging to shrink a failing schedule. Events carry every parameter they need,
 * so any subsequence of a schedule is itself a schedule (what shrinking runs).
 */
import { seededRandom } from './lib-common';
import { HOSTS, SERVICES, WatchMode } from './lib-sim-fleet';

export type SimEvent =
  | { readonly k: 'host+' | 'host-'; readonly s: number; readonly h: number }
  | { readonly k: 'weight'; readonly s: number; readonly h: number; readonly w: number }
  | { readonly k: 'opt' | 'sopt' | 'port' | 'bind' | 'bad' | 'svc+' | 'svc-'; readonly s: number }
  | { readonly k: 'watch'; readonly s: number; readonly mode: WatchMode }
  | { readonly k: 'source'; readonly ok: boolean }
  | { readonly k: 'crash'; readonly which: 'current' | 'any' }
  | { readonly k: 'spawnfail' | 'checkfail'; readonly n: number }
  | { readonly k: 'startcrash' }
  | { readonly k: 'slowstart' | 'stall' | 'refuse' | 'checkslow' | 'diskfull' | 'jump'; readonly ms: number }
  | { readonly k: 'porttaken'; readonly s: number; readonly ms: number }
  | { readonly k: 'agent-restart' }
  | { readonly k: 'agent-kill'; readonly downMs: number }
  | { readonly k: 'cp-restart'; readonly silent: readonly number[] };

/** One step: an event, then `dt` ms of simulated time. */
export type Step = SimEvent & { readonly dt: number };

type Gen = (r: () => number) => SimEvent;
const int = (r: () => number, n: number) => Math.floor(r() * n);
const pick = <T>(r: () => number, xs: readonly T[]): T => xs[int(r, xs.length)]!;
const svc = (r: () => number) => int(r, SERVICES);

/** Event kinds with their weights: host churn most, faults of every kind, restarts now and then. */
const KINDS: readonly [number, Gen][] = [
  [14, (r) => ({ k: 'host+', s: svc(r), h: int(r, HOSTS) })],
  [12, (r) => ({ k: 'host-', s: svc(r), h: int(r, HOSTS) })],
  [4, (r) => ({ k: 'weight', s: svc(r), h: int(r, HOSTS), w: pick(r, [0, 1, 5, 20]) })],
  [4, (r) => ({ k: 'opt', s: svc(r) })],
  [2, (r) => ({ k: 'sopt', s: svc(r) })],
  [2, (r) => ({ k: 'port', s: svc(r) })],
  [1, (r) => ({ k: 'bind', s: svc(r) })],
  [2, (r) => ({ k: 'bad', s: svc(r) })],
  [3, (r) => ({ k: 'svc+', s: svc(r) })],
  [3, (r) => ({ k: 'svc-', s: svc(r) })],
  [7, (r) => ({ k: 'watch', s: svc(r), mode: pick(r, ['ok', 'ok', 'failing', 'silent', 'missing'] as const) })],
  [1, (r) => ({ k: 'source', ok: r() < 0.5 })],
  [6, (r) => ({ k: 'crash', which: r() < 0.7 ? 'current' : 'any' })],
  [2, (r) => ({ k: 'spawnfail', n: 1 + int(r, 3) })],
  [2, () => ({ k: 'startcrash' })],
  [2, (r) => ({ k: 'slowstart', ms: pick(r, [200, 3000, 12_000]) })],
  [3, (r) => ({ k: 'stall', ms: pick(r, [50, 1000, 7000]) })],
  [2, (r) => ({ k: 'refuse', ms: pick(r, [50, 1000, 4000]) })],
  [2, (r) => ({ k: 'checkslow', ms: pick(r, [100, 2000, 30_000]) })],
  [2, (r) => ({ k: 'checkfail', n: 1 + int(r, 2) })],
  [1, (r) => ({ k: 'porttaken', s: svc(r), ms: pick(r, [500, 5000]) })],
  [1, (r) => ({ k: 'diskfull', ms: pick(r, [300, 4000]) })],
  [2, () => ({ k: 'agent-restart' })],
  [2, (r) => ({ k: 'agent-kill', downMs: pick(r, [0, 500, 5000]) })],
  [3, (r) => ({ k: 'cp-restart', silent: [0, 1, 2, 3].filter(() => r() < 0.3) })],
  [1, (r) => ({ k: 'jump', ms: pick(r, [2000, 15_000]) })],
];
const TOTAL = KINDS.reduce((n, [w]) => n + w, 0);
const DTS = [0, 0, 1, 5, 20, 20, 100, 100, 400, 1500, 5000];

/** The schedule of `seed`: `steps` events. */
export function generateSchedule(seed: number, steps: number): Step[] {
  const r = seededRandom(seed ^ 0x5eed);
  const out: Step[] = [];
  for (let i = 0; i < steps; i++) {
    let x = r() * TOTAL;
    let gen = KINDS[0]![1];
    for (const [w, g] of KINDS) {
      if (x < w) {
        gen = g;
        break;
      }
      x -= w;
    }
    out.push({ ...gen(r), dt: pick(r, DTS) });
  }
  return out;
}

/** A step as one line of a report. */
export function describeStep(s: Step): string {
  const { k, dt, ...rest } = s;
  const args = Object.entries(rest)
    .map(([key, v]) => `${key}=${Array.isArray(v) ? `[${v.join(',')}]` : String(v)}`)
    .join(' ');
  return `${k}${args ? ` ${args}` : ''} +${dt}ms`;
}

/**
 * Delta debugging (ddmin): drops chunks of the schedule, then single steps, while `fails` still holds; at most
 * `budget` runs. Returns the shortest failing schedule found.
 */
export async function shrinkSchedule(
  steps: readonly Step[],
  fails: (candidate: readonly Step[]) => Promise<boolean>,
  budget = 300,
): Promise<{ steps: readonly Step[]; runs: number }> {
  let cur = steps;
  let n = 2;
  let runs = 0;
  while (cur.length >= 1 && runs < budget) {
    const chunk = Math.ceil(cur.length / n);
    let reduced = false;
    for (let i = 0; i * chunk < cur.length && runs < budget; i++) {
      const candidate = [...cur.slice(0, i * chunk), ...cur.slice((i + 1) * chunk)];
      runs++;
      if (await fails(candidate)) {
        cur = candidate;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (chunk <= 1) break;
      n = Math.min(cur.length, n * 2);
    }
  }
  return { steps: cur, runs };
}
