import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseConfig } from '../../../common/config/config';
import { parseHostNode, parseHostPort } from '../../../controlplane/host';
import { parseServiceConfig } from '../../../controlplane/service-config';
import { parseHostsFile } from '../../../controlplane/watchers/file';

const raw = (text: string, name = 'testservice') => ({
  name,
  text,
  origin: `zookeeper /service_config/${name}`,
  format: 'json' as const,
});

describe('service config', () => {
  test("the original ProxyMgr README's config parses", () => {
    const c = parseServiceConfig(
      raw(
        '{"type":"zookeeper","server":"localhost:2181","path":"/services/testservice","port":8080,"listen_options":["mode http"],"server_options":["check inter 2000"]}',
      ),
    );
    expect(c).toEqual({
      name: 'testservice',
      port: 8080,
      bindAddress: '0.0.0.0',
      listenOptions: ['mode http'],
      serverOptions: ['check inter 2000'],
      watcher: { type: 'zookeeper', server: 'localhost:2181', path: '/services/testservice' },
    });
  });

  test.each([
    ['{"type":"zookeeper",', /not valid JSON/],
    ['{"type":"zookeeper","path":"/s","port":"8080"}', /port: expected an integer 1-65535, got string "8080"/],
    [
      '{"type":"consul","path":"/s","port":80}',
      /type: unknown watcher type "consul"; expected one of "zookeeper", "dns", "file", "static"/,
    ],
    ['{"type":"zookeeper","path":"/s","port":70000}', /port: expected an integer 1-65535, got number 70000/],
    [
      '{"type":"zookeeper","path":"/s","port":80,"listen_options":"mode http"}',
      /listen_options: expected a list of strings/,
    ],
    [
      '{"type":"zookeeper","path":"/s","port":80,"listen_options":["a\\nb"]}',
      /listen_options\[0\]: contains a newline/,
    ],
    ['{"type":"zookeeper","path":"s","port":80}', /path: must start with "\/"/],
    ['{"type":"zookeeper","path":"/services/../x","port":80}', /path: has a "." or ".." segment/], // threw inside node-zookeeper-client
    ['{"type":"zookeeper","path":"/services/web/","port":80}', /path: has an empty segment/],
    ['{"type":"dns","port":80,"backends":[{"name":"db","port":0}]}', /backends\[0\]\.port/],
    ['{"type":"static","port":80,"hosts":["nope"]}', /hosts\[0\]: expected host:port/],
    ['{"type":"file","port":80,"file":"relative.txt"}', /file: expected an absolute path/],
    [
      '{"type":"zookeeper","path":"/s","port":80,"bind_address":"localhost"}',
      /bind_address: expected an IPv4 or IPv6 literal/,
    ],
    ['[1,2]', /expected a JSON object, got a list/],
  ])('%s is rejected with a clear message', (text, message) => {
    expect(() => parseServiceConfig(raw(text))).toThrow(message);
    try {
      parseServiceConfig(raw(text));
    } catch (err) {
      expect((err as { code: string }).code).toBe('SERVICE_CONFIG_INVALID');
      expect((err as Error).message).toMatch(/^zookeeper \/service_config\/testservice: /);
    }
  });

  test('a 1 MB config is refused before parsing', () => {
    const big = JSON.stringify({ type: 'static', port: 80, hosts: [], pad: 'x'.repeat(1_000_000) });
    expect(() => parseServiceConfig(raw(big))).toThrow(/larger than the limit of 65536 bytes/);
  });

  test('an invalid section name is refused', () => {
    expect(() => parseServiceConfig(raw('{"type":"static","port":80,"hosts":[]}', 'bad name'))).toThrow(
      /not a valid HAProxy section name/,
    );
  });

  test('dns with A and SRV backends, YAML format', () => {
    const c = parseServiceConfig({
      name: 'db',
      origin: '/etc/x/db.yml',
      format: 'yaml',
      text: 'type: dns\nport: 5432\nbackends:\n  - {name: db.example.com, port: 5432}\n  - {srv: _pg._tcp.example.com}\n',
    });
    expect(c.watcher).toEqual({
      type: 'dns',
      backends: [
        { kind: 'a', name: 'db.example.com', port: 5432 },
        { kind: 'srv', name: '_pg._tcp.example.com' },
      ],
    });
  });
});

describe('host nodes', () => {
  test('ProxyMgr form: named after the child node', () => {
    expect(parseHostNode('host-1', Buffer.from('{"address":"1.2.3.4","port":8080}'))).toEqual({
      name: 'host-1',
      address: '1.2.3.4',
      port: 8080,
      weight: 1,
      options: [],
    });
  });

  test('Nerve form: host, name, weight, haproxy_server_options, labels', () => {
    const h = parseHostNode(
      'i-1_web_0000000001',
      Buffer.from(
        '{"host":"10.0.0.7","port":"3000","name":"i-1","weight":5,"haproxy_server_options":"backup","labels":{"az":"a"}}',
      ),
    );
    expect(h).toEqual({
      name: 'i-1',
      address: '10.0.0.7',
      port: 3000,
      weight: 5,
      options: ['backup'],
      labels: { az: 'a' },
    });
  });

  test('child names are sanitized into valid server names', () => {
    expect(parseHostNode('a b/c', Buffer.from('{"address":"1.2.3.4","port":1}')).name).toBe('a_b_c');
  });

  test.each([
    ['', /empty node/],
    ['{bad', /not valid JSON/],
    ['{"address":"1.2.3.4"}', /port: expected an integer/],
    ['{"address":"1.2.3.4","port":99999}', /outside 1-65535/],
    ['{"address":"bad address!","port":80}', /neither an IP literal nor a hostname/],
    ['{"address":"1.2.3.4","port":80,"weight":1000}', /weight 1000 is outside 0-256/],
  ])('%s is malformed', (text, message) => {
    expect(() => parseHostNode('n', Buffer.from(text))).toThrow(message);
  });

  test('host:port lines and hosts files', () => {
    expect(parseHostPort('[::1]:80 weight=3')).toEqual({
      name: '::1_80',
      address: '::1',
      port: 80,
      weight: 3,
      options: [],
    });
    const r = parseHostsFile('# web\n10.0.0.1:80\n\nnope\n10.0.0.2:81 # second\n', '/etc/hosts.txt');
    expect(r.hosts.map((h) => h.name)).toEqual(['10.0.0.1_80', '10.0.0.2_81']);
    expect(r.problems).toEqual([{ where: '/etc/hosts.txt:4', message: expect.stringContaining('expected host:port') }]);
  });
});

describe('proxymgr.yml', () => {
  test('the original ProxyMgr example loads unchanged, with control-plane defaults', () => {
    const c = parseConfig(
      '---\nhaproxy:\n  config_path: /etc/haproxy/haproxy.cfg\n  socket_path: /var/run/haproxy/stats.sock\nservice_config:\n  type: zookeeper\n  servers: localhost:2181\n  path: /service_config\n',
      '/etc/proxymgr.yml',
    );
    expect(c.serviceConfig).toEqual({ type: 'zookeeper', servers: 'localhost:2181', path: '/service_config' });
    expect(c.controlplane).toMatchObject({
      coalesceMs: 2,
      coalesceMaxMs: 100,
      maxRemovalShare: 0.5,
      dnsNameservers: [],
    });
  });

  test('controlplane keys are validated with file and key in the message', () => {
    expect(() => parseConfig('controlplane:\n  max_removal_share: 2\n', '/x.yml')).toThrow(
      '/x.yml: controlplane.max_removal_share: expected a number in (0, 1]',
    );
    expect(() => parseConfig('controlplane:\n  dns:\n    nameservers: [dns.example]\n', '/x.yml')).toThrow(
      /controlplane.dns.nameservers\[0\]: "dns.example" is not an IP/,
    );
    const c = parseConfig(
      'controlplane:\n  coalesce_ms: 2\n  dns: {nameservers: ["127.0.0.1:5353"], min_ttl_ms: 100}\n',
      '/x.yml',
    );
    expect(c.controlplane).toMatchObject({ coalesceMs: 2, dnsNameservers: ['127.0.0.1:5353'], dnsMinTtlMs: 100 });
  });
});

test('the example service configs in deploy/examples parse', () => {
  const dir = path.join(__dirname, '../../../deploy/examples/service_config');
  const files = readdirSync(dir).sort();
  expect(files.length).toBeGreaterThanOrEqual(3);
  for (const f of files) {
    const [name, ext] = f.split('.');
    const c = parseServiceConfig(
      {
        name: name!,
        text: readFileSync(`${dir}/${f}`, 'utf8'),
        origin: f,
        format: ext === 'json' ? 'json' : 'yaml',
      },
      // db.json listens on loopback, which deploy/examples/controlplane.yml allows
      parseConfig(readFileSync(path.join(dir, '..', 'controlplane.yml'), 'utf8'), 'controlplane.yml').serviceOptions,
    );
    expect(c.name).toBe(name);
  }
});
