import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { ProxyMgrConfig } from '../common/config/config';
import { ConfigError, errorMessage } from '../common/platform/errors';
import { CoalescedFile } from '../common/platform/coalesced-file';
import { systemClock } from '../common/platform/clock';
import { ensurePrivateDir, writeFileAtomic } from '../common/platform/fs';
import { addHealth, addReflection, bindServer, Health, serverCredentials } from '../common/platform/grpc';
import { Authorizer } from '../common/platform/auth';
import { authTlsWarning } from '../common/config/config';
import { authInterceptor, authMetrics } from '../common/platform/grpc-auth';
import { AgentAdminService } from '../common/gen/proxymgr/v1/admin';
import { Lifecycle } from '../common/platform/lifecycle';
import { Logger } from '../common/platform/log';
import { serveMetrics } from '../common/platform/metrics';
import { agentMetrics } from './agent-metrics';
import { stateJsonText } from '../common/protocol/state-codec';
import { DesiredState, Service } from '../common/protocol/types';
import { agentAdminServer, reloadStatsPb, toPb } from './admin';
import { Agent, ApplyResult, PreflightResult } from './agent';
import type { RuntimeServer } from '../common/gen/proxymgr/v1/admin';
import type { ServiceCounters } from '../common/gen/proxymgr/v1/counters';
import type { ReloadStats } from '../common/gen/proxymgr/v1/reloads';
import type { RuntimeApi } from './ports';
import { StateDirLock } from './state-dir-lock';
import { confirmStateCache, judgeStateCache, readStateCache } from './state-cache';
import { ServiceStatsTracker } from './haproxy/stats';
import { StateSource } from './ports';

/** What a source of desired states may ask of the agent (a control plane asks all of it; see GrpcSourceOptions). */
export interface AgentHooks {
  /** The version the agent runs now. */
  readonly runningVersion: () => string;
  /** What the agent ran before the source sent anything (its state cache). */
  readonly initialState: () => DesiredState | undefined;
  /** Whether a state would apply whole (with the local overrides, as apply does). */
  readonly preflight: (state: DesiredState) => Promise<PreflightResult>;
  /** HAProxy's per-service counters, no older than `maxAgeMs`. */
  readonly counters: (maxAgeMs: number) => Promise<ServiceCounters[]>;
  /** What HAProxy has now (a sentence when unknown or too large to send). */
  readonly reportState: () => Promise<RuntimeServer[] | string>;
  /** The agent's reloads and old HAProxy generations. */
  readonly reloadStats: () => ReloadStats | undefined;
}

export interface AgentProcessOptions {
  readonly config: ProxyMgrConfig;
  readonly log: Logger;
  /** Builds the agent's core, given the hook that writes the state cache before each haproxy.cfg write. */
  readonly makeAgent: (hooks: { beforeConfigWrite: () => Promise<void> }) => Agent;
  /** Builds the source of desired states (called by start: a source that cannot be made fails the start). */
  readonly makeSource: (hooks: AgentHooks) => StateSource;
  /** Whether a HAProxy of this config runs (one a previous agent left): the state cache is judged with it. */
  readonly haproxyRunning: () => boolean;
  /** A state without HAProxy sections gets proxymgr.yml's global/defaults (the source is a state file). */
  readonly fillHaproxySections?: boolean;
}

/**
 * idle → starting → running → stopping → stopped; or → handed-over (HAProxy keeps serving for the next agent). A
 * start that fails half-way is followed by stop() (startOrStop).
 */
/**
 * One service as this agent runs it: on `bindAddress` when set; with zone-aware routing (`zoneLabel`, and this agent
 * has that label), the servers of other zones — or of no zone — become `backup`: HAProxy sends them traffic only
 * when no server of the agent's zone is up (the control plane adds `option allbackups`, so then all of them share
 * it). An agent without the label uses every server.
 */
export function localService(
  s: Service,
  bindAddress: string | undefined,
  labels: Readonly<Record<string, string>>,
): Service {
  let out = bindAddress ? { ...s, bindAddress } : s;
  const zone = s.zoneLabel ? labels[s.zoneLabel] : undefined;
  if (zone !== undefined) {
    out = {
      ...out,
      servers: s.servers.map((v) =>
        v.zone === zone || v.options.includes('backup') ? v : { ...v, options: [...v.options, 'backup'] },
      ),
    };
  }
  return out;
}

/** The most servers a StateReport carries (see reportState). */
const MAX_REPORTED_SERVERS = 40_000;

/** How often the state cache is stamped as current at most (see confirmCache). */
const CACHE_CONFIRM_MS = 10 * 60_000;

/** How often HAProxy's per-service counters are sampled (besides every scrape); see ServiceStatsTracker. */
const STATS_SAMPLE_MS = 5000;

export type AgentProcessState = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped' | 'handed-over';

/**
 * One agent process: the Agent, its source of desired states (control plane, file or in-process discovery), a
 * disk cache of the last applied state (served at start when no control plane answers), the AgentAdmin gRPC
 * server with health and reflection, and Prometheus metrics.
 */
export class AgentProcess {
  readonly agent: Agent;
  private readonly runtime: RuntimeApi;
  /** Held from start to stop or hand-over: one agent per state_dir. */
  private stateDirLock: StateDirLock | undefined;
  private source: StateSource | undefined;
  private grpcServer: grpc.Server | undefined;
  private health: Health | undefined;
  private metrics: { port: number; close: () => Promise<void> } | undefined;
  private readonly registry = new Registry();
  private readonly cacheFile: string;
  /** The state cache: written at once after a reload, coalesced after runtime changes (`agent.write_delay_ms`). */
  private readonly cache: CoalescedFile;
  /** HAProxy's per-service counters for /metrics (see ServiceStatsTracker). */
  private readonly serviceStats: ServiceStatsTracker;
  private statsTimer: NodeJS.Timeout | undefined;
  /** Stamps the state cache as current while the control plane is connected (see confirmCache). */
  private cacheTimer: NodeJS.Timeout | undefined;
  /** The state cache was too old to start HAProxy from, and nothing has been applied since. */
  private cacheRefused = false;
  /** Applies in progress (see start's `apply`). */
  private readonly applying = new Set<Promise<ApplyResult>>();
  /** agent.bind_address applied per (immutable) service object, so unchanged services stay the same objects. */
  private readonly rebound = new WeakMap<Service, Service>();
  private readonly log: Logger;
  private readonly lifecycle = new Lifecycle<AgentProcessState>('agent process', 'idle', {
    idle: ['starting', 'stopping', 'handed-over'],
    starting: ['running', 'stopping', 'handed-over'],
    running: ['stopping', 'handed-over'],
    stopping: ['stopped'],
    stopped: [],
    'handed-over': [],
  });
  private stopping: Promise<void> | undefined;
  private handingOver: Promise<void> | undefined;
  adminPort = 0;

  constructor(private readonly opts: AgentProcessOptions) {
    this.log = opts.log;
    this.agent = opts.makeAgent({
      // The cache is never older than haproxy.cfg: a kill -9 after the config's write, with the cache's still pending,
      // would leave a next agent comparing the new config with the old state (no takeover without a reload).
      beforeConfigWrite: () => this.cache.flush(),
    });
    this.runtime = this.agent.runtime;
    this.serviceStats = new ServiceStatsTracker(this.runtime, (pid) => pid === this.agent.supervisor.adoptedPid);
    this.cacheFile = path.join(opts.config.agent.stateDir, 'desired-state.json');
    this.cache = new CoalescedFile(
      this.cacheFile,
      writeFileAtomic,
      opts.config.agent.writeDelayMs,
      systemClock,
      (file, err) => {
        this.agent.counters.errors++;
        this.log.error({ err: errorMessage(err), file }, 'cannot write the state cache');
      },
    );
  }

  get metricsPort(): number | undefined {
    return this.metrics?.port;
  }

  get state(): AgentProcessState {
    return this.lifecycle.state;
  }

  /** Starts everything; throws LifecycleError when started twice or after stop/hand-over. */
  async start(): Promise<void> {
    this.lifecycle.to('starting', 'start');
    const { config } = this.opts;
    // Owner-only before anything is written into it (also when it exists with looser modes).
    await ensurePrivateDir(config.agent.stateDir).catch((err: unknown) => {
      throw new ConfigError(`${config.file}: agent.state_dir: ${errorMessage(err)}`, { cause: err });
    });
    this.stateDirLock = StateDirLock.take(config.agent.stateDir, config.file, config.haproxy.configPath);
    const m = agentMetrics(this.registry, this.agent, {
      serviceStats: this.serviceStats,
      streamStats: () => this.source?.controlPlane?.stats,
      cacheRefused: () => this.cacheRefused,
    });
    const apply = (state: DesiredState): Promise<ApplyResult> => {
      // Tracked, so that stop and hand-over write the state cache only after the last apply has scheduled it.
      const applying = applyAndCache(state);
      this.applying.add(applying);
      applying.finally(() => this.applying.delete(applying)).catch(() => undefined);
      return applying;
    };
    const applyAndCache = async (state: DesiredState): Promise<ApplyResult> =>
      settle(await this.agent.apply(this.localize(state)));
    /** Metrics and the state cache of an apply (a source's, or a retry of the held state). */
    const settle = async (result: ApplyResult): Promise<ApplyResult> => {
      m.record(result);
      const current = this.agent.current;
      if (result.outcome === 'rejected' || !current) return result;
      this.cacheRefused = false;
      const text = () => stateJsonText(current);
      if (result.outcome === 'reload') {
        // A reload costs far more than the write, and a changed shape is what a restarted agent most needs.
        await this.cache.writeNow(text()).catch((err: unknown) => {
          this.agent.counters.errors++;
          this.log.error({ err: errorMessage(err), file: this.cacheFile }, 'cannot write the state cache');
        });
      } else {
        this.cache.schedule(text);
      }
      // The state runs, but a restart would not find it: said in the ACK's warnings, not passed over.
      if (this.cache.failure === undefined) return result;
      return {
        ...result,
        problems: [
          ...result.problems,
          {
            where: 'state cache',
            message: `cannot write ${this.cacheFile}: ${this.cache.failure}; an agent restarted now would not serve this version before the control plane answers`,
          },
        ],
      };
    };

    // Serve the last applied state at once: the control plane may be down, and it is what ran before — unless it is
    // too old to start a HAProxy from (judgeStateCache).
    const cached = await readStateCache(this.cacheFile, this.log);
    if (cached) {
      const verdict = judgeStateCache({
        file: this.cacheFile,
        version: cached.state.version,
        confirmedAt: cached.confirmedAt,
        now: Date.now(),
        maxAgeMs: config.agent.cacheMaxAgeMs,
        haproxyRunning: this.opts.haproxyRunning(),
      });
      const fields = {
        version: cached.state.version,
        file: this.cacheFile,
        confirmed_at: new Date(cached.confirmedAt).toISOString(),
      };
      if (!verdict.serve) {
        this.cacheRefused = true;
        this.agent.distrustLastRun(); // haproxy.cfg is as old: its servers are not kept for unknown services either
        this.log.error(fields, verdict.message);
      } else {
        if (verdict.stale) this.log.warn(fields, verdict.message);
        else this.log.info(fields, verdict.message);
        await apply(cached.state);
      }
    }

    const source = this.opts.makeSource(this.hooks());
    this.source = source;
    // A retry after a transient failure: cached like any apply, and the control plane hears the new answer.
    this.agent.onRetried((result) => {
      const retried = settle(result);
      this.applying.add(retried);
      void retried.then((r) => source.answerAgain?.(r)).finally(() => this.applying.delete(retried));
    });
    let authorizer: Authorizer | undefined;
    if (config.agent.adminListen) {
      try {
        authorizer = new Authorizer(config.auth, undefined, undefined, { log: this.log });
      } catch (err) {
        // As with a port that cannot be bound: the data plane matters more than introspection.
        this.log.error(
          { err: errorMessage(err), key: 'auth' },
          'AgentAdmin server not started: its auth section cannot be used; the agent runs without it',
        );
      }
    }
    if (config.agent.adminListen && authorizer) {
      for (const w of authorizer.warnings) this.log.warn({}, w);
      const tlsWarning = authTlsWarning(config.auth, config.agent.tls, config.file, 'agent.tls');
      if (tlsWarning) this.log.warn({}, tlsWarning);
      this.grpcServer = new grpc.Server({
        interceptors: [
          authInterceptor(
            authorizer,
            this.log.child({ component: 'admin' }),
            authMetrics(this.registry, 'proxymgr_agent'),
          ),
        ],
      });
      this.grpcServer.addService(
        AgentAdminService,
        agentAdminServer(this.agent, this.runtime, {
          nodeId: config.agent.nodeId,
          controlPlane: () => source.controlPlane?.connectedTo,
          lastError: () => source.controlPlane?.lastError ?? '',
        }),
      );
      // Watch streams hear of HAProxy exiting and coming back at once (addHealth also polls, e.g. for the first start).
      this.health = addHealth(this.grpcServer, () => this.agent.supervisor.running);
      this.agent.supervisor.on('exit', this.health.changed).on('restarted', this.health.changed);
      addReflection(this.grpcServer, ['proxymgr.v1.AgentAdmin']);
      try {
        this.adminPort = await bindServer(
          this.grpcServer,
          config.agent.adminListen,
          serverCredentials(config.agent.tls?.cert ? config.agent.tls : undefined),
        );
      } catch (err) {
        // The data plane matters more than introspection: keep serving, say loudly what is missing.
        this.log.error(
          { err: errorMessage(err), key: 'agent.admin_listen' },
          'AgentAdmin server not started; the agent runs without it',
        );
        this.grpcServer.forceShutdown();
        this.grpcServer = undefined;
      }
    }
    if (config.agent.metricsListen) {
      try {
        this.metrics = await serveMetrics(this.registry, config.agent.metricsListen);
      } catch (err) {
        this.log.error(
          { err: errorMessage(err), key: 'agent.metrics_listen' },
          'metrics endpoint not started; the agent runs without it',
        );
      }
    }
    await this.source.start(apply);
    this.agent.startDriftRepair();
    // HAProxy's counters restart at zero on every reload: sampled every few seconds, at most that much is lost.
    // (Not once a stop or hand-over began while the source was starting: it has cleared the timer already.)
    if (this.lifecycle.is('starting')) {
      this.statsTimer = setInterval(() => {
        if (this.agent.supervisor.running)
          void this.serviceStats.sample(this.agent.supervisor.pid).catch(() => undefined);
      }, STATS_SAMPLE_MS);
      this.statsTimer.unref();
      if (config.agent.cacheMaxAgeMs > 0) {
        // The cache's mtime says when what it holds was last known current (judgeStateCache reads it at start).
        const every = Math.min(CACHE_CONFIRM_MS, Math.max(1000, Math.floor(config.agent.cacheMaxAgeMs / 4)));
        this.cacheTimer = setInterval(() => void this.confirmCache(source), every);
        this.cacheTimer.unref();
      }
    }
    this.lifecycle.to('running', 'finish starting');
    this.log.info(
      { admin_port: this.adminPort, metrics_port: this.metrics?.port, node_id: config.agent.nodeId },
      'agent started',
    );
  }

  /**
   * Stops: HAProxy ends and the ports close. Every later call returns the same promise; after a hand-over it is
   * the hand-over's (nothing of this process is left to stop).
   */
  stop(): Promise<void> {
    if (this.handingOver) return this.handingOver;
    return (this.stopping ??= (async () => {
      this.lifecycle.to('stopping', 'stop');
      try {
        await this.stopServing();
        await this.flushCache(); // what the next start serves before the control plane answers
        await this.agent.stop();
      } finally {
        this.stateDirLock?.release();
        this.lifecycle.to('stopped');
      }
    })());
  }

  /**
   * Exits leaving HAProxy serving on its sockets; the next agent started with this configuration takes it over.
   * Every later call returns the same promise; refused (LifecycleError) once stopping or stopped.
   */
  handOver(): Promise<void> {
    if (this.handingOver) return this.handingOver;
    if (this.lifecycle.is('stopping', 'stopped')) return Promise.reject(this.lifecycle.refuse('hand over'));
    this.lifecycle.to('handed-over', 'hand over');
    return (this.handingOver = (async () => {
      await this.stopServing();
      await this.flushCache();
      await this.agent.handOver();
      this.stateDirLock?.release();
    })());
  }

  /** Waits for applies in progress (each schedules its cache write), then writes the state cache. */
  private async flushCache(): Promise<void> {
    await Promise.allSettled([...this.applying]);
    await this.cache.flush();
  }

  /**
   * Stamps the state cache as current: the agent runs a state and its control plane is connected (or its source is
   * local: a state file, in-process discovery). A cache not stamped for agent.cache_max_age_ms does not start a
   * HAProxy on the next start.
   */
  private async confirmCache(source: StateSource): Promise<void> {
    if (!this.agent.current || (source.controlPlane && source.controlPlane.connectedTo === undefined)) return;
    await confirmStateCache(this.cacheFile, Date.now()).catch((err: unknown) =>
      this.log.warn({ err: errorMessage(err), file: this.cacheFile }, 'cannot stamp the state cache as current'),
    );
  }

  private async stopServing(): Promise<void> {
    clearInterval(this.statsTimer);
    clearInterval(this.cacheTimer);
    await this.source?.stop();
    this.health?.close(); // open Watch streams would hold the graceful shutdown forever
    await new Promise<void>((resolve) => (this.grpcServer ? this.grpcServer.tryShutdown(() => resolve()) : resolve()));
    await this.metrics?.close();
  }

  /**
   * Local overrides: agent.bind_address replaces every service's listen address; zone-aware services (zone_label)
   * make the servers of other zones than this agent's backups; a state file without HAProxy sections gets
   * proxymgr.yml's global/defaults. The version stays the control plane's. Each service is localized once per
   * (immutable) service object, so an unchanged service stays the object HAProxy runs (plan skips it).
   */
  private localize(state: DesiredState): DesiredState {
    const { agent, haproxy } = this.opts.config;
    let out = state;
    if (this.opts.fillHaproxySections && state.haproxy.global.length === 0 && state.haproxy.defaults.length === 0) {
      out = { ...out, haproxy: { global: haproxy.global, defaults: haproxy.defaults } };
    }
    const local = (s: Service): Service => {
      let r = this.rebound.get(s);
      if (!r) this.rebound.set(s, (r = localService(s, agent.bindAddress, agent.labels)));
      return r;
    };
    if (agent.bindAddress || out.services.some((s) => s.zoneLabel)) out = { ...out, services: out.services.map(local) };
    return out;
  }

  /** What the source may ask of the agent. */
  private hooks(): AgentHooks {
    return {
      runningVersion: () => this.agent.current?.version ?? '',
      initialState: () => this.agent.current,
      // Checked as it would be applied: with the local overrides (agent.bind_address), as apply does.
      preflight: (state) => this.agent.preflight(this.localize(state)),
      // The latest sample, if recent enough (at most STATS_SAMPLE_MS old, or what the caller asks): a `show stat`
      // only when there is none that recent.
      counters: async (maxAgeMs) => {
        if (
          Date.now() - this.serviceStats.sampledAt > Math.min(maxAgeMs, STATS_SAMPLE_MS) &&
          this.agent.supervisor.running
        ) {
          await this.serviceStats.sample(this.agent.supervisor.pid).catch(() => undefined);
        }
        const servers = this.agent.serverCounts();
        return [...this.serviceStats.current()].map(([service, s]) => ({
          service,
          requests: s.counters.requests,
          responses5xx: s.counters.responses5xx,
          sessions: s.counters.sessions,
          connectionErrors: s.counters.connectionErrors,
          responseErrors: s.counters.responseErrors,
          retries: s.counters.retries,
          serversDown: servers.get(service)?.down ?? 0,
          servers: servers.get(service)?.total ?? 0,
          queue: s.gauges.queue,
          rtimeMs: s.gauges.rtimeMs,
        }));
      },
      reloadStats: () => reloadStatsPb(this.agent.supervisor),
      reportState: async () => {
        if (!this.agent.supervisor.running) return 'HAProxy is not running';
        const state = await this.runtime.serversState();
        const servers = [...state.values()].flatMap((backend) => [...backend.values()].map(toPb));
        // Within the control plane's 4 MiB receive limit (about 60 bytes a server): a larger answer would end the stream.
        if (servers.length > MAX_REPORTED_SERVERS)
          return `HAProxy has ${servers.length} servers, more than the ${MAX_REPORTED_SERVERS} an answer may hold; ask the agent's AgentAdmin/HaproxyState`;
        return servers;
      },
    };
  }
}
