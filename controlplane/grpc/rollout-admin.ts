import { toStatus } from '../../common/platform/grpc';
import * as grpc from '@grpc/grpc-js';
import {
  GatePolicy as GatePolicyPb,
  GateResult as GateResultPb,
  PreflightInfo,
  RolloutAgent,
  RolloutInfo,
  RolloutPolicy,
  RolloutServer,
  RolloutStatus,
} from '../../common/gen/proxymgr/v1/rollout';
import { DEFAULT_GATE_POLICY, GatePolicy, PreflightPolicy } from '../../common/config/config';
import { GateResult } from '../rollout/gate';
import { ConfigError } from '../../common/platform/errors';
import { integerKey } from '../../common/config/config-schema';
import {
  Command,
  counts,
  FleetDoc,
  PolicyDoc,
  PreflightDoc,
  releasedRevision,
  RolloutDoc,
  waveOf,
} from '../rollout/engine';
import { RolloutCoordinator } from '../rollout/coordinator';

const iso = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms).toISOString());

/** The Rollout admin service; with rollouts off (no `rollout:` section) it answers `enabled: false`. */
/** Rollout/Status's answer (rollouts off: `enabled` false). */
export function currentRolloutStatus(
  coordinator: RolloutCoordinator | undefined,
  doc: FleetDoc | undefined = coordinator?.store.doc,
): RolloutStatus {
  return coordinator
    ? rolloutStatus(coordinator, doc)
    : { enabled: false, replica: '', leader: '', stableRevision: '', agents: [] };
}

export function rolloutAdminServer(coordinator: RolloutCoordinator | undefined): RolloutServer {
  const status = (doc: FleetDoc | undefined = coordinator?.store.doc): RolloutStatus =>
    currentRolloutStatus(coordinator, doc);
  const run =
    (cmd: Command) =>
    (call: grpc.ServerUnaryCall<{ rolloutId: string }, RolloutStatus>, callback: grpc.sendUnaryData<RolloutStatus>) => {
      if (!coordinator)
        return callback({
          code: grpc.status.FAILED_PRECONDITION,
          details: 'rollouts are off: proxymgr.yml has no rollout section',
        });
      coordinator.command(cmd, call.request.rolloutId).then(
        (doc) => callback(null, status(doc)),
        (err) => callback(toStatus(err)),
      );
    };
  return {
    status(_call, callback) {
      callback(null, status());
    },
    pause: run('pause'),
    resume: run('resume'),
    promote: run('promote'),
    abort: run('abort'),
    setPolicy(call, callback) {
      if (!coordinator)
        return callback({
          code: grpc.status.FAILED_PRECONDITION,
          details: 'rollouts are off: proxymgr.yml has no rollout section',
        });
      const r = call.request;
      const change: { -readonly [K in keyof PolicyDoc]?: PolicyDoc[K] } = {};
      if (r.waves.length > 0) change.waves = r.waves;
      if (r.hasAutoRollback) change.autoRollback = r.autoRollback;
      try {
        // The same ranges as proxymgr.yml's rollout keys (a uint32 on the wire reaches 4,294,967,295).
        if (r.hasBakeMs) change.bakeMs = inRange('bake_ms', r.bakeMs);
        if (r.hasMaxNacks) change.maxNacks = inRange('max_nacks', r.maxNacks);
        if (r.gate) change.gate = gatePolicyFromPb(r.gate);
        if (r.preflight) change.preflight = preflightPolicyFromPb(r.preflight);
      } catch (err) {
        return callback(toStatus(err));
      }
      coordinator.setPolicy(change, r.next).then(
        (doc) => callback(null, status(doc)),
        (err) => callback(toStatus(err)),
      );
    },
    plan(_call, callback) {
      if (!coordinator)
        return callback({
          code: grpc.status.FAILED_PRECONDITION,
          details: 'rollouts are off: proxymgr.yml has no rollout section',
        });
      coordinator.plan().then(
        (plan) => callback(null, plan),
        (err) => callback(toStatus(err)),
      );
    },
    history(call, callback) {
      const doc = coordinator?.store.doc;
      const limit = call.request.limit || 20;
      callback(null, { rollouts: (doc?.history ?? []).slice(0, limit).map(info) });
    },
  };
}

/** The status one replica sees: rollout state from ZooKeeper, agents from every replica's reports. */
export function rolloutStatus(c: RolloutCoordinator, doc: FleetDoc | undefined): RolloutStatus {
  const r = doc?.current;
  const agents: RolloutAgent[] = [];
  const ids = new Set([...c.store.agents.keys(), ...Object.keys(r?.results ?? {})]);
  for (const id of [...ids].sort()) {
    const a = c.store.agents.get(id);
    const res = r?.results[id];
    const released = doc ? releasedRevision(doc, id) : '';
    const nack = a?.lastNack && a.lastNack.revision === r?.to ? a.lastNack : undefined;
    agents.push({
      nodeId: id,
      labels: { ...(a?.labels ?? {}) },
      connected: a !== undefined,
      replica: a?.replica ?? '',
      wave: waveOf(r, id),
      releasedRevision: released,
      runningRevision: a?.runningRevision ?? '',
      status: res?.status ?? (a && a.runningRevision === released ? 'acked' : 'waiting'),
      error:
        res?.error ??
        nack?.error ??
        (a?.preflight && a.preflight.rollout === r?.id && !a.preflight.ok ? `preflight: ${a.preflight.error}` : ''),
      at: iso(res?.at),
      preflight: a?.preflight && a.preflight.rollout === r?.id ? (a.preflight.ok ? 'passed' : 'failed') : '',
    });
  }
  return {
    enabled: true,
    replica: c.replicaId,
    leader: c.store.leaderId,
    stableRevision: doc?.stable ?? '',
    ...(r ? { rollout: info(r) } : {}),
    agents,
    ...(doc?.nextPolicy ? { nextPolicy: policyInfo(doc.nextPolicy) } : {}),
    defaultPolicy: policyInfo(c.defaultPolicy),
  };
}

function policyInfo(p: PolicyDoc): RolloutPolicy {
  return {
    waves: [...p.waves],
    bakeMs: p.bakeMs,
    maxNacks: p.maxNacks,
    autoRollback: p.autoRollback,
    spreadBy: p.spreadBy ?? '',
    ...(p.preflight ? { preflight: { ...p.preflight } } : {}),
    ...(p.gate ? { gate: gatePolicyPb(p.gate) } : {}),
  };
}

function gatePolicyPb(g: GatePolicy): GatePolicyPb {
  const t = g.thresholds;
  return {
    enabled: g.enabled,
    minRequests: g.minRequests,
    thresholds: {
      http5xx: t.http_5xx,
      errors: t.errors,
      retries: t.retries,
      serversDown: t.servers_down,
      queue: t.queue,
      rtime: t.rtime ?? DEFAULT_GATE_POLICY.thresholds.rtime,
    },
    falseHaltRate: g.falseHaltRate ?? DEFAULT_GATE_POLICY.falseHaltRate ?? 0.01,
    onInsufficientTraffic: g.onInsufficientTraffic,
    sampleMs: g.sampleMs,
    baselineMs: g.baselineMs,
  };
}

/** A gate policy from SetPolicy: every field is checked (it replaces the policy's gate whole). */
export function gatePolicyFromPb(g: GatePolicyPb): GatePolicy {
  const t = g.thresholds ?? { http5xx: 0, errors: 0, retries: 0, serversDown: 0, queue: 0, rtime: 0 };
  const ratio = (name: string, v: number) => {
    if (!Number.isFinite(v) || v < 0 || v > 1)
      throw new ConfigError(`gate.thresholds.${name}: expected a share 0..1 (0.05 = 5 points), got ${v}`);
    return v;
  };
  if (!Number.isFinite(t.queue) || t.queue < 0)
    throw new ConfigError(`gate.thresholds.queue: expected a number of queued requests per agent >= 0, got ${t.queue}`);
  if (!Number.isFinite(t.rtime) || t.rtime < 0 || t.rtime > 600_000)
    throw new ConfigError(`gate.thresholds.rtime: expected milliseconds 0..600000, got ${t.rtime}`);
  if (!Number.isFinite(g.falseHaltRate) || g.falseHaltRate < 0 || g.falseHaltRate > 0.5)
    throw new ConfigError(
      `gate.false_halt_rate: expected a probability 0..0.5 (0: the default 0.01), got ${g.falseHaltRate}`,
    );
  if (g.onInsufficientTraffic !== 'pass' && g.onInsufficientTraffic !== 'halt')
    throw new ConfigError(
      `gate.on_insufficient_traffic: expected "pass" or "halt", got ${JSON.stringify(g.onInsufficientTraffic.slice(0, 40))}`,
    );
  inRange('gate.min_requests', g.minRequests);
  inRange('gate.sample_ms', g.sampleMs);
  inRange('gate.baseline_ms', g.baselineMs);
  return {
    enabled: g.enabled,
    minRequests: g.minRequests,
    thresholds: {
      http_5xx: ratio('http_5xx', t.http5xx),
      errors: ratio('errors', t.errors),
      retries: ratio('retries', t.retries),
      servers_down: ratio('servers_down', t.serversDown),
      queue: t.queue,
      // 0 (a client that predates it): the default.
      rtime: t.rtime || DEFAULT_GATE_POLICY.thresholds.rtime,
    },
    // 0 (a client that does not set it): the default.
    ...(g.falseHaltRate !== 0 ? { falseHaltRate: g.falseHaltRate } : {}),
    onInsufficientTraffic: g.onInsufficientTraffic,
    sampleMs: g.sampleMs,
    baselineMs: g.baselineMs,
  };
}

/** A policy value within the range proxymgr.yml allows for the same key (the schema's, rollout.<key>). */
function inRange(key: string, v: number): number {
  const { min, max } = integerKey(`rollout.${key}`);
  if (!Number.isInteger(v) || v < min || v > max) throw new ConfigError(`${key}: expected ${min}..${max}, got ${v}`);
  return v;
}

export function preflightPolicyFromPb(p: {
  enabled: boolean;
  maxFailures: number;
  timeoutMs: number;
}): PreflightPolicy {
  inRange('preflight.timeout_ms', p.timeoutMs);
  inRange('preflight.max_failures', p.maxFailures);
  return { enabled: p.enabled, maxFailures: p.maxFailures, timeoutMs: p.timeoutMs };
}

function gateInfo(g: GateResult, overridden: boolean): GateResultPb {
  return {
    verdict: g.verdict,
    reason: g.reason,
    at: iso(g.at),
    overridden,
    figures: g.figures.map((f) => ({
      key: f.key,
      metric: f.metric,
      canary: f.canary,
      hasStable: f.stable !== undefined,
      stable: f.stable ?? 0,
      hasBefore: f.before !== undefined,
      before: f.before ?? 0,
      threshold: f.threshold,
      requests: f.requests,
      regressed: f.regressed,
      hasP: f.p !== undefined,
      p: f.p ?? 0,
    })),
  };
}

function preflightInfo(p: PreflightDoc): PreflightInfo {
  return {
    startedAt: iso(p.startedAt),
    completedAt: iso(p.completedAt),
    passed: p.passed,
    failed: p.failedCount,
    unanswered: p.unanswered,
    failures: p.failed.map((f) => ({ nodeId: f.nodeId, error: f.error })),
    overridden: p.overridden ?? false,
  };
}

function info(r: RolloutDoc): RolloutInfo {
  const n = counts(r);
  return {
    id: r.id,
    fromRevision: r.from,
    toRevision: r.to,
    state: r.state,
    policy: policyInfo(r.policy),
    waves: r.waves.map((w) => {
      const res = w.agents.map((id) => r.results[id]?.status);
      return {
        index: w.index,
        spec: w.spec,
        agents: [...w.agents],
        startedAt: iso(w.startedAt),
        ackedAt: iso(w.ackedAt),
        completedAt: iso(w.completedAt),
        acked: res.filter((s) => s === 'acked').length,
        nacked: res.filter((s) => s === 'nacked').length,
        ...(w.gate ? { gate: gateInfo(w.gate, w.gateOverridden ?? false) } : {}),
      };
    }),
    pendingWaves: [...r.pending],
    createdAt: iso(r.createdAt),
    updatedAt: iso(r.updatedAt),
    finishedAt: iso(r.finishedAt),
    reason: r.reason,
    agentsTotal: n.total,
    agentsAcked: n.acked,
    agentsNacked: n.nacked,
    changes: [...r.changes],
    ...(r.preflight ? { preflight: preflightInfo(r.preflight) } : {}),
  };
}
