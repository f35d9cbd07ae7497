import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import { AuthClient, AuthConfig, Role } from '../config/config';
import { ConfigError, errorMessage } from './errors';
import { Logger, silentLogger } from './log';

/**
 * Who may call what on a ProxyMgr gRPC server. Three roles: `agent` (only AgentStream, only as its node ids),
 * `viewer` (every read), `operator` (viewer + every mutating call). Identities come from client certificates
 * (mTLS) or bearer tokens read from files; both are mapped to roles in proxymgr.yml (`auth.clients`).
 * Without an `auth:` section nobody is authenticated: reads and agent streams are open, mutating calls are
 * accepted from loopback peers only.
 */

/**
 * Calls that change something: operator only. Every call that needs `operator` is audited, listed here or not
 * (see `requiredRole`); this list says which ones are meant to.
 */
export const MUTATING_METHODS: ReadonlySet<string> = new Set([
  '/proxymgr.v1.Rollout/Pause',
  '/proxymgr.v1.Rollout/Resume',
  '/proxymgr.v1.Rollout/Promote',
  '/proxymgr.v1.Rollout/Abort',
  '/proxymgr.v1.Rollout/SetPolicy',
]);

export const AGENT_STREAM_METHOD = '/proxymgr.v1.AgentStream/Stream';

const READ_METHODS: ReadonlySet<string> = new Set([
  '/proxymgr.v1.ControlPlaneAdmin/ListServices',
  '/proxymgr.v1.ControlPlaneAdmin/ListAgents',
  '/proxymgr.v1.ControlPlaneAdmin/GetAgentState',
  '/proxymgr.v1.ControlPlaneAdmin/GetAgentView',
  '/proxymgr.v1.ControlPlaneAdmin/GetService',
  '/proxymgr.v1.ControlPlaneAdmin/ListChanges',
  '/proxymgr.v1.ControlPlaneAdmin/GetChange',
  '/proxymgr.v1.Rollout/Status',
  '/proxymgr.v1.Rollout/History',
  '/proxymgr.v1.Rollout/Plan',
  '/proxymgr.v1.AgentAdmin/Status',
  '/proxymgr.v1.AgentAdmin/HaproxyState',
  '/proxymgr.v1.AgentAdmin/RecentActions',
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo',
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
]);

const HEALTH_METHODS: ReadonlySet<string> = new Set(['/grpc.health.v1.Health/Check', '/grpc.health.v1.Health/Watch']);

/** Whether `method` is listed above (a test checks that every method the servers offer is). */
export function isClassified(method: string): boolean {
  return (
    method === AGENT_STREAM_METHOD ||
    READ_METHODS.has(method) ||
    HEALTH_METHODS.has(method) ||
    MUTATING_METHODS.has(method)
  );
}

/** The role a method needs. Anything not listed (a method added later and forgotten here) needs `operator`. */
export function requiredRole(method: string): Role {
  if (method === AGENT_STREAM_METHOD) return 'agent';
  if (READ_METHODS.has(method) || HEALTH_METHODS.has(method)) return 'viewer';
  return 'operator';
}

/** An authenticated caller. */
export interface Identity {
  /** The `auth.clients` entry's name ("anonymous" without auth). */
  readonly name: string;
  /** How it was proven, for logs: "cert CN=…", "token", "none". */
  readonly via: string;
  readonly roles: ReadonlySet<Role>;
  /** Node-id patterns (anchored) this identity may stream as; empty for non-agents. */
  readonly nodeIds: readonly RegExp[];
  /** Label name → value patterns (anchored) its agents may claim; undefined = self-declared. */
  readonly labels?: ReadonlyMap<string, readonly RegExp[]>;
  /** Distinct node ids it may hold at once on a control plane; undefined = unbounded (no auth). */
  readonly maxNodeIds?: number;
  /**
   * One credential: the entry and, for certificates, the certificate's names (entries match many certificates).
   * New-stream budgets are kept per credential and peer address.
   */
  readonly credential: string;
}

/** What the server knows about a call before its handler runs. */
export interface CallInfo {
  readonly method: string;
  /** grpc-js `getPeer()`: "address:port". */
  readonly peer: string;
  readonly certificate?: PeerCertificate;
  /** The `authorization` metadata values. */
  readonly authorization: readonly string[];
}

/** grpc status codes used here (numbers, so this file does not depend on grpc-js). */
export const UNAUTHENTICATED = 16;
export const PERMISSION_DENIED = 7;

export type Decision =
  | { readonly ok: true; readonly identity: Identity }
  | { readonly ok: false; readonly code: number; readonly details: string; readonly identity?: Identity };

interface TokenEntry {
  readonly client: AuthClient;
  /** The token's sha256; undefined while the file is unreadable or holds no valid token (the client is denied). */
  digest: Buffer | undefined;
  /** The file's stat when it was read ("" when it could not be stat'ed), and when that was last checked. */
  signature: string;
  checkedAt: number;
}

/** How token files are watched: stat'ed at most every `recheckMs` when a token is presented, re-read on change. */
export interface TokenFileOptions {
  readonly stat?: (file: string) => { mtimeMs: number; size: number; ino: number };
  readonly now?: () => number;
  readonly recheckMs?: number;
  readonly log?: Logger;
}

/** A changed token file is noticed this long after the change at most (it is stat'ed when a token is presented). */
export const TOKEN_RECHECK_MS = 1000;

/** Tokens shorter than this are refused at start: a guessable token is no authentication. */
export const MIN_TOKEN_LENGTH = 16;

export class Authorizer {
  private readonly tokens: readonly TokenEntry[];
  readonly warnings: readonly string[];
  private readonly stat: (file: string) => { mtimeMs: number; size: number; ino: number };
  private readonly now: () => number;
  private readonly recheckMs: number;
  private readonly log: Logger;

  /**
   * Token files are read at start (a bad one is a ConfigError) and again whenever they change (stat on use, at most
   * every TOKEN_RECHECK_MS): a revoked or replaced token takes effect without a restart, and a file that becomes
   * unreadable or empty denies its client (logged) instead of failing. `readFile`, `mode` and `files` are for tests.
   */
  constructor(
    private readonly config: AuthConfig | undefined,
    private readonly readFile: (file: string) => string = (f) => readFileSync(f, 'utf8'),
    mode: (file: string) => number | undefined = (f) => statSync(f).mode,
    files: TokenFileOptions = {},
  ) {
    this.stat = files.stat ?? ((f) => statSync(f));
    this.now = files.now ?? Date.now;
    this.recheckMs = files.recheckMs ?? TOKEN_RECHECK_MS;
    this.log = (files.log ?? silentLogger).child({ component: 'auth' });
    const warnings: string[] = [];
    this.tokens = (config?.clients ?? []).flatMap((client): TokenEntry[] => {
      if (client.match.kind !== 'token') return [];
      const file = client.match.tokenFile;
      const token = readTokenFile(file, `auth.clients "${client.name}" token_file`, readFile);
      if (token.length < MIN_TOKEN_LENGTH)
        throw new ConfigError(
          `auth.clients "${client.name}": token_file ${file} holds fewer than ${MIN_TOKEN_LENGTH} characters (use e.g. \`openssl rand -hex 32\`)`,
        );
      const m = mode(file);
      if (m !== undefined && (m & 0o077) !== 0)
        warnings.push(
          `auth.clients "${client.name}": token_file ${file} is readable by group or others (chmod 600 it)`,
        );
      return [{ client, digest: sha256(token), signature: this.signatureOf(file), checkedAt: this.now() }];
    });
    for (let i = 0; i < this.tokens.length; i++) {
      for (let j = i + 1; j < this.tokens.length; j++) {
        if (this.tokens[i]!.digest!.equals(this.tokens[j]!.digest!))
          throw new ConfigError(
            `auth.clients "${this.tokens[i]!.client.name}" and "${this.tokens[j]!.client.name}" have the same token: one token, one identity`,
          );
      }
    }
    this.warnings = warnings;
  }

  /** True when proxymgr.yml has an `auth:` section. */
  get enabled(): boolean {
    return this.config !== undefined;
  }

  /** Identifies the caller and checks it may call `call.method`. */
  check(call: CallInfo): Decision {
    const role = requiredRole(call.method);
    if (!this.config) {
      if (role !== 'operator' || isLoopbackPeer(call.peer)) return { ok: true, identity: ANONYMOUS };
      return {
        ok: false,
        code: PERMISSION_DENIED,
        details: `${call.method} changes the fleet: without authentication (no auth section in proxymgr.yml) it is accepted from loopback only, not from ${peerAddress(call.peer)}`,
      };
    }
    if (role === 'viewer' && this.config.anonymousHealth && HEALTH_METHODS.has(call.method))
      return { ok: true, identity: ANONYMOUS };
    const found = this.identify(call);
    if (!found.ok) return found;
    const identity = found.identity;
    if (!allows(identity.roles, role)) {
      return {
        ok: false,
        code: PERMISSION_DENIED,
        identity,
        details: `${identity.name} (${identity.via}; roles ${[...identity.roles].join(', ')}) may not call ${call.method}: it needs the ${role} role`,
      };
    }
    return found;
  }

  /** Who the caller is, from its client certificate or bearer token; UNAUTHENTICATED says what was missing. */
  identify(call: CallInfo): Decision {
    if (!this.config) return { ok: true, identity: ANONYMOUS };
    const cert = call.certificate;
    if (cert) {
      const fields = certFields(cert);
      for (const client of this.config.clients) {
        if (client.match.kind === 'cert' && certMatches(client.match, fields))
          return {
            ok: true,
            identity: identityOf(client, `cert ${describeCert(fields)}`, fields, this.config.maxNodeIds),
          };
      }
    }
    const bearer = call.authorization.map((v) => /^Bearer\s+(\S+)\s*$/i.exec(v)?.[1]).find((t) => t !== undefined);
    if (bearer !== undefined) {
      const entry = this.matchToken(bearer);
      if (entry) return { ok: true, identity: identityOf(entry.client, 'token', undefined, this.config.maxNodeIds) };
    }
    const tried: string[] = [];
    tried.push(
      cert
        ? `client certificate ${describeCert(certFields(cert))} matches no auth.clients cert entry`
        : 'no client certificate',
    );
    if (bearer !== undefined) tried.push('the bearer token matches no auth.clients token_file');
    else if (call.authorization.length > 0) tried.push('the authorization metadata is not "Bearer <token>"');
    else tried.push('no bearer token (metadata "authorization: Bearer <token>")');
    return { ok: false, code: UNAUTHENTICATED, details: `unknown caller: ${tried.join('; ')}` };
  }

  /** Every token is compared (in constant time per token), so timing says nothing about which one matched. */
  private matchToken(token: string): TokenEntry | undefined {
    const digest = sha256(token);
    let found: TokenEntry | undefined;
    for (const entry of this.tokens) {
      this.refresh(entry);
      if (entry.digest && timingSafeEqual(entry.digest, digest) && !found) found = entry;
    }
    return found;
  }

  private signatureOf(file: string): string {
    try {
      const st = this.stat(file);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return '';
    }
  }

  /** Re-reads a token file that changed since it was read; a bad one denies its client until it is fixed. */
  private refresh(entry: TokenEntry): void {
    const t = this.now();
    if (t - entry.checkedAt < this.recheckMs) return;
    entry.checkedAt = t;
    const file = (entry.client.match as { tokenFile: string }).tokenFile;
    const signature = this.signatureOf(file);
    if (signature === entry.signature) return;
    entry.signature = signature;
    const what = `auth.clients "${entry.client.name}" token_file`;
    let problem: string | undefined;
    let digest: Buffer | undefined;
    try {
      const token = readTokenFile(file, what, this.readFile);
      if (token.length < MIN_TOKEN_LENGTH) problem = `${what} ${file} holds fewer than ${MIN_TOKEN_LENGTH} characters`;
      else digest = sha256(token);
    } catch (err) {
      problem = errorMessage(err);
    }
    const other = digest && this.tokens.find((e) => e !== entry && e.digest && e.digest.equals(digest));
    if (other)
      problem = `${what} ${file} now holds the token of auth.clients "${other.client.name}": one token, one identity`;
    if (problem) {
      entry.digest = undefined;
      this.log.error(
        { client: entry.client.name, file },
        `${problem}; client "${entry.client.name}" is denied until the file is fixed`,
      );
    } else {
      entry.digest = digest;
      this.log.info({ client: entry.client.name, file }, 'token file changed; re-read');
    }
  }
}

/**
 * A bearer token from its file (auth.clients token_file, agent.token_file, ctl --token-file): one word, surrounding
 * whitespace ignored. Errors name `what` and the file, never the content.
 */
export function readTokenFile(
  file: string,
  what: string,
  readFile: (file: string) => string = (f) => readFileSync(f, 'utf8'),
): string {
  let token: string;
  try {
    token = readFile(file).trim();
  } catch (err) {
    throw new ConfigError(
      `${what}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  if (token === '' || /\s/.test(token))
    throw new ConfigError(`${what}: ${file} must hold one token without whitespace`);
  return token;
}

/** May `identity` say hello as `nodeId`? Without authentication, any node id. */
export function mayStreamAs(identity: Identity, nodeId: string): boolean {
  if (identity === ANONYMOUS) return true;
  return identity.roles.has('agent') && identity.nodeIds.some((re) => re.test(nodeId));
}

export const ANONYMOUS: Identity = {
  name: 'anonymous',
  via: 'none',
  roles: new Set<Role>(['agent', 'viewer', 'operator']),
  nodeIds: [/^/],
  credential: 'anonymous',
};

/**
 * The first label of a hello that `identity` may not claim, as a sentence naming the label and the identity, or
 * undefined. An identity without label rules (or no auth) may claim any label: labels are then self-declared.
 */
export function labelRefusal(identity: Identity, labels: Readonly<Record<string, string>>): string | undefined {
  const rules = identity.labels;
  if (!rules) return undefined;
  for (const [name, value] of Object.entries(labels)) {
    const patterns = rules.get(name);
    const shown = JSON.stringify(value.slice(0, 60));
    if (!patterns)
      return `${identity.name} (${identity.via}) may not claim label ${name}=${shown}: auth.clients "${identity.name}" labels lists ${[...rules.keys()].join(', ') || 'no label'}`;
    if (!patterns.some((re) => re.test(value)))
      return `${identity.name} (${identity.via}) may not claim label ${name}=${shown}: not a value auth.clients "${identity.name}" labels.${name} allows`;
  }
  return undefined;
}

function allows(roles: ReadonlySet<Role>, needed: Role): boolean {
  if (needed === 'agent') return roles.has('agent');
  if (needed === 'viewer') return roles.has('viewer') || roles.has('operator');
  return roles.has('operator');
}

interface CertFields {
  readonly cn: string[];
  readonly dns: string[];
  readonly uri: string[];
}

function certFields(cert: PeerCertificate): CertFields {
  const cnRaw = cert.subject?.CN;
  const cn = cnRaw === undefined ? [] : Array.isArray(cnRaw) ? cnRaw : [cnRaw];
  const dns: string[] = [];
  const uri: string[] = [];
  // Node writes "DNS:a.example, URI:spiffe://x/y, IP Address:…", and a value with a comma, quote or non-ASCII
  // character JSON-quoted (DNS:"a, b"). Such values are dropped rather than guessed at: they match nothing.
  for (const part of (cert.subjectaltname ?? '').split(', ')) {
    const value = part.slice(part.indexOf(':') + 1);
    if (value.startsWith('"')) continue;
    if (part.startsWith('DNS:')) dns.push(value);
    else if (part.startsWith('URI:')) uri.push(value);
  }
  return { cn, dns, uri };
}

function describeCert(f: CertFields): string {
  const parts = [...f.cn.map((c) => `CN=${c}`), ...f.dns.map((d) => `DNS:${d}`), ...f.uri.map((u) => `URI:${u}`)];
  return (parts.join(' ') || '(no CN or SAN)').slice(0, 200);
}

/** Every field the entry names must match one of the certificate's values. */
function certMatches(m: { cn?: string; sanDns?: string; sanUri?: string }, f: CertFields): boolean {
  const one = (pattern: string | undefined, values: string[]) =>
    pattern === undefined || values.some((v) => globRegExp(pattern).test(v));
  return one(m.cn, f.cn) && one(m.sanDns, f.dns) && one(m.sanUri, f.uri);
}

function identityOf(
  client: AuthClient,
  via: string,
  fields: CertFields | undefined,
  maxNodeIds: number | undefined,
): Identity {
  const expand = (patterns: readonly string[]) => patterns.flatMap((p) => expandNodeId(p, fields)).map(globRegExp);
  const labels = client.labels
    ? new Map(Object.entries(client.labels).map(([name, patterns]) => [name, expand(patterns)]))
    : undefined;
  return {
    name: client.name,
    via,
    roles: new Set(client.roles),
    nodeIds: expand(client.nodeIds),
    ...(labels ? { labels } : {}),
    ...(client.roles.includes('agent') ? { maxNodeIds: client.maxNodeIds ?? maxNodeIds } : {}),
    credential: fields ? `${client.name}\0${describeCert(fields)}` : client.name,
  };
}

/**
 * `{cn}`, `{san_dns}`, `{san_uri}` become the certificate's values, taken literally (a certificate CN of "*"
 * must not become a wildcard). A placeholder the certificate has no value for matches nothing.
 */
function expandNodeId(pattern: string, fields: CertFields | undefined): string[] {
  let out = [pattern];
  for (const [key, values] of [
    ['{cn}', fields?.cn ?? []],
    ['{san_dns}', fields?.dns ?? []],
    ['{san_uri}', fields?.uri ?? []],
  ] as const) {
    if (!pattern.includes(key)) continue;
    out = out.flatMap((p) => values.map((v) => p.split(key).join(escapeGlob(v))));
  }
  return out;
}

const ESCAPED_STAR = '\u0000';
function escapeGlob(s: string): string {
  return s.replace(/\*/g, ESCAPED_STAR);
}

const globCache = new Map<string, RegExp>();
/** `*` matches any run of characters; everything else literally; anchored. */
export function globRegExp(pattern: string): RegExp {
  let re = globCache.get(pattern);
  if (!re) {
    const body = pattern
      .split('*')
      .map((lit) => lit.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(new RegExp(ESCAPED_STAR, 'g'), '\\*'))
      .join('.*');
    re = new RegExp(`^${body}$`, 's');
    if (globCache.size < 10_000) globCache.set(pattern, re);
  }
  return re;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/**
 * grpc-js peers are "address:port" (IPv6 unbracketed: "::1:5000"): "127.0.0.1:5000" → "127.0.0.1";
 * "::1:5000" and "[::1]:5000" → "::1"; "::ffff:127.0.0.1:5" → "127.0.0.1".
 */
export function peerAddress(peer: string): string {
  let a = peer.replace(/^(ipv4|ipv6):/, '');
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(a);
  if (bracket) a = bracket[1]!;
  else a = a.replace(/:\d+$/, '');
  if (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4) a = a.slice(7);
  return a;
}

export function isLoopbackPeer(peer: string): boolean {
  const a = peerAddress(peer);
  if (isIP(a) === 4) return a.startsWith('127.');
  return a === '::1';
}
