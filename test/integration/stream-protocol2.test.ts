import * as grpc from '@grpc/grpc-js';
import { AgentMessage, AgentStreamService, ControlMessage, Hello, Push } from '../../common/gen/proxymgr/v1/stream';
import { silentLogger } from '../../common/platform/log';
import { diff, fullDelta, MAX_COUNTED_SERVICES, PROTOCOL_VERSION, resourceSet } from '../../common/protocol/resources';
import { DesiredState, Service } from '../../common/protocol/types';
import { ApplyResult } from '../../agent/agent';
import { GrpcStateSource } from '../../agent/sources/grpc';
import { HeldState } from '../../agent/sources/held-state';
import { deltaToPush, encodingStats } from '../../controlplane/grpc/push-encoding';
import { eventually, sleep } from '../../testkit/net';
import { startStreamServer } from '../../testkit/stream-server';
import { server, service, state } from '../../testkit/agent';

jest.setTimeout(30_000);

/**
 * A raw agent-stream client that keeps each message's bytes as they came over the wire (no re-encoding), and the
 * decoded push.
 */
function rawAgent(port: number, hello: Partial<Hello>) {
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = client.makeBidiStreamRequest<AgentMessage, Buffer>(
    AgentStreamService.stream.path,
    AgentStreamService.stream.requestSerialize,
    (b: Buffer) => Buffer.from(b),
  );
  const pushes: Push[] = [];
  const raw: Buffer[] = [];
  let error: grpc.ServiceError | undefined;
  call.on('data', (b: Buffer) => {
    raw.push(b);
    pushes.push(ControlMessage.decode(b).push!);
  });
  call.on('error', (e: grpc.ServiceError) => (error = e));
  call.write({ hello: Hello.fromPartial({ labels: {}, agentVersion: 't', haproxyVersion: 't', ...hello }) });
  return {
    pushes,
    raw,
    error: () => error,
    send: (m: AgentMessage) => call.write(m),
    ack: (p: Push) =>
      call.write({
        ack: {
          version: p.version,
          nonce: p.nonce,
          method: 2,
          reasons: [],
          runtimeCommands: 0,
          durationMs: 1,
          warnings: [],
          rejectedServices: [],
          counters: [],
          refusals: [],
          changes: [],
          appliedAgoMs: 0,
        },
      }),
    close: () => {
      call.cancel();
      client.close();
    },
  };
}

const wireSize = (p: Push) => ControlMessage.encode({ push: p }).finish().length;
const names = (p: Push) => p.upserted.map((r) => r.name).sort();
const byName = (a: Service, b: Service) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

function readVarint(b: Buffer, pos: number): [number, number] {
  let n = 0;
  let mul = 1;
  for (;;) {
    const byte = b[pos++]!;
    n += (byte & 0x7f) * mul;
    if (byte < 0x80) return [n, pos];
    mul *= 128;
  }
}

/** The Push body of a raw ControlMessage, without the trailing nonce field (checked to be exactly that). */
function bodyWithoutNonce(raw: Buffer): Buffer {
  expect(raw[0]).toBe(0x0a); // ControlMessage.push
  const [len, start] = readVarint(raw, 1);
  expect(raw.length - start).toBe(len);
  const push = raw.subarray(start);
  const nonce = Buffer.from(ControlMessage.decode(raw).push!.nonce, 'utf8');
  const trailer = Buffer.concat([Buffer.from([0x12, nonce.length]), nonce]); // nonces are short: one-byte length
  expect(push.subarray(push.length - trailer.length).equals(trailer)).toBe(true);
  const body = push.subarray(0, push.length - trailer.length);
  expect(Push.decode(body).nonce).toBe(''); // the body itself carries no nonce
  return body;
}

/** `n` services of `servers` servers each: a fleet-sized state where one change is a small part. */
function bigState(
  n: number,
  servers: number,
  change: (s: Service) => Service = (s) => s,
  drop: string[] = [],
): DesiredState {
  const services = Array.from({ length: n }, (_, i) =>
    service(
      `svc${i}`,
      10_000 + i,
      Array.from({ length: servers }, (_, j) => server(`host${j}`, 20_000 + j, { address: `10.0.${i}.${j}` })),
      { serverOptions: ['check inter 2000 fall 3 rise 2'] },
    ),
  );
  return state(services.map(change).filter((s) => !drop.includes(s.name)));
}

describe('agent stream protocol 2 (real gRPC)', () => {
  test('(a) no base: a full push; then a host change is a delta of that one service, a removal is `removed`; deltas are far smaller', async () => {
    const s = await startStreamServer({ newStreamsPerSecond: 1000, pushesPerSecond: 1000 });
    const v1 = bigState(40, 8);
    const moved = (x: Service) =>
      x.name === 'svc7' ? { ...x, servers: x.servers.map((v, j) => (j === 3 ? { ...v, address: '10.9.9.9' } : v)) } : x;
    const v2 = bigState(40, 8, moved);
    const v3 = bigState(40, 8, moved, ['svc3']);
    // The service objects of v1/v2/v3 are distinct objects with (mostly) equal content, as a rebuilt snapshot is.
    s.set(v1);
    const stats0 = { ...s.stats };
    const a = rawAgent(s.port, { nodeId: 'n1', protocolVersion: PROTOCOL_VERSION });
    const held = new HeldState();
    try {
      expect(await eventually(() => a.pushes.length === 1)).toBe(true);
      const full = a.pushes[0]!;
      expect(full.full).toBe(true);
      expect(full.state).toBeUndefined();
      expect(full.baseVersion).toBe('');
      expect(full.version).toBe(v1.version);
      expect(full.upserted).toHaveLength(40);
      expect(full.haproxy).toBeDefined();
      expect(held.take(full).services).toEqual([...v1.services].sort(byName));
      a.ack(full);
      expect(await eventually(() => s.registry.get('n1')?.lastAckedVersion === v1.version)).toBe(true);

      s.set(v2);
      expect(await eventually(() => a.pushes.length === 2)).toBe(true);
      const delta = a.pushes[1]!;
      expect(delta.full).toBe(false);
      expect(delta.baseVersion).toBe(v1.version);
      expect(delta.version).toBe(v2.version);
      expect(names(delta)).toEqual(['svc7']);
      expect(delta.upserted[0]!.service!.servers[3]!.address).toBe('10.9.9.9');
      expect(delta.removed).toEqual([]);
      expect(delta.haproxy).toBeUndefined(); // the globals did not change
      expect(delta.digest).toBe(resourceSet(v2).digest);
      expect(held.take(delta).services).toEqual([...v2.services].sort(byName));
      a.ack(delta);

      s.set(v3);
      expect(await eventually(() => a.pushes.length === 3)).toBe(true);
      const removal = a.pushes[2]!;
      expect(removal.full).toBe(false);
      expect(removal.baseVersion).toBe(v2.version);
      expect(removal.upserted).toEqual([]);
      expect(removal.removed).toEqual(['svc3']);
      expect(held.take(removal).services).toEqual([...v3.services].sort(byName));

      const fullBytes = wireSize(full);
      expect(wireSize(delta) * 20).toBeLessThan(fullBytes);
      expect(wireSize(removal) * 20).toBeLessThan(fullBytes);
      // What the client measured is what came over the wire.
      expect(a.raw[0]!.length).toBe(fullBytes);
      expect(a.raw[1]!.length).toBe(wireSize(delta));

      expect(s.stats.fullPushes - stats0.fullPushes).toBe(1);
      expect(s.stats.deltaPushes - stats0.deltaPushes).toBe(2);
      expect(a.error()).toBeUndefined();
    } finally {
      a.close();
      s.close();
    }
  });

  test('(b) a hello declaring a base gets a delta from it; a hello declaring exactly the desired state gets no push', async () => {
    const s = await startStreamServer({ newStreamsPerSecond: 1000, pushesPerSecond: 1000 });
    const web = service('web', 8080, [server('a', 9001)]);
    const api = service('api', 8081, [server('a', 9101)]);
    const db = service('db', 5432, [server('p', 5433)]);
    const v1 = state([web, api, db]);
    const v2 = state([{ ...web, servers: [server('a', 9001), server('b', 9002)] }, api]); // web changed, db removed
    const v3 = state([{ ...web, servers: [server('b', 9002)] }, api]);
    s.set(v2);
    const behind = rawAgent(s.port, { nodeId: 'behind', ...HeldState.of(v1).hello() });
    const current = rawAgent(s.port, { nodeId: 'current', ...HeldState.of(v2).hello() });
    try {
      expect(await eventually(() => behind.pushes.length === 1)).toBe(true);
      const p = behind.pushes[0]!;
      expect(p.full).toBe(false);
      expect(p.baseVersion).toBe(v1.version);
      expect(p.version).toBe(v2.version);
      expect(names(p)).toEqual(['web']);
      expect(p.removed).toEqual(['db']);
      expect(p.haproxy).toBeUndefined();
      // It applies to what that agent holds.
      expect(HeldState.of(v1).take(p).services).toEqual([...v2.services].sort(byName));

      // The agent that declared v2 exactly is connected and served, but gets nothing.
      expect(await eventually(() => s.registry.get('current')?.connected === true)).toBe(true);
      const control = rawAgent(s.port, { nodeId: 'control', protocolVersion: PROTOCOL_VERSION });
      try {
        expect(await eventually(() => control.pushes.length === 1)).toBe(true);
        s.poke();
        await sleep(300);
        expect(current.pushes).toEqual([]);
        expect(current.error()).toBeUndefined();
      } finally {
        control.close();
      }

      // It is taken to hold v2: the next change is a delta from v2.
      s.set(v3);
      expect(await eventually(() => current.pushes.length === 1)).toBe(true);
      expect(current.pushes[0]!.full).toBe(false);
      expect(current.pushes[0]!.baseVersion).toBe(v2.version);
      expect(names(current.pushes[0]!)).toEqual(['web']);
    } finally {
      behind.close();
      current.close();
      s.close();
    }
  });

  test('(c) a Resync of the unanswered delta gets a full push of the same version; one per push, never on demand', async () => {
    const s = await startStreamServer({ newStreamsPerSecond: 1000, pushesPerSecond: 1000 });
    const v1 = state([service('web', 8080, [server('a', 9001)]), service('api', 8081, [server('a', 9101)])]);
    const v2 = state([
      service('web', 8080, [server('a', 9001), server('b', 9002)]),
      service('api', 8081, [server('a', 9101)]),
    ]);
    s.set(v1);
    const before = { ...s.stats };
    const a = rawAgent(s.port, { nodeId: 'n1', protocolVersion: PROTOCOL_VERSION });
    try {
      expect(await eventually(() => a.pushes.length === 1)).toBe(true);
      const p1 = a.pushes[0]!;
      a.ack(p1);
      expect(await eventually(() => s.registry.get('n1')?.lastAckedVersion === v1.version)).toBe(true);
      s.poke(); // nothing changed: nothing is sent
      await sleep(200);
      expect(a.pushes).toHaveLength(1);
      // A Resync naming a push already answered is ignored: no full push on demand.
      a.send({ resync: { nonce: p1.nonce, reason: 'asking again (test)' } });
      await sleep(200);
      expect(a.pushes).toHaveLength(1);

      s.set(v2);
      expect(await eventually(() => a.pushes.length === 2)).toBe(true);
      const p2 = a.pushes[1]!;
      expect(p2.full).toBe(false);
      a.send({ resync: { nonce: p2.nonce, reason: 'digest mismatch (test)' } });
      a.send({ resync: { nonce: p2.nonce, reason: 'the same, twice (test)' } });
      expect(await eventually(() => a.pushes.length === 3)).toBe(true);
      const p3 = a.pushes[2]!;
      expect(p3.full).toBe(true);
      expect(p3.version).toBe(v2.version);
      expect(p3.baseVersion).toBe('');
      expect(names(p3)).toEqual(['api', 'web']);
      expect(p3.haproxy).toBeDefined();
      expect(s.stats.resyncs - before.resyncs).toBe(1);
      expect(s.stats.fullPushes - before.fullPushes).toBe(2);
      // One resync, one full push: not a loop.
      await sleep(200);
      expect(a.pushes).toHaveLength(3);
      // An agent that cannot take even a full push has its stream closed (it reconnects with backoff).
      a.send({ resync: { nonce: p3.nonce, reason: 'cannot take it (test)' } });
      expect(await eventually(() => a.error()?.code === grpc.status.INTERNAL)).toBe(true);
      expect(a.error()?.details).toMatch(/could not take full push/);
    } finally {
      a.close();
      s.close();
    }
  });

  test('(c2) a Resync on a protocol-0 stream is refused; protocol 0 still gets whole states', async () => {
    const s = await startStreamServer({ newStreamsPerSecond: 1000, pushesPerSecond: 1000 });
    const v1 = state([service('web', 8080, [server('a', 9001)])]);
    s.set(v1);
    const a = rawAgent(s.port, { nodeId: 'old' });
    try {
      expect(await eventually(() => a.pushes.length === 1)).toBe(true);
      expect(a.pushes[0]!.state?.version).toBe(v1.version);
      expect(a.pushes[0]!.full).toBe(false);
      expect(a.pushes[0]!.upserted).toEqual([]);
      a.send({ resync: { nonce: a.pushes[0]!.nonce, reason: 'x' } });
      expect(await eventually(() => a.error() !== undefined)).toBe(true);
      expect(a.error()!.code).toBe(grpc.status.INVALID_ARGUMENT);
    } finally {
      a.close();
      s.close();
    }
  });

  test('(c3) counters from an agent are hostile input: at most MAX_COUNTED_SERVICES kept, names clipped and without control characters', async () => {
    const s = await startStreamServer({ newStreamsPerSecond: 1000, pushesPerSecond: 1000 });
    s.set(state([service('web', 8080, [server('a', 9001)])]));
    const a = rawAgent(s.port, { nodeId: 'n1', protocolVersion: PROTOCOL_VERSION });
    try {
      expect(await eventually(() => a.pushes.length === 1)).toBe(true);
      const counter = (service: string) => ({
        service,
        requests: 5,
        responses5xx: 1,
        sessions: 5,
        connectionErrors: 0,
        responseErrors: 0,
        retries: 0,
        serversDown: 0,
        servers: 1,
        queue: 0,
        rtimeMs: 0,
      });
      const hostile = `web\x1b[2J${'x'.repeat(1000)}`;
      a.send({
        stats: {
          runningVersion: 'x'.repeat(10_000),
          counters: [
            counter(hostile),
            ...Array.from({ length: MAX_COUNTED_SERVICES + 50 }, (_, i) => counter(`s${i}`)),
          ],
        },
      });
      expect(await eventually(() => (s.registry.get('n1')?.counters?.length ?? 0) > 0)).toBe(true);
      const got = s.registry.get('n1')!.counters!;
      expect(got).toHaveLength(MAX_COUNTED_SERVICES);
      expect(got[0]!.service).toHaveLength(253);
      // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
      expect(got[0]!.service).not.toMatch(/[\x00-\x1f]/);
      expect(got[0]).toMatchObject({ requests: 5, responses5xx: 1 });
    } finally {
      a.close();
      s.close();
    }
  });

  test('(d) protocolVersion 3 is refused with FAILED_PRECONDITION naming both versions', async () => {
    const s = await startStreamServer({ newStreamsPerSecond: 1000, pushesPerSecond: 1000 });
    s.set(state([service('web', 8080, [server('a', 9001)])]));
    const a = rawAgent(s.port, { nodeId: 'future', protocolVersion: 3 });
    try {
      expect(await eventually(() => a.error() !== undefined)).toBe(true);
      const err = a.error()!;
      expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(err.details).toMatch(/protocol 3\b/);
      expect(err.details).toMatch(new RegExp(`speaks ${PROTOCOL_VERSION}\\b`));
      expect(a.pushes).toEqual([]);
      expect(s.registry.get('future')).toBeUndefined();
    } finally {
      a.close();
      s.close();
    }
  });

  test('(e) two agents on the same base get byte-identical push bodies apart from the nonce; the change is encoded once', async () => {
    const s = await startStreamServer({ newStreamsPerSecond: 1000, pushesPerSecond: 1000 });
    const v1 = bigState(10, 4);
    const v2 = bigState(10, 4, (x) => (x.name === 'svc2' ? { ...x, port: 11_111 } : x));
    s.set(v1);
    const a = rawAgent(s.port, { nodeId: 'a', protocolVersion: PROTOCOL_VERSION });
    const b = rawAgent(s.port, { nodeId: 'b', protocolVersion: PROTOCOL_VERSION });
    try {
      expect(await eventually(() => a.pushes.length === 1 && b.pushes.length === 1)).toBe(true);
      expect(a.pushes[0]!.nonce).not.toBe(b.pushes[0]!.nonce);
      expect(bodyWithoutNonce(a.raw[0]!).equals(bodyWithoutNonce(b.raw[0]!))).toBe(true);
      a.ack(a.pushes[0]!);
      b.ack(b.pushes[0]!);
      expect(
        await eventually(
          () =>
            s.registry.get('a')?.lastAckedVersion === v1.version &&
            s.registry.get('b')?.lastAckedVersion === v1.version,
        ),
      ).toBe(true);

      const enc0 = { ...encodingStats };
      s.set(v2);
      expect(await eventually(() => a.pushes.length === 2 && b.pushes.length === 2)).toBe(true);
      const [pa, pb] = [a.pushes[1]!, b.pushes[1]!];
      expect(pa.full).toBe(false);
      expect(pa.baseVersion).toBe(v1.version);
      expect(names(pa)).toEqual(['svc2']);
      expect(pa.nonce).not.toBe(pb.nonce);
      const [ba, bb] = [bodyWithoutNonce(a.raw[1]!), bodyWithoutNonce(b.raw[1]!)];
      expect(ba.equals(bb)).toBe(true);
      expect({ ...pa, nonce: '' }).toEqual({ ...pb, nonce: '' });
      // The body is the encoding of the delta the control plane computes.
      expect(ba.equals(Buffer.from(Push.encode(deltaToPush(diff(resourceSet(v1), v2))).finish()))).toBe(true);
      expect(encodingStats.encoded - enc0.encoded).toBe(1);
      expect(encodingStats.reused - enc0.reused).toBe(1);
    } finally {
      a.close();
      b.close();
      s.close();
    }
  });
});

/** A hand-written control plane: records what the agent sends, lets the test write pushes, and hooks for hello and Resync. */
async function fakeControlPlane(on: {
  hello?: (write: (p: Push) => void, hello: Hello) => void;
  resync?: (write: (p: Push) => void, msg: AgentMessage) => void;
}) {
  const received: AgentMessage[] = [];
  let write: ((p: Push) => void) | undefined;
  const srv = new grpc.Server();
  srv.addService(AgentStreamService, {
    stream(call: grpc.ServerDuplexStream<AgentMessage, ControlMessage>) {
      const w = (p: Push) => call.write({ push: p });
      write = w;
      call.on('data', (msg: AgentMessage) => {
        received.push(msg);
        if (msg.hello) on.hello?.(w, msg.hello);
        if (msg.resync) on.resync?.(w, msg);
      });
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    srv.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    received,
    write: (p: Push) => write!(p),
    close: () => srv.forceShutdown(),
  };
}

const withNonce = (p: Push, nonce: string): Push => ({ ...p, nonce });

describe('GrpcStateSource with protocol 2 (end to end against a hand-written control plane)', () => {
  const web = service('web', 8080, [server('a', 9001)]);
  const api = service('api', 8081, [server('a', 9101)]);
  const db = service('db', 5432, [server('p', 5433)]);
  const v1 = state([web, api]);
  const v2 = state([{ ...web, port: 8090 }, api]);
  const v3 = state([web, db, { ...api, servers: [server('b', 9102)] }]);

  function recordingApply() {
    const applied: DesiredState[] = [];
    const apply = async (s: DesiredState): Promise<ApplyResult> => {
      applied.push(s);
      return { version: s.version, outcome: 'runtime', reasons: [], commands: [], problems: [], durationMs: 1 };
    };
    return { applied, apply };
  }

  function source(port: number, initial?: DesiredState) {
    return new GrpcStateSource({
      addresses: [`127.0.0.1:${port}`],
      nodeId: 'n1',
      labels: {},
      agentVersion: 'test',
      haproxyVersion: 'test',
      runningVersion: () => '',
      initialState: initial ? () => initial : undefined,
      log: silentLogger,
    });
  }

  test('(f) a delta on the wrong base: one Resync naming its nonce, the next delta ignored, the full push applied', async () => {
    const cp = await fakeControlPlane({
      hello: (write) => write(withNonce(deltaToPush(fullDelta(v1)), 'n1')),
      resync: (write) => write(withNonce(deltaToPush(fullDelta(v3)), 'n4')),
    });
    const { applied, apply } = recordingApply();
    const src = source(cp.port);
    try {
      await src.start(apply);
      const hello = () => cp.received[0]?.hello;
      expect(await eventually(() => cp.received.some((m) => m.ack?.nonce === 'n1'))).toBe(true);
      expect(hello()?.protocolVersion).toBe(PROTOCOL_VERSION);
      expect(hello()?.baseVersion).toBe('');
      expect(applied.map((s) => s.version)).toEqual([v1.version]);

      // A delta that claims to build on a version the agent does not hold (one was lost), then a delta that would
      // fit what it held before; the Resync answers the first, the second must be ignored (not a second Resync).
      cp.write(withNonce(deltaToPush({ ...diff(resourceSet(v1), v2), baseVersion: 'f'.repeat(32) }), 'n2'));
      cp.write(withNonce(deltaToPush(diff(resourceSet(v1), v2)), 'n3'));
      expect(await eventually(() => cp.received.some((m) => m.ack?.nonce === 'n4'))).toBe(true);
      await sleep(200); // a late second Resync or answer would show by now

      const resyncs = cp.received.filter((m) => m.resync);
      expect(resyncs).toHaveLength(1);
      expect(resyncs[0]!.resync!.nonce).toBe('n2');
      expect(resyncs[0]!.resync!.reason).toMatch(/lost or came out of order/);
      expect(
        cp.received
          .filter((m) => !m.hello)
          .map((m) =>
            m.ack ? `ack ${m.ack.nonce} ${m.ack.version}` : m.resync ? `resync ${m.resync.nonce}` : 'other',
          ),
      ).toEqual([`ack n1 ${v1.version}`, 'resync n2', `ack n4 ${v3.version}`]);
      // v2 was never applied; the full push was, whole.
      expect(applied.map((s) => s.version)).toEqual([v1.version, v3.version]);
      expect(applied[1]!.haproxy).toEqual(v3.haproxy);
      expect(applied[1]!.services).toEqual([...v3.services].sort(byName));
      expect(src.stats).toEqual({ pushes: 4, full: 2, deltas: 0, resyncs: 1, cut: 0 });
    } finally {
      await src.stop();
      cp.close();
    }
  });

  test('(f2) the first hello declares the disk cache, and a delta from it is applied', async () => {
    const cp = await fakeControlPlane({
      hello: (write, hello) => {
        // Build on what the agent declared, as the control plane does.
        if (hello.baseVersion === v1.version) write(withNonce(deltaToPush(diff(resourceSet(v1), v2)), 'd1'));
      },
    });
    const { applied, apply } = recordingApply();
    const src = source(cp.port, v1);
    try {
      await src.start(apply);
      expect(await eventually(() => cp.received.some((m) => m.ack?.nonce === 'd1'))).toBe(true);
      const hello = cp.received[0]!.hello!;
      expect(hello.protocolVersion).toBe(PROTOCOL_VERSION);
      expect(hello.baseVersion).toBe(v1.version);
      expect(hello.baseResources).toEqual(Object.fromEntries(resourceSet(v1).resources));
      expect(hello.baseGlobalsVersion).toBe(resourceSet(v1).globalsVersion);
      expect(applied.map((s) => s.version)).toEqual([v2.version]);
      expect(applied[0]!.services).toEqual([...v2.services].sort(byName));
      expect(src.stats).toEqual({ pushes: 1, full: 0, deltas: 1, resyncs: 0, cut: 0 });
    } finally {
      await src.stop();
      cp.close();
    }
  });
});
