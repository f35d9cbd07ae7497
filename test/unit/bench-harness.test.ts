import { readdirSync } from 'node:fs';
import * as path from 'node:path';
import { BENCHMARKS } from '../../bench/benchmarks';
import { defineBenchmark, int, ints, flag, missingFields, parseOptions, runBenchmark } from '../../bench/harness';
import { SMOKE_GROUPS } from '../../testkit/bench';

const fake = (targets: boolean, result: Record<string, unknown> = { p99_ms: 5, n: 3 }) => {
  const torn: string[] = [];
  const b = defineBenchmark({
    name: 'fake',
    summary: 'a benchmark for the harness test',
    options: { changes: int(200, 'changes', 1), agents: ints([1, 2], 'fleet sizes'), noLive: flag('no live agent') },
    smoke: { changes: 2 },
    fields: ['p99_ms', 'n'],
    run: async (o, ctx) => {
      ctx.defer(() => torn.push('first'));
      ctx.defer(() => torn.push('second'));
      return { ...result, changes: o.changes };
    },
    targets: () => [{ name: 'p99_ms ≤ 10', held: targets, value: 5 }],
  });
  return { b, torn };
};

/** Runs the benchmark with console output captured: the exit code and the last JSON line. */
async function run(b: ReturnType<typeof fake>['b'], argv: string[]) {
  const out: string[] = [];
  const log = jest.spyOn(console, 'log').mockImplementation((m: string) => void out.push(m));
  const err = jest.spyOn(console, 'error').mockImplementation(() => undefined);
  const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    const code = await runBenchmark(b, argv);
    return { code, last: out.at(-1) };
  } finally {
    log.mockRestore();
    err.mockRestore();
    stderr.mockRestore();
  }
}

describe('the benchmark harness', () => {
  test('options: defaults, the smoke sizes under --smoke, the command line over both; kebab-case flags', () => {
    const { b } = fake(true);
    expect(parseOptions(b, []).options).toEqual({ changes: 200, agents: [1, 2], noLive: false });
    expect(parseOptions(b, ['--smoke']).options).toEqual({ changes: 2, agents: [1, 2], noLive: false });
    expect(parseOptions(b, ['--smoke', '--changes=7', '--agents=10,20', '--no-live']).options).toEqual({
      changes: 7,
      agents: [10, 20],
      noLive: true,
    });
  });

  test('a misspelt or malformed option is a usage error naming it (exit 2), not a silent default', async () => {
    const { b } = fake(true);
    expect(() => parseOptions(b, ['--chnages=3'])).toThrow(/unknown option --chnages/);
    expect(() => parseOptions(b, ['--changes=0'])).toThrow(/--changes wants a whole number ≥ 1, got "0"/);
    expect(() => parseOptions(b, ['--changes=2.5'])).toThrow(/--changes wants a whole number/);
    expect(() => parseOptions(b, ['--agents=1,x'])).toThrow(/--agents wants a whole number ≥ 0, got "x"/);
    expect((await run(b, ['--changes=abc'])).code).toBe(2);
  });

  test('exit 0 when every target held, 1 when one was missed; the JSON says which; teardowns run last-in first-out', async () => {
    const held = fake(true);
    const ok = await run(held.b, []);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.last!)).toMatchObject({ p99_ms: 5, verdict: 'held', judged: [{ held: true }] });
    expect(held.torn).toEqual(['second', 'first']);
    const missed = await run(fake(false).b, []);
    expect(missed.code).toBe(1);
    expect(JSON.parse(missed.last!)).toMatchObject({
      verdict: 'missed',
      judged: [{ name: 'p99_ms ≤ 10', held: false }],
    });
  });

  test('a smoke run ignores targets not marked smoke, but fails (exit 3) when the result lacks a field or has it null (NaN)', async () => {
    expect((await run(fake(false).b, ['--smoke'])).code).toBe(0);
    expect((await run(fake(true, { p99_ms: 5 }).b, ['--smoke'])).code).toBe(3);
    expect((await run(fake(true, { p99_ms: NaN, n: 1 }).b, ['--smoke'])).code).toBe(3);
    expect(missingFields({ a: 1, b: null, c: Infinity }, ['a', 'b', 'c', 'd'])).toEqual(['b', 'c', 'd']);
  });

  test('a smoke run is judged on the targets marked smoke (exit 1 when one is missed); targets that throw exit 3', async () => {
    const withSmokeTarget = (held: boolean, throws = false) =>
      defineBenchmark({
        name: 'smoked',
        summary: 'one correctness target',
        options: {},
        smoke: {},
        fields: ['lost'],
        run: () => Promise.resolve({ lost: held ? 0 : 2 }),
        targets: (r) => {
          if (throws) throw new Error('a target read a field wrong');
          return [
            { name: 'lost = 0', held: r.lost === 0, value: r.lost, smoke: true },
            { name: 'p99 ≤ 1 ms', held: false, value: 9 }, // a timing target: not judged in a smoke run
          ];
        },
      });
    const ok = await run(withSmokeTarget(true), ['--smoke']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.last!)).toMatchObject({ verdict: 'smoke', judged: [{ held: true }, { held: false }] });
    const lost = await run(withSmokeTarget(false), ['--smoke']);
    expect(lost.code).toBe(1);
    expect(JSON.parse(lost.last!)).toMatchObject({ verdict: 'missed' });
    expect((await run(withSmokeTarget(true, true), ['--smoke'])).code).toBe(3);
    expect((await run(withSmokeTarget(true), [])).code).toBe(1); // a full run judges the timing target too
  });

  test('signal handlers only while teardowns are deferred, so a benchmark with its own is not cut short', async () => {
    const before = process.listenerCount('SIGTERM');
    let during = -1;
    const plain = defineBenchmark({
      name: 'plain',
      summary: 'defers nothing',
      options: {},
      smoke: {},
      fields: [],
      run: () => {
        during = process.listenerCount('SIGTERM');
        return Promise.resolve({});
      },
    });
    await run(plain, []);
    expect(during).toBe(before);
    const deferring = defineBenchmark({
      name: 'deferring',
      summary: 'defers a teardown',
      options: {},
      smoke: {},
      fields: [],
      run: (_o, ctx) => {
        ctx.defer(() => undefined);
        during = process.listenerCount('SIGTERM');
        return Promise.resolve({});
      },
    });
    await run(deferring, []);
    expect(during).toBe(before + 1);
    expect(process.listenerCount('SIGTERM')).toBe(before);
  });

  test('a run that throws exits 3, after its teardowns', async () => {
    const torn: string[] = [];
    const b = defineBenchmark({
      name: 'crash',
      summary: 'throws',
      options: {},
      smoke: {},
      fields: [],
      run: async (_o, ctx) => {
        ctx.defer(() => torn.push('cleaned'));
        throw new Error('boom');
      },
    });
    expect((await run(b, [])).code).toBe(3);
    expect(torn).toEqual(['cleaned']);
  });

  test('every benchmark file is registered, and every benchmark has a smoke run in npm test', () => {
    const dir = path.join(__dirname, '..', '..', 'bench');
    const files = readdirSync(dir)
      .filter(
        (f) => f.endsWith('.ts') && !f.startsWith('lib-') && !['harness.ts', 'run.ts', 'benchmarks.ts'].includes(f),
      )
      .map((f) => f.slice(0, -3))
      .sort();
    const names = BENCHMARKS.map((b) => b.name);
    expect([...names].sort()).toEqual(files);
    expect(Object.values(SMOKE_GROUPS).flat().sort()).toEqual([...names].sort());
    for (const b of BENCHMARKS) expect(b.fields.length).toBeGreaterThan(0);
  });
});
