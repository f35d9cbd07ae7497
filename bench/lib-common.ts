/**
 * Shared by the benchmarks (files named lib-* are not benchmarks themselves; see run.ts): a seeded random
 * generator, percentiles, a stopwatch and progress output on stderr (stdout's last line is the result JSON).
 */
import { rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/** Progress and figures go to stderr; run.ts prints the result object on stdout. */
export function say(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

/**
 * mulberry32: a tiny seeded generator, so a benchmark draws the same sequence of events on every run and two
 * runs are comparable (Math.random cannot be seeded).
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [0, n). */
export function pickIndex(rand: () => number, n: number): number {
  return Math.floor(rand() * n);
}

/** The q-quantile (0..1) of `values` by nearest rank; NaN for no values. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

export const median = (values: readonly number[]) => quantile(values, 0.5);

/** Milliseconds rounded to 0.01 ms, for result objects. */
export function ms(value: number): number {
  return Math.round(value * 100) / 100;
}

/** Runs `fn` and returns its result with the elapsed wall time in ms. */
export async function timed<T>(fn: () => Promise<T> | T): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - start };
}

/** Runs `fn` `times` times and returns each run's elapsed time in ms. */
export async function repeat(times: number, fn: (i: number) => Promise<unknown> | unknown): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < times; i++) {
    const start = performance.now();
    await fn(i);
    out.push(performance.now() - start);
  }
  return out;
}

/** "p50 1.23 ms · p99 4.56 ms · max 7.89 ms" for a list of timings. */
export function describeTimings(values: readonly number[]): string {
  return `p50 ${ms(quantile(values, 0.5))} ms · p99 ${ms(quantile(values, 0.99))} ms · max ${ms(Math.max(...values))} ms (n=${values.length})`;
}

/**
 * Runs `cleanup` (synchronous: kill child processes, remove temp dirs) if the benchmark is interrupted by SIGINT
 * or SIGTERM, then exits; finally blocks do not run on signals. Returns a function that removes the handlers.
 */
export function onInterrupt(cleanup: () => void): () => void {
  const handler = (sig: NodeJS.Signals) => {
    try {
      cleanup();
    } finally {
      process.exit(sig === 'SIGINT' ? 130 : 143);
    }
  };
  process.once('SIGINT', handler);
  process.once('SIGTERM', handler);
  return () => {
    process.removeListener('SIGINT', handler);
    process.removeListener('SIGTERM', handler);
  };
}

/** For onInterrupt: SIGKILLs the agent's current HAProxy and removes its temp dir (old ones soft-stop on their own). */
export function killAgentNow(t: { agent: { supervisor: { pid: number | undefined } }; dir: string } | undefined): void {
  if (!t) return;
  const pid = t.agent.supervisor.pid;
  if (pid) process.kill(pid, 'SIGKILL');
  rmSync(t.dir, { recursive: true, force: true });
}
