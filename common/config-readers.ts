/**
 * Field readers for proxymgr.yml: each reads one key, checks it, and throws a ConfigError naming the file, the key
 * and what is expected. Integer keys take their range and default from the schema (common/config.schema.json).
 */
import { isIP } from 'node:net';
import * as path from 'node:path';
import { integerKey } from './config-schema';
import { ConfigError } from './errors';
import type { TlsConfig } from './grpc';

export type Raw = Record<string, unknown>;

export function absoluteDirs(value: unknown, file: string, key: string, base: string): string[] {
  return optionalLines(value, file, key).map((d) => path.normalize(resolvePath(base, d)));
}

/** A user or group name (or "" for none). */
export function optionalName(value: unknown, file: string, key: string): string | undefined {
  if (value === '') return '';
  const s = optionalString(value, file, key);
  if (s !== undefined && !/^[a-z_][a-z0-9_-]*\$?$/i.test(s))
    throw new ConfigError(`${file}: ${key}: "${s}" is not a user or group name ("" keeps HAProxy as the agent's user)`);
  return s;
}

export function onlyKeys(raw: Raw, file: string, key: string, allowed: readonly string[]): void {
  for (const k of Object.keys(raw))
    if (!allowed.includes(k))
      throw new ConfigError(`${file}: ${key}.${k}: unknown key (expected ${allowed.join(', ')})`);
}

export function optionalBool(value: unknown, file: string, key: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean')
    throw new ConfigError(`${file}: ${key}: expected true or false, got ${describe(value)}`);
  return value;
}

/** "host:port" with a port 1..65535 (host may be a name, an IPv4 or a bracketed IPv6). */
export function hostPort(value: string, file: string, key: string): string {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535)
    throw new ConfigError(`${file}: ${key}: "${value}" is not host:port (e.g. "127.0.0.1:7000")`);
  return value;
}

/** A listen address "host:port" (port 0 = any free port), or "" for off; `fallback` when absent. */
export function optionalListen(value: unknown, file: string, key: string, fallback: string): string {
  if (value === '' || value === false) return '';
  const s = optionalString(value, file, key);
  if (s === undefined) return fallback;
  if (!/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(s) || Number(s.slice(s.lastIndexOf(':') + 1)) > 65535) {
    throw new ConfigError(`${file}: ${key}: "${s}" is not host:port (e.g. "127.0.0.1:7000"; "" turns it off)`);
  }
  return s;
}

export function optionalIp(value: unknown, file: string, key: string): string | undefined {
  const s = optionalString(value, file, key);
  if (s !== undefined && isIP(s) === 0)
    throw new ConfigError(`${file}: ${key}: "${s}" is not an IPv4 or IPv6 literal (e.g. 127.0.0.1, ::)`);
  return s;
}

export function optionalLabels(value: unknown, file: string, key: string): Record<string, string> {
  const raw = optionalObject(value, file, key);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!/^[A-Za-z0-9_./-]+$/.test(k))
      throw new ConfigError(`${file}: ${key}: label name "${k}" must match [A-Za-z0-9_./-]+`);
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
      throw new ConfigError(`${file}: ${key}.${k}: expected a string, got ${describe(v)}`);
    out[k] = String(v);
  }
  return out;
}

export function optionalTls(value: unknown, file: string, key: string, base: string): TlsConfig | undefined {
  if (value === undefined || value === null) return undefined;
  const raw = expectObject(value, file, key);
  const p = (k: string) => {
    const v = optionalString(raw[k], file, `${key}.${k}`);
    return v === undefined ? undefined : resolvePath(base, v);
  };
  const requireClientCert = raw.require_client_cert;
  if (requireClientCert !== undefined && typeof requireClientCert !== 'boolean') {
    throw new ConfigError(
      `${file}: ${key}.require_client_cert: expected true or false, got ${describe(requireClientCert)}`,
    );
  }
  const tls: TlsConfig = { ca: p('ca'), cert: p('cert'), key: p('key'), requireClientCert: requireClientCert === true };
  if ((tls.cert === undefined) !== (tls.key === undefined))
    throw new ConfigError(`${file}: ${key}: cert and key go together (both or neither)`);
  if (tls.requireClientCert && !tls.ca)
    throw new ConfigError(`${file}: ${key}.require_client_cert: needs ${key}.ca to check client certificates against`);
  return tls;
}

export function resolvePath(base: string, p: string): string {
  return path.isAbsolute(p) ? p : path.join(base, p);
}

export function expectObject(value: unknown, file: string, key: string): Raw {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(`${file}: ${key}: expected a mapping, got ${describe(value)}`);
  }
  return value as Raw;
}

export function optionalObject(value: unknown, file: string, key: string): Raw {
  return value === undefined || value === null ? {} : expectObject(value, file, key);
}

export function optionalString(value: unknown, file: string, key: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || value === '')
    throw new ConfigError(`${file}: ${key}: expected a non-empty string, got ${describe(value)}`);
  return value;
}

export function requiredString(value: unknown, file: string, key: string, what: string): string {
  const s = optionalString(value, file, key);
  if (s === undefined) throw new ConfigError(`${file}: ${key}: missing; expected ${what}`);
  return s;
}

/**
 * An integer key whose range and default are the schema's (common/config.schema.json): the value, checked, or the
 * default. A key without a default in the schema gives undefined when unset.
 */
export function intKey(value: unknown, file: string, key: string): number {
  const k = integerKey(key);
  const v = optionalInt(value, file, key, k.min, k.max) ?? k.default;
  if (v === undefined) throw new Error(`config schema: ${key} has no default`);
  return v;
}

export function optionalInt(value: unknown, file: string, key: string, min: number, max: number): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${file}: ${key}: expected an integer ${min}..${max}, got ${describe(value)}`);
  }
  return value;
}

export function optionalLines(value: unknown, file: string, key: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new ConfigError(`${file}: ${key}: expected a list of lines, got ${describe(value)}`);
  return value.map((line, i) => {
    if (typeof line !== 'string')
      throw new ConfigError(`${file}: ${key}[${i}]: expected a string, got ${describe(line)}`);
    // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
    if (/[\x00-\x1f\x7f]/.test(line))
      throw new ConfigError(`${file}: ${key}[${i}]: contains a newline or control character`);
    return line;
  });
}

export function describe(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}
