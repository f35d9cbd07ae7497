import * as path from 'node:path';
import {
  CheckArgs,
  ConnectArgs,
  connectArgs,
  listenArgumentsProblem,
  referenceProblem,
  serverArgumentProblem,
  withCheckArg,
} from './option-grammar';
import {
  HAPROXY_DOC_VERSION,
  LISTEN_KEYWORDS,
  NEGATABLE_LISTEN_KEYWORDS,
  SERVER_KEYWORDS,
  ServerKeywordSpec,
} from './haproxy-keywords';
import type { LocalFacts, PortRange, TargetRules } from './target-policy';
import { quote, tokenize, Word } from './haproxy-tokens';

/**
 * What service configs may put into HAProxy (`service_options:`). Listen and server options are checked against
 * HAProxy 2.6's keywords minus a deny list (below); these only widen that.
 */
export interface ServiceOptionsPolicy {
  /** Extra keywords allowed as the first word of a `listen_options` line. */
  readonly extraListenKeywords: readonly string[];
  /** Extra keywords allowed in `server_options` and per-host options. */
  readonly extraServerKeywords: readonly string[];
  /** Directories under which directives that name a file (`errorfile`, `ca-file`, ...) may point. */
  readonly fileDirs: readonly string[];
  /** Where servers and checks may point, beyond the built-in refusals (`service_options.targets`). */
  readonly targets: TargetRules;
  /** Ports a service config may listen on (`service_options.bind_ports`). */
  readonly bindPorts: readonly PortRange[];
  /** Whether a service config may listen on a loopback address (`service_options.bind_loopback`). */
  readonly bindLoopback: boolean;
  /** This process's host: ProxyMgr's own ports and the host's addresses (from proxymgr.yml and loadConfig). */
  readonly local: LocalFacts;
}

/**
 * What a service config may put into HAProxy. Service owners write `listen_options` (lines of their `listen`
 * section) and `server_options` / per-host options (words after `server NAME ADDR`); HAProxy ignores indentation,
 * so without a check one line could open a `global` section, bind a port, run a program or serve any file.
 *
 * Listen options: the first word(s) must be a listen keyword of HAProxy 2.6 (common/haproxy/haproxy-keywords.ts, from the
 * manual) or an operator's `service_options.extra_listen_keywords`, and not on LISTEN_DENY. Server options: every
 * word is read as HAProxy reads a server line — a keyword, then as many arguments as it takes — and every keyword
 * must be known (or an operator's extra) and not on SERVER_DENY. In both, arguments that name a file must lie in
 * `service_options.file_dirs`, and Lua, `env()` and environment expansion are refused. Arguments that take an
 * address, a table, a backend or a variable are typed by common/haproxy/option-grammar.ts (references judged against the
 * service's own name). docs/service-options.md explains every entry. Pure; the same answer on the control plane and
 * on every agent.
 */

/** Words that start a new section in some HAProxy version; a line starting with one leaves the `listen` section. */
export const SECTION_KEYWORDS: readonly string[] = [
  'global',
  'defaults',
  'frontend',
  'backend',
  'listen',
  'peers',
  'resolvers',
  'userlist',
  'program',
  'cache',
  'ring',
  'http-errors',
  'mailers',
  'fcgi-app',
  'log-forward',
  'namespace_list',
  // later HAProxy versions: refused too, so an upgraded HAProxy cannot be surprised
  'traces',
  'crt-store',
  'acme',
  'dynamic-update',
];

const SERVERS_FROM_WATCHERS = "servers come from the service's watcher (its hosts), not from listen_options";

/** Listen keywords no service config may use, and why. The extra lists cannot re-allow them. */
export const LISTEN_DENY: Readonly<Record<string, string>> = {
  bind: 'the agent owns every listening socket (a service config picks its port with "port")',
  server: SERVERS_FROM_WATCHERS,
  'server-template': SERVERS_FROM_WATCHERS,
  'default-server': `${SERVERS_FROM_WATCHERS}; servers added at run time would not inherit it either`,
  dispatch: "sends traffic to an address outside the watcher's hosts",
  transparent: "connects to the client's original destination: an open relay to any address the host can reach",
  'option transparent':
    "connects to the client's original destination: an open relay to any address the host can reach",
  stats:
    'a stats page shows (and its options configure) every service of that HAProxy, not only this one; operators run one in haproxy.global/defaults or use the agent metrics',
  'external-check': 'runs a program on the HAProxy host',
  'option external-check': 'runs a program on the HAProxy host',
  'stats admin': 'lets HTTP clients of this port change the servers of every service',
  'stats http-request': 'a stats page shows every service of that HAProxy',
  'stats socket': 'opens an admin socket (a global keyword)',
  'load-server-state-from-file': 'the agent owns the server-state file',
  'server-state-file-name': 'the agent owns the server-state file (and it names a file to read)',
};

/** Server settings no service config may use, and why. */
export const SERVER_DENY: Readonly<Record<string, string>> = {
  namespace: 'connects from another network namespace',
};

/** Server settings whose argument is a file read at start-up. */
const SERVER_FILE_KEYWORDS = new Set(['ca-file', 'crt', 'crl-file']);

/** Converters and actions whose first argument is a file (maps and ACL files). */
const FILE_FUNCTION_RE =
  /(?:^|[^A-Za-z0-9_.-])(map(?:_[a-z0-9]+)*|set-map|del-map|add-acl|del-acl|jwt_verify)\(([^)]*)/g;
const LUA_RE = /(?:^|[^A-Za-z0-9_-])lua\./;
const ENV_FETCH_RE = /(?:^|[^A-Za-z0-9_.-])env\(/;
const PLAIN_KEYWORD_RE = /^[A-Za-z0-9_.-]+$/;
const PLAIN_PATH_RE = /^[A-Za-z0-9._/+@:-]+$/;
// Quotes, escapes and comments parse differently on a config line and in a runtime `add server` command; `;` separates
// runtime commands. Server options are plain words.
const SERVER_UNSAFE_RE = /["'\\#$;`]/;

interface Compiled {
  readonly listen: ReadonlySet<string>;
  readonly heads: ReadonlySet<string>;
  readonly negatable: ReadonlySet<string>;
  readonly extraServer: ReadonlySet<string>;
  readonly fileDirs: readonly string[];
}

const compiledCache = new WeakMap<ServiceOptionsPolicy, Compiled>();

function compile(policy: ServiceOptionsPolicy): Compiled {
  let c = compiledCache.get(policy);
  if (c) return c;
  const listen = new Set([...LISTEN_KEYWORDS, ...policy.extraListenKeywords]);
  c = {
    listen,
    // first words of multi-word keywords ("option", "timeout", "stats"): an unknown line quotes two words then
    heads: new Set([...listen].filter((k) => k.includes(' ')).map((k) => k.split(' ')[0]!)),
    negatable: new Set(NEGATABLE_LISTEN_KEYWORDS),
    extraServer: new Set(policy.extraServerKeywords),
    fileDirs: policy.fileDirs.map((d) => path.posix.normalize(d).replace(/(.)\/+$/, '$1')),
  };
  compiledCache.set(policy, c);
  return c;
}

/** Why an operator's extra keyword cannot be allowed (it is on a deny list), or undefined. */
export function deniedExtraKeyword(kind: 'listen' | 'server', keyword: string): string | undefined {
  if (kind === 'server') return SERVER_DENY[keyword];
  if (SECTION_KEYWORDS.includes(keyword.split(' ')[0]!)) return 'it opens a new section';
  const words = keyword.split(' ');
  for (let n = words.length; n >= 1; n--) {
    const reason = LISTEN_DENY[words.slice(0, n).join(' ')];
    if (reason) return reason;
  }
  return undefined;
}

/** For the operator's free-form `haproxy.global` / `haproxy.defaults`: a line that would open a section. */
export function sectionLineProblem(line: string): string | undefined {
  const t = tokenize(line);
  if (t.controlEscape) return 'an escaped control character (\\x00-\\x1f, \\x7f) would cut or change a word';
  const words = t.words.map((w) => w.value);
  const first = words[0] === 'no' || words[0] === 'default' ? [words[0], words[1]] : [words[0]];
  for (const w of first) {
    if (w !== undefined && SECTION_KEYWORDS.includes(w.toLowerCase())) return `${quote(w)} opens a new section`;
  }
  return undefined;
}

/**
 * Why a `listen_options` line is refused, or undefined when it may go into the service's `listen` section.
 * `service` is the service's name (its listen section and stick table), for the rules on references.
 */
export function listenOptionProblem(line: string, policy: ServiceOptionsPolicy, service: string): string | undefined {
  const p = compile(policy);
  const t = tokenize(line);
  if (t.unterminated) return 'unterminated quote';
  if (t.controlEscape)
    return 'an escaped control character (\\x00-\\x1f, \\x7f) would cut or change a word (HAProxy ends a word at \\x00)';
  if (t.words.length === 0) return undefined; // blank or a comment
  if (t.envExpansion)
    return 'expands an environment variable ("$NAME" inside double quotes); write \\$ or use single quotes';
  const first = t.words[0]!;
  if (SECTION_KEYWORDS.includes(first.value.toLowerCase())) return `${quote(first.value)} opens a new section`;
  // The deny list is matched on the words as HAProxy reads them (`stats "admin"` is `stats admin`), so an
  // operator's extra single-word keyword cannot open a way around it.
  const decoded = t.words.slice(0, 5).map((w) => w.value);
  const from = decoded[0] === 'no' || decoded[0] === 'default' ? 1 : 0;
  for (let n = decoded.length - from; n >= 1; n--) {
    const k = decoded.slice(from, from + n).join(' ');
    const reason = LISTEN_DENY[k];
    if (reason)
      return `${quote(k)} is not allowed in a listen section: ${reason} (deny list; service_options.extra_listen_keywords cannot allow it)`;
  }
  const kw: string[] = [];
  for (const w of t.words.slice(0, 4)) {
    if (w.raw !== w.value) break;
    const m = /^([A-Za-z0-9_.-]+)(\(.*)?$/.exec(w.value);
    if (!m) break;
    kw.push(m[1]!);
    if (m[2] !== undefined) break;
  }
  if (kw.length === 0 || first.raw !== first.value || !PLAIN_KEYWORD_RE.test(first.value)) {
    return `keyword ${quote(first.raw)} must be written plainly (no quotes, escapes or parentheses)`;
  }
  const prefixed = kw[0] === 'no' || kw[0] === 'default';
  const rest = prefixed ? kw.slice(1) : kw;
  if (prefixed && rest[0] !== undefined && SECTION_KEYWORDS.includes(rest[0].toLowerCase()))
    return `${quote(rest[0])} opens a new section`;
  for (let n = rest.length; n >= 1; n--) {
    const k = rest.slice(0, n).join(' ');
    const reason = LISTEN_DENY[k];
    if (reason)
      return `${quote(k)} is not allowed in a listen section: ${reason} (deny list; service_options.extra_listen_keywords cannot allow it)`;
  }
  let keyword: string | undefined;
  for (let n = rest.length; n >= 1 && keyword === undefined; n--) {
    const k = rest.slice(0, n).join(' ');
    if (p.listen.has(k)) keyword = k;
  }
  if (keyword === undefined) {
    const shown = rest.length === 0 ? kw.join(' ') : rest.slice(0, p.heads.has(rest[0]!) ? 2 : 1).join(' ');
    return `${quote(shown)} is not allowed in a listen section (not a listen keyword of HAProxy ${HAPROXY_DOC_VERSION}; operators can add keywords with service_options.extra_listen_keywords)`;
  }
  if (prefixed && !p.negatable.has(keyword))
    return `${quote(`${kw[0]} ${keyword}`)}: "${kw[0]}" only goes before options HAProxy lets you turn off`;

  const args = t.words.slice(prefixed ? 1 : 0);
  return (
    expressionProblem(args.slice(1), p) ??
    fileArgumentProblem(keyword, args, p) ??
    listenArgumentsProblem(
      keyword,
      args.map((w) => w.value),
      service,
    )
  );
}

/** The targets of a service's `tcp-check connect` / `http-check connect` rules (lines already accepted). */
export function connectTargets(listenOptions: readonly string[]): ConnectArgs[] {
  const out: ConnectArgs[] = [];
  for (const line of listenOptions) {
    const words = tokenize(line).words.map((w) => w.value);
    if ((words[0] === 'tcp-check' || words[0] === 'http-check') && words[1] === 'connect') {
      const { addr, port } = connectArgs(words.slice(2));
      out.push({ ...(addr !== undefined ? { addr } : {}), ...(port !== undefined ? { port } : {}) });
    }
  }
  return out;
}

/** Lua, `env()` and file-reading converters anywhere in the arguments. */
function expressionProblem(words: readonly Word[], p: Compiled): string | undefined {
  for (const w of words) {
    if (LUA_RE.test(w.value)) return `${quote(w.value)} calls Lua (lua.*), which runs code outside ProxyMgr's checks`;
    if (ENV_FETCH_RE.test(w.value)) return `${quote(w.value)} reads HAProxy's environment (env())`;
    for (const m of w.value.matchAll(FILE_FUNCTION_RE)) {
      const fn = m[1]!;
      const fnArgs = m[2]!.split(',');
      let file = fnArgs[0];
      if (fn === 'jwt_verify') {
        // <key> is a secret for HMAC algorithms, a variable, or the path of a certificate read at start-up.
        const [alg, key] = fnArgs;
        if (key === undefined || /^(proc|sess|txn|req|res)\./.test(key) || /^HS(256|384|512)$/.test(alg ?? ''))
          continue;
        file = key;
      }
      const problem = fileProblem(`${fn}()`, file ?? '', file ?? '', p);
      if (problem) return problem;
    }
  }
  return undefined;
}

/** Arguments that name a file (or, for `log`, a socket path or file descriptor). */
function fileArgumentProblem(keyword: string, words: readonly Word[], p: Compiled): string | undefined {
  const at = (i: number, what: string) => fileProblem(what, words[i]?.raw ?? '', words[i]?.value ?? '', p);
  if (keyword === 'errorfile') {
    const problem = at(2, 'errorfile');
    if (problem) return problem;
  }
  if (keyword === 'log' && words[1] !== undefined) {
    // A log target is "global", an address, a ring, stdout/stderr — or a unix socket path, judged like a file.
    const target = words[1].value;
    if (target.startsWith('fd@') && !/^fd@[12]$/.test(target))
      return `log target ${quote(target)} writes to a file descriptor of HAProxy`;
    if (target.startsWith('abns@'))
      return `log target ${quote(target)} is an abstract unix socket (local IPC outside service_options.file_dirs)`;
    if (target.startsWith('/') || /^(unix|uxdg|uxst)@/.test(target)) {
      const socket = target.replace(/^(unix|uxdg|uxst)@/, '');
      return fileProblem('log socket', words[1].raw === target ? socket : words[1].raw, socket, p);
    }
  }
  for (let i = 1; i < words.length; i++) {
    const v = words[i]!.value;
    let what: string | undefined;
    if (v === '-f') what = 'pattern file (-f)';
    else if (v === 'file' || v === 'lf-file' || v === 'errorfile') what = v;
    else if (v === 'config' && keyword === 'filter') what = 'filter config';
    if (what === undefined || i + 1 >= words.length) continue;
    const problem = at(i + 1, what);
    if (problem) return problem;
  }
  return undefined;
}

/** A file argument must be written plainly, absolute, and inside one of the operator's file_dirs. */
function fileProblem(what: string, raw: string, value: string, p: Compiled): string | undefined {
  if (value === '') return `${what}: expects a file name`;
  if (raw !== value || !PLAIN_PATH_RE.test(value))
    return `${what} ${quote(raw)}: a file name must be written plainly (letters, digits and . _ / + @ : -)`;
  if (!value.startsWith('/'))
    return `${what} ${quote(value)}: not an absolute path (it must lie inside service_options.file_dirs)`;
  const normalized = path.posix.normalize(value);
  const inside = p.fileDirs.some((d) => normalized === d || normalized.startsWith(d === '/' ? '/' : `${d}/`));
  if (inside) return undefined;
  return `${what} ${quote(value)}: file outside service_options.file_dirs (${p.fileDirs.length > 0 ? p.fileDirs.join(', ') : 'none listed'})`;
}

/** A problem in a list of server options: which element, and why. */
export interface OptionProblem {
  readonly index: number;
  readonly message: string;
}

/**
 * Checks server options (a service's `server_options`, or one host's options) as HAProxy reads them after
 * `server NAME ADDR`: keyword, its arguments, next keyword. The elements are joined with spaces, so a keyword's
 * arguments may sit in the next element. Where the reading stops (unknown or denied keyword) nothing after it is
 * judged — the whole list is refused anyway. An operator's extra keyword takes every following word up to the next
 * known keyword as its arguments (its arity is not known).
 */
export function serverOptionsProblems(
  options: readonly string[],
  policy: ServiceOptionsPolicy,
  service: string,
): OptionProblem[] {
  return readServerOptions(options, policy, service).problems;
}

/**
 * The health-check, agent-check and socks4 targets server options set (later settings win), for the target policy
 * (common/haproxy/target-policy.ts). Options the grammar refuses set nothing.
 */
export function serverCheckArgs(options: readonly string[], policy: ServiceOptionsPolicy, service: string): CheckArgs {
  return readServerOptions(options, policy, service).checks;
}

function readServerOptions(
  options: readonly string[],
  policy: ServiceOptionsPolicy,
  service: string,
): { problems: OptionProblem[]; checks: CheckArgs } {
  let checks: CheckArgs = { initAddrs: [] };
  const problems = walkServerOptions(options, policy, service, (kw, args) => (checks = withCheckArg(checks, kw, args)));
  return { problems, checks: problems.length > 0 ? { initAddrs: [] } : checks };
}

function walkServerOptions(
  options: readonly string[],
  policy: ServiceOptionsPolicy,
  service: string,
  onSetting: (keyword: string, args: readonly string[]) => void,
): OptionProblem[] {
  const p = compile(policy);
  const tokens: { value: string; index: number }[] = [];
  for (const [index, option] of options.entries()) {
    // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
    if (/[\x00-\x1f\x7f]/.test(option)) continue; // reported as a control character by the caller
    if (SERVER_UNSAFE_RE.test(option)) {
      return [
        {
          index,
          message: `${quote(option)}: server options are plain words (no quotes, backslashes, #, $, ; or \`): they also go through HAProxy's runtime API`,
        },
      ];
    }
    for (const value of option.split(/[ \t]+/)) if (value !== '') tokens.push({ value, index });
  }
  const isKeyword = (v: string) =>
    SERVER_KEYWORDS[v] !== undefined || p.extraServer.has(v) || SERVER_DENY[v] !== undefined;
  for (let i = 0; i < tokens.length;) {
    const { value: kw, index } = tokens[i++]!;
    const fail = (message: string, at = index): OptionProblem[] => [{ index: at, message }];
    if (SERVER_DENY[kw])
      return fail(
        `${quote(kw)} is not allowed: ${SERVER_DENY[kw]} (deny list; service_options.extra_server_keywords cannot allow it)`,
      );
    const spec: ServerKeywordSpec | undefined = SERVER_KEYWORDS[kw];
    const args: { value: string; index: number }[] = [];
    if (spec) {
      for (let n = 0; n < spec.args; n++) {
        const arg = tokens[i++];
        if (!arg) return fail(`${quote(kw)} expects ${spec.args} argument${spec.args === 1 ? '' : 's'}`);
        args.push(arg);
      }
      while (spec.optional?.includes(tokens[i]?.value ?? '')) {
        const word = tokens[i++]!;
        const arg = tokens[i++];
        if (!arg) return fail(`${quote(`${kw} ... ${word.value}`)} expects an argument after ${quote(word.value)}`);
        args.push(word, arg);
      }
    } else if (p.extraServer.has(kw)) {
      while (i < tokens.length && !isKeyword(tokens[i]!.value)) args.push(tokens[i++]!);
    } else {
      return fail(
        `${quote(kw)} is not a server option of HAProxy ${HAPROXY_DOC_VERSION} (operators can add keywords with service_options.extra_server_keywords)`,
      );
    }
    if (kw === 'track' && args[0]?.value.includes('/')) {
      return fail(
        `${quote(`track ${args[0].value}`)} follows a server of another proxy; a service may only track its own servers ("track <server>")`,
        args[0].index,
      );
    }
    for (const arg of args) {
      const word = { raw: arg.value, value: arg.value };
      // "@system-ca": the system's trusted CAs, public by definition.
      const file = SERVER_FILE_KEYWORDS.has(kw) && !(kw === 'ca-file' && arg.value === '@system-ca');
      const problem =
        (file ? fileProblem(kw, arg.value, arg.value, p) : undefined) ??
        expressionProblem([word], p) ??
        referenceProblem([arg.value], service);
      if (problem) return fail(problem, arg.index);
    }
    const values = args.map((a) => a.value);
    const typed = spec ? serverArgumentProblem(kw, values) : undefined;
    if (typed) return fail(typed, args[0]?.index ?? index);
    onSetting(kw, values);
  }
  return [];
}
