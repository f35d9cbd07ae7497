import { BinaryWriter } from '@bufbuild/protobuf/wire';
import * as pb from '../../common/gen/proxymgr/v1/state';
import { fromJson, fromProto, stateJsonText, toJson, toProto } from '../../common/protocol/state-codec';
import { DesiredState, Service } from '../../common/protocol/types';
import { parseHostNode } from '../../controlplane/host';

const state = (weights: number[]): DesiredState => ({
  version: 'v1',
  haproxy: { global: [], defaults: [] },
  services: [
    {
      name: 'web',
      port: 8080,
      bindAddress: '0.0.0.0',
      listenOptions: [],
      serverOptions: [],
      servers: weights.map((weight, i) => ({
        name: `s${i}`,
        address: `10.0.0.${i + 1}`,
        port: 80,
        weight,
        options: [],
      })),
    },
  ],
});

const weightsOf = (s: DesiredState) => s.services[0]!.servers.map((v) => v.weight);

// Issue 9c: proto3 could not tell weight 0 from unset, so a drained server (Nerve "weight": 0) reached agents as 1.
describe('state codec: weight', () => {
  test('weight 0 survives the wire (binary) and the JSON form (state files, the agent cache)', () => {
    const s = state([0, 1, 7, 256]);
    expect(weightsOf(fromProto(pb.DesiredState.decode(pb.DesiredState.encode(toProto(s)).finish())))).toEqual([
      0, 1, 7, 256,
    ]);
    expect(weightsOf(fromJson(JSON.parse(JSON.stringify(toJson(s)))))).toEqual([0, 1, 7, 256]);
  });

  test('a server without a weight (an older control plane, a hand-written state file) gets the default 1', () => {
    // What an older control plane sent for weight 1 and for weight 0 alike: field 4 absent.
    const old = new BinaryWriter();
    old.uint32(10).string('s0').uint32(18).string('10.0.0.1').uint32(24).uint32(80);
    const server = pb.Server.decode(old.finish());
    expect(server.weight).toBeUndefined();
    const decoded = fromProto({
      version: 'v',
      services: [
        {
          name: 'web',
          port: 1,
          bindAddress: '',
          listenOptions: [],
          serverOptions: [],
          servers: [server],
          drainTimeoutMs: 0,
          zoneLabel: '',
          hostsStatus: pb.HostsStatus.HOSTS_STATUS_UNSPECIFIED,
        },
      ],
    });
    expect(weightsOf(decoded)).toEqual([1]);
    expect(
      weightsOf(
        fromJson({
          version: 'v',
          services: [{ name: 'web', port: 1, servers: [{ name: 's0', address: '10.0.0.1', port: 80 }] }],
        }),
      ),
    ).toEqual([1]);
  });

  test('an explicit 0 is on the wire as field 4 = 0 (what an older agent reads as its old default, 1)', () => {
    const bytes = pb.Server.encode(
      pb.Server.fromPartial({ name: 's', address: '10.0.0.1', port: 80, weight: 0 }),
    ).finish();
    // tag 4 << 3 | varint = 0x20, then 0x00
    expect(Buffer.from(bytes).includes(Buffer.from([0x20, 0x00]))).toBe(true);
  });

  test('a Nerve host node with "weight": 0 keeps weight 0 all the way to the agent', () => {
    const host = parseHostNode('i-0abc', Buffer.from('{"host":"10.1.0.1","port":3000,"name":"i-0abc","weight":0}'));
    expect(host.weight).toBe(0);
    const s = state([host.weight]);
    expect(weightsOf(fromProto(pb.DesiredState.decode(pb.DesiredState.encode(toProto(s)).finish())))).toEqual([0]);
  });
});

// The agent's state cache is written from stateJsonText: per-service texts memoized per (immutable) service object.
describe('state codec: stateJsonText', () => {
  const svc = (name: string, port: number, extra: Partial<Service> = {}): Service => ({
    name,
    port,
    bindAddress: '0.0.0.0',
    listenOptions: [],
    serverOptions: [],
    servers: [{ name: 'a', address: '10.0.0.1', port: 80, weight: 1, options: [] }],
    ...extra,
  });
  const rich: DesiredState = {
    version: 'v42',
    haproxy: { global: ['maxconn 1000', 'nbthread 2'], defaults: ['mode http', 'timeout connect 2s'] },
    services: [
      svc('api', 8081, {
        bindAddress: '::1',
        listenOptions: ['mode tcp', 'balance leastconn'],
        serverOptions: ['check inter 2000'],
        servers: [
          { name: 'drained', address: '10.0.0.2', port: 81, weight: 0, options: ['backup'] },
          { name: 'b6', address: 'fd00::2', port: 82, weight: 256, options: [] },
        ],
      }),
      svc('web', 8080, { bindAddress: '127.0.0.2' }),
      svc('empty', 8082, { servers: [] }),
    ],
  };
  const roundTrip = (s: DesiredState) => fromJson(JSON.parse(stateJsonText(s)));

  test.each<[string, DesiredState]>([
    ['weight 0, bind addresses, listen/server/per-server options, non-empty globals', rich],
    ['empty globals', { ...rich, haproxy: { global: [], defaults: [] } }],
    ['only global, only defaults', { ...rich, haproxy: { global: ['maxconn 5'], defaults: [] } }],
    ['no services', { ...rich, services: [] }],
    [
      'the empty state (no version, no globals, no services)',
      { version: '', haproxy: { global: [], defaults: [] }, services: [] },
    ],
  ])('fromJson(stateJsonText(s)) is s, and the text is the document toJson makes: %s', (_what, s) => {
    expect(roundTrip(s)).toEqual(s);
    // toJson leaves an empty list out; stateJsonText always writes "services".
    expect(JSON.parse(stateJsonText(s))).toEqual({ services: [], ...(toJson(s) as object) });
  });

  test('weight 0 is written explicitly (not left out as a proto3 zero)', () => {
    const doc = JSON.parse(stateJsonText(rich)) as { services: { servers?: { name: string; weight?: number }[] }[] };
    expect(doc.services[0]!.servers!.map((v) => [v.name, v.weight])).toEqual([
      ['drained', 0],
      ['b6', 256],
    ]);
  });

  test('a service replaced by a changed copy: only its part of the document changes; unchanged objects keep their text', () => {
    const [api, web, empty] = rich.services as [Service, Service, Service];
    const before = stateJsonText(rich);
    const web2: Service = {
      ...web,
      servers: [...web.servers, { name: 'b', address: '10.0.0.9', port: 90, weight: 0, options: [] }],
    };
    const next: DesiredState = { ...rich, version: 'v43', services: [api, web2, empty] };
    const after = stateJsonText(next);

    expect(roundTrip(next)).toEqual(next);
    const docBefore = JSON.parse(before) as { version: string; services: unknown[] };
    const docAfter = JSON.parse(after) as { version: string; services: unknown[] };
    expect(docAfter.version).toBe('v43');
    expect(docAfter.services[0]).toEqual(docBefore.services[0]);
    expect(docAfter.services[2]).toEqual(docBefore.services[2]);
    expect(docAfter.services[1]).not.toEqual(docBefore.services[1]);
    expect(docAfter).toEqual(toJson(next));
    // One service per line: the unchanged services' lines are the same text.
    const lines = (t: string) => t.split('\n');
    expect(lines(after).filter((l, i) => l !== lines(before)[i])).toEqual([lines(after)[0], lines(after)[2]]);

    // A service object is immutable by contract, so its text is made once: a probe that breaks the contract (mutates
    // the object) shows the text is reused, not rebuilt; a fresh object with that content gets its own, new text.
    const probe = svc('probe', 9000);
    const s1: DesiredState = { ...rich, services: [probe] };
    const first = stateJsonText(s1);
    (probe as { port: number }).port = 9001;
    expect(stateJsonText({ ...s1 })).toBe(first);
    expect(roundTrip({ ...s1, services: [{ ...probe }] }).services[0]!.port).toBe(9001);
  });
});

describe('hosts status (unknown is not empty)', () => {
  test("'reported' and 'unknown' survive proto and JSON; unset stays absent (an older control plane)", () => {
    const svc = (hosts?: 'reported' | 'unknown') => ({
      name: 'web',
      port: 1,
      bindAddress: '0.0.0.0',
      listenOptions: [],
      serverOptions: [],
      servers: [],
      ...(hosts ? { hosts } : {}),
    });
    const state = {
      version: 'v',
      haproxy: { global: [], defaults: [] },
      services: [svc('reported'), svc('unknown'), svc()],
    };
    const viaProto = fromProto(pb.DesiredState.decode(pb.DesiredState.encode(toProto(state)).finish()));
    const viaJson = fromJson(JSON.parse(JSON.stringify(toJson(state))));
    for (const got of [viaProto, viaJson])
      expect(got.services.map((s) => s.hosts)).toEqual(['reported', 'unknown', undefined]);
  });
});
