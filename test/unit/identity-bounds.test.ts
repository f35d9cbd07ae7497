import type { PeerCertificate } from 'node:tls';
import { Authorizer, CallInfo, labelRefusal } from '../../common/platform/auth';
import { FakeClock } from '../../testkit/fake-clock';
import { DEFAULT_CONTROLPLANE_CONFIG, parseConfig } from '../../common/config/config';
import { Hello } from '../../common/gen/proxymgr/v1/stream';
import { silentLogger } from '../../common/platform/log';
import { KeyedTokenBuckets } from '../../common/platform/token-bucket';
import { ensembleOf } from '../../common/config/zk-ensembles';
import { AgentRegistry } from '../../controlplane/grpc/registry';
import { helloProblem } from '../../controlplane/grpc/hello';
import { parseServiceConfig, ServiceConfigError } from '../../controlplane/service-config';
import { createWatcher } from '../../controlplane/watchers';
import { ZkDigest } from '../../controlplane/zk/digest';
import { ZkSessionManager } from '../../controlplane/zk/manager';
import { seededRandom } from '../../bench/lib-common';
import {
  foreignEnsembleConfig,
  HOSTILE_ALLOWED_ENSEMBLES,
  HOSTILE_LABEL_RULES,
  hostileLabels,
} from '../../bench/lib-hostile-identity';

const FILE = '/etc/proxymgr/proxymgr.yml';
const cfg = (text: string) => parseConfig(text, FILE);

describe('controlplane.watcher_ensembles', () => {
  test('parsed with their digest files; refused with the key named: chroot, bad host:port, a server in two places', () => {
    const c = cfg(`
service_config: {type: zookeeper, servers: "zk1:2181", path: /service_config}
controlplane:
  watcher_ensembles:
    - {servers: "zk-a:2181, ZK-B:2181", digest_file: zk-b.digest}
    - {servers: "zk-team:2182"}
`);
    expect(c.controlplane.watcherEnsembles).toEqual([
      { servers: 'zk-a:2181, ZK-B:2181', digestFile: '/etc/proxymgr/zk-b.digest' },
      { servers: 'zk-team:2182' },
    ]);
    expect(DEFAULT_CONTROLPLANE_CONFIG.watcherEnsembles).toEqual([]);
    const bad = (yaml: string) => () => cfg(yaml);
    expect(bad('controlplane: {watcher_ensembles: [{servers: "zk-a:2181/chroot"}]}')).toThrow(
      `${FILE}: controlplane.watcher_ensembles[0].servers: "zk-a:2181/chroot" has a chroot`,
    );
    expect(bad('controlplane: {watcher_ensembles: [{servers: "zk-a"}]}')).toThrow(
      `${FILE}: controlplane.watcher_ensembles[0].servers: "zk-a" is not host:port`,
    );
    expect(bad('controlplane: {watcher_ensembles: [{servers: "a:1"}, {servers: "b:2,A:1"}]}')).toThrow(
      `${FILE}: controlplane.watcher_ensembles[1].servers: a:1 is also in controlplane.watcher_ensembles[0]`,
    );
    expect(
      bad(`
service_config: {type: zookeeper, servers: "zk1:2181", path: /s}
controlplane: {watcher_ensembles: [{servers: "zk1:2181"}]}`),
    ).toThrow(`${FILE}: controlplane.watcher_ensembles[0].servers: zk1:2181 is in service_config.servers already`);
    expect(bad('controlplane: {watcher_ensembles: [{servers: "a:1", password: x}]}')).toThrow(
      'controlplane.watcher_ensembles[0].password: unknown key',
    );
  });

  test('a connect string belongs to one ensemble: every server in it, case and spaces aside', () => {
    const allowed = [{ servers: 'zk-a:2181,zk-b:2181' }, { servers: 'zk-c:2181' }];
    expect(ensembleOf(' ZK-B:2181 ,zk-a:2181/chroot', allowed)).toEqual({ ok: true, ensemble: allowed[0] });
    expect(ensembleOf('zk-a:2182', allowed)).toMatchObject({ ok: false, server: 'zk-a:2182' });
    expect(ensembleOf('zk-a:2181,zk-c:2181', allowed)).toMatchObject({
      ok: false,
      server: 'zk-c:2181',
      why: 'belongs to another ensemble (zk-a:2181,zk-b:2181) than the servers before it',
    });
  });

  test('the session manager gives a session only the credentials of its own ensemble', async () => {
    const main = new ZkDigest('proxymgr:main', '/main');
    const team = new ZkDigest('team:pw', '/team');
    const zk = new ZkSessionManager({
      sessionTimeoutMs: 4000,
      log: silentLogger,
      credentials: [
        { servers: 'zk1:2181,zk2:2181', digest: main },
        { servers: 'zk-team:2182', digest: team },
      ],
    });
    expect(zk.digestFor('zk2:2181')).toBe(main);
    expect(zk.digestFor('zk2:2181,zk1:2181/x')).toBe(main);
    expect(zk.digestFor('zk-team:2182')).toBe(team);
    expect(zk.digestFor('evil:2181')).toBeUndefined();
    expect(zk.digestFor('zk1:2181,evil:2181')).toBeUndefined();
    expect(zk.digestFor('zk1:2181,zk-team:2182')).toBeUndefined();
    await zk.closeAll();
  });

  test('bench class "foreign ensembles": every generated service config is valid and its watcher refused', async () => {
    const zk = new ZkSessionManager({ sessionTimeoutMs: 4000, log: silentLogger });
    const ctx = {
      zk,
      defaultZkServers: HOSTILE_ALLOWED_ENSEMBLES[0],
      zkEnsembles: HOSTILE_ALLOWED_ENSEMBLES.map((servers) => ({ servers })),
      controlplane: DEFAULT_CONTROLPLANE_CONFIG,
      log: silentLogger,
    };
    const rand = seededRandom(19);
    for (let i = 0; i < 2000; i++) {
      const text = foreignEnsembleConfig(rand);
      const config = parseServiceConfig({ name: `svc${i}`, text, origin: `input ${i}`, format: 'json' });
      let err: unknown;
      try {
        createWatcher(config, `input ${i}`, ctx);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ServiceConfigError);
      expect((err as Error).message).toMatch(
        new RegExp(`^input ${i}: service svc${i}: zookeeper watcher refused for server `),
      );
    }
    expect(zk.size).toBe(0); // no session was opened to any of them
    await zk.closeAll();
  });
});

describe('auth.clients labels', () => {
  const cert = (cn: string, san = ''): PeerCertificate =>
    ({ subject: { CN: cn }, subjectaltname: san }) as unknown as PeerCertificate;
  const streamCall = (opts: Partial<CallInfo>): CallInfo => ({
    method: '/proxymgr.v1.AgentStream/Stream',
    peer: '10.1.2.3:4000',
    authorization: [],
    ...opts,
  });

  test('fixed from the certificate, limited to a list, free with "*"; names not listed refused', () => {
    const c = cfg(`
auth:
  clients:
    - name: agents
      cert: {san_dns: "*.hosts.example.com"}
      roles: [agent]
      node_ids: ["{san_dns}"]
      labels: {host: "{san_dns}", role: [web, api], rack: "*"}
`);
    const a = new Authorizer(c.auth);
    const d = a.identify(streamCall({ certificate: cert('x', 'DNS:web1.hosts.example.com') }));
    if (!d.ok) throw new Error(d.details);
    expect(labelRefusal(d.identity, { host: 'web1.hosts.example.com', role: 'api', rack: 'r7' })).toBeUndefined();
    expect(labelRefusal(d.identity, {})).toBeUndefined(); // claiming less only selects less
    expect(labelRefusal(d.identity, { host: 'web2.hosts.example.com' })).toBe(
      'agents (cert CN=x DNS:web1.hosts.example.com) may not claim label host="web2.hosts.example.com": not a value auth.clients "agents" labels.host allows',
    );
    expect(labelRefusal(d.identity, { role: 'payments' })).toMatch(/may not claim label role="payments"/);
    expect(labelRefusal(d.identity, { team: 'x' })).toMatch(
      /label team="x": auth.clients "agents" labels lists host, role, rack$/,
    );
  });

  test('a certificate value is taken literally: a SAN of "*" does not become a wildcard', () => {
    const c = cfg(`
auth:
  clients:
    - {name: agents, cert: {cn: "*"}, roles: [agent], node_ids: ["*"], labels: {zone: "{cn}"}}
`);
    const d = new Authorizer(c.auth).identify(streamCall({ certificate: cert('*') }));
    if (!d.ok) throw new Error(d.details);
    expect(labelRefusal(d.identity, { zone: '*' })).toBeUndefined();
    expect(labelRefusal(d.identity, { zone: 'eu' })).toMatch(/may not claim label zone="eu"/);
  });

  test('config errors name the key: placeholders on a token entry, labels on a non-agent, a bad name, an empty list', () => {
    const entry = (rest: string) => () => cfg(`auth:\n  clients:\n    - {name: a, token_file: /t, ${rest}}\n`);
    expect(entry('roles: [agent], node_ids: ["x"], labels: {zone: "{cn}"}')).toThrow(
      `${FILE}: auth.clients[0].labels.zone: {cn}, {san_dns} and {san_uri} come from a client certificate`,
    );
    expect(entry('roles: [viewer], labels: {zone: eu}')).toThrow(
      `${FILE}: auth.clients[0]: labels and max_node_ids are for agent identities`,
    );
    expect(entry('roles: [agent], node_ids: ["x"], labels: {"bad key": eu}')).toThrow(
      `${FILE}: auth.clients[0].labels: "bad key" is not a label name`,
    );
    expect(entry('roles: [agent], node_ids: ["x"], labels: {zone: []}')).toThrow(
      `${FILE}: auth.clients[0].labels.zone: an empty list allows no value`,
    );
    expect(entry('roles: [agent], node_ids: ["x"], max_node_ids: 0')).toThrow(
      `${FILE}: auth.clients[0].max_node_ids: expected an integer 1..1000000`,
    );
  });

  test('bench class "labels": every generated label map is a well-formed hello and refused for the identity', () => {
    const rules = Object.entries(HOSTILE_LABEL_RULES)
      .map(([k, v]) => `${k}: [${v.map((p) => JSON.stringify(p)).join(', ')}]`)
      .join(', ');
    const c = cfg(`
auth:
  clients:
    - {name: web, token_file: /t/web, roles: [agent], node_ids: ["web-*"], labels: {${rules}}}
`);
    const a = new Authorizer(
      c.auth,
      () => 'web-token-0123456789abcdef',
      () => 0o600,
    );
    const d = a.identify(streamCall({ authorization: ['Bearer web-token-0123456789abcdef'] }));
    if (!d.ok) throw new Error(d.details);
    const rand = seededRandom(19);
    for (let i = 0; i < 2000; i++) {
      const labels = hostileLabels(rand);
      expect(helloProblem(Hello.fromPartial({ nodeId: 'web-1', labels }))).toBeUndefined();
      expect(labelRefusal(d.identity, labels)).toMatch(/^web \(token\) may not claim label /);
    }
  });
});

describe('per-identity bounds', () => {
  test('node ids: an identity at its bound forgets its own oldest disconnected record, never another identity’s', () => {
    let now = 0;
    const r = new AgentRegistry({}, { forgetAfterMs: 3_600_000, maxDisconnected: 50_000 }, () => now);
    const hello = (nodeId: string) => ({
      nodeId,
      labels: {},
      agentVersion: '',
      haproxyVersion: '',
      peer: '',
      runningVersion: '',
    });
    const other = r.connect(hello('o-1'), 'other');
    r.disconnect(other);
    const held = ['w-1', 'w-2'].map((id) => {
      expect(r.admit(id, 'wild', 2)).toBeUndefined();
      return r.connect(hello(id), 'wild');
    });
    expect(r.admit('w-3', 'wild', 2)).toBe(
      'identity wild holds 2 node ids with open streams, its max_node_ids (auth.clients); node id "w-3" refused',
    );
    expect(r.admit('w-1', 'wild', 2)).toBeUndefined(); // a node id it holds is always fine
    now = 10;
    r.disconnect(held[1]!);
    expect(r.admit('w-3', 'wild', 2)).toBeUndefined();
    r.connect(hello('w-3'), 'wild');
    expect(r.get('w-2')).toBeUndefined();
    expect(r.get('o-1')).toBeDefined();
    expect(r.heldBy('wild')).toBe(2);
    // Streams: twice the bound, then refused even for a node id it holds.
    for (let i = 0; i < 2; i++) r.connect(hello('w-1'), 'wild');
    expect(r.admit('w-1', 'wild', 2)).toMatch(/^identity wild has 4 open agent streams/);
  });

  test('new streams: each key has its own budget; the number of keys stays bounded', () => {
    const clock = new FakeClock(0);
    const b = new KeyedTokenBuckets(2, 2, clock, 100);
    expect([b.tryTake('a'), b.tryTake('a'), b.tryTake('a')]).toEqual([true, true, false]);
    expect(b.tryTake('b')).toBe(true);
    clock.advance(500);
    expect(b.tryTake('a')).toBe(true);
    for (let i = 0; i < 500; i++) b.tryTake(`k${i}`);
    expect(b.size).toBeLessThanOrEqual(100);
  });
});
