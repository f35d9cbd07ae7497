import { Gauge, Histogram, Registry } from 'prom-client';
import { Clock } from '../../common/platform/clock';
import { resourceSet } from '../../common/protocol/resources';
import { AgentRecord, DesiredStateSource } from '../ports';
import { AgentRegistry } from '../grpc/registry';
import { ChangeTrace } from './change-trace';
import { PROPAGATION_BUCKETS_S } from './change-summary';
import { SourceChange } from './source-changes';

/**
 * The change trace of one control-plane process: changes come from discovery, the agents that should run each are
 * the connected ones whose desired state (with rollouts: the revision released to them) has the service at the
 * change's version — or, for a removal, that ran the service — and its figures go to Prometheus:
 * `proxymgr_cp_change_propagation_seconds{method}` (source time → applied, one sample per agent and change) and
 * `proxymgr_cp_change_oldest_unapplied_seconds` (alert on it: a change some connected agent has neither applied nor
 * refused for that long).
 */
export function fleetTrace(opts: {
  readonly clock: Clock;
  readonly registry: AgentRegistry;
  readonly source: () => DesiredStateSource;
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
  const record = (changes: readonly SourceChange[]) => {
    const source = opts.source();
    const agents = opts.registry.list().filter((a) => a.connected);
    const desired = new Map<AgentRecord, ReadonlyMap<string, string>>();
    for (const a of agents) {
      const state = source.desiredFor(a);
      if (state) desired.set(a, resourceSet(state).resources);
    }
    trace.record(
      changes,
      (c) =>
        agents
          .filter((a) =>
            c.version === ''
              ? a.services?.running.has(c.service) === true
              : desired.get(a)?.get(c.service) === c.version,
          )
          .map((a) => a.nodeId),
      // With rollouts, the revision that has it is released to the others wave by wave after this: each is followed
      // from when it is sent it. (A removal is expected above of every agent that runs the service.)
      (c) => (c.version === '' ? [] : agents.map((a) => a.nodeId)),
    );
  };
  return { trace, record };
}
