import { attributeAlerts } from '../../agent/haproxy/config-check';
import { renderServerLine } from '../../agent/haproxy/render';
import { DEFAULT_SERVICE_OPTIONS, ServiceOptionsPolicy } from '../../common/config/config';
import { listenOptionProblem } from '../../common/haproxy/option-policy';
import { hostAddressProblem, targetProblem } from '../../common/haproxy/target-policy';
import { sanitizeState } from '../../common/haproxy/validate-state';
import { parseHostNode } from '../../controlplane/host';
import { parseServiceConfig } from '../../controlplane/service-config';
import { server, service, state } from '../../testkit/agent';

// Inputs an attacker's review of the trust boundaries found getting through; each is refused now.

const local = { ownPorts: [7000], addresses: ['10.1.1.5'], names: ['web-7.dc1.example'] };
const policy: ServiceOptionsPolicy = { ...DEFAULT_SERVICE_OPTIONS, local };

describe('host entries: numeric IPv4 spellings and zones are not host names', () => {
  // What glibc's inet_aton reads without any DNS: 127.1 = 127.0.0.1, 169.254.43518 = 169.254.169.254, 0 = 0.0.0.0.
  test.each(['127.1', '2130706433', '0x7f000001', '017700000001', '169.254.43518', '2852039166', '0', '127.1.'])(
    '%s is refused as a numeric IPv4 spelling',
    (address) => {
      expect(hostAddressProblem(address)).toMatch(/numeric IPv4 spelling/);
      const r = sanitizeState(
        state([service('web', 20000, [server('a', 7000, { address }), server('b', 8080)])]),
        undefined,
        policy,
      );
      expect(r.state.services[0]!.servers.map((s) => s.name)).toEqual(['b']);
      expect(r.problems.map((p) => `${p.where}: ${p.message}`).join('\n')).toMatch(
        new RegExp(`server "a".*address ${JSON.stringify(address).replace(/[.]/g, '\\.')} is a numeric IPv4 spelling`),
      );
    },
  );

  test.each(['fe80::1%eth0', '::ffff:127.0.0.1%lo', '2001:db8::1%eth0'])('%s: a zone index is refused', (address) => {
    expect(hostAddressProblem(address)).toMatch(/zone index/);
    expect(() => parseHostNode('h1', Buffer.from(JSON.stringify({ host: address, port: 80 })))).toThrow(/zone index/);
  });

  test.each(['db.example.com', 'zk-1.internal', '10.0.0.1', '::1', 'a1.b2', 'x.0a'])('%s is still fine', (address) => {
    expect(hostAddressProblem(address)).toBeUndefined();
  });

  test('localhost kin and this host’s own names count as loopback for ProxyMgr’s ports', () => {
    for (const host of [
      'localhost.localdomain',
      'ip6-localhost',
      'ip6-loopback',
      'web-7',
      'web-7.dc1.example',
      'WEB-7.',
    ])
      expect([host, targetProblem(host, 7000, policy.targets, local)]).toEqual([
        host,
        expect.stringMatching(/loopback/),
      ]);
    expect(targetProblem('web-8', 7000, policy.targets, local)).toBeUndefined();
  });
});

describe('proc. variables through quotes', () => {
  test.each([
    "http-request set-var(txn.a) str(6.6.6.6),set-var(''proc.allowed_ip)",
    "http-request return status 200 hdr X-Q %[var(''proc.secret)]",
    'http-request set-header X %[var("proc.secret")]',
    "http-request set-var(' proc.x') str(1)",
  ])('%s is refused', (line) => {
    expect(listenOptionProblem(line, policy, 'web')).toMatch(/proc\. scope are shared by every service/);
  });
});

describe('log targets go through the target policy', () => {
  test.each([
    ['log 169.254.169.254:514 local0', /log target: 169\.254\.169\.254:514 is link-local/],
    ['log 127.0.0.1:7000 local0', /log target: 127\.0\.0\.1:7000 is a ProxyMgr port/],
  ])('%s', (line, want) => {
    const r = sanitizeState(
      state([service('web', 20000, [server('a', 8080)], { listenOptions: ['mode http', line] })]),
      undefined,
      policy,
    );
    expect(r.state.services).toEqual([]);
    expect(r.problems.map((p) => p.message).join('\n')).toMatch(want);
  });

  test('a log target elsewhere is fine', () => {
    const r = sanitizeState(
      state([service('web', 20000, [server('a', 8080)], { listenOptions: ['mode http', 'log 10.0.0.9:514 local0'] })]),
      undefined,
      policy,
    );
    expect(r.state.services).toHaveLength(1);
  });
});

describe('a host name that does not resolve cannot hold back every service', () => {
  test('rendered with init-addr last,libc,none (starts disabled), unless the options set init-addr', () => {
    const web = service('web', 20000, []);
    expect(renderServerLine(web, server('a', 80, { address: 'db.example.com' }))).toBe(
      'server a db.example.com:80 weight 1 init-addr last,libc,none',
    );
    expect(renderServerLine(web, server('a', 80, { address: 'db.example.com', options: ['init-addr none'] }))).toBe(
      'server a db.example.com:80 weight 1 init-addr none',
    );
    expect(renderServerLine(web, server('a', 80))).toBe('server a 127.0.0.1:80 weight 1');
  });

  test('"Failed to initialize server(s) addr." is a summary: the alert naming the server decides', () => {
    const config = ['global', '', 'listen web', '    bind fd@4', '    server evil nope.invalid:80', ''].join('\n');
    const out = [
      "[ALERT]    (1) : config : [haproxy.cfg:5] : 'server web/evil' : could not resolve address 'nope.invalid'.",
      '[ALERT]    (1) : config : Failed to initialize server(s) addr.',
    ].join('\n');
    const a = attributeAlerts(out, config);
    expect([...a.byService.keys()]).toEqual(['web']);
    expect(a.unattributed).toEqual([]);
  });
});

describe('a dns watcher’s nameservers go through the target policy (the control plane queries them)', () => {
  const parse = (nameservers: string[]) =>
    parseServiceConfig(
      {
        name: 'db',
        origin: '/service_config/db',
        format: 'json',
        text: JSON.stringify({
          type: 'dns',
          port: 20001,
          backends: [{ name: 'db.example.com', port: 5432 }],
          nameservers,
        }),
      },
      policy,
    );
  test.each([
    [['169.254.169.254:53'], /nameservers\[0\]: 169\.254\.169\.254:53 is link-local/],
    [['10.0.0.2', '127.0.0.1:7000'], /nameservers\[1\]: 127\.0\.0\.1:7000 is a ProxyMgr port/],
    [['evil.example'], /nameservers\[0\]: expected "ip\[:port\]"/],
    [['0.0.0.0'], /unspecified address/],
  ])('%j is refused', (ns, want) => {
    expect(() => parse(ns)).toThrow(want);
  });
  test('resolvers elsewhere, loopback ones included, are fine', () => {
    expect(parse(['10.0.0.2', '127.0.0.1:5353', '[::1]:53']).watcher).toMatchObject({ type: 'dns' });
  });
});
