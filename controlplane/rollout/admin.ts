import * as grpc from '@grpc/grpc-js';
import { RolloutAgent, RolloutInfo, RolloutPolicy, RolloutServer, RolloutStatus } from '../../common/gen/proxymgr/v1/rollout';
import { ConfigError, errorMessage } from '../../common/errors';
import { Command, counts, FleetDoc, PolicyDoc, releasedRevision, RolloutCommandError, RolloutDoc, waveOf } from './engine';
import { RolloutCoordinator } from './coordinator';

const iso = (ms: number | undefined) => (ms === undefined ? '' : new Date(ms).toISOString());

/** The Rollout admin service; with rollouts off (no `rollout:` section) it answers `enabled: false`. */
/** Rollout/Status's answer (rollouts off: `enabled` false). */
export function currentRolloutStatus(coordinator: RolloutCoordinator | undefined, doc: FleetDoc | undefined = coordinator?.store.doc): RolloutStatus {
  return coordinator ? rolloutStatus(coordinator, doc) : { enabled: false, replica: '', leader: '', stableRevision: '', agents: [] };
}

export function rolloutAdminServer(coordinator: RolloutCoordinator | undefined): RolloutServer {
  const status = (doc: FleetDoc | undefined = coordinator?.store.doc): RolloutStatus => currentRolloutStatus(coordinator, doc);
  const run = (cmd: Command) => (call: grpc.ServerUnaryCall<{ rolloutId: string }, RolloutStatus>, callback: grpc.sendUnaryData<RolloutStatus>) => {
    if (!coordinator) return callback({ code: grpc.status.FAILED_PRECONDITION, details: 'rollouts are off: proxymgr.yml has no rollout section' });
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
      if (!coordinator) return callback({ code: grpc.status.FAILED_PRECONDITION, details: 'rollouts are off: proxymgr.yml has no rollout section' });
      const r = call.request;
      const change: { -readonly [K in keyof PolicyDoc]?: PolicyDoc[K] } = {};
      if (r.waves.length > 0) change.waves = r.waves;
      if (r.hasBakeMs) change.bakeMs = r.bakeMs;
      if (r.hasMaxNacks) change.maxNacks = r.maxNacks;
      if (r.hasAutoRollback) change.autoRollback = r.autoRollback;
      coordinator.setPolicy(change, r.next).then(
        (doc) => callback(null, status(doc)),
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

function toStatus(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof RolloutCommandError || err instanceof ConfigError) return { code: grpc.status.FAILED_PRECONDITION, details: err.message };
  return { code: grpc.status.UNAVAILABLE, details: errorMessage(err) };
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
      error: res?.error ?? nack?.error ?? '',
      at: iso(res?.at),
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
  return { ...p, waves: [...p.waves], spreadBy: p.spreadBy ?? '' };
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
  };
}
