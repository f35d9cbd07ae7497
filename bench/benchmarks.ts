/** Every benchmark, in the order `npm run bench` lists them and the smoke test runs them. */
import { AnyBenchmark } from './harness';
import { benchmark as churn } from './churn';
import { benchmark as discovery } from './discovery';
import { benchmark as fanout } from './fanout';
import { benchmark as faults } from './faults';
import { benchmark as gate } from './gate';
import { benchmark as hostile } from './hostile';
import { benchmark as propagation } from './propagation';
import { benchmark as pushsize } from './pushsize';
import { benchmark as reload } from './reload';
import { benchmark as rollout } from './rollout';
import { benchmark as scale } from './scale';
import { benchmark as simulate } from './simulate';
import { benchmark as sustained } from './sustained';

export const BENCHMARKS: readonly AnyBenchmark[] = [
  reload,
  scale,
  churn,
  discovery,
  fanout,
  pushsize,
  sustained,
  propagation,
  rollout,
  gate,
  hostile,
  faults,
  simulate,
];
