import type { PeerCertificate } from 'node:tls';
import type * as grpc from '@grpc/grpc-js';
import {
  Authorizer,
  CallInfo,
  isClassified,
  isLoopbackPeer,
  mayStreamAs,
  peerAddress,
  PERMISSION_DENIED,
  requiredRole,
  UNAUTHENTICATED,
} from '../../common/platform/auth';
import { authTlsWarning, parseConfig } from '../../common/config/config';
import { AgentRegistry } from '../../controlplane/grpc/registry';
import { helloProblem, protocolProblem } from '../../controlplane/grpc/hello';
import { MAX_DECLARED_RESOURCES } from '../../common/protocol/resources';
import { Hello } from '../../common/gen/proxymgr/v1/stream';
import { AgentAdminService, ControlPlaneAdminService } from '../../common/gen/proxymgr/v1/admin';
import { RolloutService } from '../../common/gen/proxymgr/v1/rollout';
import { AgentStreamDefinition } from '../../controlplane/grpc/push-encoding';
import { addHealth, addReflection } from '../../common/platform/grpc';

const OPS_TOKEN = 'ops-token-0123456789abcdef';
const VIEW_TOKEN = 'view-token-0123456789abcdef';
const AGENT_TOKEN = 'agent-token-0123456789abcdef';

function authorizer(extra = ''): Authorizer {
  const config = parseConfig(
    `auth:
  clients:
    - {name: ops, cert: {cn: "ops-*"}, roles: [operator]}
    - {name: viewers, cert: {san_dns: "*.view.example"}, roles: [viewer]}
    - {name: agents, cert: {cn: "agent-*"}, roles: [agent], node_ids: ["{cn}"]}
    - {name: spiffe-agents, cert: {san_uri: "spiffe://fleet/agent/*"}, roles: [agent], node_ids: ["web-*", "db-1"]}
    - {name: ci, token_file: /t/ops, roles: [operator]}
    - {name: dash, token_file: /t/view, roles: [viewer]}
    - {name: tok-agent, token_file: /t/agent, roles: [agent], node_ids: ["edge-*"]}
${extra}`,
    '/etc/proxymgr/proxymgr.yml',
  );
  const files: Record<string, string> = { '/t/ops': OPS_TOKEN + '\n', '/t/view': VIEW_TOKEN, '/t/agent': AGENT_TOKEN };
  return new Authorizer(
    config.auth,
    (f) => {
      if (!(f in files)) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
      return files[f]!;
    },
    () => 0o600,
  );
}

const cert = (cn: string, san = ''): PeerCertificate =>
  ({ subject: { CN: cn }, subjectaltname: san }) as unknown as PeerCertificate;
const call = (method: string, opts: Partial<CallInfo> = {}): CallInfo => ({
  method,
  peer: '10.1.2.3:40000',
  authorization: [],
  ...opts,
});

describe('roles per method', () => {
  test('agent streams need agent, reads need viewer, mutations and unknown methods need operator', () => {
    expect(requiredRole('/proxymgr.v1.AgentStream/Stream')).toBe('agent');
    expect(requiredRole('/proxymgr.v1.ControlPlaneAdmin/ListServices')).toBe('viewer');
    expect(requiredRole('/proxymgr.v1.Rollout/Status')).toBe('viewer');
    expect(requiredRole('/proxymgr.v1.Rollout/History')).toBe('viewer');
    expect(requiredRole('/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo')).toBe('viewer');
    expect(requiredRole('/grpc.health.v1.Health/Check')).toBe('viewer');
    for (const m of ['Pause', 'Resume', 'Promote', 'Abort', 'SetPolicy'])
      expect(requiredRole(`/proxymgr.v1.Rollout/${m}`)).toBe('operator');
    expect(requiredRole('/proxymgr.v1.Rollout/SomethingNew')).toBe('operator');
    expect(requiredRole('/proxymgr.v1.Rollout/Plan')).toBe('viewer'); // a read: ctl rollout plan for viewers
  });

  test('every method either server offers is listed with its role (none falls to the operator default)', () => {
    // The services as the control plane and the agent register them, health and reflection included.
    const paths: string[] = [];
    const server = {
      addService: (def: grpc.ServiceDefinition) => paths.push(...Object.values(def).map((m) => m.path)),
    } as unknown as grpc.Server;
    for (const def of [AgentStreamDefinition, ControlPlaneAdminService, RolloutService, AgentAdminService])
      server.addService(def, {});
    addHealth(server, () => true).close();
    addReflection(server, ['proxymgr.v1.AgentStream', 'proxymgr.v1.ControlPlaneAdmin', 'proxymgr.v1.Rollout']);
    expect(paths.length).toBeGreaterThanOrEqual(20);
    expect(paths.filter((p) => !isClassified(p))).toEqual([]);
  });
});

describe('with auth configured', () => {
  const a = authorizer();

  test('an operator certificate may pause; a viewer or agent certificate may not (PERMISSION_DENIED naming the role)', () => {
    expect(a.check(call('/proxymgr.v1.Rollout/Pause', { certificate: cert('ops-alice') }))).toMatchObject({
      ok: true,
      identity: { name: 'ops' },
    });
    const viewer = a.check(call('/proxymgr.v1.Rollout/Pause', { certificate: cert('bob', 'DNS:bob.view.example') }));
    expect(viewer).toMatchObject({ ok: false, code: PERMISSION_DENIED });
    expect(!viewer.ok && viewer.details).toMatch(
      /viewers .*may not call \/proxymgr.v1.Rollout\/Pause: it needs the operator role/,
    );
    expect(a.check(call('/proxymgr.v1.Rollout/Promote', { certificate: cert('agent-7') }))).toMatchObject({
      ok: false,
      code: PERMISSION_DENIED,
    });
    expect(
      a.check(call('/proxymgr.v1.Rollout/Status', { certificate: cert('bob', 'DNS:bob.view.example') })),
    ).toMatchObject({ ok: true });
    expect(a.check(call('/proxymgr.v1.Rollout/Status', { certificate: cert('ops-alice') }))).toMatchObject({
      ok: true,
    }); // operator ⊇ viewer
  });

  test('operators and viewers cannot open agent streams; agents cannot read', () => {
    expect(a.check(call('/proxymgr.v1.AgentStream/Stream', { certificate: cert('ops-alice') }))).toMatchObject({
      ok: false,
      code: PERMISSION_DENIED,
    });
    expect(
      a.check(call('/proxymgr.v1.ControlPlaneAdmin/ListServices', { certificate: cert('agent-1') })),
    ).toMatchObject({ ok: false, code: PERMISSION_DENIED });
    expect(a.check(call('/proxymgr.v1.AgentStream/Stream', { certificate: cert('agent-1') }))).toMatchObject({
      ok: true,
    });
  });

  test('an agent identity streams only as the node ids it allows; {cn} is literal, not a pattern', () => {
    const id = (c: PeerCertificate) => {
      const d = a.identify(call('/proxymgr.v1.AgentStream/Stream', { certificate: c }));
      if (!d.ok) throw new Error(d.details);
      return d.identity;
    };
    expect(mayStreamAs(id(cert('agent-1')), 'agent-1')).toBe(true);
    expect(mayStreamAs(id(cert('agent-1')), 'agent-2')).toBe(false);
    expect(mayStreamAs(id(cert('agent-*')), 'agent-2')).toBe(false); // a CN of "agent-*" is not a wildcard
    expect(mayStreamAs(id(cert('agent-*')), 'agent-*')).toBe(true);
    const spiffe = id(cert('x', 'URI:spiffe://fleet/agent/42'));
    expect(mayStreamAs(spiffe, 'web-3')).toBe(true);
    expect(mayStreamAs(spiffe, 'db-1')).toBe(true);
    expect(mayStreamAs(spiffe, 'db-12')).toBe(false);
  });

  test('bearer tokens: each maps to its client; a wrong or malformed one is UNAUTHENTICATED and never echoed', () => {
    expect(a.check(call('/proxymgr.v1.Rollout/Abort', { authorization: [`Bearer ${OPS_TOKEN}`] }))).toMatchObject({
      ok: true,
      identity: { name: 'ci', via: 'token' },
    });
    expect(a.check(call('/proxymgr.v1.Rollout/Abort', { authorization: [`Bearer ${VIEW_TOKEN}`] }))).toMatchObject({
      ok: false,
      code: PERMISSION_DENIED,
    });
    const wrong = a.check(call('/proxymgr.v1.Rollout/Status', { authorization: ['Bearer not-the-token-at-all-xyz'] }));
    expect(wrong).toMatchObject({ ok: false, code: UNAUTHENTICATED });
    expect(!wrong.ok && wrong.details).toMatch(/bearer token matches no auth.clients token_file/);
    expect(!wrong.ok && wrong.details).not.toMatch(/not-the-token/);
    const basic = a.check(call('/proxymgr.v1.Rollout/Status', { authorization: ['Basic abc'] }));
    expect(!basic.ok && basic.details).toMatch(/not "Bearer <token>"/);
    const prefix = a.check(
      call('/proxymgr.v1.Rollout/Status', { authorization: [`Bearer ${OPS_TOKEN.slice(0, -1)}`] }),
    );
    expect(prefix).toMatchObject({ ok: false, code: UNAUTHENTICATED });
  });

  test('an unknown caller gets UNAUTHENTICATED saying what was missing', () => {
    const none = a.check(call('/proxymgr.v1.Rollout/Status'));
    expect(none).toMatchObject({ ok: false, code: UNAUTHENTICATED });
    expect(!none.ok && none.details).toMatch(/no client certificate; no bearer token/);
    const stranger = a.check(call('/proxymgr.v1.Rollout/Status', { certificate: cert('mallory', 'DNS:evil.example') }));
    expect(!stranger.ok && stranger.details).toMatch(
      /client certificate CN=mallory DNS:evil.example matches no auth.clients cert entry/,
    );
  });

  test('loopback gives no privilege once auth is configured; health needs viewer unless anonymous_health', () => {
    expect(a.check(call('/proxymgr.v1.Rollout/Pause', { peer: '127.0.0.1:5000' }))).toMatchObject({
      ok: false,
      code: UNAUTHENTICATED,
    });
    expect(a.check(call('/grpc.health.v1.Health/Check'))).toMatchObject({ ok: false, code: UNAUTHENTICATED });
    expect(authorizer('  anonymous_health: true\n').check(call('/grpc.health.v1.Health/Check'))).toMatchObject({
      ok: true,
    });
  });
});

describe('without auth', () => {
  const a = new Authorizer(undefined);
  test('mutating calls only from loopback peers; reads and agent streams from anywhere', () => {
    expect(a.check(call('/proxymgr.v1.Rollout/Promote', { peer: '127.0.0.1:5000' }))).toMatchObject({ ok: true });
    expect(a.check(call('/proxymgr.v1.Rollout/Promote', { peer: '::1:5000' }))).toMatchObject({ ok: true });
    const remote = a.check(call('/proxymgr.v1.Rollout/Promote', { peer: '198.51.100.2:5000' }));
    expect(remote).toMatchObject({ ok: false, code: PERMISSION_DENIED });
    expect(!remote.ok && remote.details).toMatch(/accepted from loopback only, not from 198.51.100.2/);
    expect(a.check(call('/proxymgr.v1.Rollout/Promote', { peer: '::ffff:198.51.100.2:5000' }))).toMatchObject({
      ok: false,
    });
    expect(a.check(call('/proxymgr.v1.Rollout/Status', { peer: '198.51.100.2:5000' }))).toMatchObject({ ok: true });
    expect(a.check(call('/proxymgr.v1.AgentStream/Stream', { peer: '198.51.100.2:5000' }))).toMatchObject({ ok: true });
  });
  test('peer addresses', () => {
    expect(peerAddress('127.0.0.1:5')).toBe('127.0.0.1');
    expect(peerAddress('[::1]:5')).toBe('::1');
    expect(peerAddress('::ffff:127.0.0.1:5')).toBe('127.0.0.1');
    expect(isLoopbackPeer('127.8.9.10:1')).toBe(true);
    expect(isLoopbackPeer('::ffff:127.0.0.1:5')).toBe(true);
    expect(isLoopbackPeer('fe80::1:5')).toBe(false);
    expect(isLoopbackPeer('1127.0.0.1:5')).toBe(false);
  });
});

describe('auth configuration', () => {
  test('errors name the file, the entry and what is expected', () => {
    const bad = (yml: string) => () => parseConfig(yml, '/e/p.yml');
    expect(bad('auth: {clients: []}\n')).toThrow(/\/e\/p.yml: auth.clients: expected a non-empty list/);
    expect(bad('auth: {clients: [{name: a, roles: [viewer]}]}\n')).toThrow(
      /auth.clients\[0\]: expected exactly one of cert or token_file/,
    );
    expect(bad('auth: {clients: [{name: a, cert: {cn: x}, roles: [admin]}]}\n')).toThrow(
      /roles\[0\]: expected "agent", "viewer" or "operator", got string "admin"/,
    );
    expect(bad('auth: {clients: [{name: a, cert: {cn: x}, roles: [agent]}]}\n')).toThrow(
      /node_ids: an agent identity needs/,
    );
    expect(bad('auth: {clients: [{name: a, cert: {o: x}, roles: [viewer]}]}\n')).toThrow(/cert.o: unknown key/);
  });
  test('a token file that is too short or unreadable fails at start without showing its content', () => {
    const config = parseConfig('auth: {clients: [{name: a, token_file: /t/short, roles: [viewer]}]}\n', '/e/p.yml');
    expect(
      () =>
        new Authorizer(
          config.auth,
          () => 'secret1',
          () => 0o600,
        ),
    ).toThrow(/token_file \/t\/short holds fewer than 16 characters/);
    expect(
      () =>
        new Authorizer(
          config.auth,
          () => 'secret1',
          () => 0o600,
        ),
    ).not.toThrow(/secret1/);
    const loose = new Authorizer(
      config.auth,
      () => 'a'.repeat(32),
      () => 0o644,
    );
    expect(loose.warnings.join()).toMatch(/readable by group or others/);
  });
});

describe('review fixes', () => {
  test('two clients with the same token are refused at start', () => {
    const config = parseConfig(
      'auth: {clients: [{name: a, token_file: /t/1, roles: [viewer]}, {name: b, token_file: /t/2, roles: [operator]}]}\n',
      '/e/p.yml',
    );
    expect(
      () =>
        new Authorizer(
          config.auth,
          () => 'same-token-0123456789',
          () => 0o600,
        ),
    ).toThrow(/"a" and "b" have the same token/);
  });
  test('{cn} in a token entry is refused: tokens have no certificate', () => {
    expect(() =>
      parseConfig('auth: {clients: [{name: a, token_file: /t, roles: [agent], node_ids: ["{cn}"]}]}\n', '/e/p.yml'),
    ).toThrow(/come from a client certificate/);
  });
  test('a quoted SAN value (Node quotes values with commas) matches nothing', () => {
    const a = authorizer();
    expect(
      a.check(call('/proxymgr.v1.Rollout/Status', { certificate: cert('x', 'DNS:"a, b.view.example"') })),
    ).toMatchObject({ ok: false, code: UNAUTHENTICATED });
  });
  test('cert entries on a server that verifies no client certificate: a warning naming the key', () => {
    const c = parseConfig('auth: {clients: [{name: ops, cert: {cn: x}, roles: [operator]}]}\n', '/e/p.yml');
    expect(authTlsWarning(c.auth, undefined, '/e/p.yml', 'controlplane.tls')).toMatch(
      /"ops" .*can never match here: controlplane.tls.require_client_cert is not true/,
    );
    expect(
      authTlsWarning(
        c.auth,
        { ca: '/ca', cert: '/c', key: '/k', requireClientCert: true },
        '/e/p.yml',
        'controlplane.tls',
      ),
    ).toBeUndefined();
  });
});

describe('agent registry memory stays bounded', () => {
  const hello = (nodeId: string) => ({
    nodeId,
    labels: {},
    agentVersion: '',
    haproxyVersion: '',
    peer: '',
    runningVersion: '',
  });
  test('disconnected agents are forgotten after forgetAfterMs, and beyond maxDisconnected', () => {
    let now = 0;
    const r = new AgentRegistry({}, { forgetAfterMs: 1000, maxDisconnected: 3 }, () => now);
    const live = r.connect(hello('live'));
    for (let i = 0; i < 10; i++) r.disconnect(r.connect(hello(`probe-${i}`)));
    expect(r.size()).toBe(4); // live + the 3 newest probes
    expect(r.get('probe-9')).toBeDefined();
    expect(r.get('probe-0')).toBeUndefined();
    now = 1500;
    expect(r.list().map((a) => a.nodeId)).toEqual(['live']);
    expect(live.connected).toBe(true);
  });
});

describe('hello checks', () => {
  const hello = Hello.fromPartial({
    nodeId: 'web-1',
    labels: { zone: 'eu' },
    agentVersion: '0.1.0',
    haproxyVersion: '2.6.12',
    runningVersion: '',
  });
  test('odd node ids, too many or odd labels and huge version strings are refused with the field named', () => {
    expect(helloProblem(hello)).toBeUndefined();
    expect(helloProblem({ ...hello, nodeId: 'a b' })).toMatch(/hello.node_id/);
    expect(helloProblem({ ...hello, nodeId: 'x'.repeat(300) })).toMatch(/hello.node_id/);
    expect(
      helloProblem({ ...hello, labels: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, 'v'])) }),
    ).toMatch(/65 labels, at most 64/);
    expect(helloProblem({ ...hello, labels: { 'bad key': 'v' } })).toMatch(/hello.labels: key/);
    expect(helloProblem({ ...hello, labels: { k: 'x'.repeat(1000) } })).toMatch(/hello.labels.k/);
    expect(helloProblem({ ...hello, agentVersion: 'v\n1' })).toMatch(/hello.agent_version/);
  });

  test('the declared base (protocol 2) is hostile input too: names, versions and count are checked', () => {
    const v = 'a'.repeat(32);
    expect(
      helloProblem({
        ...hello,
        protocolVersion: 2,
        baseVersion: 'v1',
        baseResources: { web: v },
        baseGlobalsVersion: v,
      }),
    ).toBeUndefined();
    expect(helloProblem({ ...hello, baseVersion: 'x'.repeat(200) })).toMatch(/hello.base_version/);
    expect(helloProblem({ ...hello, baseResources: { 'we b': v } })).toMatch(
      /hello.base_resources: key "we b" is not a service name/,
    );
    expect(helloProblem({ ...hello, baseResources: { web: 'NOT-HEX' } })).toMatch(
      /hello.base_resources.web: "NOT-HEX" is not a resource version/,
    );
    expect(helloProblem({ ...hello, baseResources: { web: 'a'.repeat(65) } })).toMatch(/hello.base_resources.web/);
    expect(helloProblem({ ...hello, baseGlobalsVersion: 'zz' })).toMatch(/hello.base_globals_version/);
    const many = Object.fromEntries(Array.from({ length: MAX_DECLARED_RESOURCES + 1 }, (_, i) => [`s${i}`, v]));
    expect(helloProblem({ ...hello, baseResources: many })).toMatch(
      new RegExp(`${MAX_DECLARED_RESOURCES + 1} resources, at most ${MAX_DECLARED_RESOURCES}`),
    );
    expect(protocolProblem({ ...hello, protocolVersion: 0 })).toBeUndefined();
    expect(protocolProblem({ ...hello, protocolVersion: 2 })).toBeUndefined();
    expect(protocolProblem({ ...hello, protocolVersion: 7 })).toMatch(
      /speaks stream protocol 7; this control plane speaks 2/,
    );
  });
});
