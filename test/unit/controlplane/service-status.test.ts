import { resourceVersion } from '../../../common/protocol/resources';
import { DesiredState, Service } from '../../../common/protocol/types';
import { checkedRefusals } from '../../../controlplane/grpc/agent-input';
import {
  afterAck,
  afterNack,
  agentsOfService,
  fleetSummaries,
  summarize,
  ServiceView,
} from '../../../controlplane/service-status';

const svc = (name: string, port: number, opts: string[] = [], hosts = 1): Service => ({
  name,
  port,
  bindAddress: '0.0.0.0',
  listenOptions: ['mode http', ...opts],
  serverOptions: [],
  servers: Array.from({ length: hosts }, (_, i) => ({
    name: `h${i}`,
    address: '127.0.0.1',
    port: 9000 + i,
    weight: 1,
    options: [],
  })),
});
const state = (version: string, ...services: Service[]): DesiredState => ({
  version,
  haproxy: { global: [], defaults: [] },
  services,
});

describe('service status per agent', () => {
  const web1 = svc('web', 80);
  const api1 = svc('api', 81);
  const s1 = state('v1', web1, api1);
  const web2 = svc('web', 80, [], 2); // a host change
  const s2 = state('v2', web2, api1);
  const web3 = svc('web', 80, ['timeout server soon'], 2); // a change HAProxy refuses
  const s3 = state('v3', web3, api1);

  test('an ACK sets the method of the services it changed; unchanged ones keep theirs', () => {
    const v1 = afterAck(undefined, s1, 'reload', [], undefined);
    expect(v1.running.get('web')).toEqual({ version: resourceVersion(web1), method: 'reload' });
    const v2 = afterAck(v1, s2, 'runtime', [], undefined);
    expect(v2.running.get('web')).toEqual({ version: resourceVersion(web2), method: 'runtime' });
    expect(v2.running.get('api')).toEqual({ version: resourceVersion(api1), method: 'reload' });
  });

  test('a partial ACK: the refused service keeps its previous version (or none when left out), with the message', () => {
    const v2 = afterAck(afterAck(undefined, s1, 'reload', [], undefined), s2, 'runtime', [], undefined);
    const kept = afterAck(
      v2,
      s3,
      'nothing',
      [{ service: 'web', message: "unexpected 's'", leftOut: false }],
      undefined,
    );
    expect(kept.running.get('web')).toEqual({ version: resourceVersion(web2), method: 'runtime' });
    expect(kept.refused.get('web')).toEqual({ version: resourceVersion(web3), message: "unexpected 's'" });
    const out = afterAck(v2, s3, 'reload', [{ service: 'web', message: 'x', leftOut: true }], undefined);
    expect(out.running.has('web')).toBe(false);
    // Applied later: the refusal is gone.
    expect(afterAck(kept, state('v4', svc('web', 80, [], 3), api1), 'runtime', [], undefined).refused.size).toBe(0);
  });

  test('a NACK naming services records refusals at the pushed versions; what runs is unchanged', () => {
    const v1 = afterAck(undefined, s1, 'reload', [], undefined);
    const n = afterNack(v1, s3, [{ service: 'web', message: 'bad', leftOut: false }])!;
    expect(n.running).toBe(v1.running);
    expect(n.refused.get('web')).toEqual({ version: resourceVersion(web3), message: 'bad' });
    expect(afterNack(v1, s3, [])).toBe(v1);
  });

  test('the first ACK here: services the agent already held at that version came by an apply not seen', () => {
    const held = { key: 'k', resources: new Map([['api', resourceVersion(api1)]]) };
    const v = afterAck(undefined, s1, 'runtime', [], held);
    expect(v.running.get('api')?.method).toBe('unspecified');
    expect(v.running.get('web')?.method).toBe('runtime');
  });

  test('agents answering the same pushes the same way share one view (bounded memory for a fleet)', () => {
    const views: ServiceView[] = [];
    for (let i = 0; i < 100; i++)
      views.push(afterAck(afterAck(undefined, s1, 'reload', [], undefined), s2, 'runtime', [], undefined));
    expect(new Set(views).size).toBe(1);
    // Reached by another path with the same content: the same object too.
    const other = afterAck(afterAck(undefined, s1, 'reload', [], undefined), s2, 'runtime', [], {
      key: 'other',
      resources: new Map(),
    });
    expect(other).toBe(views[0]);
  });

  test('GetService rows and the fleet table: refusals first, counts by version and method', () => {
    const good = afterAck(afterAck(undefined, s1, 'reload', [], undefined), s2, 'runtime', [], undefined);
    const bad = afterAck(good, s3, 'nothing', [{ service: 'web', message: 'HAProxy: no', leftOut: false }], undefined);
    const inputs = [
      { nodeId: 'b', connected: true, view: good, desired: s2 },
      { nodeId: 'c', connected: true, view: bad, desired: s3 },
      { nodeId: 'a', connected: true, view: good, desired: s2 },
      { nodeId: 'd', connected: true, view: undefined, desired: s2 },
    ];
    const rows = agentsOfService('web', inputs);
    expect(rows.map((r) => r.nodeId)).toEqual(['c', 'a', 'b', 'd']);
    expect(rows[3]!.unknown).toBe(true);
    const sum = summarize(rows);
    expect(sum).toMatchObject({ agents: 4, current: 2, refused: 1, byMethod: { runtime: 3 } });
    expect(sum.refusal).toEqual({ nodeId: 'c', version: resourceVersion(web3), message: 'HAProxy: no' });
    const [table] = fleetSummaries(['web'], s2, inputs, 10);
    expect(table).toMatchObject({ name: 'web', agents: 4, current: 2, refused: 1, byMethod: { runtime: 3 } });
    expect(table!.refusal?.nodeId).toBe('c');
  });

  test("an agent's refusals are hostile input: only services of the pushed state, each once, plain and clipped", () => {
    const r = checkedRefusals(
      [
        { service: 'web', message: `\u001b[31m${'x'.repeat(5000)}`, leftOut: false },
        { service: 'web', message: 'again', leftOut: true },
        { service: 'nosuch', message: 'm', leftOut: false },
        { service: 'x'.repeat(100_000), message: 'm', leftOut: false },
      ],
      s3,
    );
    expect(r).toHaveLength(1);
    expect(r[0]!.service).toBe('web');
    expect(r[0]!.message).not.toContain('\u001b');
    expect(r[0]!.message.length).toBeLessThan(1100);
  });
});
