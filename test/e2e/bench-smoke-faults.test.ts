import { SMOKE_GROUPS, smokeBench } from '../../testkit/bench';

jest.setTimeout(240_000);

/**
 * Each benchmark at a tiny size, run as `npm run bench -- NAME --smoke` runs it (the built runner, real HAProxy,
 * ZooKeeper and agents): a behaviour change that breaks a benchmark fails CI the day it is made. The benchmarks of
 * faults injected into a real fleet; the other groups run in the files beside this one, so jest spreads them.
 */
describe('benchmark smoke runs: faults', () => {
  test.each(SMOKE_GROUPS.faults)('%s', async (name) => {
    const r = await smokeBench(name, 200_000);
    expect(r.verdict).toBe('smoke');
  });
});
