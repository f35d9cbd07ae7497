import * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, Registry } from 'prom-client';
import { authTlsWarning, ProxyMgrConfig } from '../common/config/config';
import {
  addHealth,
  addReflection,
  AGENT_MESSAGE_LIMIT_BYTES,
  bindServer,
  serverCredentials,
} from '../common/platform/grpc';
import { Authorizer, UNAUTHENTICATED } from '../common/platform/auth';
import { authInterceptor, AuthMetrics, authMetrics } from '../common/platform/grpc-auth';
import { ControlPlaneAdminService } from '../common/gen/proxymgr/v1/admin';
import { AgentStreamDefinition, encodingStats } from './grpc/push-encoding';
import { Lifecycle } from '../common/platform/lifecycle';
import { Logger } from '../common/platform/log';
import { collectStandardMetrics, serveMetrics } from '../common/platform/metrics';
import { Discovery } from './discovery';
import { controlPlaneAdminServer, listAgents, listServices } from './grpc/admin';
import { renderStatusPage, StatusData, statusJson } from './status-page';
import { serviceRows } from './grpc/service-admin';
import { AgentRegistry, DEFAULT_REGISTRY_LIMITS } from './grpc/registry';
import { agentStreamServer } from './grpc/stream-server';
import { StreamStats } from './grpc/stream-stats';
import { DesiredStateSource } from './ports';
import { AgentPreflights, AgentStateRequests } from './grpc/agent-questions';
import { RolloutService } from '../common/gen/proxymgr/v1/rollout';
import { currentRolloutStatus, rolloutAdminServer } from './grpc/rollout-admin';
import { RolloutCoordinator } from './rollout/coordinator';
import { systemClock } from '../common/platform/clock';
import { ChangeTrace } from './trace/change-trace';
import { listChanges } from './trace/change-summary';
import { fleetTrace } from './trace/fleet-trace';
import { SourceChange } from './trace/source-changes';

export interface ControlPlaneOptions {
  readonly config: ProxyMgrConfig;
  readonly log: Logger;
  /** Discovery on its adapters (wiring.ts). */
  readonly discovery: Discovery;
  /** Rollouts and HA (wiring.ts makes them with a `rollout:` section; otherwise every agent gets every change at once). */
  readonly rollout: RolloutCoordinator | undefined;
  /** Preflight questions to this replica's agents: the rollout coordinator asks, the agent stream carries them. */
  readonly preflights: AgentPreflights;
}

/** idle → starting → running → stopping → stopped. A start that fails half-way is followed by stop() (startOrStop). */
export type ControlPlaneState = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped';

/**
 * One control-plane process: discovery → desired state → the agent stream, plus ControlPlaneAdmin, health,
 * reflection and Prometheus metrics. Discovery and rollouts come made (controlplane/wiring.ts).
 */
export class ControlPlaneProcess {
  readonly discovery: Discovery;
  readonly registry: AgentRegistry;
  /** Rollouts and HA (only with a `rollout:` section; otherwise every agent gets every change at once). */
  readonly rollout: RolloutCoordinator | undefined;
  private server: grpc.Server | undefined;
  private metrics: { port: number; close: () => Promise<void> } | undefined;
  private readonly promRegistry = new Registry();
  private readonly preflights: AgentPreflights;
  /** What the agent streams sent and dropped (the push metrics read it). */
  private readonly streamStats = new StreamStats();
  private readonly authorizer: Authorizer;
  private readonly authMetrics: AuthMetrics;
  /** Every change discovery publishes, followed to every agent (controlplane/trace/). */
  readonly trace: ChangeTrace;
  private readonly recordChanges: (changes: readonly SourceChange[]) => void;
  private readonly lifecycle = new Lifecycle<ControlPlaneState>('control plane', 'idle', {
    idle: ['starting', 'stopping'],
    starting: ['running', 'stopping'],
    running: ['stopping'],
    stopping: ['stopped'],
    stopped: [],
  });
  private stopping: Promise<void> | undefined;
  port = 0;

  constructor(private readonly opts: ControlPlaneOptions) {
    const r = this.promRegistry;
    const acks = new Counter({
      name: 'proxymgr_cp_acks_total',
      help: 'ACKs from agents, by apply method',
      labelNames: ['method'],
      registers: [r],
    });
    const nacks = new Counter({ name: 'proxymgr_cp_nacks_total', help: 'NACKs from agents', registers: [r] });
    const partial = new Counter({
      name: 'proxymgr_cp_partial_acks_total',
      help: 'ACKs of a version the agent applied without some of its services (named in ListAgents last_error)',
      registers: [r],
    });
    const connected = new Gauge({
      name: 'proxymgr_cp_connected_agents',
      help: 'Agents with an open stream to this replica',
      registers: [r],
    });
    this.discovery = opts.discovery;
    this.preflights = opts.preflights;
    const rollout = opts.rollout;
    this.rollout = rollout;
    const re = rollout?.registryEvents();
    this.authorizer = new Authorizer(opts.config.auth, undefined, undefined, { log: opts.log });
    this.authMetrics = authMetrics(r, 'proxymgr_cp');
    this.registry = new AgentRegistry(
      {
        onAck: (a, v, method, reasons, rejected, warnings) => {
          acks.inc({ method });
          if (rejected.length > 0) partial.inc();
          re?.onAck(a, v, method, reasons, rejected, warnings);
        },
        onNack: (a, v, reason) => {
          nacks.inc();
          re?.onNack(a, v, reason);
        },
        onConnectionChange: (n) => connected.set(n),
        onConnect: re?.onConnect,
        onDisconnect: re?.onDisconnect,
        onCounters: re?.onCounters,
      },
      { ...DEFAULT_REGISTRY_LIMITS, forgetAfterMs: opts.config.controlplane.forgetAgentsAfterMs },
    );
    const registry = this.registry;
    const streamStats = this.streamStats;
    const traced = fleetTrace({
      clock: systemClock,
      registry,
      metrics: r,
    });
    this.trace = traced.trace;
    this.recordChanges = traced.record;
    collectStandardMetrics(r);
    // Incremental pushes (docs/protocol.md): what went out, how big, how often an agent had to ask for a resync.
    const counterOf = (
      name: string,
      help: string,
      labelNames: string[],
      values: () => [Record<string, string>, number][],
    ) =>
      new Counter({
        name,
        help,
        labelNames,
        registers: [r],
        collect() {
          this.reset();
          for (const [labels, v] of values()) this.inc(labels, v);
        },
      });
    counterOf(
      'proxymgr_cp_pushes_total',
      'Pushes sent to agents, by kind (delta, full, protocol0: whole states for agents from before protocol 2)',
      ['kind'],
      () => [
        [{ kind: 'delta' }, streamStats.deltaPushes],
        [{ kind: 'full' }, streamStats.fullPushes],
        [{ kind: 'protocol0' }, streamStats.protocol0Pushes],
      ],
    );
    counterOf('proxymgr_cp_push_bytes_total', 'Bytes of push bodies sent to agents', [], () => [
      [{}, streamStats.bytes],
    ]);
    counterOf(
      'proxymgr_cp_resyncs_total',
      'Full resyncs agents asked for (a push that did not fit what they held)',
      [],
      () => [[{}, streamStats.resyncs]],
    );
    counterOf(
      'proxymgr_cp_stats_dropped_total',
      "Stats messages dropped for coming sooner than the minimum interval after the stream's previous one",
      [],
      () => [[{}, streamStats.statsDropped]],
    );
    counterOf(
      'proxymgr_cp_nack_running_refused_total',
      'NACKs naming a running version the agent was neither sent on its stream nor recorded as running (kept the recorded one)',
      [],
      () => [[{}, streamStats.nackRunningRefused]],
    );
    counterOf(
      'proxymgr_cp_push_encodings_total',
      'Push bodies encoded, and reused for another agent on the same change and base',
      ['result'],
      () => [
        [{ result: 'encoded' }, encodingStats.encoded],
        [{ result: 'reused' }, encodingStats.reused],
      ],
    );
    new Gauge({
      name: 'proxymgr_cp_known_agents',
      help: 'Agents this replica remembers (connected, or disconnected for less than forget_agents_after_ms)',
      registers: [r],
      collect() {
        registry.prune();
        this.set(registry.size());
      },
    });
    const discovery = this.discovery;
    new Gauge({
      name: 'proxymgr_cp_desired_version',
      help: 'The current desired-state version (value 1)',
      labelNames: ['version'],
      registers: [r],
      collect() {
        this.reset();
        const v = discovery.current()?.version;
        if (v) this.set({ version: v }, 1);
      },
    });
    new Gauge({
      name: 'proxymgr_cp_watcher_errors',
      help: 'Services with a discovery problem (bad config, skipped hosts, fail-static hold)',
      registers: [r],
      collect() {
        this.set(Object.keys(discovery.errors().services).length);
      },
    });
    if (rollout) {
      new Gauge({
        name: 'proxymgr_cp_leader',
        help: '1 on the replica that drives rollouts',
        registers: [r],
        collect() {
          this.set(rollout.store.isLeader ? 1 : 0);
        },
      });
      new Gauge({
        name: 'proxymgr_cp_rollout',
        help: 'The current or last rollout (value 1): its state, target revision and waves started',
        labelNames: ['state', 'revision', 'stable'],
        registers: [r],
        collect() {
          this.reset();
          const doc = rollout.store.doc;
          const cur = doc?.current ?? doc?.history[0];
          if (doc && cur) this.set({ state: cur.state, revision: cur.to, stable: doc.stable }, 1);
        },
      });
      new Gauge({
        name: 'proxymgr_cp_rollout_waves_started',
        help: 'Waves of the current rollout released so far',
        registers: [r],
        collect() {
          this.set(rollout.store.doc?.current?.waves.length ?? 0);
        },
      });
    }
  }

  get state(): ControlPlaneState {
    return this.lifecycle.state;
  }

  /** Starts discovery, rollouts and the gRPC server; throws LifecycleError when started twice or after stop. */
  async start(): Promise<void> {
    this.lifecycle.to('starting', 'start');
    const { config, log } = this.opts;
    const source: DesiredStateSource = this.rollout ?? {
      desiredFor: () => this.discovery.current(),
      subscribe: (fn) => this.discovery.onSnapshot(() => fn()),
    };
    this.discovery.onChanges(this.recordChanges);
    this.rollout?.start();
    this.discovery.start();
    const tlsWarning = authTlsWarning(config.auth, config.controlplane.tls, config.file, 'controlplane.tls');
    if (tlsWarning) log.warn({}, tlsWarning);
    for (const w of this.authorizer.warnings) log.warn({}, w);
    if (!this.authorizer.enabled) {
      log.warn(
        { listen: config.controlplane.listen },
        'no auth section in proxymgr.yml: agent streams are unauthenticated (any client may stream as any node id) and mutating calls are accepted from loopback peers only',
      );
    }
    this.server = new grpc.Server({
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.http2.min_ping_interval_without_data_ms': 5000,
      // An agent needs one stream, ctl a few: one connection must not open thousands of agent streams.
      'grpc.max_concurrent_streams': 100,
      // Explicit, so that agents (which fit every message to it) and the server cannot drift apart.
      'grpc.max_receive_message_length': AGENT_MESSAGE_LIMIT_BYTES,
      interceptors: [authInterceptor(this.authorizer, log.child({ component: 'grpc' }), this.authMetrics)],
    });
    const stateRequests = new AgentStateRequests();
    const preflights = this.preflights;
    this.server.addService(
      AgentStreamDefinition,
      agentStreamServer({
        source,
        registry: this.registry,
        log: log.child({ component: 'stream' }),
        limits: {
          newStreamsPerSecond: config.controlplane.newStreamsPerSecond,
          newStreamsPerIdentityPerSecond: config.controlplane.newStreamsPerIdentityPerSecond,
          pushesPerSecond: config.controlplane.pushesPerSecond,
          pushBurst: config.controlplane.pushBurst,
          pushBufferBytes: config.controlplane.pushBufferBytes,
        },
        authorizer: this.authorizer,
        questions: { state: stateRequests, preflight: preflights },
        stats: this.streamStats,
        trace: this.trace,
      }),
    );
    this.server.addService(
      ControlPlaneAdminService,
      controlPlaneAdminServer(
        () => this.discovery.current(),
        () => this.errorSummary(),
        source,
        this.registry,
        stateRequests,
        this.trace,
      ),
    );
    this.server.addService(RolloutService, rolloutAdminServer(this.rollout));
    // SERVING once discovery published its first snapshot: before that this replica has nothing to give an agent
    // (a readiness probe keeps traffic away from it); a snapshot tells Watch streams at once.
    const health = addHealth(this.server, () => this.discovery.current() !== undefined);
    this.discovery.onSnapshot(() => health.changed());
    addReflection(this.server, ['proxymgr.v1.AgentStream', 'proxymgr.v1.ControlPlaneAdmin', 'proxymgr.v1.Rollout']);
    this.port = await bindServer(this.server, config.controlplane.listen, serverCredentials(config.controlplane.tls));
    if (config.controlplane.metricsListen) {
      const data = (): StatusData => ({
        rollout: currentRolloutStatus(this.rollout),
        agents: listAgents(() => this.discovery.current(), source, this.registry),
        services: listServices(
          () => this.discovery.current(),
          () => this.errorSummary(),
        ),
        serviceStatus: serviceRows(() => this.discovery.current(), source, this.registry),
        changes: listChanges(this.trace, 20, (node) => this.registry.get(node)?.connected === true),
      });
      // Rendered at most once a second however many tabs reload it: the page walks every service and server.
      const cached = (render: () => string) => {
        let at = 0;
        let body = '';
        return () => {
          if (Date.now() - at >= 1000) [at, body] = [Date.now(), render()];
          return body;
        };
      };
      const page = cached(() => renderStatusPage(data(), Date.now()));
      const pageJson = cached(() => statusJson(data()));
      this.metrics = await serveMetrics(this.promRegistry, config.controlplane.metricsListen, {
        routes: {
          '/': () => ({
            type: 'text/html; charset=utf-8',
            body: page(),
            headers: {
              'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            },
          }),
          '/status.json': () => ({ type: 'application/json', body: pageJson() }),
        },
        // The page, its JSON and /metrics are reads: the viewer role, as ControlPlaneAdmin/ListAgents.
        authorize: (req) => {
          const d = this.authorizer.check({
            method: '/proxymgr.v1.ControlPlaneAdmin/ListAgents',
            peer: `${req.socket.remoteAddress ?? ''}:${req.socket.remotePort ?? 0}`,
            authorization: req.headers.authorization ? [req.headers.authorization] : [],
          });
          if (d.ok) return undefined;
          // Counted and logged like a refused gRPC read (the method label says which HTTP path).
          const path = (req.url ?? '/').split('?')[0]!;
          const method = `HTTP ${['/', '/status.json', '/metrics'].includes(path) ? path : '(other)'}`; // bounded labels
          this.authMetrics.denied.inc({
            method,
            code: d.code === UNAUTHENTICATED ? 'UNAUTHENTICATED' : 'PERMISSION_DENIED',
          });
          log.warn({ method, peer: req.socket.remoteAddress ?? '', details: d.details }, 'call refused');
          return { status: d.code === UNAUTHENTICATED ? 401 : 403, message: d.details };
        },
      });
    }
    this.lifecycle.to('running', 'finish starting');
    log.info({ port: this.port, metrics_port: this.metrics?.port }, 'control plane started');
  }

  get metricsPort(): number | undefined {
    return this.metrics?.port;
  }

  /** Closes the server, rollouts, metrics and discovery; resolves once they are closed. Later calls return the same promise. */
  stop(): Promise<void> {
    return (this.stopping ??= (async () => {
      this.lifecycle.to('stopping', 'stop');
      try {
        this.server?.forceShutdown();
        await this.rollout?.stop();
        await this.metrics?.close();
        await this.discovery.stop();
      } finally {
        this.lifecycle.to('stopped');
      }
    })());
  }

  private errorSummary(): Record<string, string> {
    const out: Record<string, string> = {};
    const e = this.discovery.errors();
    const text = (problems: readonly { where: string; message: string }[]) =>
      problems.map((p) => `${p.where}: ${p.message}`).join('; ');
    if (e.source.length > 0) out['service_config'] = text(e.source);
    for (const [name, problems] of Object.entries(e.services)) out[name] = text(problems);
    return out;
  }
}
