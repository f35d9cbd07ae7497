import { syncOf } from '../../../controlplane/grpc/admin';
import { renderAgents } from '../../../controlplane/ctl';
import { AgentInfo, ListAgentsResponse } from '../../../common/gen/proxymgr/v1/admin';

describe('agent sync states (as istioctl proxy-status shows them)', () => {
  const agent = (o: Partial<{ connected: boolean; runningVersion: string; lastNackedVersion: string }>) => ({ connected: true, runningVersion: 'v1', lastNackedVersion: '', ...o });
  test('SYNCED when it runs what it should, STALE while not yet, NACKED when it refused it, DISCONNECTED first', () => {
    expect(syncOf(agent({}), 'v1').state).toBe('SYNCED');
    expect(syncOf(agent({}), 'v2').state).toBe('STALE');
    expect(syncOf(agent({ lastNackedVersion: 'v2' }), 'v2').state).toBe('NACKED');
    expect(syncOf(agent({ lastNackedVersion: 'v2' }), 'v3').state).toBe('STALE'); // an older NACK: v3 not yet answered
    expect(syncOf(agent({ connected: false }), 'v1').state).toBe('DISCONNECTED');
    expect(syncOf(agent({ runningVersion: '' }), '').state).toBe('STALE'); // no desired state yet
    expect(syncOf(agent({}), 'v1').desiredVersion).toBe('v1');
  });

  test('the table puts trouble first, counts each state, shows revision, should-run and the error', () => {
    const info = (o: Partial<AgentInfo>) => AgentInfo.fromPartial({ connected: true, ...o });
    const now = Date.parse('2026-11-30T10:00:00Z');
    const list = ListAgentsResponse.fromPartial({
      agents: [
        info({ nodeId: 'a', state: 'SYNCED', runningVersion: 'abcdef123456.0011', desiredVersion: 'abcdef123456.0011', lastAckTime: '2026-11-30T09:59:50Z', labels: { zone: 'eu' } }),
        info({ nodeId: 'b', state: 'NACKED', runningVersion: 'abcdef123456.0011', desiredVersion: '999999999999.0022', lastNackedVersion: '999999999999.0022', lastError: "haproxy -c: unexpected\ncharacter 's'", lastAckTime: '2026-11-30T09:00:00Z' }),
        info({ nodeId: 'c', state: 'DISCONNECTED', connected: false, runningVersion: '0123456789abcdef0123456789abcdef', desiredVersion: '0123456789abcdef0123456789abcdef' }),
      ],
    });
    const text = renderAgents(list, now);
    const lines = text.split('\n');
    expect(lines[0]).toBe('3 agents: 1 SYNCED, 0 STALE, 1 NACKED, 1 DISCONNECTED');
    expect(lines[3]).toMatch(/^b +NACKED +abcdef123456 +abcdef123456\.0011 +999999999999\.0022 +60m +- +haproxy -c: unexpected character 's'$/);
    expect(lines[4]).toMatch(/^c +DISCONNECTED +- +0123456789abcdef0123… += +never /);
    expect(lines[5]).toMatch(/^a +SYNCED +abcdef123456 +abcdef123456\.0011 += +10s +zone=eu/);
    expect(renderAgents(ListAgentsResponse.fromPartial({}), now)).toMatch(/no agents/);
  });
});
