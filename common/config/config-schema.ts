/**
 * proxymgr.yml's JSON Schema (common/config/config.schema.json): the single definition of its keys, their types, ranges and
 * defaults, and their documentation. The loader compiles every document from it (common/config/config-compile.ts), the
 * README's configuration reference is generated from it (`npm run docs:config`; test/unit/config-schema.test.ts fails
 * when the two differ), and editors validate configs with it (`# yaml-language-server: $schema=…` in deploy/examples).
 */
import schemaJson from './config.schema.json';

/** The subset of JSON Schema the file uses. */
export interface SchemaNode {
  readonly type?: string | readonly string[];
  readonly description?: string;
  /** The README's "default" column (markdown), when it is not simply `default`. */
  readonly 'x-default'?: string;
  readonly default?: unknown;
  readonly enum?: readonly unknown[];
  readonly minimum?: number;
  readonly exclusiveMinimum?: number;
  readonly maximum?: number;
  readonly minLength?: number;
  readonly pattern?: string;
  readonly properties?: Readonly<Record<string, SchemaNode>>;
  readonly required?: readonly string[];
  readonly items?: SchemaNode;
  readonly minItems?: number;
  readonly anyOf?: readonly SchemaNode[];
  readonly additionalProperties?: boolean | SchemaNode;
  /** The loader's extensions (common/config/config-compile.ts says what each does). */
  readonly 'x-as'?: string;
  readonly 'x-field'?: string;
  readonly 'x-flatten'?: boolean;
  readonly 'x-keys'?: 'verbatim';
  readonly 'x-shorthand'?: string;
  readonly 'x-expected'?: string;
  readonly 'x-refuse-empty'?: boolean;
}

export const CONFIG_SCHEMA = schemaJson as unknown as SchemaNode;

/**
 * The document with every key whose value is null left out: YAML writes an empty key (`agent:`, `backlog:`) as null,
 * and the loader reads that as "not set"; a validator that knows no such rule must see it left out.
 */
export function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== null)
      .map(([k, v]) => [k, withoutNulls(v)]),
  );
}

/** The schema node of a dotted key (`rollout.gate.min_requests`); objects allowed as one branch of an `anyOf`. */
export function schemaNode(key: string, root: SchemaNode = CONFIG_SCHEMA): SchemaNode | undefined {
  let node: SchemaNode | undefined = root;
  for (const part of key.split('.')) {
    const props: Readonly<Record<string, SchemaNode>> | undefined =
      node?.properties ?? node?.anyOf?.find((n) => n.properties)?.properties;
    node = props?.[part];
  }
  return node;
}

/** The schema's default of a key (throws for a key without one: a programming error, caught by the unit tests). */
export function schemaDefault<T = never>(key: string): T {
  const n = schemaNode(key);
  if (n?.default === undefined) throw new Error(`config schema: ${key} has no default`);
  return n.default as T;
}

/** An integer key's range and default, from the schema (throws for a key the schema lacks: a programming error). */
export function integerKey(key: string): { min: number; max: number; default: number | undefined } {
  const n = schemaNode(key);
  if (!n || n.minimum === undefined || n.maximum === undefined)
    throw new Error(`config schema: ${key} is not an integer key with a range`);
  return { min: n.minimum, max: n.maximum, default: typeof n.default === 'number' ? n.default : undefined };
}

/**
 * The README's configuration reference: one row per documented key (a node with a description and an
 * `x-default`), depth first in the schema's order.
 */
export function configReference(root: SchemaNode = CONFIG_SCHEMA): string {
  const rows: string[] = ['| key | default | meaning |', '|---|---|---|'];
  const walk = (node: SchemaNode, prefix: string) => {
    const props = node.properties ?? node.anyOf?.find((n) => n.properties)?.properties ?? node.items?.properties ?? {};
    for (const [name, child] of Object.entries(props)) {
      const key = `${prefix}${name}${child.items?.properties ? '[]' : ''}`;
      if (child.description !== undefined && child['x-default'] !== undefined)
        rows.push(`| \`${key}\` | ${child['x-default']} | ${child.description} |`);
      walk(child, `${key}.`);
    }
  };
  walk(root, '');
  return rows.join('\n') + '\n';
}

/** The markers around the generated table in README.md. */
export const REFERENCE_START =
  '<!-- config-reference: generated from common/config/config.schema.json by `npm run docs:config`; do not edit -->';
export const REFERENCE_END = '<!-- config-reference end -->';

/** README text with the generated table put between the markers. */
export function withConfigReference(readme: string, table = configReference()): string {
  const start = readme.indexOf(REFERENCE_START);
  const end = readme.indexOf(REFERENCE_END);
  if (start < 0 || end < start) throw new Error(`README.md has no ${REFERENCE_START} … ${REFERENCE_END} section`);
  return `${readme.slice(0, start + REFERENCE_START.length)}\n${table}${readme.slice(end)}`;
}
