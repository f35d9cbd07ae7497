/**
 * The proxymgr.yml compiler: walks the schema (common/config/config.schema.json) beside a parsed document and returns the
 * typed config, every key checked against its node (type, range, enum, pattern, required keys, unknown keys) and
 * every key left out given its `default`. Each message names the file, the key and what is expected. Field names
 * are the keys in camelCase (`drift_check_interval_ms` → `driftCheckIntervalMs`) unless the node says otherwise.
 *
 * Besides JSON Schema, a node may carry:
 * - `x-as`: a named format (common/config/config-readers.ts) that reads the checked value (`path` resolves it against the
 *   file's directory, `listen` a host:port, …); a raw format reads the value as written (the node's JSON Schema then
 *   serves editors only);
 * - `x-field`: the field name, where it is not the key in camelCase;
 * - `x-flatten`: a mapping whose fields go into the parent's, prefixed (`dns.min_ttl_ms` → `dnsMinTtlMs`);
 * - `x-keys: "verbatim"`: a mapping whose fields keep the keys as written;
 * - `x-shorthand`: the field a value of the other `anyOf` branch stands for (`gate: false` = `{enabled: false}`);
 * - `x-refuse-empty`: an empty value (`key:` with nothing after it) is refused instead of meaning "not set";
 * - `x-expected`: what the key expects, in the words of its messages, where the type alone says too little.
 *
 * A key whose value is null (`backlog:` with nothing after it) is not set, as YAML writes it; a list item never is.
 * A string item of a list is a line: empty allowed, control characters not.
 */
import type { SchemaNode } from './config-schema';
import { ConfigError } from '../platform/errors';

export type Raw = Record<string, unknown>;

/** Where a format reads: the key (`agent.controlplanes[0]`), the file, its directory, and the mapping holding it. */
export interface At {
  readonly key: string;
  readonly file: string;
  /** Relative paths resolve against it: the config file's directory. */
  readonly base: string;
  /** The mapping (as written) the key belongs to; undefined for list items and the top level. */
  readonly parent: Raw | undefined;
}

/** A named format (`x-as`): reads a value and returns what the config holds, or throws a ConfigError. */
export interface Format {
  /** Reads the value as written, before (instead of) the node's generic checks. */
  readonly raw?: boolean;
  readonly read: (value: unknown, at: At) => unknown;
}

/** What a compilation needs: the file named in messages, the directory paths resolve against, the formats. */
export interface CompileOptions {
  readonly file: string;
  readonly base: string;
  readonly formats: Readonly<Record<string, Format>>;
}

/**
 * Compiles `value` (the document, or the value of `key`) against `node`; throws a ConfigError listing the first
 * problems (bad values first, then unknown keys) when there are any.
 */
export function compile(node: SchemaNode, value: unknown, key: string, options: CompileOptions): unknown {
  const c: Compilation = { ...options, problems: [], unknown: [] };
  const out = compileNode(node, value, key, undefined, false, c);
  const problems = [...c.problems, ...c.unknown];
  if (problems.length > 0) throw new ConfigError(problems.slice(0, 5).join('; '));
  return out;
}

/** `"text"` or `number 5`, for messages: what was found instead. */
export function describe(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}

/** The value as a mapping, or a ConfigError naming the key. */
export function expectObject(value: unknown, file: string, key: string): Raw {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(`${file}: ${key}: expected a mapping, got ${describe(value)}`);
  }
  return value as Raw;
}

/** What a node expects, as its messages say it (`an integer 1..65535`, `"pass" or "halt"`, …). */
export function expected(node: SchemaNode): string {
  if (node['x-expected'] !== undefined) return node['x-expected'];
  if (node.enum) return oneOf(node.enum.map((v) => JSON.stringify(v)));
  switch (typeOf(node)) {
    case 'integer':
      return node.minimum !== undefined && node.maximum !== undefined
        ? `an integer ${node.minimum}..${node.maximum}`
        : 'an integer';
    case 'number':
      return node.minimum !== undefined && node.maximum !== undefined
        ? `a number ${node.minimum}..${node.maximum}`
        : 'a number';
    case 'string':
      return (node.minLength ?? 0) > 0 ? 'a non-empty string' : 'a string';
    case 'boolean':
      return 'true or false';
    case 'object':
      return 'a mapping';
    case 'array':
      return node.items && typeOf(node.items) === 'string' ? 'a list of lines' : 'a list';
    default:
      return oneOf(types(node));
  }
}

interface Compilation extends CompileOptions {
  readonly problems: string[];
  readonly unknown: string[];
}

function compileNode(
  node: SchemaNode,
  value: unknown,
  key: string,
  parent: Raw | undefined,
  item: boolean,
  c: Compilation,
): unknown {
  if (!item && value === null && node['x-refuse-empty']) {
    // `require_client_cert:` with nothing after it is a template that rendered empty, not a choice: refused rather
    // than read as its default (mTLS silently off).
    c.problems.push(`${c.file}: ${key}: expected ${expected(node)}, got null`);
    return undefined;
  }
  if (!item && (value === undefined || value === null)) {
    if (node.default === undefined) return undefined;
    value = structuredClone(node.default);
  }
  const format = node['x-as'] === undefined ? undefined : c.formats[node['x-as']];
  if (node['x-as'] !== undefined && !format) throw new Error(`config schema: ${key}: no format ${node['x-as']}`);
  const at: At = { key, file: c.file, base: c.base, parent };
  if (format?.raw) return read(format, value, at, c);
  if (node['x-shorthand'] !== undefined) {
    const object = node.anyOf?.find((n) => n.properties);
    if (!object) throw new Error(`config schema: ${key}: x-shorthand without a mapping branch`);
    const short = node.anyOf?.some((n) => n !== object && types(n).includes(jsonType(value)));
    return compileNode(object, short ? { [node['x-shorthand']]: value } : value, key, parent, item, c);
  }
  const before = c.problems.length;
  const checked = check(node, value, key, item, c);
  if (checked === undefined || c.problems.length > before) return undefined;
  return format ? read(format, checked, at, c) : checked;
}

/** The value checked against the node (and, for mappings and lists, compiled), or undefined with a problem noted. */
function check(node: SchemaNode, value: unknown, key: string, item: boolean, c: Compilation): unknown {
  const fail = (message: string) => {
    c.problems.push(`${c.file}: ${key}: ${message}`);
    return undefined;
  };
  const wrong = () => fail(`expected ${expected(node)}, got ${describe(value)}`);
  if (node.enum) return node.enum.includes(value) ? value : wrong();
  const type = jsonType(value);
  const allowed = types(node);
  if (!allowed.includes(type) && !(type === 'integer' && allowed.includes('number'))) return wrong();
  if (typeof value === 'number') {
    const low =
      node.exclusiveMinimum !== undefined ? value <= node.exclusiveMinimum : value < (node.minimum ?? -Infinity);
    if (!Number.isFinite(value) || low || value > (node.maximum ?? Infinity)) return wrong();
    return value;
  }
  if (typeof value === 'string') {
    if (value.length < (node.minLength ?? 0)) return wrong();
    // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
    if (item && /[\x00-\x1f\x7f]/.test(value)) return fail('contains a newline or control character');
    if (node.pattern !== undefined && !new RegExp(node.pattern).test(value))
      return fail(`${JSON.stringify(value)} is not ${expected(node)}`);
    return value;
  }
  if (Array.isArray(value)) {
    if (value.length < (node.minItems ?? 0)) return wrong();
    return value.map((v, i) => compileNode(node.items ?? {}, v, `${key}[${i}]`, undefined, true, c));
  }
  if (type === 'object') return compileObject(node, value as Raw, key, c);
  return value;
}

function compileObject(node: SchemaNode, raw: Raw, key: string, c: Compilation): Raw {
  const props = node.properties ?? {};
  const out: Raw = {};
  const at = (name: string) => (key === '' ? name : `${key}.${name}`);
  for (const [name, child] of Object.entries(props)) {
    if (node.required?.includes(name) && (raw[name] === undefined || raw[name] === null)) {
      c.problems.push(`${c.file}: ${at(name)}: missing; expected ${expected(child)}`);
      continue;
    }
    const v = compileNode(child, raw[name], at(name), raw, false, c);
    if (v === undefined) continue;
    const field = child['x-field'] ?? (node['x-keys'] === 'verbatim' ? name : camel(name));
    if (child['x-flatten']) {
      for (const [k, inner] of Object.entries(v as Raw)) out[`${field}${k[0]!.toUpperCase()}${k.slice(1)}`] = inner;
    } else {
      out[field] = v;
    }
  }
  const names = Object.keys(props);
  for (const k of Object.keys(raw)) {
    // An unknown key is refused even when empty: it is a typo, or a key of another version, either way not read.
    if (!Object.hasOwn(props, k))
      c.unknown.push(`${c.file}: ${at(k)}: unknown key${names.length ? ` (expected one of ${names.join(', ')})` : ''}`);
  }
  return out;
}

function read(format: Format, value: unknown, at: At, c: Compilation): unknown {
  try {
    return format.read(value, at);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    c.problems.push(err.message);
    return undefined;
  }
}

function camel(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_, ch: string) => ch.toUpperCase());
}

function types(node: SchemaNode): readonly string[] {
  if (node.type === undefined) return [];
  return (typeof node.type === 'string' ? [node.type] : node.type).filter((t) => t !== 'null');
}

/** The node's one type (null aside), if it has one. */
function typeOf(node: SchemaNode): string | undefined {
  const t = types(node);
  return t.length === 1 ? t[0] : undefined;
}

function jsonType(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (value === null) return 'null';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function oneOf(words: readonly string[]): string {
  return words.length <= 1 ? (words[0] ?? 'a value') : `${words.slice(0, -1).join(', ')} or ${words.at(-1)}`;
}
