/**
 * The one harness every benchmark runs on. A benchmark is defined once (`defineBenchmark`): its options (parsed
 * by the project's own strict argument parser, so a misspelt flag is an error, not a silently ignored default),
 * the size of its smoke run inside `npm test`, the fields its result must carry, its run, and the targets judged
 * against the result. `runBenchmark` parses the command line, runs it, always runs its teardowns (also on
 * SIGINT/SIGTERM), prints the result as one JSON object on the last line of stdout and returns the exit code:
 *
 *   0  the run finished and every target held (a smoke run: it finished, its result has every field and the
 *      targets marked `smoke` held)
 *   1  the run finished and a target was missed (the JSON says which)
 *   2  the command line was wrong (also an option the run itself refuses: a UsageError)
 *   3  the run crashed (no JSON), judging its targets crashed, or a smoke run's result lacks a field
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs, UsageError } from '../common/platform/args';
import { REPO } from '../testkit/paths';

/** One option of a benchmark: `--kebab-name=value` on the command line, camelCase in the options object. */
export interface OptionSpec<T> {
  readonly kind: 'int' | 'string' | 'boolean' | 'ints';
  readonly default: T;
  readonly help: string;
  /** Smallest value an int (or each of a list of ints) may take. */
  readonly min?: number;
}

/** A whole number ≥ `min` (default 0). */
export const int = (value: number, help: string, min = 0): OptionSpec<number> => ({
  kind: 'int',
  default: value,
  help,
  min,
});
/** A whole number where -1 means "the product's own default" (written `-1` or left out). */
export const intOrDefault = (help: string): OptionSpec<number> => ({ kind: 'int', default: -1, help, min: -1 });
export const text = (value: string, help: string): OptionSpec<string> => ({ kind: 'string', default: value, help });
/** Off unless given (`--no-live`). */
export const flag = (help: string): OptionSpec<boolean> => ({ kind: 'boolean', default: false, help });
/** A comma-separated list of whole numbers (`--agents=100,1000`). */
export const ints = (value: readonly number[], help: string, min = 0): OptionSpec<readonly number[]> => ({
  kind: 'ints',
  default: value,
  help,
  min,
});

export type OptionSpecs = Readonly<Record<string, OptionSpec<unknown>>>;
export type OptionsOf<S extends OptionSpecs> = {
  readonly [K in keyof S]: S[K] extends OptionSpec<infer T> ? T : never;
};

/** A run's result: named figures (numbers mostly; lists and objects where a figure has parts). */
export type Figures = Readonly<Record<string, unknown>>;

/** A target judged against a run's result: what it says, the figure it was judged on, and whether it held. */
export interface Target {
  readonly name: string;
  readonly held: boolean;
  readonly value: unknown;
  /**
   * Set when the target is reported but does not decide the verdict, saying why: a wall-clock target that needs
   * more than the machine the run shares (a simulated fleet on the cores of the control plane it measures). Such a
   * target stands beside a judged one on a figure that is a property of the code (CPU or bytes per change).
   */
  readonly notJudged?: string;
  /** Judged in the smoke run too: a target of correctness that holds at any size (no request lost, no crash). */
  readonly smoke?: boolean;
}

export interface BenchContext {
  /** Progress and figures, on stderr (stdout's last line is the result). */
  say(msg: string): void;
  /**
   * Registers a teardown: teardowns run last-in first-out after the run, whether it succeeded or not, and on
   * SIGINT/SIGTERM (then the process exits 130/143).
   */
  defer(teardown: () => unknown): void;
  /** True in the smoke run inside `npm test`: a tiny size, judged only on the targets marked `smoke`. */
  readonly smoke: boolean;
}

export interface Benchmark<S extends OptionSpecs> {
  readonly name: string;
  /** One line: what is measured against what. */
  readonly summary: string;
  readonly options: S;
  /** The options of the smoke run in `npm test`: seconds, not minutes. */
  readonly smoke: Partial<OptionsOf<S>>;
  /** Fields every result carries; a smoke run whose result lacks one (or has it null, as NaN becomes) fails. */
  readonly fields: readonly string[];
  run(options: OptionsOf<S>, ctx: BenchContext): Promise<Figures>;
  /** The targets, judged against the result of a full run (not a smoke run). */
  targets?(result: Figures, options: OptionsOf<S>): Target[];
}

/** A benchmark as the runner and the smoke test see it, whatever its option and result types. */
export interface AnyBenchmark {
  readonly name: string;
  readonly summary: string;
  readonly options: OptionSpecs;
  readonly smoke: Readonly<Record<string, unknown>>;
  readonly fields: readonly string[];
  run(options: Readonly<Record<string, unknown>>, ctx: BenchContext): Promise<Figures>;
  targets?(result: Figures, options: Readonly<Record<string, unknown>>): Target[];
}

/** Declares a benchmark (types only: the runner does the work). */
export function defineBenchmark<S extends OptionSpecs>(b: Benchmark<S>): AnyBenchmark {
  return b;
}

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

function parseValue(spec: OptionSpec<unknown>, flagName: string, raw: string | boolean): unknown {
  if (spec.kind === 'boolean') return raw === true;
  const s = String(raw);
  const whole = (part: string) => {
    const n = Number(part);
    if (part.trim() === '' || !Number.isInteger(n) || n < (spec.min ?? 0))
      throw new UsageError(`--${flagName} wants a whole number ≥ ${spec.min ?? 0}, got ${JSON.stringify(part)}`);
    return n;
  };
  if (spec.kind === 'int') return whole(s);
  if (spec.kind === 'ints') return s.split(',').map(whole);
  return s;
}

/** The options of one run: defaults, then the smoke sizes if `--smoke`, then the command line. */
export function parseOptions(
  b: AnyBenchmark,
  argv: readonly string[],
): { options: Record<string, unknown>; smoke: boolean; save: boolean; help: boolean } {
  const spec: Record<string, 'string' | 'boolean'> = { smoke: 'boolean', save: 'boolean', help: 'boolean' };
  for (const [name, o] of Object.entries(b.options)) spec[kebab(name)] = o.kind === 'boolean' ? 'boolean' : 'string';
  const { flags, positional } = parseArgs(argv, spec);
  if (positional.length > 0) throw new UsageError(`unexpected argument "${positional[0]}"`);
  const smoke = flags.smoke === true;
  const options: Record<string, unknown> = {};
  for (const [name, o] of Object.entries(b.options)) {
    const given = flags[kebab(name)];
    options[name] =
      given !== undefined ? parseValue(o, kebab(name), given) : smoke && name in b.smoke ? b.smoke[name] : o.default;
  }
  return { options, smoke, save: flags.save === true, help: flags.help === true };
}

/** `--help` of one benchmark. */
export function usage(b: AnyBenchmark): string {
  const lines = [`npm run bench -- ${b.name} [options]`, `  ${b.summary}`, ''];
  for (const [name, o] of Object.entries(b.options)) {
    const shown = o.kind === 'boolean' ? '' : `=${Array.isArray(o.default) ? o.default.join(',') : String(o.default)}`;
    lines.push(`  --${kebab(name)}${shown}  ${o.help}`);
  }
  lines.push('  --smoke  the tiny run of npm test (targets not judged)');
  lines.push(`  --save   also write the result to bench/results/${b.name}.json`);
  return lines.join('\n');
}

/** Fields of `fields` that `result` lacks or has null (NaN and Infinity become null in JSON). */
export function missingFields(result: Figures, fields: readonly string[]): string[] {
  const r = result as Record<string, unknown>;
  return fields.filter((f) => r[f] === undefined || r[f] === null || (typeof r[f] === 'number' && !isFinite(r[f])));
}

/** Where `--save` writes: bench/results/ in the source tree. */
export const RESULTS_DIR = path.join(REPO, 'bench', 'results');

const say = (msg: string) => process.stderr.write(`${msg}\n`);

/**
 * Runs one benchmark from its command line; prints progress on stderr and the result as the last line of stdout.
 * Returns the exit code (see the top of this file).
 */
export async function runBenchmark(b: AnyBenchmark, argv: readonly string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseOptions(b, argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`bench ${b.name}: ${err.message}\n\n${usage(b)}`);
    return 2;
  }
  if (parsed.help) {
    console.log(usage(b));
    return 0;
  }
  const teardowns: (() => unknown)[] = [];
  let tearingDown: Promise<void> | undefined;
  /** Runs the deferred teardowns once, last-in first-out; the end of the run and a signal share the one run. */
  const tearDown = (): Promise<void> =>
    (tearingDown ??= (async () => {
      while (teardowns.length > 0) {
        try {
          await teardowns.pop()!();
        } catch (err) {
          say(`bench ${b.name}: teardown failed: ${String(err)}`);
        }
      }
    })());
  const onSignal = (sig: NodeJS.Signals) => {
    void tearDown().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  };
  let handlingSignals = false;
  const defer = (teardown: () => unknown) => {
    teardowns.push(teardown);
    // Signal handlers only once something is deferred: a benchmark that cleans up in its own handler
    // (onInterrupt, onInterruptStopChildren) must not be cut short by an exit from here.
    if (!handlingSignals) {
      handlingSignals = true;
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
    }
  };
  const ctx: BenchContext = { say, defer, smoke: parsed.smoke };
  let result: Figures;
  try {
    result = await b.run(parsed.options, ctx);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`bench ${b.name}: ${err.message}\n\n${usage(b)}`);
      return 2;
    }
    say(`bench ${b.name} crashed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 3;
  } finally {
    await tearDown();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
  const missing = missingFields(result, b.fields);
  let targets: Target[];
  try {
    targets = b.targets?.(result, parsed.options) ?? [];
  } catch (err) {
    say(
      `bench ${b.name}: judging the targets crashed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
    );
    return 3;
  }
  // A smoke run is judged only on the targets that hold at any size (smoke: true); a full run on all but notJudged.
  const decides = (t: Target) => (parsed.smoke ? t.smoke === true : !t.notJudged);
  const verdict = targets.every((t) => t.held || !decides(t)) ? (parsed.smoke ? 'smoke' : 'held') : 'missed';
  for (const t of targets)
    say(
      `target ${t.held ? 'held' : 'MISSED'}: ${t.name} (${String(t.value)})${t.notJudged ? ` — not judged: ${t.notJudged}` : ''}${parsed.smoke && !t.smoke ? ' — not judged in a smoke run' : ''}`,
    );
  // `judged`, not `targets`: some results already carry a field of that name.
  const out = { ...result, judged: targets, verdict };
  const line = JSON.stringify(out);
  if (parsed.save) {
    mkdirSync(RESULTS_DIR, { recursive: true });
    const file = path.join(RESULTS_DIR, `${b.name}.json`);
    writeFileSync(
      file,
      JSON.stringify({ ...out, options: parsed.options, at: new Date().toISOString() }, null, 1) + '\n',
    );
    say(`saved ${path.relative(process.cwd(), file)}`);
  }
  console.log(line);
  if (missing.length > 0) {
    say(`bench ${b.name}: the result lacks ${missing.join(', ')}`);
    // A full run may leave parts out on purpose (scale --no-live); a smoke run runs every part.
    if (parsed.smoke) return 3;
  }
  return verdict === 'missed' ? 1 : 0;
}

/** A figure of a result as a number, for targets (NaN when it is not one, so a target on it does not hold). */
export function num(value: unknown): number {
  return typeof value === 'number' ? value : NaN;
}
