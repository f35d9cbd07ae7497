import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Supervisor } from './ports';

/** Buckets of proxymgr_agent_reload_duration_seconds: a reload lasts as long as its longest old connection. */
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

/**
 * The supervisor's reload accounting on `registry`: reload durations (launch to the old generation gone) as a
 * histogram, the old generations alive, and those stopped to keep agent.max_old_generations with the connections cut.
 */
export function reloadMetrics(registry: Registry, supervisor: Supervisor): void {
  const r = [registry];
  const durations = new Histogram({
    name: 'proxymgr_agent_reload_duration_seconds',
    help: 'HAProxy reloads from the launch of the new process to the exit of the generation it replaced (soft-stopped, finishing its connections)',
    buckets: DURATION_BUCKETS,
    registers: r,
  });
  supervisor.on('reload-completed', (ms: number) => durations.observe(ms / 1000));
  const stats = () => supervisor.reloadStats?.();
  new Gauge({
    name: 'proxymgr_agent_haproxy_old_generations',
    help: 'Old HAProxy generations alive: processes replaced by a reload and still finishing their connections',
    registers: r,
    collect() {
      this.set(stats()?.oldGenerations.length ?? 0);
    },
  });
  new Gauge({
    name: 'proxymgr_agent_haproxy_old_generations_max',
    help: 'The most old HAProxy generations the agent lets live at once (agent.max_old_generations)',
    registers: r,
    collect() {
      this.set(stats()?.maxOldGenerations ?? 0);
    },
  });
  new Gauge({
    name: 'proxymgr_agent_haproxy_oldest_generation_seconds',
    help: 'How long the oldest old HAProxy generation alive has been soft-stopping (0 when none)',
    registers: r,
    collect() {
      this.set((stats()?.oldGenerations[0]?.ageMs ?? 0) / 1000);
    },
  });
  new Counter({
    name: 'proxymgr_agent_haproxy_generations_stopped_total',
    help: 'Old HAProxy generations stopped hard (SIGTERM) because more than agent.max_old_generations were alive',
    registers: r,
    collect() {
      this.reset();
      this.inc(stats()?.generationsStopped ?? 0);
    },
  });
  new Counter({
    name: 'proxymgr_agent_haproxy_connections_cut_total',
    help: 'Client connections still open on old HAProxy generations when the agent stopped them to keep agent.max_old_generations',
    registers: r,
    collect() {
      this.reset();
      this.inc(stats()?.connectionsCut ?? 0);
    },
  });
}
