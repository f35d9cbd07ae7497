import { spawn } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { BENCHMARKS } from '../bench/benchmarks';
import { missingFields } from '../bench/harness';
import { REPO } from './paths';

/**
 * The smoke runs, in four groups (one test file each, so jest spreads them over its workers); every benchmark is
 * in exactly one (a unit test checks).
 */
export const SMOKE_GROUPS = {
  agent: ['reload', 'scale', 'churn', 'propagation', 'hostile'],
  fleet: ['discovery', 'fanout', 'pushsize', 'sustained', 'rollout'],
  gate: ['gate', 'simulate'],
  faults: ['faults'],
} as const;

const RUNNER = path.join(REPO, 'dist', 'bench', 'run.js');

export interface BenchRun {
  readonly code: number | null;
  readonly stderr: string;
  /** The last line of stdout, parsed (undefined when it is not JSON). */
  readonly result: Record<string, unknown> | undefined;
}

/**
 * Runs the built benchmark (`npm run build` first) as `npm run bench -- NAME …` would, without blocking. Past
 * `deadlineMs` it gets SIGTERM (its own handlers stop what it started), then SIGKILL 20 s later.
 */
export async function runBench(name: string, args: readonly string[] = [], deadlineMs = 100_000): Promise<BenchRun> {
  const child = spawn(process.execPath, [RUNNER, name, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-20_000)));
  let overdue = false;
  const term = setTimeout(() => {
    overdue = true;
    child.kill('SIGTERM');
  }, deadlineMs);
  const kill = setTimeout(() => child.kill('SIGKILL'), deadlineMs + 20_000);
  // 'close', not 'exit': the result is the last line of stdout, which may still be in the pipe at 'exit'.
  const [code] = (await once(child, 'close')) as [number | null];
  clearTimeout(term);
  clearTimeout(kill);
  if (overdue) stderr += `\n(stopped: still running after ${deadlineMs} ms)`;
  const last = stdout.trim().split('\n').at(-1) ?? '';
  let result: Record<string, unknown> | undefined;
  try {
    result = JSON.parse(last) as Record<string, unknown>;
  } catch {
    result = undefined;
  }
  return { code, stderr, result };
}

/**
 * The smoke run of one benchmark inside `npm test`: it must finish (exit 0) within `deadlineMs` with a result that
 * carries every field the benchmark declares, not null, and its targets marked `smoke` held. Throws with the
 * benchmark's stderr otherwise.
 */
export async function smokeBench(name: string, deadlineMs = 100_000): Promise<Record<string, unknown>> {
  const b = BENCHMARKS.find((x) => x.name === name);
  if (!b) throw new Error(`no benchmark named ${name}`);
  const run = await runBench(name, ['--smoke'], deadlineMs);
  const missing = run.result ? missingFields(run.result, b.fields) : [];
  if (run.code !== 0 || !run.result || run.result.verdict !== 'smoke' || missing.length > 0)
    throw new Error(
      `bench ${name} --smoke: exit ${run.code}${missing.length > 0 ? `, result lacks ${missing.join(', ')}` : ''}\n${run.stderr.slice(-6000)}`,
    );
  return run.result;
}
