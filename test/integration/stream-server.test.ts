import * as grpc from '@grpc/grpc-js';
import { ControlMessage } from '../../common/gen/proxymgr/v1/stream';
import { FakeClock } from '../../testkit/fake-clock';
import { eventually, sleep } from '../../testkit/net';
import { ackOf, nackOf, rawAgent, startStreamServer } from '../../testkit/stream-server';
import { server, service, state } from '../../testkit/agent';

jest.setTimeout(30_000);

const v1 = state([service('web', 8080, [server('a', 9001)])]);
const v2 = state([service('web', 8080, [server('a', 9001), server('b', 9002)])]);
const v3 = state([service('web', 8080, [server('b', 9002)])]);

describe('agent stream (real gRPC): versions, nonces, ACK/NACK, rate limits', () => {
  test('an agent already running the desired version is not sent it again', async () => {
    const s = await startStreamServer();
    s.set(v1);
    const a = rawAgent(s.port, 'n1', v1.version);
    const b = rawAgent(s.port, 'n2', '');
    try {
      expect(await eventually(() => b.pushes.length === 1)).toBe(true);
      await sleep(200);
      expect(a.pushes).toEqual([]);
      expect(s.registry.get('n1')?.runningVersion).toBe(v1.version);
    } finally {
      a.close();
      b.close();
      s.close();
    }
  });

  test('a NACKed version is not re-sent until the desired state changes; an ACK is recorded per nonce', async () => {
    const s = await startStreamServer();
    s.set(v1);
    const a = rawAgent(s.port, 'n1');
    try {
      expect(await eventually(() => a.pushes.length === 1)).toBe(true);
      const p1 = a.pushes[0]!;
      expect(p1.version).toBe(v1.version);
      a.send(nackOf(p1, 'haproxy -c said no', ''));
      expect(await eventually(() => s.registry.get('n1')?.lastError === 'haproxy -c said no')).toBe(true);
      s.poke();
      s.set(v1); // the same version again
      await sleep(200);
      expect(a.pushes).toHaveLength(1);

      s.set(v2);
      expect(await eventually(() => a.pushes.length === 2)).toBe(true);
      const p2 = a.pushes[1]!;
      expect(p2.version).toBe(v2.version);
      expect(p2.nonce).not.toBe(p1.nonce);
      // An ACK with a stale nonce is ignored; the right one is recorded.
      a.send(ackOf({ version: v2.version, nonce: p1.nonce }));
      await sleep(100);
      expect(s.registry.get('n1')?.lastAckedVersion).toBe('');
      a.send({
        ack: {
          version: v2.version,
          nonce: p2.nonce,
          method: 2,
          reasons: ['x'],
          runtimeCommands: 1,
          durationMs: 1,
          warnings: [],
          rejectedServices: [],
          counters: [],
          refusals: [],
          changes: [],
          appliedAgoMs: 0,
        },
      });
      expect(await eventually(() => s.registry.get('n1')?.lastAckedVersion === v2.version)).toBe(true);
      expect(s.registry.get('n1')?.lastError).toBe('');
    } finally {
      a.close();
      s.close();
    }
  });

  // Issue 9g: the NACKed version used to be suppressed for the stream's whole life, so a state that flapped back to
  // it after another version was ACKed never reached the agent again.
  test('a NACKed version is sent again once a different version was sent and ACKed since, and the state flaps back', async () => {
    const s = await startStreamServer();
    const ack = (p: ControlMessage['push']) => a.send(ackOf(p));
    s.set(v1);
    const a = rawAgent(s.port, 'n1');
    try {
      expect(await eventually(() => a.pushes.length === 1)).toBe(true);
      ack(a.pushes[0]);
      expect(await eventually(() => s.registry.get('n1')?.lastAckedVersion === v1.version)).toBe(true);
      s.set(v2);
      expect(await eventually(() => a.pushes.length === 2)).toBe(true);
      const p2 = a.pushes[1]!;
      a.send(nackOf({ version: v2.version, nonce: p2.nonce }, 'port in use', v1.version));
      expect(await eventually(() => s.registry.get('n1')?.lastNackedVersion === v2.version)).toBe(true);
      s.poke(); // still v2: not re-sent in a loop
      await sleep(200);
      expect(a.pushes).toHaveLength(2);

      s.set(v3);
      expect(await eventually(() => a.pushes.length === 3)).toBe(true);
      ack(a.pushes[2]);
      expect(await eventually(() => s.registry.get('n1')?.lastAckedVersion === v3.version)).toBe(true);
      s.set(v2); // flaps back to the version NACKed earlier: the agent may well take it now
      expect(await eventually(() => a.pushes.length === 4)).toBe(true);
      expect(a.pushes[3]!.version).toBe(v2.version);
    } finally {
      a.close();
      s.close();
    }
  });

  // Issue 9j over real streams: the newer of two streams of one node closes first.
  test('two streams of one node closing newer-first leave the node listed as disconnected', async () => {
    const s = await startStreamServer();
    s.set(v1);
    const older = rawAgent(s.port, 'n1');
    try {
      expect(await eventually(() => older.pushes.length === 1)).toBe(true);
      const newer = rawAgent(s.port, 'n1');
      expect(await eventually(() => newer.pushes.length === 1)).toBe(true);
      newer.close();
      await sleep(200);
      expect(s.registry.get('n1')?.connected).toBe(true);
      older.close();
      expect(await eventually(() => s.registry.get('n1')?.connected === false)).toBe(true);
      expect(s.registry.connectedCount()).toBe(0);
    } finally {
      older.close();
      s.close();
    }
  });

  test('flow control: no new push until the outstanding one is answered (or overdue); then the newest state, once', async () => {
    // The answer timeout runs on a fake clock: the test moves time past it instead of waiting it out.
    const clock = new FakeClock(Date.now());
    const s = await startStreamServer({ newStreamsPerSecond: 100, pushesPerSecond: 100, answerTimeoutMs: 1500 }, clock);
    s.set(v1);
    const a = rawAgent(s.port, 'n1');
    const ack = (p: ControlMessage['push']) => a.send(ackOf(p));
    try {
      expect(await eventually(() => a.pushes.length === 1)).toBe(true);
      s.set(v2);
      s.set(v3);
      await sleep(300);
      expect(a.pushes).toHaveLength(1); // v1 is not answered yet: v2 and v3 wait
      ack(a.pushes[0]);
      expect(await eventually(() => a.pushes.length === 2)).toBe(true);
      expect(a.pushes[1]!.version).toBe(v3.version); // the newest, not v2 then v3
      // Unanswered: after answerTimeoutMs the next change goes anyway, and a late answer to it still counts.
      s.set(v1);
      clock.advance(1499);
      await sleep(200);
      expect(a.pushes).toHaveLength(2); // not yet overdue
      clock.advance(2);
      expect(await eventually(() => a.pushes.length === 3, 3000)).toBe(true);
      expect(a.pushes[2]!.version).toBe(v1.version);
      ack(a.pushes[2]);
      expect(await eventually(() => s.registry.get('n1')?.runningVersion === v1.version)).toBe(true);
    } finally {
      a.close();
      s.close();
    }
  });

  test('new streams beyond the rate are refused with RESOURCE_EXHAUSTED; pushes beyond the rate wait their turn', async () => {
    const s = await startStreamServer({ newStreamsPerSecond: 3, pushesPerSecond: 5 });
    s.set(v1);
    const agents = Array.from({ length: 8 }, (_, i) => rawAgent(s.port, `n${i}`));
    try {
      expect(
        await eventually(
          () => agents.filter((a) => a.error()?.code === grpc.status.RESOURCE_EXHAUSTED).length === 5,
          5000,
        ),
      ).toBe(true);
      const served = agents.filter((a) => !a.error());
      expect(served).toHaveLength(3);
      expect(await eventually(() => served.every((a) => a.pushes.length === 1))).toBe(true);
      // Two more versions to 3 agents, each answered as it comes = 6 pushes at 5/s with a burst of 5: the last waits.
      const answered = new Set<string>();
      const answerAll = () => {
        for (const a of served) {
          const p = a.pushes.at(-1);
          if (p && !answered.has(p.nonce)) {
            answered.add(p.nonce);
            a.send(ackOf(p));
          }
        }
      };
      answerAll();
      s.set(v2);
      expect(
        await eventually(() => (answerAll(), served.every((a) => a.pushes.at(-1)?.version === v2.version)), 5000),
      ).toBe(true);
      s.set(v3);
      expect(
        await eventually(() => (answerAll(), served.every((a) => a.pushes.at(-1)?.version === v3.version)), 5000),
      ).toBe(true);
    } finally {
      for (const a of agents) a.close();
      s.close();
    }
  });
});
