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

// ------------------------------------------------------------------ entry points added after the first campaign

/**
 * A minimal protobuf writer for inputs the generated encoders refuse to produce: a negative number or 2^64-1 in a
 * uint64 field, a double where an integer belongs (the wrong wire type), more than 32 bits in a uint32 field. The
 * receiving side decodes them with the generated decoders like any message from the network.
 */
export class RawPb {
  private readonly parts: Buffer[] = [];

  /** A varint field; negatives are written as their 64-bit two's complement (10 bytes), as int64 -1 is. */
  varint(field: number, v: bigint | number | boolean): this {
    const n = typeof v === 'boolean' ? (v ? 1n : 0n) : BigInt(v);
    this.parts.push(varintBytes(BigInt(field << 3)), varintBytes(n));
    return this;
  }

  /** A double (wire type 1): NaN, ±Infinity, -0 and the like as they are. */
  double(field: number, v: number): this {
    const b = Buffer.alloc(8);
    b.writeDoubleLE(v);
    this.parts.push(varintBytes(BigInt((field << 3) | 1)), b);
    return this;
  }

  /** A length-delimited field: a string, raw bytes or a nested message. */
  bytes(field: number, v: string | Buffer | RawPb): this {
    const b = v instanceof RawPb ? v.finish() : typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    this.parts.push(varintBytes(BigInt((field << 3) | 2)), varintBytes(BigInt(b.length)), b);
    return this;
  }

  /** Bytes appended as they are (truncated or malformed tails). */
  raw(b: Buffer): this {
    this.parts.push(b);
    return this;
  }

  finish(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function varintBytes(v: bigint): Buffer {
  let n = BigInt.asUintN(64, v);
  const out: number[] = [];
  do {
    let byte = Number(n & 0x7fn);
    n >>= 7n;
    if (n > 0n) byte |= 0x80;
    out.push(byte);
  } while (n > 0n);
  return Buffer.from(out);
}

/** Integers for uint32/uint64 fields that no honest sender writes: negative, past 2^32, past 2^53, 2^64-1. */
export const HOSTILE_INTEGERS: readonly bigint[] = [
  -1n,
  -(2n ** 31n),
  2n ** 32n + 5n,
  2n ** 53n - 1n,
  2n ** 53n + 1n,
  2n ** 63n,
  2n ** 64n - 1n,
  0n,
];

/** A Stats message (AgentMessage field 6) with hostile counters; `services` entries, names odd on purpose. */
export function hostileStats(rand: () => number): { message: Buffer; services: number; note: string } {
  const pick = picker(rand);
  const v = pickIndex(rand, 8);
  const stats = new RawPb();
  const name = (k: number) =>
    pick([
      `svc${k}`,
      `svc${k}\u0000\n\u001b[31mred`,
      `evil\nglobal${k}`,
      'x'.repeat(10_000),
      '',
      `ü\u202e${k}`,
      `\u0085\u009f${k}`,
    ]);
  const counters = (k: number, value: () => bigint | number, wrongType = false) => {
    const c = new RawPb().bytes(1, name(k));
    for (let f = 2; f <= 10; f++) {
      const x = value();
      if (wrongType) c.double(f, typeof x === 'number' ? x : Number(x));
      else c.varint(f, x);
    }
    return c;
  };
  let services = 1;
  let note = '';
  switch (v) {
    case 0: // negative numbers (as int64 -1 is written)
      stats.bytes(
        1,
        counters(0, () => pick([-1n, -5n, -(2n ** 62n)])),
      );
      note = 'negative';
      break;
    case 1: // past Number.MAX_SAFE_INTEGER in uint64 fields, past 2^32 in uint32 fields
      stats.bytes(
        1,
        counters(0, () => pick(HOSTILE_INTEGERS)),
      );
      note = 'huge';
      break;
    case 2: // NaN / Infinity where an integer belongs: the wrong wire type
      stats.bytes(
        1,
        counters(0, () => pick([NaN, Infinity, -Infinity, 1.5, -0]), true),
      );
      note = 'nan';
      break;
    case 3: // 10,000 services (the most counted) with names with control characters
    case 4: // 20,000 services: twice the most counted
      services = v === 3 ? 10_000 : 20_000;
      for (let k = 0; k < services; k++)
        stats.bytes(
          1,
          counters(k, () => BigInt(pickIndex(rand, 1000))),
        );
      note = `${services} services`;
      break;
    case 5: // the largest safe numbers: taken as they are
      stats.bytes(
        1,
        counters(0, () => 2n ** 53n - 1n),
      );
      note = 'max safe';
      break;
    case 6: // a running_version of 1 MB with control characters, and no counters
      stats.bytes(2, `v\u0000\n${'r'.repeat(1_000_000)}`);
      note = 'long version';
      break;
    default: // a truncated counters entry
      stats.raw(Buffer.from([0x0a, 0x20, 0x0a, 0x05, 0x61]));
      note = 'truncated';
  }
  return { message: new RawPb().bytes(6, stats).finish(), services, note };
}

/** Hello capabilities: unknown names, lists past the limit, long strings, control characters. */
export function hostileCapabilities(rand: () => number): string[] {
  const pick = picker(rand);
  return pick([
    ['evil', 'preflight', 'settings', 'x-1.0_beta'],
    Array.from({ length: 16 }, () => 'preflight'),
    Array.from({ length: 17 }, (_, k) => `c${k}`),
    Array.from({ length: 5000 }, (_, k) => `c${k}`),
    ['a'.repeat(100_000)],
    ['a'.repeat(33)],
    ['preflight\n', 'settings'],
    ['PREFLIGHT'],
    [''],
    ['\u0000'],
    ['pre flight'],
    ['ünï'],
    ['settings', 'evil;global'],
    ['settings'],
  ]);
}

/**
 * A PreflightReport (AgentMessage field 7): ids nobody asked, huge lists, text with control characters. Every
 * random choice is drawn now (the seed's sequence does not depend on timing); the id is given when it is sent.
 */
export function hostilePreflightReport(rand: () => number): (id?: string) => Buffer {
  const pick = picker(rand);
  const unasked = pick(['', 'q0', 'q1', 'q999999', `q${pickIndex(rand, 500)}`, 'x'.repeat(100_000)]);
  const ok = rand() < 0.5;
  const error = pick(['', 'e\u0000\n\u001b[2J', `global\n${'e'.repeat(1_000_000)}`, 'listen evil']);
  const output = pick(['', `[ALERT] ${'o'.repeat(200_000)}`]);
  const method = pick([0n, 1n, 3n, 99n, -1n]);
  const reasons = pick([0, 1, 100, 101, 100_000]);
  const rejected = pick([0, 1, 5000]);
  const warnings = rand() < 0.3 ? 200 : 0;
  const whole = rand() < 0.3;
  return (id) => {
    const r = new RawPb()
      .bytes(1, id ?? unasked)
      .varint(2, ok)
      .bytes(3, error)
      .bytes(4, output)
      .varint(5, method);
    for (let k = 0; k < reasons; k++) r.bytes(6, k % 3 === 0 ? `reason ${k}\u0000\n` : `r${k}`);
    for (let k = 0; k < rejected; k++) r.bytes(7, k % 2 ? `evil\nglobal${k}` : 'x'.repeat(300));
    for (let k = 0; k < warnings; k++) r.bytes(8, `w${k}\u0007`);
    r.varint(9, whole);
    return new RawPb().bytes(7, r).finish();
  };
}

/** A StateReport (AgentMessage field 5): control characters, long fields, many servers; the id given when sent. */
export function hostileStateReport(rand: () => number): (id: string) => Buffer {
  const pick = picker(rand);
  const servers = pick([0, 1, 50, 20_000]);
  const shape = Array.from({ length: Math.min(servers, 50) }, () => ({
    backend: pick(['web', 'be\u0000\nglobal', 'b'.repeat(1000)]),
    address: pick(['10.0.0.1', '1.2.3.4\nglobal', 'a'.repeat(500)]),
    port: pick([80n, -1n, 2n ** 32n + 80n]),
    weight: pick([1n, 2n ** 64n - 1n]),
    admin: pick(['ready', 'maint\u0000', 'x'.repeat(400)]),
    oper: pick(['up', 'down\r\n']),
  }));
  const error = pick(['', `err\u0000${'e'.repeat(100_000)}`]);
  const version = pick(['', 'v\nx', 'v'.repeat(10_000)]);
  return (id) => {
    const r = new RawPb().bytes(1, id);
    for (let k = 0; k < servers; k++) {
      const x = shape[k % shape.length]!;
      r.bytes(
        2,
        new RawPb()
          .bytes(1, x.backend)
          .bytes(2, `s${k}\u001b[31m`)
          .bytes(3, x.address)
          .varint(4, x.port)
          .varint(5, x.weight)
          .bytes(6, x.admin)
          .bytes(7, x.oper),
      );
    }
    return new RawPb().bytes(5, r.bytes(3, error).bytes(4, version)).finish();
  };
}

/** Node ids for ControlPlaneAdmin/GetAgentView: empty, huge, control characters, unknown, real ones. */
export function oddNodeId(rand: () => number, i: number): string {
  const pick = picker(rand);
  return pick([
    '',
    'honest-a',
    'honest-b',
    `attacker-${i}`,
    'attacker-stats-0',
    `unknown-${i}`,
    'x'.repeat(100_000),
    'x'.repeat(1_000_000),
    'honest-a\u0000',
    'honest-a\n',
    '../../etc/passwd',
    '*',
    '%00',
    'ü',
  ]);
}

/** A Rollout/SetPolicy request (raw): a valid gate and preflight with one or two fields made hostile. */
export function hostileSetPolicy(rand: () => number): { body: Buffer; note: string } {
  const pick = picker(rand);
  const gate: Record<string, bigint | number | string | boolean> = {
    enabled: rand() < 0.5,
    minRequests: 100n,
    http5xx: 0.05,
    errors: 0.05,
    retries: 0.1,
    serversDown: 0.2,
    queue: 10,
    oit: 'pass',
    sampleMs: 2000n,
    baselineMs: 60000n,
  };
  const pf: Record<string, bigint | boolean> = { enabled: true, maxFailures: 0n, timeoutMs: 30000n };
  const ratioKeys = ['http5xx', 'errors', 'retries', 'serversDown'] as const;
  const badRatio = [NaN, Infinity, -Infinity, -0.01, 1.0000001, 2, 1e308, -1e308, Number.MIN_VALUE, 0, 1, -0];
  const notes: string[] = [];
  const spoil = () => {
    const v = pickIndex(rand, 9);
    if (v === 0) {
      const k = pick(ratioKeys);
      gate[k] = pick(badRatio);
      notes.push(`gate.${k}=${gate[k]}`);
    } else if (v === 1) {
      gate.queue = pick([NaN, -1, Infinity, 1e12, 1_000_001, -0, 0]);
      notes.push(`gate.queue=${gate.queue}`);
    } else if (v === 2) {
      gate.oit = pick(['', 'PASS', 'halt ', 'fail', 'evil\nglobal', 'x'.repeat(100_000), 'halt\u0000', 'halt']);
      notes.push(`gate.on_insufficient_traffic=${JSON.stringify(String(gate.oit).slice(0, 20))}`);
    } else if (v === 3) {
      gate.minRequests = pick([0n, 1n, -1n, 2n ** 32n + 7n, 1_000_000_001n, 2n ** 64n - 1n]);
      notes.push(`gate.min_requests=${gate.minRequests}`);
    } else if (v === 4) {
      gate.sampleMs = pick([0n, 199n, 200n, 60_001n, -1n, 2n ** 32n - 1n]);
      notes.push(`gate.sample_ms=${gate.sampleMs}`);
    } else if (v === 5) {
      gate.baselineMs = pick([0n, 999n, 1000n, 3_600_001n, -1n]);
      notes.push(`gate.baseline_ms=${gate.baselineMs}`);
    } else if (v === 6) {
      pf.timeoutMs = pick([0n, 999n, 1000n, 3_600_001n, -1n, 2n ** 64n - 1n]);
      notes.push(`preflight.timeout_ms=${pf.timeoutMs}`);
    } else if (v === 7) {
      pf.maxFailures = pick([-1n, 1_000_001n, 2n ** 32n - 1n, 0n]);
      notes.push(`preflight.max_failures=${pf.maxFailures}`);
    } else notes.push('valid');
  };
  spoil();
  if (rand() < 0.3) spoil();
  const thresholds = new RawPb()
    .double(1, gate.http5xx as number)
    .double(2, gate.errors as number)
    .double(3, gate.retries as number)
    .double(4, gate.serversDown as number)
    .double(5, gate.queue as number);
  const g = new RawPb()
    .varint(1, gate.enabled as boolean)
    .varint(2, gate.minRequests as bigint)
    .bytes(3, thresholds)
    .bytes(4, gate.oit as string)
    .varint(5, gate.sampleMs as bigint)
    .varint(6, gate.baselineMs as bigint);
  const p = new RawPb()
    .varint(1, pf.enabled as boolean)
    .varint(2, pf.maxFailures as bigint)
    .varint(3, pf.timeoutMs as bigint);
  const req = new RawPb();
  const shape = pickIndex(rand, 6);
  if (shape !== 1) req.bytes(9, g);
  if (shape !== 0) req.bytes(10, p);
  if (shape === 2) {
    req.bytes(9, new RawPb()); // a gate message with every field unset: thresholds 0, "" on_insufficient_traffic
    notes.push('empty gate');
  }
  if (shape === 3) {
    req.bytes(9, g).raw(Buffer.from([0x4a, 0x7f, 0x08])); // then a truncated second gate
    notes.push('truncated');
  }
  if (shape === 4) {
    const bake = pick([-1n, 2n ** 32n - 1n, 86_400_001n]);
    const nacks = pick([-1n, 1_000_001n]);
    req.varint(2, true).varint(3, bake).varint(4, true).varint(5, nacks);
    notes.push(`bake_ms=${bake}, max_nacks=${nacks}`);
  }
  req.varint(8, rand() < 0.7); // next
  // Only the values the request carries: no gate (shape 1) or an empty one (2), no preflight (0).
  const sent = notes.filter(
    (n) =>
      n !== 'valid' &&
      !(n.startsWith('gate.') && (shape === 1 || shape === 2)) &&
      !(n.startsWith('preflight.') && shape === 0),
  );
  return { body: req.finish(), note: sent.length > 0 ? sent.join(', ') : 'valid' };
}

/**
 * A service config with hostile values for the traffic options (`canary`, `drain_timeout_ms`, `slow_start_ms`,
 * `zone_label`); `canaryPath` is a watched ZooKeeper path whose hosts carry canary and zone labels.
 */
export function serviceOptionsText(
  rand: () => number,
  i: number,
  ports: { free: () => number; attack: number },
  canaryPath: string,
): string {
  const pick = picker(rand);
  const o: Record<string, unknown> = {
    type: 'zookeeper',
    path: canaryPath,
    port: ports.free(),
    listen_options: ['mode http', 'balance roundrobin'],
  };
  const label = { canary: 'true' };
  const v = pickIndex(rand, 14);
  switch (v) {
    case 0:
      o.canary = {
        labels: label,
        share: pick([0, 1, -0.1, 1.5, 1e308, -1e-300, '0.1', true, null, [0.1], {}, 'NaN', 1 + Number.EPSILON]),
      };
      break;
    case 1:
      o.canary = {
        share: 0.1,
        labels: pick([
          Object.fromEntries(Array.from({ length: 10_000 }, (_, k) => [`k${k}`, 'v'])),
          { canary: 'v'.repeat(100_000) },
          { 'bad key': 'true' },
          { 'evil\nglobal': 'true' },
          { '': 'true' },
          { canary: { a: 1 } },
          { canary: ['true'] },
          { canary: null },
          {},
          JSON.parse('{"__proto__": {"canary": "true"}}') as object,
          { canary: 'true\nglobal' },
          { canary: true },
          { canary: 1 },
        ]),
      };
      break;
    case 2:
      o.canary = pick([
        'x',
        42,
        [],
        [{ labels: label, share: 0.1 }],
        { labels: label },
        { share: 0.1 },
        { labels: label, share: 0.1, evil: 'global' },
        true,
      ]);
      break;
    case 3:
      o.canary = { labels: label, share: pick([0.05, 0.5, 0.01, 0.99]) }; // valid: runtime weights 1..256
      break;
    case 4:
      o.canary = { labels: label, share: pick([Number.MIN_VALUE, 1e-300, 0.9999999999999999, 1 - 1e-12]) }; // valid, extreme
      break;
    case 5:
      o.canary = { labels: label, share: 0.1 };
      o.listen_options = [
        'mode http',
        pick(['balance source', 'balance uri', 'balance static-rr', 'balance hdr(host)']),
      ];
      break;
    case 6:
      o.drain_timeout_ms = pick([-1, 0, 1, 86_400_000, 86_400_001, 1e20, '1000', 1.5, true, [1000], -0, 2 ** 53, {}]);
      break;
    case 7:
      o.slow_start_ms = pick([-1, 0, 1, 3_600_000, 3_600_001, 1e20, '10s', 1.5, {}, 2 ** 53, '10000']);
      if (rand() < 0.3) o.listen_options = ['mode http', 'balance source'];
      break;
    case 8:
      o.zone_label = pick([
        'zone',
        '',
        'a'.repeat(63),
        'a'.repeat(64),
        'zone\nglobal',
        'evil listen',
        'zone;bind :1',
        42,
        ['zone'],
        'ü',
        'zone#x',
        '../x',
        { zone: 1 },
      ]);
      break;
    case 9: // every option valid at once
      o.drain_timeout_ms = 5000;
      o.slow_start_ms = 10_000;
      o.zone_label = 'zone';
      o.canary = { labels: label, share: 0.2 };
      break;
    case 10: // every option hostile at once
      o.drain_timeout_ms = -5;
      o.slow_start_ms = 'x'.repeat(100_000);
      o.zone_label = 'zone\n' + attackLines(ports.attack)[pickIndex(rand, 5)];
      o.canary = { labels: { 'x y': 1 }, share: NaN };
      break;
    case 11: // slow start on a static-hosts service with server options of its own
      o.type = 'static';
      delete o.path;
      o.hosts = [`127.0.0.1:${ports.free()}`];
      o.server_options = [pick(['slowstart 5s', 'check', 'weight 10'])];
      o.slow_start_ms = pick([1, 60_000, 3_600_000]);
      break;
    case 12: // the zone label is one the hosts carry with a hostile value
      o.zone_label = 'rack';
      break;
    default:
      o.drain_timeout_ms = pick([1, 1000, 86_400_000]);
      o.slow_start_ms = pick([1, 1000, 3_600_000]);
  }
  void i;
  return JSON.stringify(o);
}
