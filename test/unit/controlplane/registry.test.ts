import { AgentRegistry } from '../../../controlplane/grpc/registry';
import { AgentRecord } from '../../../controlplane/ports';

const hello = (nodeId: string, peer = '') => ({
  nodeId,
  labels: {},
  agentVersion: '',
  haproxyVersion: '',
  peer,
  runningVersion: '',
});

// Issue 9j: each stream holds the record made by its own hello; when the newer stream closed first and the older
// one last, the older record was marked disconnected while ListAgents showed the newer one, connected forever.
describe('agent registry: two streams of one node', () => {
  for (const order of ['older first', 'newer first'] as const) {
    test(`both streams close (${order}): the node is listed as disconnected, events and counts agree, and it is forgotten later`, () => {
      let now = 0;
      const disconnects: AgentRecord[] = [];
      const counts: number[] = [];
      const r = new AgentRegistry(
        { onDisconnect: (a) => disconnects.push(a), onConnectionChange: (n) => counts.push(n) },
        { forgetAfterMs: 1000, maxDisconnected: 10 },
        () => now,
      );
      const older = r.connect(hello('n1', 'peer-1'));
      const newer = r.connect(hello('n1', 'peer-2'));
      expect(r.connectedCount()).toBe(1);
      const [first, second] = order === 'older first' ? [older, newer] : [newer, older];
      r.disconnect(first);
      expect(r.get('n1')?.connected).toBe(true); // one stream is still open
      expect(disconnects).toHaveLength(0);
      now = 10;
      r.disconnect(second);
      expect(r.list().map((a) => [a.nodeId, a.connected, a.disconnectedAt])).toEqual([['n1', false, 10]]);
      expect(r.connectedCount()).toBe(0);
      expect(counts.at(-1)).toBe(0);
      expect(disconnects.map((a) => [a.nodeId, a.connected])).toEqual([['n1', false]]);
      now = 2000;
      expect(r.list()).toEqual([]);
    });
  }

  test('a stream that closes after the node reconnected on a new one does not mark the new one disconnected', () => {
    const r = new AgentRegistry();
    const a = r.connect(hello('n1'));
    const b = r.connect(hello('n1'));
    r.disconnect(b);
    expect(r.get('n1')?.connected).toBe(true);
    r.disconnect(a);
    const c = r.connect(hello('n1'));
    expect(r.get('n1')).toBe(c);
    expect(c.connected).toBe(true);
    expect(r.connectedCount()).toBe(1);
  });
});

describe("agent registry: a NACK's running version", () => {
  const sent = new Set(['aaaaaaaaaaaa.v1', 'aaaaaaaaaaaa.v2']);

  test('is believed when the stream sent it, or the agent already runs it; else the recorded one is kept', () => {
    const nacks: string[] = [];
    const r = new AgentRegistry({ onNack: (a, v) => nacks.push(`${v} while running ${a.runningVersion}`) });
    const a = r.connect({ ...hello('n1'), runningVersion: 'cccccccccccc.v0' });
    expect(r.nack(a, 'aaaaaaaaaaaa.v2', 'port in use', 'cccccccccccc.v0', sent)).toBe(true);
    expect(r.nack(a, 'aaaaaaaaaaaa.v2', 'port in use', 'aaaaaaaaaaaa.v1', sent)).toBe(true);
    expect(a.runningVersion).toBe('aaaaaaaaaaaa.v1');
    expect(r.nack(a, 'aaaaaaaaaaaa.v2', 'port in use', 'bbbbbbbbbbbb.never-sent', sent)).toBe(false);
    expect(r.nack(a, 'aaaaaaaaaaaa.v2', 'port in use', 'cccccccccccc.v0', sent)).toBe(false); // no longer runs it
    expect(a.runningVersion).toBe('aaaaaaaaaaaa.v1');
    // The NACK itself stands either way.
    expect(a.lastNackedVersion).toBe('aaaaaaaaaaaa.v2');
    expect(nacks.at(-1)).toBe('aaaaaaaaaaaa.v2 while running aaaaaaaaaaaa.v1');
  });
});
