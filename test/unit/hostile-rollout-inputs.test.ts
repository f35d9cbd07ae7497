import { Hello } from '../../common/gen/proxymgr/v1/stream';
import { helloProblem } from '../../controlplane/grpc/stream-server';
import { gatePolicyFromPb, preflightPolicyFromPb } from '../../controlplane/grpc/rollout-admin';
import { isReplicaTraffic } from '../../controlplane/ha/traffic-nodes';
import { AgentPreflights } from '../../controlplane/grpc/agent-questions';
import { DesiredState } from '../../common/types';

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
      thresholds: { http5xx: 0.05, errors: 0.05, retries: 0.1, serversDown: 0.2, queue: 10 },
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
