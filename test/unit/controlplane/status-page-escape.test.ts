/**
 * The status page escapes every value that comes from a decoded document, numbers included: a field typed as a
 * number may hold a string at run time (a JSON or ZooKeeper document decoded without a schema, a hand-built object).
 */
import { ListAgentsResponse, ListChangesResponse, ListServicesResponse } from '../../../common/gen/proxymgr/v1/admin';
import { RolloutStatus } from '../../../common/gen/proxymgr/v1/rollout';
import { renderStatusPage, statusJson } from '../../../controlplane/status-page';

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

test('the changes section escapes service names, messages, node ids and numbers; its chart is drawn from numbers only', () => {
  const rollout = RolloutStatus.fromPartial({ enabled: false, replica: 'cp0' });
  const agents = ListAgentsResponse.fromPartial({});
  const services = ListServicesResponse.fromPartial({});
  const changes = ListChangesResponse.fromPartial({
    oldestUnappliedSeconds: 2.5,
    histogramLeMs: [10, 25],
    histogramCounts: [2, 1, 0],
    changes: [
      {
        id: EVIL,
        service: `web${EVIL}`,
        source: EVIL,
        what: EVIL,
        sourceTime: `2026-11-30T08:00:00.000Z${EVIL}`,
        sourceTimeKind: EVIL,
        expected: 3,
        applied: 2,
        refused: 1,
        p50Ms: 5,
        p99Ms: 9,
        maxMs: 9,
        slowest: [EVIL],
        behind: [`agent${EVIL}`],
        refusals: [{ nodeId: EVIL, state: 'refused', message: `HAProxy said ${EVIL}` }],
      },
    ],
  });
  const html = renderStatusPage({ rollout, agents, services, changes }, Date.parse('2026-11-30T08:00:10Z'));
  expect(html).toContain('<section id="changes">');
  expect(html).toContain('<svg id="propagation-chart"');
  expect(html).toContain('2/3 applied, 1 refused');
  expect(html).toContain('<td>web&quot;&gt;&lt;img src=x onerror=alert(1)&gt;</td>');
  expect(html).toContain('HAProxy said &quot;&gt;&lt;img');
  expect(html).toContain('<td>agent&quot;&gt;&lt;img src=x onerror=alert(1)&gt;</td>');
  expect(html).not.toContain('<img');
  expect(html).not.toContain(EVIL);

  // Numbers that are markup: escaped in the text, drawn as 0 in the chart.
  Object.assign(changes, { oldestUnappliedSeconds: n, histogramLeMs: [n, 25], histogramCounts: [n, 4, n] });
  Object.assign(changes.changes[0]!, { expected: n, applied: n, refused: n, p50Ms: n, p99Ms: n, maxMs: n });
  const hostile = renderStatusPage({ rollout, agents, services, changes }, Date.parse('2026-11-30T08:00:10Z'));
  expect(hostile).not.toContain('<img');
  expect(hostile).not.toContain(EVIL);
  expect(hostile).toContain(
    '&quot;&gt;&lt;img src=x onerror=alert(1)&gt;/&quot;&gt;&lt;img src=x onerror=alert(1)&gt; applied',
  );
  expect(hostile).toContain('>≤&quot;&gt;&lt;img src=x onerror=alert(1)&gt;</text>');
  // The one real count is the highest bar; the bars that were markup have no height.
  expect(hostile).toMatch(/<rect class="bucket" [^>]*height="0\.0"/);
  expect(hostile).toMatch(/<rect class="bucket" [^>]*height="164\.0"/);
  const json = JSON.parse(statusJson({ rollout, agents, services, changes })) as { changes: { changes: unknown[] } };
  expect(json.changes.changes).toHaveLength(1);
});
