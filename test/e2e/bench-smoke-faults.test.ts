import { SMOKE_GROUPS, smokeBench } from '../../testkit/bench';

jest.setTimeout(330_000);

/**
 * Each benchmark at a tiny size, run as `npm run bench -- NAME --smoke` runs it (the built runner, real HAProxy,
 * ZooKeeper and agents): a behaviour change that breaks a benchmark fails CI the day it is made. The benchmarks of
 * one agent and its HAProxy; the fleet's and the faults' run in the two files beside this one, so jest spreads them.
 */
describe('benchmark smoke runs: rollouts judged on traffic, and faults', () => {
  test.each(SMOKE_GROUPS.faults)('%s', async (name) => {
    const r = await smokeBench(name, 270_000);
    expect(r.verdict).toBe('smoke');
  });
});
