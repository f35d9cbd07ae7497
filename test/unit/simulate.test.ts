import { runSteps } from '../../bench/lib-sim-run';
import { generateSchedule, shrinkSchedule, Step } from '../../bench/lib-sim-schedule';
import { Mutant } from '../../bench/lib-sim-world';
import { scheduleSeed } from '../../bench/simulate';

// The simulator of `bench simulate` (the real Agent and Discovery on a simulated host): a seed replays exactly, and
// its invariants catch a deliberately broken variant — a check that cannot fail would be worth nothing. The smoke run
// of the benchmark itself (0 violations over a few hundred schedules) is in test/e2e/bench-smoke-faults.test.ts.

jest.setTimeout(60_000);

/** The first of `tries` schedules that fails under `mutant`, with its violation. */
async function firstFailing(mutant: Mutant, tries = 40) {
  for (let i = 0; i < tries; i++) {
    const seed = scheduleSeed(7, i);
    const steps = generateSchedule(seed, 30);
    const r = await runSteps(seed, steps, { mutant });
    if (r.violation) return { seed, steps, r };
  }
  throw new Error(`no schedule of ${tries} failed under ${mutant}`);
}

describe('bench simulate', () => {
  test('a seed replays exactly: the same schedule, the same trace digest', async () => {
    const seed = scheduleSeed(1, 3);
    expect(generateSchedule(seed, 30)).toEqual(generateSchedule(seed, 30));
    const a = await runSteps(seed, generateSchedule(seed, 30), { keepTrace: true });
    const b = await runSteps(seed, generateSchedule(seed, 30));
    expect(a.steps).toBe(31);
    expect(b.digest).toBe(a.digest);
    expect(a.trace!.some((l) => / spawn \d+ /.test(l))).toBe(true); // a HAProxy ran
    expect(a.trace!.some((l) => / applied \w+ (reload|runtime|nothing)/.test(l))).toBe(true); // the agent applied
  });

  test('a supervisor that never soft-stops the old generation is caught (invariant a), and the shrunk schedule still fails', async () => {
    const { seed, steps, r } = await firstFailing('no-soft-stop');
    expect(r.violation).toMatchObject({ inv: 'a', message: expect.stringMatching(/generations accept/) });
    const fails = async (c: readonly Step[]) =>
      (await runSteps(seed, c, { mutant: 'no-soft-stop' })).violation?.inv === 'a';
    const shrunk = await shrinkSchedule(steps, fails, 100);
    expect(shrunk.steps.length).toBeLessThan(steps.length);
    expect(await fails(shrunk.steps)).toBe(true);
    // The same schedule on the unbroken agent does not fail this way.
    expect((await runSteps(seed, shrunk.steps)).violation?.inv).not.toBe('a');
  });

  test('an executor that drains every server of a backend is caught (invariant c: a live service lost all its servers)', async () => {
    const { r } = await firstFailing('drain-all');
    expect(r.violation).toMatchObject({ inv: 'c', message: expect.stringMatching(/without an affirmative empty/) });
  });
});
