import { isIP } from 'node:net';
import { isUnspecified } from './target-policy';

/**
 * Typed arguments of the listen and server keywords that take an address, a table, a backend or a variable: the
 * keyword allow-list (option-policy.ts) says which keywords a service config may use, this says what their
 * arguments may be. What the grammar cannot type is refused. Grammar from HAProxy 2.6's configuration.txt; forms
 * checked against `haproxy -c` in test/integration/option-policy-haproxy.test.ts. Pure.
 */

/** An address or port a health check or agent check, or a socks4 proxy, connects to (judged by target-policy.ts). */
export interface CheckArgs {
  /** `addr <ip>`: where health checks (and agent checks without agent-addr) go instead of the server address. */
  readonly addr?: string;
  /** `port <n>`: the health-check port. */
  readonly port?: number;
  readonly agentAddr?: string;
  readonly agentPort?: number;
  /** `socks4 <ip>:<port>`. */
  readonly socks4?: { readonly ip: string; readonly port: number };
  /** `init-addr` IP literals: the server's address until its name resolves. */
  readonly initAddrs: readonly string[];
}

/** One `tcp-check connect` / `http-check connect` rule's target (missing parts come from the server line). */
export interface ConnectArgs {
  readonly addr?: string;
  readonly port?: number;
}

/** Rule keywords whose first argument is an action. */
const RULE_KEYWORDS = new Set([
  'http-request',
  'http-response',
  'http-after-response',
  'tcp-request connection',
  'tcp-request session',
  'tcp-request content',
  'tcp-response content',
]);

/** Actions no service may use, and why. */
const ACTION_DENY: Readonly<Record<string, string>> = {
  'set-dst':
    "sends the connection to an address taken from the request: an open relay to the host's loopback, the internal network or 169.254.169.254",
  'set-dst-port': "sends the connection to a port taken from the request: an open relay to the host's local services",
  'use-service':
    'hands the stream to a built-in service (prometheus-exporter shows every service of that HAProxy; Lua services run code outside these checks)',
};

const SOCKET_PREFIX_RE = /^[a-z0-9]+@/i;
const PORT_RE = /^\d{1,5}$/;
const NAME_RE = /^[A-Za-z0-9_.-]+$/;

/** Fetches and converters whose non-numeric arguments name a stick table (sc_*, sc0_*, src_*, table_*, in_table). */
const TABLE_FUNCTION_RE = /(?:^|[^A-Za-z0-9_.-])((?:sc\d*|src|table)_[a-z0-9_]+|in_table)\(([^)]*)\)/g;
/** Fetches whose argument names a backend (or `<backend>/<server>`). */
const BACKEND_FUNCTION_RE =
  /(?:^|[^A-Za-z0-9_.-])(nbsrv|be_conn|be_conn_free|be_sess_rate|avg_queue|connslots|queue|srv_conn|srv_conn_free|srv_is_up|srv_queue|srv_sess_rate|srv_iweight|srv_uweight|srv_weight)\(([^)]*)\)/g;
/**
 * A variable argument in the `proc.` scope: set-var(proc.x), var(proc.x), unset-var(proc.x), add(proc.x), … Matched
 * with quotes, backslashes and blanks removed: HAProxy's argument parser joins `''proc.x` into `proc.x`.
 */
const PROC_VARIABLE_RE = /[(,]proc\./;
const flatArgument = (w: string) => w.replace(/['"\\\s]/g, '');

function port(v: string | undefined): number | undefined {
  if (v === undefined || !PORT_RE.test(v)) return undefined;
  const n = Number(v);
  return n >= 1 && n <= 65535 ? n : undefined;
}

/** Why `v` is not an IP literal, naming what it is instead; undefined when it is one (and not 0.0.0.0 / ::). */
export function ipLiteralProblem(what: string, v: string, bareIpv6 = false): string | undefined {
  const bracketed = /^\[([^\]]*)\]$/.exec(v);
  const ip = bracketed ? bracketed[1]! : v;
  const family = isIP(ip);
  if (family === 4 && !bracketed) return isUnspecified(ip) ? unspecified(what, v) : undefined;
  if (family === 6 && (bracketed || bareIpv6)) return isUnspecified(ip) ? unspecified(what, v) : undefined;
  if (family === 6)
    return `${what} ${JSON.stringify(v)}: write an IPv6 address in brackets ([${v}]); HAProxy reads the last ":" of a bare one as a port`;
  if (SOCKET_PREFIX_RE.test(v))
    return `${what} ${JSON.stringify(v)}: not an IP literal (socket prefixes such as unix@, abns@, fd@, sockpair@ or ipv4@ are refused: they reach local sockets, HAProxy's own admin socket among them)`;
  if (v.startsWith('/')) return `${what} ${JSON.stringify(v)}: a path (a unix socket) is not an IP literal`;
  return `${what} ${JSON.stringify(v)}: not an IP literal (IPv4, or IPv6 in brackets; host names are refused: the policy cannot judge where they lead)`;
}

function unspecified(what: string, v: string): string {
  return `${what} ${JSON.stringify(v)}: the unspecified address (a connection to it reaches this host)`;
}

/** `ip`, `ip:port`, `[ipv6]` or `[ipv6]:port` split; undefined when it is none of those. */
function splitIpPort(v: string): { ip: string; port?: string } | undefined {
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(v);
  if (v6) return { ip: `[${v6[1]!}]`, ...(v6[2] !== undefined ? { port: v6[2] } : {}) };
  const v4 = /^([0-9.]+)(?::(.*))?$/.exec(v);
  if (v4) return { ip: v4[1]!, ...(v4[2] !== undefined ? { port: v4[2] } : {}) };
  return undefined;
}

/** `[::1]` → `::1`. */
export function unbracket(ip: string): string {
  return ip.replace(/^\[(.*)\]$/, '$1');
}

/** `<addr>[:<port>]` of the listen `source` keyword, `<addr>[:<port>[-<port>]]` of a server's. */
function sourceAddressProblem(what: string, v: string, ranges: boolean): string | undefined {
  const parts = splitIpPort(v);
  if (!parts) return ipLiteralProblem(what, v);
  const bad = ipLiteralProblem(what, parts.ip);
  if (bad) return bad;
  if (parts.port === undefined) return undefined;
  const range = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(parts.port);
  if (!range || Number(range[1]) > 65535 || Number(range[2] ?? 0) > 65535 || (!ranges && range[2] !== undefined))
    return `${what} ${JSON.stringify(v)}: expected <ip>[:<port>${ranges ? '[-<port>]' : ''}]`;
  return undefined;
}

/** The words after `source <addr>` (listen `source`, or a server's `source` with its optional pairs). */
function sourceOptionsProblem(rest: readonly string[]): string | undefined {
  for (let i = 0; i < rest.length; i += 2) {
    const word = rest[i]!;
    if (word === 'usesrc')
      return `"source ... usesrc": transparent proxying (connecting from the client's or another address) is refused`;
    if (word !== 'interface') return `"source": unexpected ${JSON.stringify(word)} (expected interface <name>)`;
    const name = rest[i + 1];
    if (name === undefined || !NAME_RE.test(name)) return `"source ... interface": expects an interface name`;
  }
  return undefined;
}

/**
 * Why a listen line's arguments are refused, or undefined. `keyword` is the matched listen keyword, `words` the
 * decoded words of the line from the keyword on, `service` the name of the service's listen section.
 */
export function listenArgumentsProblem(keyword: string, words: readonly string[], service: string): string | undefined {
  const args = words.slice(keyword.split(' ').length);
  const reference = referenceProblem(words, service);
  if (reference) return reference;
  if (keyword === 'use_backend' || keyword === 'default_backend') {
    const target = args[0] ?? '';
    if (target.includes('%['))
      return `${keyword} ${JSON.stringify(target)}: a backend name built at run time could name any service`;
    if (target === service)
      return `${keyword} ${JSON.stringify(target)}: names this service itself, which HAProxy refuses as a loop (a listen section already serves its own servers)`;
    return `${keyword} ${JSON.stringify(target)}: names another service's backend; a service may only send traffic to its own servers`;
  }
  if (keyword === 'tcp-check connect' || keyword === 'http-check connect') return connectArgs(args).problem;
  if (keyword === 'source') {
    if (args[0] === undefined) return '"source" expects an address';
    return sourceAddressProblem('source', args[0], false) ?? sourceOptionsProblem(args.slice(1));
  }
  if (keyword === 'log') return logTargetProblem(args[0]);
  if (RULE_KEYWORDS.has(keyword)) {
    const action = (args[0] ?? '').replace(/\(.*$/, '');
    const denied = ACTION_DENY[action];
    if (denied) return `${keyword} ${action}: ${denied}`;
    if (/^track-sc\d+$/.test(action) && args[2] === 'table' && args[3] !== service)
      return tableProblem(`${keyword} ${action} ... table`, args[3] ?? '', service);
  }
  if (keyword.startsWith('stick ')) {
    const at = args.indexOf('table');
    if (at >= 0 && args[at + 1] !== service) return tableProblem(`${keyword} ... table`, args[at + 1] ?? '', service);
  }
  return undefined;
}

function tableProblem(what: string, table: string, service: string): string {
  return `${what} ${JSON.stringify(table)}: names another stick table; a service may only use its own (${JSON.stringify(service)}, or none for the same)`;
}

/** `log <target>`: network targets are IP literals; files, sockets and descriptors are judged by option-policy.ts. */
function logTargetProblem(target: string | undefined): string | undefined {
  if (target === undefined || target === 'global') return undefined;
  if (target === 'stdout' || target === 'stderr' || target.startsWith('/') || target.startsWith('ring@'))
    return undefined;
  if (/^(fd|abns|unix|uxdg|uxst)@/.test(target)) return undefined; // judged as files and descriptors
  const plain = target.replace(/^(udp|udp4|udp6|ipv4|ipv6)@/, '');
  const parts = splitIpPort(plain);
  if (!parts) return ipLiteralProblem('log target', target);
  const bad = ipLiteralProblem('log target', parts.ip);
  if (bad) return bad;
  if (parts.port !== undefined && port(parts.port) === undefined)
    return `log target ${JSON.stringify(target)}: the port must be 1-65535`;
  return undefined;
}

/** Option words of `tcp-check connect` / `http-check connect` that take no value, and those that take one. */
const CONNECT_FLAGS = new Set(['default', 'send-proxy', 'via-socks4', 'ssl', 'linger']);
const CONNECT_VALUES = new Set(['port', 'addr', 'sni', 'alpn', 'proto', 'comment']);

/** Parses a connect rule's options (after `tcp-check connect`); `problem` when one is refused. */
export function connectArgs(args: readonly string[]): ConnectArgs & { problem?: string } {
  let addr: string | undefined;
  let p: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const word = args[i]!;
    if (CONNECT_FLAGS.has(word)) continue;
    if (!CONNECT_VALUES.has(word))
      return {
        problem: `connect option ${JSON.stringify(word)} is not one of ${[...CONNECT_FLAGS, ...CONNECT_VALUES].join(', ')}`,
      };
    const value = args[++i];
    if (value === undefined) return { problem: `connect option "${word}" expects a value` };
    if (word === 'addr') {
      const bad = ipLiteralProblem('connect addr', value);
      if (bad) return { problem: bad };
      addr = unbracket(value);
    } else if (word === 'port') {
      p = port(value);
      if (p === undefined)
        return {
          problem: `connect port ${JSON.stringify(value)}: expected a port number 1-65535 (an expression cannot be checked against the target policy)`,
        };
    }
  }
  return { ...(addr !== undefined ? { addr } : {}), ...(p !== undefined ? { port: p } : {}) };
}

/**
 * Table, backend and `proc.` variable references anywhere in a line's words: a service reaches only its own stick
 * table and backend, and no variable shared by every service of that HAProxy.
 */
export function referenceProblem(words: readonly string[], service: string): string | undefined {
  for (const w of words) {
    if (PROC_VARIABLE_RE.test(flatArgument(w)))
      return `${JSON.stringify(w)}: variables in the proc. scope are shared by every service of that HAProxy (use txn., sess., req. or res.)`;
    for (const m of w.matchAll(TABLE_FUNCTION_RE)) {
      const other = m[2]!
        .split(',')
        .map((a) => a.trim())
        .find((a) => a !== '' && !/^-?\d+$/.test(a) && a !== service);
      if (other !== undefined) return tableProblem(`${m[1]!}()`, other, service);
    }
    for (const m of w.matchAll(BACKEND_FUNCTION_RE)) {
      const backend = (m[2] ?? '').split('/')[0]!.trim();
      if (backend !== '' && backend !== service)
        return `${m[1]!}(${JSON.stringify(backend)}): names another service's backend; a service may only look at its own`;
    }
  }
  return undefined;
}

/**
 * Why a server setting's arguments are refused, or undefined (keywords and arities are checked by the caller).
 * `rest` holds the words after the setting (its own arguments and optional pairs).
 */
export function serverArgumentProblem(keyword: string, rest: readonly string[]): string | undefined {
  const v = rest[0] ?? '';
  switch (keyword) {
    case 'addr':
      return ipLiteralProblem('addr', v);
    case 'agent-addr':
      return ipLiteralProblem('agent-addr', v, true);
    case 'port':
    case 'agent-port':
      return port(v) === undefined ? `${keyword} ${JSON.stringify(v)}: expected a port number 1-65535` : undefined;
    case 'socks4': {
      const parts = splitIpPort(v);
      if (!parts) return ipLiteralProblem('socks4', v);
      return (
        ipLiteralProblem('socks4', parts.ip) ??
        (port(parts.port) === undefined ? `socks4 ${JSON.stringify(v)}: expected <ip>:<port>` : undefined)
      );
    }
    case 'source':
      return sourceAddressProblem('source', v, true) ?? sourceOptionsProblem(rest.slice(1));
    case 'init-addr':
      for (const method of v.split(',')) {
        if (method === 'last' || method === 'libc' || method === 'none') continue;
        const bad = ipLiteralProblem('init-addr', method, true);
        if (bad) return `${bad} (init-addr takes last, libc, none or an IP literal, comma-separated)`;
      }
      return undefined;
    default:
      return undefined;
  }
}

/** `checks` with what server setting `keyword` (arguments `args`, already accepted by the grammar) sets. */
export function withCheckArg(checks: CheckArgs, keyword: string, args: readonly string[]): CheckArgs {
  const v = args[0] ?? '';
  switch (keyword) {
    case 'addr':
      return { ...checks, addr: unbracket(v) };
    case 'agent-addr':
      return { ...checks, agentAddr: unbracket(v) };
    case 'port':
      return { ...checks, port: port(v) };
    case 'agent-port':
      return { ...checks, agentPort: port(v) };
    case 'socks4': {
      const parts = splitIpPort(v);
      const p = port(parts?.port);
      return parts && p !== undefined ? { ...checks, socks4: { ip: unbracket(parts.ip), port: p } } : checks;
    }
    case 'init-addr':
      return {
        ...checks,
        initAddrs: v
          .split(',')
          .filter((m) => m !== 'last' && m !== 'libc' && m !== 'none')
          .map(unbracket),
      };
    default:
      return checks;
  }
}
