import { RolloutPlan, RolloutStatus } from '../../../common/gen/proxymgr/v1/rollout';
import { ListAgentsResponse, ListServicesResponse } from '../../../common/gen/proxymgr/v1/admin';
import { renderPlan, renderStatus } from '../../../ctl/render-rollout';
import { renderStatusPage } from '../../../controlplane/status-page';

const gate = {
  verdict: 'fail',
  reason: 'traffic gate: service web: 5xx 100% over 40 request(s) (stable 0%, before 0%) > +5% allowed',
  at: '2026-11-30T08:00:05.000Z',
  overridden: false,
  figures: [
    {
      key: 'web',
      metric: 'http_5xx',
      canary: 1,
      hasStable: true,
      stable: 0,
      hasBefore: true,
      before: 0,
      threshold: 0.05,
      requests: 40,
      regressed: true,
    },
    {
      key: '*',
      metric: 'queue',
      canary: 0,
      hasStable: false,
      stable: 0,
      hasBefore: false,
      before: 0,
      threshold: 10,
      requests: 40,
      regressed: false,
    },
  ],
};

const status = RolloutStatus.fromPartial({
  enabled: true,
  replica: 'cp0',
  leader: 'cp0',
  stableRevision: 'aaaaaaaaaaaa',
  rollout: {
    id: 'r1',
    fromRevision: 'aaaaaaaaaaaa',
    toRevision: 'bbbbbbbbbbbb',
    state: 'rolled_back',
    reason: 'wave 1: traffic gate: …',
    policy: {
      waves: ['1', '100%'],
      bakeMs: 8000,
      preflight: { enabled: true, maxFailures: 0, timeoutMs: 30000 },
      gate: {
        enabled: true,
        minRequests: 20,
        thresholds: { http5xx: 0.05, errors: 0.05, retries: 0.1, serversDown: 0.2, queue: 10, rtime: 100 },
        onInsufficientTraffic: 'pass',
        sampleMs: 1000,
        baselineMs: 60000,
      },
    },
    waves: [
      {
        index: 1,
        spec: '1',
        agents: ['n1'],
        startedAt: '2026-11-30T08:00:00.000Z',
        ackedAt: '2026-11-30T08:00:01.000Z',
        gate,
      },
    ],
    preflight: {
      startedAt: '2026-11-30T07:59:59.000Z',
      completedAt: '2026-11-30T08:00:00.000Z',
      passed: 4,
      failed: 1,
      unanswered: 0,
      failures: [{ nodeId: 'n5', error: 'service api: cannot listen on 127.0.0.5:9000: Address already in use' }],
    },
  },
  agents: [
    {
      nodeId: 'n1',
      status: 'acked',
      releasedRevision: 'aaaaaaaaaaaa',
      runningRevision: 'aaaaaaaaaaaa',
      connected: true,
      preflight: 'passed',
    },
  ],
});

describe('rollout gates and preflight as ctl and the status page show them', () => {
  test("ctl rollout status: the policy, the preflight with each failing agent, each wave's verdict with its figures", () => {
    const text = renderStatus(status);
    expect(text).toMatch(
      /preflight on {2}gate on \(min_requests 20; 5xx \+5%, errors \+5%, retries \+10%, servers_down \+20%, queue \+10, rtime \+100 ms; false_halt_rate 0\.01\)/,
    );
    expect(text).toMatch(/^ {2}wave 1 gate: FAIL: traffic gate: service web: 5xx 100%/m);
    expect(text).toMatch(/^ {4}web +http_5xx +100% +0% +0% +\+5% +40 +- +! regressed$/m);
    expect(text).toMatch(/^ {4}\* +queue +0 +- +- +\+10 +40 +- *$/m);
    expect(text).toMatch(/^preflight: 4 passed, 1 failed, 0 unanswered$/m);
    expect(text).toMatch(/^ {2}n5: service api: cannot listen on 127\.0\.0\.5:9000: Address already in use$/m);
  });

  test('ctl rollout plan: services added, removed, changed and each agent with its preflight', () => {
    const plan = RolloutPlan.fromPartial({
      pending: true,
      fromRevision: 'aaaaaaaaaaaa',
      toRevision: 'bbbbbbbbbbbb',
      rolloutId: 'r1',
      state: 'running',
      servicesAdded: ['api'],
      servicesChanged: ['web'],
      changes: ['service api added', 'listen_options of web changed'],
      agents: [
        {
          nodeId: 'n1',
          services: ['api', 'web'],
          preflight: 'passed',
          method: 'reload',
          reasons: ['reload: service api added'],
        },
        {
          nodeId: 'n5',
          services: ['api', 'web'],
          preflight: 'failed',
          method: 'reload',
          error: 'service api: Address\x1b[2J already in use',
        },
      ],
    });
    const text = renderPlan(plan);
    expect(text).toMatch(/^revision aaaaaaaaaaaa -> bbbbbbbbbbbb {2}rollout r1 RUNNING$/m);
    expect(text).toMatch(/^services added: api$/m);
    expect(text).toMatch(/^services removed: -$/m);
    expect(text).toMatch(/^services changed: web$/m);
    expect(text).toMatch(/^n1 +api,web +passed +reload +reload: service api added$/m);
    // Agent text cannot drive the terminal.
    expect(text).toMatch(/^n5 +api,web +failed +reload +service api: Address \[2J already in use$/m);
    expect(renderPlan(RolloutPlan.fromPartial({ pending: false }))).toMatch(/^nothing pending/);
  });

  test('the status page: preflight failures and gate figures, every fleet text escaped', () => {
    const hostile = RolloutStatus.fromPartial({
      ...status,
      rollout: {
        ...status.rollout!,
        preflight: { ...status.rollout!.preflight!, failures: [{ nodeId: 'n5', error: '<script>alert(1)</script>' }] },
      },
    });
    const html = renderStatusPage(
      {
        rollout: hostile,
        agents: ListAgentsResponse.fromPartial({ agents: [] }),
        services: ListServicesResponse.fromPartial({ services: [] }),
      },
      Date.parse('2026-11-30T08:00:10Z'),
    );
    expect(html).toMatch(
      /<p id="preflight">Preflight: 4 passed · <span class="bad">1 failed<\/span> · 0 unanswered<\/p>/,
    );
    expect(html).toContain('<td class="error">&lt;script&gt;alert(1)&lt;/script&gt;</td>');
    expect(html).not.toContain('<script>');
    expect(html).toMatch(
      /<p class="gate" id="gate-1">Wave 1 traffic gate: <b class="bad">FAIL<\/b> traffic gate: service web/,
    );
    expect(html).toMatch(
      /<td>web<\/td><td>http_5xx<\/td><td class="bad">100%<\/td><td>0%<\/td><td>0%<\/td><td>\+5%<\/td><td>40<\/td><td class="bad">regressed<\/td>/,
    );
    expect(html).toMatch(/<td>all services<\/td><td>queue<\/td><td>0<\/td><td>-<\/td><td>-<\/td><td>\+10<\/td>/);
  });
});
