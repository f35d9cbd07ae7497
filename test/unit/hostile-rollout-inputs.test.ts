import { Hello } from '../../common/gen/proxymgr/v1/stream';
import { helloProblem } from '../../controlplane/grpc/hello';
import * as grpc from '@grpc/grpc-js';
import { gatePolicyFromPb, preflightPolicyFromPb, rolloutAdminServer } from '../../controlplane/grpc/rollout-admin';
import { controlPlaneAdminServer } from '../../controlplane/grpc/admin';
import { AgentRegistry } from '../../controlplane/grpc/registry';
import { SetPolicyRequest } from '../../common/gen/proxymgr/v1/rollout';
import type { RolloutCoordinator } from '../../controlplane/rollout/coordinator';
import type { DesiredStateSource } from '../../controlplane/ports';
import { isReplicaTraffic } from '../../controlplane/ha/traffic-nodes';
import { AgentPreflights } from '../../controlplane/grpc/agent-questions';
import { DesiredState } from '../../common/protocol/types';

/** The new inputs of issues 11–12, fed what an attacker would send. */
describe('hostile values at the rollout inputs', () => {
  test('a hello with too many or odd capabilities is refused, naming the field', () => {
    const hello = (capabilities: string[]) => Hello.fromPartial({ nodeId: 'n1', protocolVersion: 2, capabilities });
    expect(helloProblem(hello(['preflight', 'settings']))).toBeUndefined();
    expect(helloProblem(hello(Array.from({ length: 17 }, (_, i) => `c${i}`)))).toMatch(
      /^hello\.capabilities: 17 entries, at most 16/,
    );
    expect(helloProblem(hello(['pre\x1b[2Jflight']))).toMatch(/^hello\.capabilities: .* is not a capability name/);
    expect(helloProblem(hello(['x'.repeat(33)]))).toMatch(/is not a capability name/);
  });

  test('a traffic node that is not one (strings, negatives, NaN, huge vectors) is left out of the gates', () => {
    const good = {
      epoch: 'e',
      at: 1,
      rollout: 'r',
      sums: { r2: { '*': [1, 0, 0, 0, 0] } },
      gauges: {},
      baseline: {},
      baselineGauges: {},
    };
    expect(isReplicaTraffic(good)).toBe(true);
    expect(isReplicaTraffic({ ...good, sums: { r2: { '*': [-5, 0, 0, 0, 0] } } })).toBe(false);
    expect(isReplicaTraffic({ ...good, sums: { r2: { '*': ['1e9', 0] } } })).toBe(false);
    expect(isReplicaTraffic({ ...good, baseline: { '*': [Number.NaN] } })).toBe(false);
    expect(isReplicaTraffic({ ...good, gauges: { r2: { '*': new Array(1000).fill(1) } } })).toBe(false);
    expect(isReplicaTraffic({ ...good, epoch: 7 })).toBe(false);
    expect(isReplicaTraffic(null)).toBe(false);
  });

  test('SetPolicy gate and preflight values outside what proxymgr.yml allows are refused, naming the key', () => {
    const g = {
      enabled: true,
      minRequests: 10,
      thresholds: { http5xx: 0.05, errors: 0.05, retries: 0.1, serversDown: 0.2, queue: 10, rtime: 100 },
      falseHaltRate: 0,
      onInsufficientTraffic: 'pass',
      sampleMs: 1000,
      baselineMs: 60000,
    };
    expect(gatePolicyFromPb(g).sampleMs).toBe(1000);
    expect(() => gatePolicyFromPb({ ...g, thresholds: { ...g.thresholds, http5xx: 5 } })).toThrow(
      /gate\.thresholds\.http_5xx: expected a share 0\.\.1/,
    );
    expect(() => gatePolicyFromPb({ ...g, thresholds: { ...g.thresholds, errors: Number.NaN } })).toThrow(
      /gate\.thresholds\.errors/,
    );
    expect(() => gatePolicyFromPb({ ...g, thresholds: { ...g.thresholds, queue: -1 } })).toThrow(
      /gate\.thresholds\.queue/,
    );
    expect(() => gatePolicyFromPb({ ...g, onInsufficientTraffic: 'ignore\x1b[2J' })).toThrow(
      /gate\.on_insufficient_traffic: expected "pass" or "halt"/,
    );
    expect(() => gatePolicyFromPb({ ...g, sampleMs: 1 })).toThrow('gate.sample_ms: expected 200..60000, got 1');
    expect(() => preflightPolicyFromPb({ enabled: true, maxFailures: 0, timeoutMs: 0 })).toThrow(
      'preflight.timeout_ms: expected 1000..3600000, got 0',
    );
  });

  test("SetPolicy bake_ms, max_nacks, preflight.max_failures and gate.min_requests keep to proxymgr.yml's ranges (uint32 on the wire)", async () => {
    const changes: unknown[] = [];
    const coordinator = {
      store: { doc: undefined, agents: new Map() },
      setPolicy: async (change: unknown) => {
        changes.push(change);
        throw new Error('recorded'); // (the status of a real document is not what this test is about)
      },
    } as unknown as RolloutCoordinator;
    const server = rolloutAdminServer(coordinator);
    const call = (r: Partial<SetPolicyRequest>) =>
      new Promise<grpc.ServiceError | null>((resolve) =>
        server.setPolicy(
          { request: SetPolicyRequest.fromPartial(r) } as grpc.ServerUnaryCall<SetPolicyRequest, never>,
          (err) => resolve(err as grpc.ServiceError | null),
        ),
      );
    const refused = async (r: Partial<SetPolicyRequest>, message: string) => {
      const err = await call(r);
      expect({ code: err?.code, details: err?.details }).toEqual({
        code: grpc.status.INVALID_ARGUMENT,
        details: `CONFIG_INVALID: ${message}`,
      });
    };
    await refused({ hasBakeMs: true, bakeMs: 86_400_001 }, 'bake_ms: expected 0..86400000, got 86400001');
    await refused({ hasMaxNacks: true, maxNacks: 4_294_967_295 }, 'max_nacks: expected 0..1000000, got 4294967295');
    const gate = {
      enabled: true,
      minRequests: 4_294_967_295,
      thresholds: { http5xx: 0.05, errors: 0.05, retries: 0.1, serversDown: 0.2, queue: 10, rtime: 100 },
      falseHaltRate: 0,
      onInsufficientTraffic: 'pass',
      sampleMs: 1000,
      baselineMs: 60000,
    };
    await refused({ gate }, 'gate.min_requests: expected 1..1000000000, got 4294967295');
    await refused(
      { preflight: { enabled: true, maxFailures: 1_000_001, timeoutMs: 5000 } },
      'preflight.max_failures: expected 0..1000000, got 1000001',
    );
    expect(changes).toEqual([]); // nothing refused reached the coordinator
    expect((await call({ hasBakeMs: true, bakeMs: 86_400_000, hasMaxNacks: true, maxNacks: 3 }))?.details).toMatch(
      /recorded/,
    );
    expect(changes).toEqual([{ bakeMs: 86_400_000, maxNacks: 3 }]);
  });

  test('an unknown node id of 1 MB is answered NOT_FOUND with the id clipped (grpc-js could not send it whole)', async () => {
    const admin = controlPlaneAdminServer(
      () => undefined,
      () => ({}),
      {} as DesiredStateSource,
      new AgentRegistry(),
    );
    const huge = 'n'.repeat(1_000_000) + '\x1b[2J';
    for (const method of ['getAgentState', 'getAgentView'] as const) {
      const err = await new Promise<grpc.ServiceError>((resolve) =>
        (admin[method] as (c: unknown, cb: (e: grpc.ServiceError) => void) => void)(
          { request: { nodeId: huge } },
          resolve,
        ),
      );
      expect(err.code).toBe(grpc.status.NOT_FOUND);
      expect(err.details.length).toBeLessThan(400);
      expect(err.details).toMatch(/^no agent with node_id "n{253}… \(1000004 characters\)" has connected/);
    }
  });

  test('a preflight answer counts only from the agent asked, for the question asked', async () => {
    const q = new AgentPreflights();
    const asked: string[] = [];
    q.register('n1', (id) => asked.push(id));
    const state: DesiredState = { version: 'v', haproxy: { global: [], defaults: [] }, services: [] };
    const pending = q.ask('n1', state, 1000);
    const forged = {
      id: asked[0]!,
      ok: true,
      error: '',
      haproxyOutput: '',
      method: 0,
      reasons: [],
      rejectedServices: [],
      warnings: [],
      wholeConfig: false,
    };
    q.answer('n2', forged); // another agent: ignored
    q.answer('n1', { ...forged, id: 'q999', ok: true }); // a question never asked: ignored
    q.answer('n1', { ...forged, ok: false, error: 'port taken' });
    expect(await pending).toMatchObject({ ok: false, error: 'port taken' });
  });
});
