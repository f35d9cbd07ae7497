/**
 * `npm run bench -- NAME [options]` (or `node dist/bench/run.js NAME …`): runs one benchmark on the harness
 * (harness.ts: options, teardown, the result as JSON on the last line, the exit code). `--help` after a name lists
 * its options; without a name, the benchmarks.
 */
import { BENCHMARKS } from './benchmarks';
import { runBenchmark } from './harness';

// A crash outside the run's own promise chain (a stray callback) is a crash, exit 3, not Node's default 1 (which the
// harness means as "a target was missed").
for (const event of ['uncaughtException', 'unhandledRejection'] as const)
  process.on(event, (err: unknown) => {
    console.error(`bench crashed (${event}):`, err);
    process.exit(3);
  });

async function run(): Promise<number> {
  const [name, ...args] = process.argv.slice(2);
  const b = BENCHMARKS.find((x) => x.name === name);
  if (!b) {
    console.error(
      `usage: npm run bench -- NAME [--help] [--smoke] [--save] [options]\n\n${BENCHMARKS.map((x) => `  ${x.name.padEnd(12)} ${x.summary}`).join('\n')}`,
    );
    return 2;
  }
  return runBenchmark(b, args);
}

run().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err);
    process.exit(3);
  },
);
