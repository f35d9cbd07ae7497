/**
 * `npm run bench -- NAME [options]` (or `node dist/bench/run.js NAME …`): runs one benchmark on the harness
 * (harness.ts: options, teardown, the result as JSON on the last line, the exit code). `--help` after a name lists
 * its options; without a name, the benchmarks.
 */
import { BENCHMARKS } from './benchmarks';
import { runBenchmark } from './harness';

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
