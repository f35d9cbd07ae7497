import * as grpc from '@grpc/grpc-js';
import { unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Authorizer } from '../../common/platform/auth';
import { FakeClock } from '../../testkit/fake-clock';
import { parseConfig } from '../../common/config/config';
import { AgentStreamClient, ControlMessage, Hello } from '../../common/gen/proxymgr/v1/stream';
import { authInterceptor } from '../../common/platform/grpc-auth';
import { silentLogger } from '../../common/platform/log';
import { AgentStreamDefinition } from '../../controlplane/grpc/push-encoding';
import { AgentRegistry } from '../../controlplane/grpc/registry';
import { agentStreamServer } from '../../controlplane/grpc/stream-server';
import { DesiredStateSource } from '../../controlplane/ports';
import { server, service, state } from '../../testkit/agent';
import { eventually, freePort, tempDir } from '../../testkit/net';

jest.setTimeout(30_000);

/**
 * Agent identities on a real gRPC server with the control plane's interceptor and stream: labels bound to the
 * credential, a bound on the node ids one credential holds, a new-stream budget per credential, token files
 * re-read when they change.
 */
describe('agent identity (real gRPC, token files on disk)', () => {
  const TOKENS = {
    web: 'web-token-0123456789abcdef',
    fleet: 'fleet-token-0123456789abcdef',
    other: 'other-token-0123456789ab',
  };
  let tmp: ReturnType<typeof tempDir>;
  let srv: grpc.Server;
  let port: number;
  let registry: AgentRegistry;
  const authClock = new FakeClock(1_000_000);
  /** The stream server's clock: the new-stream budgets refill as the tests move it, not as they wait. */
  const streamClock = new FakeClock(1_000_000);
  const calls: { close(): void }[] = [];

  beforeAll(async () => {
    tmp = tempDir('proxymgr-identity-');
    for (const [name, token] of Object.entries(TOKENS))
      writeFileSync(path.join(tmp.dir, `${name}.token`), token + '\n', { mode: 0o600 });
    const config = parseConfig(
      `
controlplane:
  new_streams_per_identity_per_second: 3
auth:
  max_node_ids: 100
  clients:
    - {name: web, token_file: web.token, roles: [agent], node_ids: ["web-*"], labels: {role: [web, api], zone: "*"}}
    - {name: fleet, token_file: fleet.token, roles: [agent], node_ids: ["*"], max_node_ids: 2}
    - {name: other, token_file: other.token, roles: [agent], node_ids: ["*"]}
`,
      path.join(tmp.dir, 'proxymgr.yml'),
    );
    const authorizer = new Authorizer(config.auth, undefined, undefined, { now: () => authClock.now() });
    const desired = state([service('web', 8080, [server('a', 9001)])]);
    const source: DesiredStateSource = { desiredFor: () => desired, subscribe: () => () => undefined };
    registry = new AgentRegistry();
    srv = new grpc.Server({ interceptors: [authInterceptor(authorizer, silentLogger)] });
    srv.addService(
      AgentStreamDefinition,
      agentStreamServer({
        source,
        registry,
        log: silentLogger,
        limits: {
          newStreamsPerSecond: 1000,
          newStreamsPerIdentityPerSecond: config.controlplane.newStreamsPerIdentityPerSecond,
          pushesPerSecond: 1000,
        },
        authorizer,
        clock: streamClock,
      }),
    );
    port = await freePort();
    await new Promise<void>((resolve, reject) =>
      srv.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())),
    );
  });
  afterAll(() => {
    for (const c of calls) c.close();
    srv?.forceShutdown();
    tmp?.cleanup();
  });

  /** An agent stream with a bearer token: its pushes and the error that ended it, if any. */
  function agent(token: string, nodeId: string, labels: Record<string, string> = {}) {
    const client = new AgentStreamClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${token}`);
    const call = client.stream(md);
    const pushes: ControlMessage['push'][] = [];
    let error: grpc.ServiceError | undefined;
    call.on('data', (m: ControlMessage) => m.push && pushes.push(m.push));
    call.on('error', (e: grpc.ServiceError) => (error = e));
    call.write({ hello: Hello.fromPartial({ nodeId, labels, agentVersion: 't', haproxyVersion: 't' }) });
    const a = {
      pushes,
      error: () => error,
      /** Resolves once the stream got a push (admitted) or an error (refused). */
      settled: () => eventually(() => pushes.length > 0 || error !== undefined, 5000),
      close: () => {
        call.cancel();
        client.close();
      },
    };
    calls.push(a);
    return a;
  }
  // Each test starts with fresh per-credential budgets (3 per second, 1 s apart at the most).
  beforeEach(() => streamClock.advance(1100));

  test('labels: a claim outside auth.clients labels is refused at hello, naming the label and the identity', async () => {
    const ok = agent(TOKENS.web, 'web-1', { role: 'api', zone: 'eu-1' });
    const badValue = agent(TOKENS.web, 'web-2', { role: 'payments' });
    const badName = agent(TOKENS.web, 'web-3', { team: 'payments' });
    await Promise.all([ok.settled(), badValue.settled(), badName.settled()]);
    expect(ok.error()).toBeUndefined();
    expect(ok.pushes.length).toBe(1);
    expect(badValue.error()?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(badValue.error()?.details).toMatch(
      /^web \(token\) may not claim label role="payments": not a value auth.clients "web" labels.role allows$/,
    );
    expect(badName.error()?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(badName.error()?.details).toMatch(/^web \(token\) may not claim label team="payments": .*lists role, zone$/);
    expect(registry.get('web-2')).toBeUndefined();
    expect(registry.get('web-1')?.labels).toEqual({ role: 'api', zone: 'eu-1' });
    // Without label rules, labels stay self-declared.
    const free = agent(TOKENS.other, 'x-1', { role: 'payments' });
    await free.settled();
    expect(free.error()).toBeUndefined();
    for (const a of [ok, free]) a.close();
  });

  test('node ids: a wildcard identity holds at most max_node_ids; its own oldest disconnected record makes room', async () => {
    const a = agent(TOKENS.fleet, 'f-1');
    const b = agent(TOKENS.fleet, 'f-2');
    await Promise.all([a.settled(), b.settled()]);
    expect([a.error(), b.error()]).toEqual([undefined, undefined]);
    const c = agent(TOKENS.fleet, 'f-3');
    await c.settled();
    expect(c.error()?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(c.error()?.details).toMatch(/^identity fleet holds 2 node ids with open streams, its max_node_ids/);
    // Another identity is not affected by fleet's bound.
    const o = agent(TOKENS.other, 'f-9');
    await o.settled();
    expect(o.error()).toBeUndefined();
    a.close();
    expect(await eventually(() => registry.get('f-1')?.connected === false)).toBe(true);
    streamClock.advance(400); // fleet's fourth stream in this test: one more token of its new-stream budget
    const d = agent(TOKENS.fleet, 'f-4');
    await d.settled();
    expect(d.error()).toBeUndefined();
    expect(registry.get('f-1')).toBeUndefined(); // forgotten to make room: records stay bounded
    expect(registry.heldBy('fleet')).toBe(2);
    expect(registry.get('f-9')?.connected).toBe(true);
    for (const x of [b, d, o]) x.close();
  });

  test('new streams: one credential reconnecting in a loop uses up its own budget, not the others’', async () => {
    const loop = Array.from({ length: 6 }, (_, i) => agent(TOKENS.other, `loop-${i}`));
    await Promise.all(loop.map((x) => x.settled()));
    const refused = loop.filter((x) => x.error()?.code === grpc.status.RESOURCE_EXHAUSTED);
    expect(refused.length).toBe(3);
    expect(refused[0]!.error()?.details).toMatch(
      /^too many new agent streams from other \(token\) at 127\.0\.0\.1: at most 3 per second/,
    );
    const web = agent(TOKENS.web, 'web-9', { role: 'web' });
    await web.settled();
    expect(web.error()).toBeUndefined();
    for (const x of [...loop, web]) x.close();
  });

  test('token files: a replaced token takes effect without a restart; an emptied or removed file denies, no crash', async () => {
    const file = path.join(tmp.dir, 'other.token');
    const next = 'other-token-rotated-0123456789';
    writeFileSync(file, next + '\n');
    authClock.advance(1000);
    const old = agent(TOKENS.other, 'rot-1');
    const rotated = agent(next, 'rot-2');
    await Promise.all([old.settled(), rotated.settled()]);
    expect(old.error()?.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(rotated.error()).toBeUndefined();
    rotated.close();
    writeFileSync(file, '');
    authClock.advance(1000);
    const empty = agent(next, 'rot-3');
    await empty.settled();
    expect(empty.error()?.code).toBe(grpc.status.UNAUTHENTICATED);
    unlinkSync(file);
    authClock.advance(1000);
    const gone = agent(next, 'rot-4');
    await gone.settled();
    expect(gone.error()?.code).toBe(grpc.status.UNAUTHENTICATED);
    // Others are unaffected, and a fixed file is read again.
    const web = agent(TOKENS.web, 'web-5', { role: 'web' });
    writeFileSync(file, next + '\n', { mode: 0o600 });
    authClock.advance(1000);
    const back = agent(next, 'rot-5');
    await Promise.all([web.settled(), back.settled()]);
    expect(web.error()).toBeUndefined();
    expect(back.error()).toBeUndefined();
    for (const x of [web, back]) x.close();
  });
});
