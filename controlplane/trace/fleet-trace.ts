import { Gauge, Histogram, Registry } from 'prom-client';
import { Clock } from '../../common/platform/clock';
import { AgentRegistry } from '../grpc/registry';
import { ChangeTrace } from './change-trace';
import { PROPAGATION_BUCKETS_S } from './change-summary';
import { SourceChange } from './source-changes';

/**
 * The change trace of one control-plane process: changes come from discovery, the agents that should run each are
 * those sent a state that brings it (with rollouts: the revision released to them), and its figures go to
 * Prometheus:
 * `proxymgr_cp_change_propagation_seconds{method}` (source time → applied, one sample per agent and change) and
 * `proxymgr_cp_change_oldest_unapplied_seconds` (alert on it: a change some connected agent has neither applied nor
 * refused for that long).
 */
export function fleetTrace(opts: {
  readonly clock: Clock;
  readonly registry: AgentRegistry;
  readonly metrics: Registry;
}): { trace: ChangeTrace; record: (changes: readonly SourceChange[]) => void } {
  const propagation = new Histogram({
    name: 'proxymgr_cp_change_propagation_seconds',
    help: 'Time from a change at its source (ZooKeeper mtime, file mtime, DNS answer, or when discovery saw it) to an agent having applied it, per agent and change, by apply method',
    labelNames: ['method'],
    buckets: PROPAGATION_BUCKETS_S,
    registers: [opts.metrics],
  });
  const trace = new ChangeTrace({
    clock: opts.clock,
    onApplied: (method, seconds) => propagation.observe({ method }, seconds),
  });
  const connected = (node: string) => opts.registry.get(node)?.connected === true;
  new Gauge({
    name: 'proxymgr_cp_change_oldest_unapplied_seconds',
    help: 'Age (from its source time) of the oldest change a connected agent that should run it has neither applied nor refused; 0 when none',
    registers: [opts.metrics],
    collect() {
      this.set(trace.oldestUnappliedMs(connected) / 1000);
    },
  });
  // Recorded just before discovery publishes the state with them: no agent has been sent one yet. Each agent is
  // followed from the push that brings it the change (ChangeTrace.released) — at once without rollouts, wave by wave
  // with them; an agent never sent it (its revision has another version of the service, or none) is not counted.
  const record = (changes: readonly SourceChange[]) => void trace.record(changes);
  return { trace, record };
}
