import * as grpc from '@grpc/grpc-js';
import { toStatus } from '../common/platform/grpc';
import { AgentAdminServer, RuntimeServer as PbRuntimeServer } from '../common/gen/proxymgr/v1/admin';
import { ReloadStats } from '../common/gen/proxymgr/v1/reloads';
import { quantile } from './haproxy/generations';
import { Agent } from './agent';
import { ADMF_FDRAIN, inMaint, RuntimeServer } from './haproxy/servers-state';
import type { RuntimeApi, Supervisor } from './ports';

/** What AgentAdmin reports about the connection to the control plane. */
export interface ConnectionInfo {
  readonly nodeId: string;
  controlPlane(): string | undefined;
  lastError(): string;
}

const OPER = ['down', 'starting', 'up', 'stopping'];

/** A `show servers state` entry as AgentAdmin and the stream's StateReport show it. */
export function toPb(s: RuntimeServer): PbRuntimeServer {
  return {
    backend: s.backend,
    name: s.name,
    address: s.address,
    port: s.port,
    weight: s.weight,
    adminState: inMaint(s) ? 'maint' : (s.adminState & ADMF_FDRAIN) !== 0 ? 'drain' : 'ready',
    operState: OPER[s.operState] ?? String(s.operState),
  };
}

/** The supervisor's reload accounting as AgentAdmin and the stream's StateReport show it (undefined: not kept). */
export function reloadStatsPb(supervisor: Supervisor): ReloadStats | undefined {
  const r = supervisor.reloadStats?.();
  if (!r) return undefined;
  return {
    reloads: r.reloads,
    completed: r.completed,
    lastDurationMs: r.lastDurationMs ?? 0,
    p50DurationMs: quantile(r.recentDurationsMs, 0.5) ?? 0,
    maxDurationMs: r.recentDurationsMs.length ? Math.max(...r.recentDurationsMs) : 0,
    recent: r.recentDurationsMs.length,
    oldGenerations: r.oldGenerations.map((g) => ({
      pid: g.pid,
      ageMs: g.ageMs,
      reloadsSurvived: g.reloadsSurvived,
      stopped: g.stopped,
    })),
    maxOldGenerations: r.maxOldGenerations,
    generationsStopped: r.generationsStopped,
    connectionsCut: r.connectionsCut,
  };
}

/** AgentAdmin: status, the live HAProxy state and recent actions with their reasons. */
export function agentAdminServer(agent: Agent, runtime: RuntimeApi, conn: ConnectionInfo): AgentAdminServer {
  return {
    status(_call, callback) {
      callback(null, {
        nodeId: conn.nodeId,
        runningVersion: agent.current?.version ?? '',
        haproxyRunning: agent.supervisor.running,
        haproxyPid: agent.supervisor.pid ?? 0,
        reloads: agent.counters.reloads,
        restarts: agent.supervisor.restarts,
        runtimeCommands: agent.counters.runtimeCommands,
        controlPlane: conn.controlPlane() ?? '',
        connected: conn.controlPlane() !== undefined,
        lastError: conn.lastError(),
        services: agent.current?.services.length ?? 0,
        warnings: agent.lastProblems.map((p) => `${p.where}: ${p.message}`),
        retryAttempt: agent.retry?.attempt ?? 0,
        retryAt: agent.retry ? new Date(agent.retry.at).toISOString() : '',
        retryReason: agent.retry?.reason ?? '',
        reloadStats: reloadStatsPb(agent.supervisor),
        draining: agent.draining().map((d) => ({
          server: d.server,
          since: d.since !== undefined ? new Date(d.since).toISOString() : '',
          deadline: d.deadline !== undefined ? new Date(d.deadline).toISOString() : '',
          ageSeconds: d.since !== undefined ? Math.max(0, Math.round((Date.now() - d.since) / 1000)) : 0,
        })),
      });
    },
    haproxyState(_call, callback) {
      if (!agent.supervisor.running)
        return callback({ code: grpc.status.UNAVAILABLE, details: 'HAProxy is not running' });
      runtime.serversState().then(
        (state) => callback(null, { servers: [...state.values()].flatMap((be) => [...be.values()].map(toPb)) }),
        (err) => callback(toStatus(err)),
      );
    },
    recentActions(call, callback) {
      const all = agent.recentActions();
      const limit = call.request.limit || 50;
      callback(null, { actions: all.slice(-limit).map((a) => ({ ...a })) });
    },
  };
}
