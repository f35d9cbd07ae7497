/**
 * The hostile-input generator of `npm run bench -- hostile`: a seeded (repeatable) stream of malformed and
 * malicious inputs for every entry point of ProxyMgr. Each attack line that must never reach haproxy.cfg is
 * built from ATTACK_LINES (or carries one of FORBIDDEN_MARKERS), so the runner can scan the rendered configs.
 */
import { pickIndex } from './lib-common';

/** Ports that attacks try to open (stats sockets, binds); none of them may listen afterwards. */
export interface AttackPorts {
  readonly ports: readonly number[];
}

/** Listen-option lines that would take HAProxy over if rendered. */
export function attackLines(port: number): string[] {
  return [
    'global',
    'defaults',
    'frontend evil',
    'backend evil',
    'listen evil',
    'peers evil',
    'resolvers evil',
    'userlist evil',
    'program evil',
    'cache evil',
    'ring evil',
    'http-errors evil',
    'mailers evil',
    `stats socket ipv4@127.0.0.1:${port} level admin`,
    `bind 127.0.0.1:${port}`,
    `bind :${port}`,
    `  bind 127.0.0.1:${port}`,
    `server evil 127.0.0.1:${port}`,
    'default-server check',
    `server-template evil 1-3 127.0.0.1:${port}`,
    'external-check command /bin/touch',
    'external-check path /bin',
    'option external-check',
    'insecure-fork-wanted',
    'errorfile 503 /etc/shadow',
    'errorfile 503 /etc/passwd',
    'http-request return status 200 file /etc/shadow',
    'http-request return status 200 lf-file /proc/self/environ',
    'http-error status 503 file /etc/shadow',
    'http-request lua.evil',
    'lua-load /tmp/evil.lua',
    'stats admin if TRUE',
    'glоbal', // Cyrillic o
    'GLOBAL',
    // Escapes HAProxy decodes: \x00 ends a word for HAProxy (C strings), quotes and backslashes join words.
    'http-request return status 200 content-type text/plain file\\x00 /etc/shadow',
    'acl evil src -f\\x00 /etc/shadow',
    '"listen\\x00" evil',
    'stats "admin" if TRUE',
    "option 'external-check'",
    'stats\\ socket ipv4@127.0.0.1:1 level admin',
  ];
}

/** Server-option strings that must never be rendered. */
export function attackServerOptions(port: number): string[] {
  return [
    'check\nglobal',
    `check\nstats socket ipv4@127.0.0.1:${port} level admin`,
    'ca-file /etc/shadow',
    'crt /etc/shadow',
    'crl-file /etc/shadow',
    'check inter 1000 global',
    `track evil/x`,
    'check; listen evil',
    'x'.repeat(5000),
  ];
}

/** Substrings that must not appear in any rendered haproxy.cfg. */
export const FORBIDDEN_MARKERS = [
  'evil',
  'external-check',
  'insecure-fork-wanted',
  '/etc/shadow',
  '/etc/passwd',
  '/proc/self',
  'lua',
  'server-template',
  'default-server',
  'stats admin',
  'glоbal',
  'GLOBAL',
  'xxxxxxxxxx',
];

const BENIGN_LISTEN = [
  'mode http',
  'mode tcp',
  'balance roundrobin',
  'balance leastconn',
  'option httplog',
  'timeout server 30s',
  'option httpchk GET /health',
  'http-request set-header X-Pm 1',
  'retries 3',
  'option redispatch',
];
const BENIGN_SERVER = ['check', 'check inter 2000', 'check inter 2000 rise 2 fall 3', 'maxconn 100', 'slowstart 10s'];

export type Pick = <T>(items: readonly T[]) => T;

export function picker(rand: () => number): Pick {
  return <T>(items: readonly T[]) => items[pickIndex(rand, items.length)]!;
}

/** Odd service names (ZooKeeper node names, file names): some ZooKeeper refuses itself, some the parser. */
export function oddName(rand: () => number, i: number): string {
  const pick = picker(rand);
  return pick([
    `ok-${i}`,
    `ok.${i}`,
    `x y${i}`,
    `x;global${i}`,
    `ünï${i}`,
    `${'a'.repeat(300)}${i}`,
    `x\tglobal${i}`,
    `listen${i}`,
    `-${i}`,
    `x#${i}`,
    `x%0a${i}`,
    `ok-${i}`,
  ]);
}

/** One service config document as text: valid JSON with hostile fields, or broken text. */
export function serviceConfigText(
  rand: () => number,
  i: number,
  ports: { free: () => number; honest: number; attack: number },
): string {
  const pick = picker(rand);
  const attack = attackLines(ports.attack);
  const base = (): Record<string, unknown> => ({
    type: 'static',
    port: ports.free(),
    listen_options: [pick(BENIGN_LISTEN)],
    server_options: [pick(BENIGN_SERVER)],
    hosts: [`127.0.0.1:${ports.free()}`],
  });
  const variant = pickIndex(rand, 24);
  const o = base();
  switch (variant) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4:
      o.listen_options = [pick(BENIGN_LISTEN), pick(attack), pick(BENIGN_LISTEN)];
      break;
    case 5:
      o.listen_options = ['global', `stats socket ipv4@127.0.0.1:${ports.attack} level admin`, 'listen x'];
      break;
    case 6:
      o.server_options = [pick(attackServerOptions(ports.attack))];
      break;
    case 7:
      o.listen_options = [`mode http\n${pick(attack)}`];
      break;
    case 8:
      o.port = pick([0, -1, 65536, 1e9, '80', null, 3.5, ports.honest]);
      break;
    case 9:
      o.type = pick(['zookeeper', 'dns', 'file', 'static', 'evil', '', 42, null]);
      break;
    case 10:
      o.type = 'file';
      o.file = pick([
        '/etc/shadow',
        '/etc/passwd',
        '/dev/zero',
        '/proc/self/environ',
        '../../etc/shadow',
        'relative',
        '/root/.ssh/id_rsa',
        '/',
      ]);
      break;
    case 11:
      o.type = 'dns';
      o.backends = pick([
        [{ name: 'a'.repeat(300), port: 80 }],
        [{ srv: '_x._tcp.evil\nglobal' }],
        [],
        'x',
        [{ name: 'ok.example', port: 0 }],
      ]);
      break;
    case 12:
      o.type = 'zookeeper';
      o.path = pick(['/services/../x', '', 'rel', '/a//b', '/' + 'p'.repeat(2000), '/services/web/']);
      break;
    case 13:
      o.hosts = pick([
        [`127.0.0.1:${ports.attack} check\nglobal`],
        ['evil host:80'],
        [{ address: '1.2.3.4\nglobal', port: 80 }],
        [{ host: '127.0.0.1', port: 80, haproxy_server_options: 'check\nglobal' }],
        'x',
        [null],
      ]);
      break;
    case 14:
      o.listen_options = Array.from({ length: 5000 }, () => pick(BENIGN_LISTEN));
      break;
    case 15:
      o.listen_options = [pick([42, null, { a: 1 }, ['global'], true])];
      break;
    case 16:
      o.bind_address = pick(['0.0.0.0 global', '127.0.0.1:80', 'localhost', '', '::1', '1.2.3.4']);
      break;
    case 17:
      o.agents = pick([{ 'bad key': 'x' }, { zone: { a: 1 } }, 'x', []]);
      break;
    case 18:
      return pick([
        '{',
        '',
        'null',
        '[]',
        '"x"',
        '{"type":',
        '\u0000\u0001',
        '\ufeff{"type":"static"}',
        'type: static\nport: 80\n',
        '{"__proto__":{"polluted":1},"type":"static","port":1}',
      ]);
    case 19:
      return '['.repeat(20_000) + ']'.repeat(20_000);
    case 20:
      return JSON.stringify({ ...o, listen_options: ['x'.repeat(70_000)] }); // over the size limit
    case 21:
      Object.defineProperty(o, 'constructor', { value: { prototype: { polluted: 1 } }, enumerable: true });
      o['__proto__'] = { listen_options: ['global'] };
      break;
    case 22:
      o.listen_options = [pick(BENIGN_LISTEN)]; // an honest-looking service, accepted
      break;
    default:
      o.listen_options = [`${pick(BENIGN_LISTEN)} ${pick(['#', ';', '\\', '"', "'"])} ${pick(attack)}`];
  }
  return JSON.stringify(o);
}

/** One host node under a watched ZooKeeper path, in the original or the Nerve form, often hostile. */
export function hostNodeText(rand: () => number, ports: { free: () => number; attack: number }): string {
  const pick = picker(rand);
  const v = pickIndex(rand, 14);
  const port = ports.free();
  switch (v) {
    case 0:
      return JSON.stringify({ address: '127.0.0.1', port });
    case 1:
      return JSON.stringify({
        host: '127.0.0.1',
        port,
        name: `n${port}`,
        weight: pick([0, 1, 10, 256]),
        labels: { zone: 'a' },
      });
    case 2:
      return JSON.stringify({
        address: pick(['1.2.3.4\nglobal', 'evil host', '', 'a'.repeat(300), '127.0.0.1 check', '::1]:80', '999.1.1.1']),
        port,
      });
    case 3:
      return JSON.stringify({ address: '127.0.0.1', port: pick([0, -1, 65536, '80', null, 1.5, 1e20]) });
    case 4:
      return JSON.stringify({
        host: '127.0.0.1',
        port,
        haproxy_server_options: pick(attackServerOptions(ports.attack)),
      });
    case 5:
      return JSON.stringify({
        host: '127.0.0.1',
        port,
        name: pick(['s\nglobal', 'x y', '', 'a'.repeat(500), 'evil;listen']),
      });
    case 6:
      return JSON.stringify({ host: '127.0.0.1', port, weight: pick([-1, 257, 1e9, '5', null, 1.5]) });
    case 7:
      return JSON.stringify({
        host: '127.0.0.1',
        port,
        labels: pick([{ ['k'.repeat(1000)]: 'v' }, 'x', [1], { a: { b: 1 } }]),
      });
    case 8:
      return pick([
        '',
        '{',
        'null',
        '[]',
        '\u0000',
        '127.0.0.1:80',
        '{"address":"127.0.0.1","port":80,"address":"evil"}',
      ]);
    case 9:
      return 'x'.repeat(pick([1000, 100_000, 900_000]));
    case 10:
      return JSON.stringify({
        host: '127.0.0.1',
        port,
        haproxy_server_options: [pick(BENIGN_SERVER), pick(attackServerOptions(ports.attack))],
      });
    case 11:
      return JSON.stringify({ host: '127.0.0.1', port, haproxy_server_options: pick(BENIGN_SERVER) });
    case 12:
      return JSON.stringify({ address: '127.0.0.1', port, __proto__: { weight: 0 } });
    default:
      return JSON.stringify({ address: `127.0.0.${1 + pickIndex(rand, 250)}`, port });
  }
}

/** A desired-state file for `proxymgr agent --state` with the honest service and one hostile one. */
export function stateFileText(
  rand: () => number,
  honest: object,
  ports: { free: () => number; attack: number },
): string {
  const pick = picker(rand);
  const v = pickIndex(rand, 12);
  const svc: Record<string, unknown> = {
    name: `h${pickIndex(rand, 1_000_000)}`,
    port: ports.free(),
    bind_address: '127.0.0.1',
    listen_options: [pick(BENIGN_LISTEN)],
    servers: [{ name: 's1', address: '127.0.0.1', port: ports.free() }],
  };
  switch (v) {
    case 0:
    case 1:
    case 2:
      svc.listen_options = [pick(attackLines(ports.attack))];
      break;
    case 3:
      svc.server_options = [pick(attackServerOptions(ports.attack))];
      break;
    case 4:
      svc.servers = [{ name: pick(['s\nglobal', 'x y', '']), address: '127.0.0.1', port: 80 }];
      break;
    case 5:
      svc.servers = [{ name: 's', address: pick(['1.2.3.4 check', 'a\nb', '']), port: 80 }];
      break;
    case 6:
      svc.name = pick(['x y', 'x\nglobal', '', 'a'.repeat(500), 'listen evil']);
      break;
    case 7:
      // Broken documents. (Every document that parses keeps the honest service: a state file without it is a
      // legitimate order to remove it.)
      return pick([
        '{',
        'services: [',
        '',
        'null',
        '- 1\n- 2',
        'services: x',
        '\u0000',
        JSON.stringify({ services: [honest, { name: 'a', port: '80' }] }),
      ]);
    case 8:
      // haproxy.global/defaults are the operator's and free-form, but may not open a section.
      return JSON.stringify({
        haproxy: {
          global: ['maxconn 1000', pick(['listen evil', 'frontend evil', 'backend evil', 'userlist evil'])],
          defaults: ['mode http'],
        },
        services: [honest],
      });
    case 9:
      svc.servers = [
        { name: 's1', address: '127.0.0.1', port: 80, options: [pick(attackServerOptions(ports.attack))] },
      ];
      break;
    case 10:
      svc.port = (honest as { port: number }).port; // the honest service's port
      break;
    default:
      break; // a plain extra service: accepted
  }
  return JSON.stringify({ services: [honest, svc] });
}

/** A proxymgr.yml text: mostly-valid documents with one hostile or malformed part. */
export function configText(rand: () => number, dir: string): string {
  const pick = picker(rand);
  const parts = [
    'haproxy: {global: ["maxconn 1000"], defaults: ["mode http"]}',
    `agent: {state_dir: ${dir}, node_id: a1}`,
    'controlplane: {listen: "127.0.0.1:7000"}',
  ];
  const hostile = pick([
    'haproxy: {global: ["listen evil", "bind :1"]}',
    'haproxy: {global: ["stats socket ipv4@0.0.0.0:9999 level admin"], defaults: ["frontend evil"]}',
    'haproxy: {global: "maxconn 1"}',
    'haproxy: {global: [1, 2]}',
    'haproxy: {global: ["a\\nb"]}',
    'haproxy: {user: "root;x"}',
    'agent: {labels: {"bad key": 1}}',
    'agent: {labels: {a: {b: 1}}}',
    'agent: {controlplanes: ["no-port"]}',
    'agent: {drift_check_interval_ms: -1}',
    'agent: {backlog: 1e9}',
    'agent: {bind_address: "localhost"}',
    'controlplane: {listen: "0.0.0.0:99999"}',
    'controlplane: {max_removal_share: 2}',
    'controlplane: {dns: {nameservers: ["evil"]}}',
    'controlplane: {tls: {cert: /x}}',
    'service_config: {type: evil}',
    'service_config: {type: zookeeper, servers: "a b"}',
    'rollout: {waves: []}',
    'rollout: {waves: ["0%"]}',
    'rollout: {zk_path: "rel"}',
    'auth: {clients: []}',
    'auth: {clients: [{name: x, roles: [root], cert: {cn: "*"}}]}',
    'auth: {clients: [{name: x, roles: [agent], cert: {cn: "*"}}]}',
    'auth: {clients: [{name: x, token_file: /etc/shadow, roles: [operator], cert: {cn: a}}]}',
    'auth: x',
    'service_options: {extra_listen_keywords: ["Bad Keyword"]}',
    'service_options: {file_dirs: "x"}',
    'a: &a [1]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c]',
    'x: !!js/function "function(){}"',
    'a: 1\na: 2',
    '[1, 2',
    '\u0000',
    ': :',
    '- list at top',
    'haproxy: ' + '['.repeat(5000),
    '',
  ]);
  const at = pickIndex(rand, parts.length + 1);
  parts.splice(at, 0, hostile);
  return parts.join('\n') + '\n';
}
