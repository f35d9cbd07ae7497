import { isIP } from 'node:net';

/**
 * Where a service may send traffic and health checks, and where it may listen. Server addresses, check targets
 * (`addr`/`port`, `agent-addr`/`agent-port`, `tcp-check connect addr … port …`) and `socks4` proxies are judged
 * here; a target that is ProxyMgr's own control (the control plane's or the agent's listen, admin and metrics ports)
 * on loopback or on one of the host's addresses would make a remote caller look local to the "no auth: loopback
 * may mutate" rule, and link-local ranges hold cloud metadata (169.254.169.254) and host-local services.
 *
 * Pure: the host's facts (its addresses, ProxyMgr's ports) are gathered once per process (`localFacts`) and passed
 * in, so the control plane and every agent judge with the same code on their own host. docs/service-options.md
 * describes the rules and the `service_options` keys that widen or narrow them.
 */

/** One `service_options.targets` entry: a network and, optionally, a port range. */
export interface TargetRule {
  /** As the operator wrote it, for messages. */
  readonly text: string;
  readonly family: 4 | 6;
  readonly bytes: Uint8Array;
  readonly prefix: number;
  readonly ports?: readonly [number, number];
}

/** `service_options.targets`: deny wins over allow; allow wins over the built-in refusals (not over 0.0.0.0 / ::). */
export interface TargetRules {
  readonly allow: readonly TargetRule[];
  readonly deny: readonly TargetRule[];
}

/** What the target check needs to know about the host it runs on. */
export interface LocalFacts {
  /** ProxyMgr's own TCP ports (control plane listen/metrics, agent admin/metrics, the control planes it dials). */
  readonly ownPorts: readonly number[];
  /** The host's own addresses (os.networkInterfaces()), loopback aside. */
  readonly addresses: readonly string[];
  /** The host's own names (os.hostname()): /etc/hosts maps them to this host (Debian: 127.0.1.1). */
  readonly names?: readonly string[];
}

export const NO_LOCAL_FACTS: LocalFacts = { ownPorts: [], addresses: [] };

/** A port range, both ends included. */
export type PortRange = readonly [number, number];

const LINK_LOCAL: readonly TargetRule[] = [rule('169.254.0.0/16'), rule('fe80::/10')];
const LOOPBACK: readonly TargetRule[] = [rule('127.0.0.0/8'), rule('::1/128')];

function rule(text: string): TargetRule {
  const r = parseTargetRule(text);
  if (typeof r === 'string') throw new Error(`built-in rule ${text}: ${r}`);
  return r;
}

/**
 * The bytes of an IP literal (IPv4-mapped IPv6 such as ::ffff:127.0.0.1 is read as the IPv4 address it maps to),
 * or undefined when `ip` is not one.
 */
export function ipBytes(ip: string): { family: 4 | 6; bytes: Uint8Array } | undefined {
  const v = isIP(ip);
  if (v === 4) return { family: 4, bytes: Uint8Array.from(ip.split('.').map(Number)) };
  if (v !== 6) return undefined;
  let text = ip.toLowerCase();
  const out = new Uint8Array(16);
  const dotted = /:(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: number[] = [];
  if (dotted) {
    tail = dotted[1]!.split('.').map(Number);
    text = `${text.slice(0, dotted.index)}:0:0`;
  }
  const [head, rest] = text.includes('::') ? text.split('::') : [text, undefined];
  const groups = (s: string | undefined) => (s ? s.split(':').filter((g) => g !== '') : []);
  const left = groups(head);
  const right = groups(rest);
  const all = [...left, ...new Array<string>(8 - left.length - right.length).fill('0'), ...right];
  all.forEach((g, i) => {
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  if (dotted) out.set(tail, 12);
  const mapped = out.slice(0, 10).every((b) => b === 0) && out[10] === 0xff && out[11] === 0xff;
  return mapped ? { family: 4, bytes: out.slice(12) } : { family: 6, bytes: out };
}

/** Whether `ip` lies in `r`'s network. */
function inNetwork(ip: { family: 4 | 6; bytes: Uint8Array }, r: TargetRule): boolean {
  if (ip.family !== r.family) return false;
  for (let bit = 0; bit < r.prefix; bit += 8) {
    const take = Math.min(8, r.prefix - bit);
    const mask = (0xff << (8 - take)) & 0xff;
    if ((ip.bytes[bit / 8]! & mask) !== (r.bytes[bit / 8]! & mask)) return false;
  }
  return true;
}

function matches(ip: { family: 4 | 6; bytes: Uint8Array }, port: number, r: TargetRule): boolean {
  return inNetwork(ip, r) && (r.ports === undefined || (port >= r.ports[0] && port <= r.ports[1]));
}

/**
 * Parses a `service_options.targets` entry: `CIDR` or an address, optionally with `:port` or `:low-high`; an IPv6
 * network with a port goes in brackets (`[fe80::/10]:80`). Returns the rule or what is wrong with it.
 */
export function parseTargetRule(text: string): TargetRule | string {
  let net = text;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.+))?$/.exec(text);
  if (bracketed) {
    net = bracketed[1]!;
    portText = bracketed[2];
  } else if (!text.includes('::') && (text.match(/:/g) ?? []).length === 1) {
    [net, portText] = text.split(':') as [string, string];
  }
  const [address, prefixText] = net.split('/') as [string, string | undefined];
  const ip = ipBytes(address);
  if (!ip) return `${JSON.stringify(address)} is not an IP address (write a CIDR such as 10.0.0.0/8 or fe80::/10)`;
  const max = ip.family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return `prefix /${prefixText} is outside 0-${max}`;
  let ports: readonly [number, number] | undefined;
  if (portText !== undefined) {
    const range = parsePortRange(portText);
    if (typeof range === 'string') return range;
    ports = range;
  }
  return { text, family: ip.family, bytes: ip.bytes, prefix, ...(ports ? { ports } : {}) };
}

/** `80` or `1024-65535`. */
export function parsePortRange(text: string): PortRange | string {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text.trim());
  const lo = Number(m?.[1]);
  const hi = m?.[2] === undefined ? lo : Number(m[2]);
  if (!m || lo < 1 || hi > 65535 || lo > hi)
    return `${JSON.stringify(text)} is not a port or port range within 1-65535 (e.g. 443 or 1024-65535)`;
  return [lo, hi];
}

/** `"80,443,1024-65535"` → ranges, or what is wrong. */
export function parsePortList(text: string): PortRange[] | string {
  const out: PortRange[] = [];
  for (const part of text.split(',')) {
    const r = parsePortRange(part);
    if (typeof r === 'string') return r;
    out.push(r);
  }
  return out;
}

export function isUnspecified(ip: string): boolean {
  const b = ipBytes(ip);
  return b !== undefined && b.bytes.every((x) => x === 0);
}

export function isLoopback(ip: string): boolean {
  const b = ipBytes(ip);
  return b !== undefined && LOOPBACK.some((r) => inNetwork(b, r));
}

/** `localhost` and `*.localhost` always resolve to loopback (RFC 6761); other names cannot be judged here. */
/** Names /etc/hosts (or systemd's nss-myhostname) maps to loopback or to this host. */
const LOOPBACK_NAMES =
  /^((.+\.)?localhost|localhost\.localdomain|localhost6(\.localdomain6)?|ip6-localhost|ip6-loopback)$/i;

function loopbackName(host: string, local: LocalFacts): boolean {
  const name = host.replace(/\.$/, '').toLowerCase();
  if (LOOPBACK_NAMES.test(name)) return true;
  return (local.names ?? []).some((n) => {
    const own = n.toLowerCase();
    return name === own || name === own.split('.')[0] || name.startsWith(`${own}.`);
  });
}

const HOSTNAME_RE = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/;

/**
 * Why a host entry's address is neither an IP literal nor a host name, or undefined (the message follows the
 * quoted address). A name whose last label is a number (`127.1`, `2130706433`, `0x7f000001`, `017700000001`) is
 * an IPv4 address to the C library HAProxy resolves names with — `inet_aton` reads it without any DNS — so it is
 * refused: the target policy judges IP literals, and such a name would slip past it. A zone index (`%eth0`) is
 * refused too: HAProxy 2.6 does not take one, and a config it refuses would hold back the whole service.
 */
export function hostAddressProblem(address: string): string | undefined {
  if (address.includes('%')) return 'has a zone index (%…): HAProxy does not take one';
  if (isIP(address) !== 0) return undefined;
  if (!HOSTNAME_RE.test(address)) return 'is neither an IP literal nor a hostname';
  const last = address.replace(/\.$/, '').split('.').pop()!;
  if (/^(0x[0-9a-f]*|\d+)$/i.test(last))
    return 'is a numeric IPv4 spelling, not a hostname (the C library reads 127.1 as 127.0.0.1): write the address as a dotted quad';
  return undefined;
}

/**
 * Why a connection to `host`:`port` (a server, a health or agent check, a socks4 proxy) is refused, or undefined.
 * `host` is an IP literal or, for host entries, a name (hostAddressProblem refused numeric spellings): names are not
 * resolved (the check is pure), except that `localhost` and its kin, and this host's own names, count as loopback.
 */
export function targetProblem(host: string, port: number, rules: TargetRules, local: LocalFacts): string | undefined {
  const ip = ipBytes(loopbackName(host, local) ? '127.0.0.1' : host);
  if (!ip) return undefined;
  const shown = ip.family === 6 && isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
  if (ip.bytes.every((b) => b === 0))
    return `${shown} is the unspecified address (a connection to it reaches this host); no rule allows it`;
  const denied = rules.deny.find((r) => matches(ip, port, r));
  if (denied) return `${shown} is refused by service_options.targets.deny (${JSON.stringify(denied.text)})`;
  if (rules.allow.some((r) => matches(ip, port, r))) return undefined;
  if (LINK_LOCAL.some((r) => inNetwork(ip, r)))
    return `${shown} is link-local (169.254.0.0/16, fe80::/10: cloud metadata and host-local services); allow it with service_options.targets.allow`;
  const own = local.ownPorts.includes(port);
  if (own && LOOPBACK.some((r) => inNetwork(ip, r)))
    return `${shown} is a ProxyMgr port (control plane or agent: listen, admin, metrics) on loopback; allow it with service_options.targets.allow`;
  if (own && local.addresses.some((a) => sameAddress(ipBytes(a), ip)))
    return `${shown} is a ProxyMgr port (control plane or agent: listen, admin, metrics) on this host's own address; allow it with service_options.targets.allow`;
  return undefined;
}

function sameAddress(a: { family: 4 | 6; bytes: Uint8Array } | undefined, b: { family: 4 | 6; bytes: Uint8Array }) {
  return a !== undefined && a.family === b.family && a.bytes.every((x, i) => x === b.bytes[i]);
}

/** Why a service may not listen on `address`:`port`, or undefined. */
export function bindProblem(
  address: string,
  port: number,
  bindPorts: readonly PortRange[],
  bindLoopback: boolean,
): string | undefined {
  if (!bindPorts.some(([lo, hi]) => port >= lo && port <= hi))
    return `port ${port} is outside service_options.bind_ports (${bindPorts.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(',')}); ports below 1024 need the operator's consent`;
  if (!bindLoopback && isLoopback(address))
    return `bind_address ${address} is a loopback address: a service would listen beside the host's local-only services (the operator allows it with service_options.bind_loopback: true)`;
  return undefined;
}

/** `host:port` → port, for listen addresses such as `127.0.0.1:7000`, `[::]:9090` or `:8080`; undefined when off. */
function portOf(listen: string | undefined): number | undefined {
  if (!listen) return undefined;
  const m = /:(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[1]) : NaN;
  return port >= 1 && port <= 65535 ? port : undefined;
}

/**
 * The host's facts for `targetProblem`: ProxyMgr's ports from the loaded proxymgr.yml (whichever process reads it)
 * and the addresses of `interfaces` (os.networkInterfaces() in production). Gathered once per process.
 */
export function localFacts(
  listens: readonly (string | undefined)[],
  interfaces: NodeJS.Dict<{ address: string }[]> = {},
): LocalFacts {
  const ownPorts = [...new Set(listens.map(portOf).filter((p): p is number => p !== undefined))].sort((a, b) => a - b);
  const addresses = Object.values(interfaces)
    .flatMap((list) => (list ?? []).map((i) => i.address.replace(/%.*$/, '')))
    .filter((a) => isIP(a) !== 0);
  return { ownPorts, addresses: [...new Set(addresses)] };
}
