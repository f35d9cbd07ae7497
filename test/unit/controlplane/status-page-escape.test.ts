/**
 * The status page escapes every value that comes from a decoded document, numbers included: a field typed as a
 * number may hold a string at run time (a JSON or ZooKeeper document decoded without a schema, a hand-built object).
 */
import { ListAgentsResponse, ListServicesResponse } from '../../../common/gen/proxymgr/v1/admin';
import { RolloutStatus } from '../../../common/gen/proxymgr/v1/rollout';
import { renderStatusPage } from '../../../controlplane/status-page';

const EVIL = '"><img src=x onerror=alert(1)>';
/** A "number" that is markup. */
const n = EVIL as unknown as number;

test('numbers from decoded documents are escaped like text on the status page', () => {
  const rollout = RolloutStatus.fromPartial({ enabled: true, replica: 'cp0', rollout: { id: 'r1', state: 'running' } });
  // Every number field the page prints, set after decoding (fromPartial would keep them anyway).
  const ro = rollout.rollout!;
  Object.assign(ro, {
    agentsNacked: n,
    policy: {
      waves: ['1'],
      bakeMs: n,
      maxNacks: n,
      autoRollback: n,
      gate: {
        enabled: true,
        minRequests: n,
        thresholds: { http5xx: n, errors: n, retries: n, serversDown: n, queue: n },
      },
    },
    preflight: { passed: n, failed: n, unanswered: n, failures: [] },
    waves: [
      {
        index: n,
        spec: '1',
        agents: [],
        acked: n,
        nacked: n,
        startedAt: '',
        ackedAt: '',
        completedAt: '',
        gate: {
          verdict: 'fail',
          reason: EVIL,
          overridden: false,
          figures: [
            {
              key: EVIL,
              metric: 'queue',
              canary: n,
              hasStable: true,
              stable: n,
              hasBefore: true,
              before: n,
              threshold: n,
              requests: n,
              regressed: true,
            },
          ],
        },
      },
    ],
  });
  const agents = ListAgentsResponse.fromPartial({ agents: [{ nodeId: 'a1', state: 'SYNCED' }] });
  Object.assign(agents.agents[0]!, {
    counters: [{ service: 'web', requests: n, responses5xx: n }],
  });
  const services = ListServicesResponse.fromPartial({ services: [{ name: 'web', servers: [] }] });
  Object.assign(services.services[0]!, {
    port: n,
    servers: [{ name: 's1', address: '10.0.0.1', port: n, weight: n }],
  });
  const html = renderStatusPage({ rollout, agents, services }, Date.parse('2026-11-30T08:00:10Z'));
  expect(html).not.toContain('<img');
  expect(html).not.toContain(EVIL);
  // The escaped value is there, where the number would have been.
  expect(html).toContain('bake &quot;&gt;&lt;img src=x onerror=alert(1)&gt; ms');
  expect(html).toContain('id="gate-&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"');
  expect(html).toContain('Preflight: &quot;&gt;&lt;img');
});
