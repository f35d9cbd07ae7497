import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { AgentStreamDefinition } from '../../controlplane/grpc/push-encoding';
import { AgentMessage, AgentStreamClient, ControlMessage, Hello } from '../../common/gen/proxymgr/v1/stream';
import { silentLogger } from '../../common/platform/log';
import { fromProto } from '../../common/protocol/state-codec';
import { DesiredState } from '../../common/protocol/types';
import { AgentRegistry } from '../../controlplane/grpc/registry';
import { agentStreamServer } from '../../controlplane/grpc/stream-server';
import { server, service, startTestAgent, state } from '../../testkit/agent';
import { Backend, startBackends } from '../../testkit/backends';
import { eventually, freePort, tally } from '../../testkit/net';

jest.setTimeout(60_000);

// Issue 9c: weight 0 (a drained server: Nerve "weight": 0, file `weight=0`) reached agents as weight 1, because
// proto3 could not tell 0 from unset. Here a state goes the whole way: the control plane's stream server encodes it,
// real gRPC carries it, the agent decodes it and applies it to a real HAProxy.
describe('weight 0 from the control plane to HAProxy', () => {
  let backends: Backend[];
  let t: Awaited<ReturnType<typeof startTestAgent>>;
  let port: number;
  let srv: grpc.Server;
  let client: AgentStreamClient;
  let call: grpc.ClientDuplexStream<AgentMessage, ControlMessage>;
  let current: DesiredState | undefined;
  const subscribers = new Set<() => void>();
  const pushes: DesiredState[] = [];

  beforeAll(async () => {
    backends = await startBackends(['a', 'b']);
    port = await freePort();
    t = await startTestAgent();
    srv = new grpc.Server();
    srv.addService(
      AgentStreamDefinition,
      agentStreamServer({
        source: {
          desiredFor: () => current,
          subscribe: (fn) => {
            subscribers.add(fn);
            return () => subscribers.delete(fn);
          },
        },
        registry: new AgentRegistry(),
        log: silentLogger,
      }),
    );
    const grpcPort = await new Promise<number>((resolve, reject) =>
      srv.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    client = new AgentStreamClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
    call = client.stream();
    call.on('data', (m: ControlMessage) => {
      if (!m.push?.state) return;
      pushes.push(fromProto(m.push.state));
      call.write({
        ack: {
          version: m.push.version,
          nonce: m.push.nonce,
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
      });
    });
    call.on('error', () => undefined);
    call.write({
      hello: Hello.fromPartial({
        nodeId: 'n1',
        labels: {},
        agentVersion: 't',
        haproxyVersion: 't',
        runningVersion: '',
      }),
    });
  });
  afterAll(async () => {
    call?.cancel();
    client?.close();
    srv?.forceShutdown();
    await t?.close();
    await Promise.all((backends ?? []).map((b) => b.close()));
  });

  /** Publishes `s` on the stream and resolves with what the agent decoded from the wire. */
  const viaStream = async (s: DesiredState): Promise<DesiredState> => {
    current = s;
    for (const fn of subscribers) fn();
    expect(await eventually(() => pushes.at(-1)?.version === s.version)).toBe(true);
    return pushes.at(-1)!;
  };
  const weights = async () => {
    const st = (await t.runtime.serversState('web')).get('web')!;
    return { a: st.get('a')?.weight, b: st.get('b')?.weight };
  };
  const a = () => server('a', backends[0]!.port);

  test('a server with weight 0 at start: rendered as `weight 0`, and HAProxy runs it with weight 0', async () => {
    const got = await viaStream(state([service('web', port, [a(), server('b', backends[1]!.port, { weight: 0 })])]));
    expect(got.services[0]!.servers.map((s) => s.weight)).toEqual([1, 0]);
    const r = await t.agent.apply(got);
    expect(r.outcome).toBe('reload');
    expect(readFileSync(t.config.haproxy.configPath, 'utf8')).toMatch(/server b 127\.0\.0\.1:\d+ weight 0/);
    expect(await weights()).toEqual({ a: 1, b: 0 });
    expect([...(await tally(port, 6)).keys()]).toEqual(['a']);
  });

  test('a server drained to weight 0 later: `set server web/b weight 0` at runtime, no reload', async () => {
    const up = await t.agent.apply(
      await viaStream(state([service('web', port, [a(), server('b', backends[1]!.port, { weight: 1 })])])),
    );
    expect(up.commands).toEqual(['set server web/b weight 1']);
    expect(await weights()).toEqual({ a: 1, b: 1 });
    const reloads = t.agent.counters.reloads;
    const drained = await t.agent.apply(
      await viaStream(state([service('web', port, [a(), server('b', backends[1]!.port, { weight: 0 })])])),
    );
    expect(drained.outcome).toBe('runtime');
    expect(drained.commands).toEqual(['set server web/b weight 0']);
    expect(t.agent.counters.reloads).toBe(reloads);
    expect(await weights()).toEqual({ a: 1, b: 0 });
    expect([...(await tally(port, 6)).keys()]).toEqual(['a']);
  });
});
