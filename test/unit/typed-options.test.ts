import { DEFAULT_SERVICE_OPTIONS, parseConfig, ServiceOptionsPolicy } from '../../common/config/config';
import { listenOptionProblem, serverOptionsProblems } from '../../common/haproxy/option-policy';
import { localFacts, parseTargetRule, targetProblem, TargetRule } from '../../common/haproxy/target-policy';
import { sanitizeState } from '../../common/haproxy/validate-state';
import { parseServiceConfig } from '../../controlplane/service-config';
import { server, service, state } from '../../testkit/agent';

const none = DEFAULT_SERVICE_OPTIONS;
const rules = (...texts: string[]): TargetRule[] => texts.map((t) => parseTargetRule(t) as TargetRule);
const local = { ownPorts: [7000, 9700], addresses: ['10.1.1.5', 'fe80::5'] };
const withLocal: ServiceOptionsPolicy = { ...none, local };

describe('typed listen arguments', () => {
  test.each([
    [
      'tcp-check connect addr /run/proxymgr/haproxy.sock',
      /^connect addr "\/run\/proxymgr\/haproxy.sock": a path \(a unix socket\)/,
    ],
    [
      'http-check connect addr unix@/run/x.sock port 80',
      /connect addr "unix@\/run\/x.sock": not an IP literal \(socket prefixes/,
    ],
    ['tcp-check connect addr abns@x', /socket prefixes/],
    ['tcp-check connect addr ipv4@127.0.0.1', /socket prefixes/],
    ['tcp-check connect addr db.example.com', /host names are refused/],
    ['tcp-check connect addr 0.0.0.0 port 80', /the unspecified address/],
    ['tcp-check connect addr ::1', /write an IPv6 address in brackets/],
    ['tcp-check connect port %[str(7000)]', /connect port "%\[str\(7000\)\]": expected a port number/],
    ['tcp-check connect addr 10.0.0.1 frobnicate', /connect option "frobnicate" is not one of default, send-proxy/],
    [
      'option transparent',
      /^"option transparent" is not allowed in a listen section: connects to the client's original destination/,
    ],
    ['transparent', /"transparent" is not allowed/],
    [
      'http-request set-dst hdr_ip(x-dst)',
      /^http-request set-dst: sends the connection to an address taken from the request/,
    ],
    ['tcp-request content set-dst-port int(22) if TRUE', /^tcp-request content set-dst-port:/],
    ['tcp-request connection set-dst ipv4(127.0.0.1)', /tcp-request connection set-dst/],
    [
      'http-request use-service prometheus-exporter',
      /^http-request use-service: hands the stream to a built-in service/,
    ],
    ['stats enable', /^"stats" is not allowed in a listen section: a stats page shows/],
    ['stats admin if TRUE', /^"stats admin" is not allowed/],
    ['use_backend other', /^use_backend "other": names another service's backend/],
    ['default_backend web', /^default_backend "web": names this service itself, which HAProxy refuses as a loop/],
    ['use_backend %[req.hdr(x)]', /a backend name built at run time/],
    [
      'http-request track-sc0 src table other',
      /^http-request track-sc0 ... table "other": names another stick table; a service may only use its own \("web"/,
    ],
    ['stick on src table other', /stick on ... table "other"/],
    [
      'http-request deny if { sc_http_req_rate(0,other) gt 1 }',
      /^sc_http_req_rate\(\) "other": names another stick table/,
    ],
    ['http-request deny if { src,table_conn_cnt(other) gt 1 }', /table_conn_cnt\(\) "other"/],
    ['http-request set-header X %[nbsrv(other)]', /nbsrv\("other"\): names another service's backend/],
    ['http-request set-var(proc.x) int(1)', /variables in the proc. scope are shared by every service/],
    ['http-check set-var(proc.x) int(1)', /proc. scope/],
    ['http-request unset-var(proc.x)', /proc. scope/],
    ['http-request deny if { var(proc.x) -m found }', /proc. scope/],
    ['http-request set-var-fmt(proc.x) %[src]', /proc. scope/],
    ['source 10.0.0.1 usesrc clientip', /transparent proxying .* is refused/],
    ['source 10.0.0.1:1000-2000', /source "10.0.0.1:1000-2000": expected <ip>\[:<port>\]/],
    ['source eth0.example.com', /host names are refused/],
    ['log logs.example.com:514 local0', /^log target "logs.example.com:514": not an IP literal/],
    ['log 0.0.0.0 local0', /unspecified/],
  ])('refused: %s', (line, message) => {
    expect(listenOptionProblem(line, none, 'web')).toMatch(message);
  });

  test.each([
    'tcp-check connect',
    'tcp-check connect port 8080 addr 10.0.0.1 send-proxy ssl sni a.example alpn h2 linger comment x',
    'http-check connect addr [2001:db8::1] port 443 ssl',
    'http-request track-sc2 src table web',
    'http-request track-sc0 src',
    'http-request deny if { sc0_conn_cnt(web) gt 5 } { sc_get_gpc(0,1) gt 2 }',
    'http-request set-var(txn.x) var(sess.y)',
    'log 10.0.0.9:514 local0',
    'log ipv4@10.0.0.9 local0',
    'source 10.0.0.1:2000',
  ])('allowed: %s', (line) => {
    expect(listenOptionProblem(line, none, 'web')).toBeUndefined();
  });
});

describe('typed server arguments', () => {
  test.each([
    [['check addr unix@/run/proxymgr/haproxy.sock'], /^addr "unix@\/run\/proxymgr\/haproxy.sock": not an IP literal/],
    [['check addr /run/x.sock'], /a path/],
    [['addr 10.0.0.1:80'], /addr "10.0.0.1:80": not an IP literal/],
    [['agent-addr agent.example.com agent-port 5555'], /agent-addr "agent.example.com": not an IP literal/],
    [['socks4 10.0.0.1'], /socks4 "10.0.0.1": expected <ip>:<port>/],
    [['socks4 proxy.example.com:1080'], /socks4 "proxy.example.com:1080": not an IP literal/],
    [['source 10.0.0.1 usesrc clientip'], /transparent proxying/],
    [
      ['init-addr last,libc,db.example.com'],
      /init-addr "db.example.com": .*\(init-addr takes last, libc, none or an IP literal/,
    ],
    [['check port http'], /^port "http": expected a port number 1-65535/],
    [['agent-port 70000'], /agent-port "70000"/],
    [['sni var(proc.x)'], /proc. scope/],
  ])('refused: %j', (options, message) => {
    const [problem] = serverOptionsProblems(options, none, 'web');
    expect(problem?.message).toMatch(message);
  });
});

describe('the target policy', () => {
  const judge = (host: string, port: number, allow: string[] = [], deny: string[] = []) =>
    targetProblem(host, port, { allow: rules(...allow), deny: rules(...deny) }, local);

  test('refused by default: own ports on loopback and the host addresses, link-local, unspecified', () => {
    expect(judge('127.0.0.1', 7000)).toMatch(
      /^127.0.0.1:7000 is a ProxyMgr port .* on loopback; allow it with service_options.targets.allow$/,
    );
    expect(judge('127.9.9.9', 9700)).toMatch(/on loopback/);
    expect(judge('::1', 7000)).toMatch(/^\[::1\]:7000 is a ProxyMgr port/);
    expect(judge('::ffff:127.0.0.1', 7000)).toMatch(/on loopback/);
    expect(judge('localhost', 7000)).toMatch(/on loopback/);
    expect(judge('10.1.1.5', 7000)).toMatch(/on this host's own address/);
    expect(judge('169.254.169.254', 80)).toMatch(/is link-local \(169.254.0.0\/16, fe80::\/10/);
    expect(judge('fe80::9', 443)).toMatch(/link-local/);
    expect(judge('0.0.0.0', 8080)).toMatch(/unspecified address/);
    expect(judge('::', 8080, ['::/0'])).toMatch(/unspecified address/);
  });

  test('loopback backends on other ports stay allowed; allow widens, deny narrows and wins', () => {
    expect(judge('127.0.0.1', 8080)).toBeUndefined();
    expect(judge('10.1.1.6', 7000)).toBeUndefined();
    expect(judge('127.0.0.1', 7000, ['127.0.0.1/32:7000'])).toBeUndefined();
    expect(judge('169.254.10.1', 80, ['169.254.10.0/24'])).toBeUndefined();
    expect(judge('169.254.169.254', 80, ['169.254.10.0/24'])).toMatch(/link-local/);
    expect(judge('10.0.0.1', 22, [], ['10.0.0.0/8:22'])).toMatch(
      /refused by service_options.targets.deny \("10.0.0.0\/8:22"\)/,
    );
    expect(judge('10.0.0.1', 23, [], ['10.0.0.0/8:22'])).toBeUndefined();
    expect(judge('10.0.0.1', 22, ['10.0.0.1/32'], ['10.0.0.0/8:1-1024'])).toMatch(/targets.deny/);
    expect(judge('fe80::1', 80, ['[fe80::/10]:80'])).toBeUndefined();
  });

  test('facts: own ports from the listen addresses, host addresses from the interfaces', () => {
    expect(
      localFacts(['0.0.0.0:7000', '', '[::]:9090', 'cp.example.com:7000'], {
        lo: [{ address: '127.0.0.1' }],
        eth0: [{ address: '10.1.1.5' }, { address: 'fe80::5%eth0' }],
      }),
    ).toEqual({ ownPorts: [7000, 9090], addresses: ['127.0.0.1', '10.1.1.5', 'fe80::5'] });
  });

  test('proxymgr.yml: targets, bind_ports, bind_loopback; bad entries named', () => {
    const c = parseConfig(
      'controlplane: {listen: "0.0.0.0:7100"}\nservice_options:\n  targets: {allow: ["127.0.0.1/32:7100"], deny: ["10.0.0.0/8:22"]}\n  bind_ports: "80,443,1024-65535"\n  bind_loopback: true\n',
      'p.yml',
    ).serviceOptions;
    expect(c.targets.allow.map((r) => r.text)).toEqual(['127.0.0.1/32:7100']);
    expect(c.bindPorts).toEqual([
      [80, 80],
      [443, 443],
      [1024, 65535],
    ]);
    expect(c.bindLoopback).toBe(true);
    expect(c.local.ownPorts).toContain(7100);
    expect(() => parseConfig('service_options: {targets: {deny: ["evil.example.com"]}}\n', 'p.yml')).toThrow(
      /p.yml: service_options.targets.deny\[0\]: "evil.example.com" is not an IP address/,
    );
    expect(() => parseConfig('service_options: {bind_ports: "0-80"}\n', 'p.yml')).toThrow(/service_options.bind_ports/);
  });
});

describe('where the policy applies', () => {
  const parse = (doc: object, policy = none) =>
    parseServiceConfig(
      { name: 'web', text: JSON.stringify(doc), origin: 'zookeeper /service_config/web', format: 'json' },
      policy,
    );

  test('a port below 1024 and a loopback bind are refused unless the operator allows them', () => {
    expect(() => parse({ type: 'static', port: 80, hosts: [] })).toThrow(
      /^zookeeper \/service_config\/web: port 80 is outside service_options.bind_ports \(1024-65535\)/,
    );
    expect(parse({ type: 'static', port: 80, hosts: [] }, { ...none, bindPorts: [[80, 80]] }).port).toBe(80);
    expect(() => parse({ type: 'static', port: 8080, bind_address: '127.0.0.1', hosts: [] })).toThrow(
      /bind_address 127.0.0.1 is a loopback address: .*service_options.bind_loopback: true/,
    );
    expect(() => parse({ type: 'static', port: 8080, bind_address: '::1', hosts: [] })).toThrow(/loopback/);
    expect(
      parse({ type: 'static', port: 8080, bind_address: '::1', hosts: [] }, { ...none, bindLoopback: true })
        .bindAddress,
    ).toBe('::1');
  });

  test('parseServiceConfig names the option and the reason', () => {
    expect(() =>
      parse({ type: 'static', port: 8080, listen_options: ['mode http', 'use_backend other'], hosts: [] }),
    ).toThrow(/listen_options\[1\]: use_backend "other": names another service's backend/);
  });

  test('sanitizeState: a host at a ProxyMgr port is left out, the rest served; an error on that host', () => {
    const web = service('web', 8080, [
      server('good', 8081),
      server('cp', 7000),
      server('meta', 80, { address: '169.254.169.254' }),
    ]);
    const { state: out, problems } = sanitizeState(state([web]), undefined, withLocal);
    expect(out.services[0]!.servers.map((s) => s.name)).toEqual(['good']);
    expect(problems.map((p) => `${p.where}: ${p.message}`)).toEqual([
      'service "web" server "cp": server address: 127.0.0.1:7000 is a ProxyMgr port (control plane or agent: listen, admin, metrics) on loopback; allow it with service_options.targets.allow; this server is left out, the rest of the service is served',
      'service "web" server "meta": server address: 169.254.169.254:80 is link-local (169.254.0.0/16, fe80::/10: cloud metadata and host-local services); allow it with service_options.targets.allow; this server is left out, the rest of the service is served',
    ]);
  });

  test('check targets: a host option or a listen connect rule combined with the server line', () => {
    const hostCheck = service('web', 8080, [server('a', 8081, { options: ['check port 7000'] }), server('b', 8082)]);
    const r1 = sanitizeState(state([hostCheck]), undefined, withLocal);
    expect(r1.state.services[0]!.servers.map((s) => s.name)).toEqual(['b']);
    expect(r1.problems[0]!.message).toMatch(/^health check \(addr\/port\): 127.0.0.1:7000 is a ProxyMgr port/);

    const connect = service('web', 8080, [server('a', 8081)], {
      listenOptions: ['mode tcp', 'option tcp-check', 'tcp-check connect port 9700'],
    });
    const r2 = sanitizeState(state([connect]), undefined, withLocal);
    expect(r2.problems[0]!.message).toMatch(/^tcp-check\/http-check connect: 127.0.0.1:9700 is a ProxyMgr port/);

    // addr and port both from the service config: the service itself is refused
    const svcLevel = service('web', 8080, [server('a', 8081, { address: '10.0.0.1' })], {
      serverOptions: ['check addr 127.0.0.1 port 7000'],
    });
    const r3 = sanitizeState(state([svcLevel]), undefined, withLocal);
    expect(r3.state.services).toEqual([]);
    expect(r3.problems.map((p) => `${p.where}: ${p.message}`)).toEqual([
      'service "web": health check (addr/port): 127.0.0.1:7000 is a ProxyMgr port (control plane or agent: listen, admin, metrics) on loopback; allow it with service_options.targets.allow',
    ]);
  });
});
