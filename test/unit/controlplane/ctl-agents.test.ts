import { syncOf } from '../../../controlplane/grpc/admin';
import { AgentStateRequests } from '../../../controlplane/grpc/agent-questions';
import { renderAgents, renderAgentView } from '../../../ctl/render-agents';
import { AgentInfo, AgentView, ListAgentsResponse } from '../../../common/gen/proxymgr/v1/admin';

describe('agent sync states (as istioctl proxy-status shows them)', () => {
  const agent = (o: Partial<{ connected: boolean; runningVersion: string; lastNackedVersion: string }>) => ({
    connected: true,
    runningVersion: 'v1',
    lastNackedVersion: '',
    ...o,
  });
  test('SYNCED when it runs what it should, STALE while not yet, NACKED when it refused it, DISCONNECTED first', () => {
    expect(syncOf(agent({}), 'v1').state).toBe('SYNCED');
    expect(syncOf(agent({}), 'v2').state).toBe('STALE');
    expect(syncOf(agent({ lastNackedVersion: 'v2' }), 'v2').state).toBe('NACKED');
    expect(syncOf(agent({ lastNackedVersion: 'v2' }), 'v3').state).toBe('STALE'); // an older NACK: v3 not yet answered
    expect(syncOf(agent({ connected: false }), 'v1').state).toBe('DISCONNECTED');
    expect(syncOf(agent({ runningVersion: '' }), '').state).toBe('STALE'); // no desired state yet
    expect(syncOf(agent({}), 'v1').desiredVersion).toBe('v1');
    expect(syncOf({ ...agent({}), rejectedServices: ['api'] }, 'v1').state).toBe('NACKED'); // runs it, but not all of it
    expect(syncOf({ ...agent({}), rejectedServices: [] }, 'v1').state).toBe('SYNCED');
  });

  test('the table puts trouble first, counts each state, shows revision, should-run and the error', () => {
    const info = (o: Partial<AgentInfo>) => AgentInfo.fromPartial({ connected: true, ...o });
    const now = Date.parse('2026-11-30T10:00:00Z');
    const list = ListAgentsResponse.fromPartial({
      agents: [
        info({
          nodeId: 'a',
          state: 'SYNCED',
          runningVersion: 'abcdef123456.0011',
          desiredVersion: 'abcdef123456.0011',
          lastAckTime: '2026-11-30T09:59:50Z',
          labels: { zone: 'eu' },
        }),
        info({
          nodeId: 'b',
          state: 'NACKED',
          runningVersion: 'abcdef123456.0011',
          desiredVersion: '999999999999.0022',
          lastNackedVersion: '999999999999.0022',
          lastError: "haproxy -c: unexpected\ncharacter 's'",
          lastAckTime: '2026-11-30T09:00:00Z',
        }),
        info({
          nodeId: 'c',
          state: 'DISCONNECTED',
          connected: false,
          runningVersion: '0123456789abcdef0123456789abcdef',
          desiredVersion: '0123456789abcdef0123456789abcdef',
        }),
      ],
    });
    const text = renderAgents(list, now);
    const lines = text.split('\n');
    expect(lines[0]).toBe('3 agents: 1 SYNCED, 0 STALE, 1 NACKED, 1 DISCONNECTED');
    expect(lines[3]).toMatch(
      /^b +NACKED +abcdef123456 +abcdef123456\.0011 +999999999999\.0022 +60m +- +haproxy -c: unexpected character 's'$/,
    );
    expect(lines[4]).toMatch(/^c +DISCONNECTED +- +0123456789abcdef0123… += +never /);
    expect(lines[5]).toMatch(/^a +SYNCED +abcdef123456 +abcdef123456\.0011 += +10s +zone=eu/);
    expect(renderAgents(ListAgentsResponse.fromPartial({}), now)).toMatch(/no agents/);
  });
});

describe('ctl agent NODE: the three-way view', () => {
  const srv = (name: string, port: number, weight = 1) => ({ name, address: '10.0.0.1', port, weight, options: [] });
  const live = (
    backend: string,
    name: string,
    port: number,
    o: Partial<{ weight: number; adminState: string; operState: string }> = {},
  ) => ({ backend, name, address: '10.0.0.1', port, weight: 1, adminState: 'ready', operState: 'up', ...o });
  const desired = {
    version: 'v2',
    services: [
      {
        name: 'web',
        port: 80,
        bindAddress: '',
        listenOptions: [],
        serverOptions: [],
        servers: [srv('a', 1), srv('b', 2), srv('c', 3)],
      },
      { name: 'api', port: 81, bindAddress: '', listenOptions: [], serverOptions: [], servers: [srv('x', 9)] },
    ],
  };
  const agent = {
    nodeId: 'n1',
    state: 'STALE',
    connected: true,
    runningVersion: 'v1',
    desiredVersion: 'v2',
    lastError: 'applied with warnings: x',
  };

  test('every difference is marked: weight, admin and health state, missing, extra, whole services; a removed server in maint or draining is not one', () => {
    const view = AgentView.fromPartial({
      agent,
      desired,
      haproxy: [
        live('web', 'a', 1),
        live('web', 'b', 2, { weight: 5, operState: 'down' }),
        live('web', 'old', 7, { adminState: 'maint' }),
        live('web', 'leaving', 9, { adminState: 'drain' }),
        live('web', 'rogue', 8),
        live('legacy', 'z', 5),
      ],
    });
    const text = renderAgentView(view, Date.now());
    expect(text).toMatch(/^agent n1 +STALE +connected/m);
    expect(text).toMatch(/^ +runs +v1 /m);
    expect(text).toMatch(/^ +should run +v2$/m);
    expect(text).toMatch(/^ +last error +applied with warnings: x$/m);
    expect(text).toMatch(/6 servers in 2 backends; 5 difference\(s\)/);
    expect(text).toMatch(/^web +a +10\.0\.0\.1:1 w1 +10\.0\.0\.1:1 w1 ready up *$/m);
    expect(text).toMatch(/^web +b .* ! weight 5, wanted 1; DOWN \(health check\)$/m);
    expect(text).toMatch(/^web +c .* ! missing in HAProxy$/m);
    expect(text).toMatch(/^web +old .* \(removed; in maint, being deleted\)$/m);
    expect(text).toMatch(/^web +leaving .* \(removed; draining until its drain timeout, then deleted\)$/m);
    expect(text).toMatch(/^web +rogue .* ! in service but not wanted$/m);
    expect(text).toMatch(/^api +\* +1 servers +- +! service missing in HAProxy$/m);
    expect(text).toMatch(/^legacy +\* .* ! service in HAProxy but not wanted$/m);
  });

  test('when the agent cannot say, the view says why and marks nothing', () => {
    const text = renderAgentView(
      AgentView.fromPartial({
        agent: { ...agent, connected: false, state: 'DISCONNECTED' },
        desired,
        haproxyError: 'agent n1 has no stream to this control plane that can answer',
      }),
      Date.now(),
    );
    expect(text).toMatch(/^HAProxy: unknown \(agent n1 has no stream/m);
    expect(text).not.toMatch(/!/);
  });
});

describe('questions to agents about their HAProxy', () => {
  test('only the agent asked can answer; an agent without a stream, or silent, gets a sentence', async () => {
    const q = new AgentStateRequests();
    const asked: string[] = [];
    const off = q.register('n1', (id) => asked.push(id));
    const pending = q.ask('n1', undefined, 1000);
    q.answer('n2', { id: asked[0]!, servers: [], error: 'forged', runningVersion: '' }); // another agent: ignored
    q.answer('n1', { id: asked[0]!, servers: [], error: '', runningVersion: 'v1' });
    expect(await pending).toMatchObject({ runningVersion: 'v1' });
    expect(await q.ask('n1', undefined, 50)).toMatch(/did not answer within 50 ms/);
    off();
    expect(await q.ask('n1', undefined, 50)).toMatch(/has no stream to this control plane/);
  });

  test('a question to an agent whose stream closes is answered at once, not after its timeout', async () => {
    const q = new AgentStateRequests();
    const off = q.register('n1', () => undefined);
    const t0 = Date.now();
    const pending = q.ask('n1', undefined, 10_000);
    off();
    expect(await pending).toMatch(/disconnected before it answered/);
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});

describe('fleet text cannot drive the terminal', () => {
  test('escape sequences in a NACK message or a label are printed as spaces', () => {
    const list = ListAgentsResponse.fromPartial({
      agents: [
        AgentInfo.fromPartial({
          nodeId: 'n1',
          state: 'NACKED',
          connected: true,
          labels: { zone: 'eu\x1b]52;c;ZXZpbA==\x07' },
          lastError: 'bad\x1b[2J\x1b[31m\u009bred',
        }),
      ],
    });
    const text = renderAgents(list, Date.now());
    // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
    expect(text).not.toMatch(/[\x1b\x07\u009b]/);
    expect(text).toMatch(/bad \[2J \[31m red/);
  });
});
