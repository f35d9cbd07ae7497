import { SMOKE_GROUPS, smokeBench } from '../../testkit/bench';

jest.setTimeout(200_000);

/**
 * Each benchmark at a tiny size, run as `npm run bench -- NAME --smoke` runs it (the built runner, real HAProxy,
 * ZooKeeper and agents): a behaviour change that breaks a benchmark fails CI the day it is made. The benchmarks of
 * rollouts judged on traffic, and the simulator; the other groups run in the files beside this one, so jest spreads them.
 */
describe('benchmark smoke runs: rollouts judged on traffic, and the simulator', () => {
  test.each(SMOKE_GROUPS.gate)('%s', async (name) => {
    const r = await smokeBench(name, 150_000);
    expect(r.verdict).toBe('smoke');
  });
});
