import { BinaryWriter } from '@bufbuild/protobuf/wire';
import * as pb from '../../common/gen/proxymgr/v1/state';
import { fromJson, fromProto, toJson, toProto } from '../../common/state-codec';
import { DesiredState } from '../../common/types';
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
      servers: weights.map((weight, i) => ({ name: `s${i}`, address: `10.0.0.${i + 1}`, port: 80, weight, options: [] })),
    },
  ],
});

const weightsOf = (s: DesiredState) => s.services[0]!.servers.map((v) => v.weight);

// Issue 9c: proto3 could not tell weight 0 from unset, so a drained server (Nerve "weight": 0) reached agents as 1.
describe('state codec: weight', () => {
  test('weight 0 survives the wire (binary) and the JSON form (state files, the agent cache)', () => {
    const s = state([0, 1, 7, 256]);
    expect(weightsOf(fromProto(pb.DesiredState.decode(pb.DesiredState.encode(toProto(s)).finish())))).toEqual([0, 1, 7, 256]);
    expect(weightsOf(fromJson(JSON.parse(JSON.stringify(toJson(s)))))).toEqual([0, 1, 7, 256]);
  });

  test('a server without a weight (an older control plane, a hand-written state file) gets the default 1', () => {
    // What an older control plane sent for weight 1 and for weight 0 alike: field 4 absent.
    const old = new BinaryWriter();
    old.uint32(10).string('s0').uint32(18).string('10.0.0.1').uint32(24).uint32(80);
    const server = pb.Server.decode(old.finish());
    expect(server.weight).toBeUndefined();
    const decoded = fromProto({ version: 'v', services: [{ name: 'web', port: 1, bindAddress: '', listenOptions: [], serverOptions: [], servers: [server] }] });
    expect(weightsOf(decoded)).toEqual([1]);
    expect(weightsOf(fromJson({ version: 'v', services: [{ name: 'web', port: 1, servers: [{ name: 's0', address: '10.0.0.1', port: 80 }] }] }))).toEqual([1]);
  });

  test('an explicit 0 is on the wire as field 4 = 0 (what an older agent reads as its old default, 1)', () => {
    const bytes = pb.Server.encode(pb.Server.fromPartial({ name: 's', address: '10.0.0.1', port: 80, weight: 0 })).finish();
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
