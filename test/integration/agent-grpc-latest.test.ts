import * as grpc from '@grpc/grpc-js';
import { silentLogger } from '../../common/platform/log';
import { toProto } from '../../common/protocol/state-codec';
import { AgentMessage, AgentStreamService, ControlMessage, Push } from '../../common/gen/proxymgr/v1/stream';
import { DesiredState } from '../../common/protocol/types';
import { ApplyResult } from '../../agent/agent';
import { GrpcStateSource } from '../../agent/sources/grpc';
import { eventually, sleep } from '../../testkit/net';
import { server, service, state } from '../../testkit/agent';

jest.setTimeout(30_000);

/** A control plane that pushes `versions` back to back as soon as the agent says hello, and records the answers. */
async function fakeControlPlane(versions: DesiredState[]) {
  const answers: AgentMessage[] = [];
  const srv = new grpc.Server();
  srv.addService(AgentStreamService, {
    stream(call: grpc.ServerDuplexStream<AgentMessage, ControlMessage>) {
      call.on('data', (msg: AgentMessage) => {
        if (msg.hello) {
          versions.forEach((v, i) =>
            call.write({ push: Push.fromPartial({ version: v.version, nonce: `n${i + 1}`, state: toProto(v) }) }),
          );
        } else {
          answers.push(msg);
        }
      });
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    srv.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { port, answers, close: () => new Promise<void>((resolve) => srv.tryShutdown(() => resolve())) };
}

/**
 * Issue 9 e: with slow applies and frequent pushes the agent used to queue every push (each a full state) and
 * apply stale ones in order. Now at most one push waits; a newer one replaces it, and only applied pushes are
 * answered (the control plane ignores answers to nonces it has superseded anyway).
 */
describe('the gRPC source applies the latest push, not every push', () => {
  let cp: Awaited<ReturnType<typeof fakeControlPlane>> | undefined;
  let source: GrpcStateSource | undefined;
  afterEach(async () => {
    await source?.stop();
    await cp?.close();
  });

  test('four pushes during one slow apply: the first and the last are applied and ACKed, the two between are dropped unanswered', async () => {
    const versions = [1, 2, 3, 4].map((i) => state([service('web', 8000 + i, [server('a', 9000)])]));
    cp = await fakeControlPlane(versions);
    const applied: string[] = [];
    let running = '';
    const slowApply = async (s: DesiredState): Promise<ApplyResult> => {
      applied.push(s.version);
      await sleep(300);
      running = s.version;
      return {
        version: s.version,
        outcome: 'reload',
        reasons: [{ kind: 'listen_options', text: 'reload: test' }],
        commands: [],
        problems: [],
        durationMs: 300,
      };
    };
    source = new GrpcStateSource({
      addresses: [`127.0.0.1:${cp.port}`],
      nodeId: 'n1',
      labels: {},
      agentVersion: 'test',
      haproxyVersion: 'test',
      runningVersion: () => running,
      log: silentLogger,
    });
    await source.start(slowApply);
    expect(await eventually(() => cp!.answers.length >= 2, 10_000)).toBe(true);
    await sleep(800); // a stale push would be applied (and answered) by now
    expect(applied).toEqual([versions[0]!.version, versions[3]!.version]);
    expect(cp.answers.map((a) => [a.ack?.nonce, a.ack?.version])).toEqual([
      ['n1', versions[0]!.version],
      ['n4', versions[3]!.version],
    ]);
  });
});

/**
 * Review of issue 10: a push taken into what the agent holds but never applied (the stream ended while an earlier
 * push was still applying) must not be declared as held in the next hello, or the control plane would see
 * nothing missing and the agent would keep running the earlier state.
 */
describe('a push taken but never applied is not declared as held after a reconnect', () => {
  test('the stream ends while v1 applies and v2 waits: the next hello declares what runs, not v2', async () => {
    const v1 = state([service('web', 8001, [server('a', 9000)])]);
    const v2 = state([service('web', 8002, [server('a', 9000)])]);
    const hellos: AgentMessage['hello'][] = [];
    const srv = new grpc.Server();
    srv.addService(AgentStreamService, {
      stream(call: grpc.ServerDuplexStream<AgentMessage, ControlMessage>) {
        call.on('data', (msg: AgentMessage) => {
          if (!msg.hello) return;
          hellos.push(msg.hello);
          if (hellos.length > 1) return;
          call.write({ push: Push.fromPartial({ version: v1.version, nonce: 'n1', state: toProto(v1) }) });
          call.write({ push: Push.fromPartial({ version: v2.version, nonce: 'n2', state: toProto(v2) }) });
          setTimeout(
            () => call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'control plane going away (test)' }),
            100,
          );
        });
        call.on('end', () => call.end());
        call.on('error', () => undefined);
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      srv.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    let running: DesiredState | undefined;
    const applied: string[] = [];
    const source = new GrpcStateSource({
      addresses: [`127.0.0.1:${port}`],
      nodeId: 'n1',
      labels: {},
      agentVersion: 'test',
      haproxyVersion: 'test',
      runningVersion: () => running?.version ?? '',
      initialState: () => running,
      log: silentLogger,
      backoffBaseMs: 50,
      backoffMaxMs: 100,
    });
    try {
      await source.start(async (s: DesiredState): Promise<ApplyResult> => {
        applied.push(s.version);
        await sleep(400);
        running = s;
        return {
          version: s.version,
          outcome: 'reload',
          reasons: [{ kind: 'listen_options', text: 'reload: test' }],
          commands: [],
          problems: [],
          durationMs: 400,
        };
      });
      expect(await eventually(() => hellos.length >= 2, 10_000)).toBe(true);
      expect(hellos[1]!.baseVersion).not.toBe(v2.version); // v2 was taken, never applied
      await sleep(600);
      expect(applied).toEqual([v1.version]);
      expect(running?.version).toBe(v1.version);
    } finally {
      await source.stop();
      await new Promise<void>((resolve) => srv.tryShutdown(() => resolve()));
    }
  });
});
