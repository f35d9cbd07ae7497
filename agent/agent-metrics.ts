import { Counter, Gauge, Registry } from 'prom-client';
import { collectStandardMetrics, commandKind } from '../common/platform/metrics';
import type { Agent } from './agent';
import type { ServiceStats, ServiceStatsTracker } from './haproxy/stats';
import type { ApplyResult } from './results';
import { reloadMetrics } from './reload-metrics';

/** What the agent's metrics read besides the Agent itself. */
export interface AgentMetricsSources {
  /** HAProxy's own per-service counters (show stat), carried across reloads. */
  readonly serviceStats: ServiceStatsTracker;
  /** The gRPC stream's counters, while the source is the control plane. */
  readonly streamStats: () => { full: number; deltas: number; cut: number; resyncs: number } | undefined;
  /** Whether the state cache was too old to start HAProxy from, and nothing has been applied since. */
  readonly cacheRefused: () => boolean;
}

/**
 * The agent's Prometheus metrics on `registry` (proxymgr_agent_*): most read on each scrape; `record` counts what
 * one apply did.
 */
export function agentMetrics(
  registry: Registry,
  agent: Agent,
  { serviceStats, streamStats, cacheRefused }: AgentMetricsSources,
): { record: (result: ApplyResult) => void } {
  const r = registry;
  const applies = new Counter({
    name: 'proxymgr_agent_applies_total',
    help: 'Desired states applied, by outcome',
    labelNames: ['outcome'],
    registers: [r],
  });
  const reloads = new Counter({
    name: 'proxymgr_agent_reloads_total',
    help: 'HAProxy reloads, by reason',
    labelNames: ['reason'],
    registers: [r],
  });
  const commands = new Counter({
    name: 'proxymgr_agent_runtime_commands_total',
    help: 'Runtime API commands sent, by kind',
    labelNames: ['kind'],
    registers: [r],
  });
  const leftOut = new Counter({
    name: 'proxymgr_agent_left_out_total',
    help: 'Parts of applied states left out (service: kept at its previous version or absent; server: that host only), per apply',
    labelNames: ['kind'],
    registers: [r],
  });
  const version = new Gauge({
    name: 'proxymgr_agent_running_version',
    help: 'The desired-state version running (value 1)',
    labelNames: ['version'],
    registers: [r],
  });
  new Gauge({
    name: 'proxymgr_agent_haproxy_restarts',
    help: 'HAProxy crash restarts since the agent started',
    registers: [r],
    collect() {
      this.set(agent.supervisor.restarts);
    },
  });
  new Gauge({
    name: 'proxymgr_agent_haproxy_up',
    help: '1 while HAProxy runs',
    registers: [r],
    collect() {
      this.set(agent.supervisor.running ? 1 : 0);
    },
  });
  new Gauge({
    name: 'proxymgr_agent_servers_draining',
    help: 'Servers draining: removed from discovery and waiting for their drain deadline (deadline="yes"), or at weight 0 (deadline="no")',
    labelNames: ['deadline'],
    registers: [r],
    collect() {
      const d = agent.draining();
      this.set({ deadline: 'yes' }, d.filter((x) => x.deadline !== undefined).length);
      this.set({ deadline: 'no' }, d.filter((x) => x.deadline === undefined).length);
    },
  });
  new Gauge({
    name: 'proxymgr_agent_drain_oldest_seconds',
    help: 'Age of the longest-draining server removed from discovery (0 when none drains)',
    registers: [r],
    collect() {
      const since = agent.draining().flatMap((x) => (x.since !== undefined ? [x.since] : []));
      this.set(since.length === 0 ? 0 : Math.max(0, (Date.now() - Math.min(...since)) / 1000));
    },
  });
  reloadMetrics(r, agent.supervisor);
  collectStandardMetrics(r);
  // HAProxy's own per-service counters (show stat), carried across reloads; read on each scrape.
  const tracker = serviceStats;
  const supervisor = agent.supervisor;
  let sampling: Promise<void> | undefined;
  const sample = () =>
    (sampling ??= tracker
      .sample(supervisor.running ? supervisor.pid : undefined)
      .catch(() => undefined)
      .finally(() => (sampling = undefined)));
  const perService = (
    name: string,
    help: string,
    kind: 'counter' | 'gauge',
    value: (s: ServiceStats, service: string) => number,
  ) => {
    if (kind === 'gauge') {
      return new Gauge({
        name,
        help,
        labelNames: ['service'],
        registers: [r],
        async collect() {
          await sample();
          this.reset();
          for (const [service, s] of tracker.current()) this.set({ service }, value(s, service));
        },
      });
    }
    return new Counter({
      name,
      help,
      labelNames: ['service'],
      registers: [r],
      async collect() {
        await sample();
        this.reset();
        for (const [service, s] of tracker.current()) this.inc({ service }, value(s, service));
      },
    });
  };
  perService(
    'proxymgr_agent_service_requests_total',
    'HTTP requests received by the service (HAProxy frontend req_tot; carried across reloads)',
    'counter',
    (s) => s.counters.requests,
  );
  perService(
    'proxymgr_agent_service_responses_5xx_total',
    "5xx responses sent to clients, HAProxy's own included (frontend hrsp_5xx)",
    'counter',
    (s) => s.counters.responses5xx,
  );
  perService(
    'proxymgr_agent_service_sessions_total',
    'Client sessions (frontend stot; the request count of tcp services)',
    'counter',
    (s) => s.counters.sessions,
  );
  perService(
    'proxymgr_agent_service_connection_errors_total',
    'Failed connections to servers (backend econ)',
    'counter',
    (s) => s.counters.connectionErrors,
  );
  perService(
    'proxymgr_agent_service_response_errors_total',
    'Failed or aborted server responses (backend eresp)',
    'counter',
    (s) => s.counters.responseErrors,
  );
  perService(
    'proxymgr_agent_service_retries_total',
    'Connection retries and redispatches (backend wretr + wredis)',
    'counter',
    (s) => s.counters.retries,
  );
  perService(
    'proxymgr_agent_service_servers_down',
    "Servers HAProxy sees DOWN (health checks; maint not counted), as of the agent's last show servers state",
    'gauge',
    (_s, service) => agent.serverCounts().get(service)?.down ?? 0,
  );
  perService(
    'proxymgr_agent_service_servers',
    "Servers in the service's backend (maint not counted)",
    'gauge',
    (_s, service) => agent.serverCounts().get(service)?.total ?? 0,
  );
  perService(
    'proxymgr_agent_service_queue',
    'Requests waiting for a server (backend qcur)',
    'gauge',
    (s) => s.gauges.queue,
  );

  new Counter({
    name: 'proxymgr_agent_pushes_total',
    help: 'Pushes taken from the control plane, by kind (delta, full: a first sync or the answer to a resync)',
    labelNames: ['kind'],
    registers: [r],
    collect() {
      this.reset();
      const s = streamStats();
      if (!s) return;
      this.inc({ kind: 'full' }, s.full);
      this.inc({ kind: 'delta' }, s.deltas);
    },
  });
  new Gauge({
    name: 'proxymgr_agent_state_cache_stale',
    help: '1 while the state cache was too old to start HAProxy from (agent.cache_max_age_ms) and no state has been applied since',
    registers: [r],
    collect() {
      this.set(cacheRefused() ? 1 : 0);
    },
  });
  new Counter({
    name: 'proxymgr_agent_messages_cut_total',
    help: "Messages to the control plane cut to fit its receive limit (what was cut is logged, and said in an ACK's warnings)",
    registers: [r],
    collect() {
      this.reset();
      this.inc(streamStats()?.cut ?? 0);
    },
  });
  new Counter({
    name: 'proxymgr_agent_apply_retries_total',
    help: 'Applies of the held state again after a transient failure (a check that could not run, a port taken, a failed write)',
    registers: [r],
    collect() {
      this.reset();
      this.inc(agent.retries);
    },
  });
  new Gauge({
    name: 'proxymgr_agent_apply_retry_pending',
    help: '1 while a retry of the held state after a transient failure is pending',
    registers: [r],
    collect() {
      this.set(agent.retry ? 1 : 0);
    },
  });
  new Counter({
    name: 'proxymgr_agent_resyncs_total',
    help: 'Full resyncs asked for: a push that did not fit what the agent held (lost, reordered, digest differs)',
    registers: [r],
    collect() {
      this.reset();
      this.inc(streamStats()?.resyncs ?? 0);
    },
  });
  return {
    record: (result: ApplyResult) => {
      applies.inc({ outcome: result.outcome });
      for (const p of result.problems)
        if (p.service !== undefined) leftOut.inc({ kind: p.server === undefined ? 'service' : 'server' });
      if (result.outcome === 'reload') for (const reason of result.reasons) reloads.inc({ reason: reason.kind });
      for (const c of result.commands) commands.inc({ kind: commandKind(c) });
      if (result.outcome !== 'rejected') {
        version.reset();
        version.set({ version: agent.current?.version ?? '' }, 1);
      }
    },
  };
}
