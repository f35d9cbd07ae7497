import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import yaml from 'js-yaml';
import { compile } from '../../common/config/config-compile';
import { CONFIG_FORMATS } from '../../common/config/config-readers';
import type {
  AgentConfig,
  AuthClient,
  AuthConfig,
  ControlPlaneConfig,
  GatePolicy,
  HaproxyConfig,
  PreflightPolicy,
  RolloutConfig,
  ServiceOptionsPolicy,
} from '../../common/config/config';
import schemaJson from '../../common/config/config.schema.json';
import {
  DEFAULT_GATE_POLICY,
  DEFAULT_PREFLIGHT_POLICY,
  DEFAULT_ROLLOUT_POLICY,
  parseConfig,
} from '../../common/config/config';
import {
  CONFIG_SCHEMA,
  configReference,
  REFERENCE_END,
  REFERENCE_START,
  SchemaNode,
  schemaNode,
  withConfigReference,
  withoutNulls,
} from '../../common/config/config-schema';
import { ConfigError } from '../../common/platform/errors';

const REPO = path.join(__dirname, '..', '..');
const readme = () => readFileSync(path.join(REPO, 'README.md'), 'utf8');

describe('proxymgr.yml schema (common/config/config.schema.json)', () => {
  test("the README's configuration reference is the one generated from the schema (npm run docs:config)", () => {
    expect(withConfigReference(readme())).toBe(readme());
  });

  test('a key added to the schema only makes the README check fail', () => {
    const extra = JSON.parse(JSON.stringify(CONFIG_SCHEMA)) as {
      properties: { agent: { properties: Record<string, SchemaNode> } };
    };
    extra.properties.agent.properties.new_knob = { type: 'integer', description: 'a new knob', 'x-default': '`1`' };
    const table = configReference(extra);
    expect(table).toContain('| `agent.new_knob` | `1` | a new knob |');
    expect(withConfigReference(readme(), table)).not.toBe(readme());
    expect(readme()).toContain(REFERENCE_START);
    expect(readme()).toContain(REFERENCE_END);
  });

  test('unknown keys are refused, naming the file, the key and the keys that exist', () => {
    const load = (text: string) => () => parseConfig(text, '/etc/proxymgr/proxymgr.yml');
    expect(load('agent:\n  drift_interval_ms: 500\n')).toThrow(ConfigError);
    expect(load('agent:\n  drift_interval_ms: 500\n')).toThrow(
      /^\/etc\/proxymgr\/proxymgr\.yml: agent\.drift_interval_ms: unknown key \(expected one of state_dir, node_id, .*drift_check_interval_ms/,
    );
    expect(load('rollout:\n  zookeeper: "zk:2181"\n  gate: {thresholds: {http_500: 0.1}}\n')).toThrow(
      /rollout\.gate\.thresholds\.http_500: unknown key \(expected one of http_5xx, errors, retries, servers_down, queue, rtime\)/,
    );
    expect(load('controlplanes:\n  listen: 127.0.0.1:7000\n')).toThrow(
      /proxymgr\.yml: controlplanes: unknown key \(expected one of haproxy, service_options, service_config, controlplane, rollout, agent, auth\)/,
    );
    // Empty unknown keys too (a typo is a typo), and keys named like an object's built-ins are not keys of the schema.
    expect(load('rollout:\n  zookeeper: "zk:2181"\n  gate: {thresholdz:}\n')).toThrow(
      /rollout\.gate\.thresholdz: unknown key/,
    );
    for (const builtIn of ['constructor', 'toString', 'hasOwnProperty', '__proto__'])
      expect(load(`agent:\n  ${builtIn}: 1\n`)).toThrow(new RegExp(`agent\\.${builtIn}: unknown key`));
    // What the loader's own checks say stays as precise as before (they run first).
    expect(load('agent:\n  drift_check_interval_ms: 5\n')).toThrow(
      /agent\.drift_check_interval_ms: expected an integer 100\.\.3600000, got number 5/,
    );
  });

  test("integer keys take their range and default from the schema; the rollout defaults in code are the schema's", () => {
    const c = parseConfig('rollout: {zookeeper: "zk:2181"}\n', '/etc/proxymgr/proxymgr.yml');
    const d = (key: string) => schemaNode(key)!.default;
    expect(c.agent.driftCheckIntervalMs).toBe(d('agent.drift_check_interval_ms'));
    expect(c.agent.drainTimeoutMs).toBe(d('agent.drain_timeout_ms'));
    expect(c.controlplane.pushesPerSecond).toBe(d('controlplane.pushes_per_second'));
    expect(c.controlplane.pushBufferBytes).toBe((d('controlplane.push_buffer_mb') as number) * 1024 * 1024);
    expect(c.rollout!.bakeMs).toBe(d('rollout.bake_ms'));
    expect(DEFAULT_ROLLOUT_POLICY).toMatchObject({
      bakeMs: d('rollout.bake_ms'),
      maxNacks: d('rollout.max_nacks'),
      autoRollback: d('rollout.auto_rollback'),
    });
    expect(DEFAULT_PREFLIGHT_POLICY).toEqual({
      enabled: true,
      maxFailures: d('rollout.preflight.max_failures'),
      timeoutMs: d('rollout.preflight.timeout_ms'),
    });
    expect(DEFAULT_GATE_POLICY).toEqual({
      enabled: true,
      minRequests: d('rollout.gate.min_requests'),
      sampleMs: d('rollout.gate.sample_ms'),
      baselineMs: d('rollout.gate.baseline_ms'),
      onInsufficientTraffic: d('rollout.gate.on_insufficient_traffic'),
      falseHaltRate: d('rollout.gate.false_halt_rate'),
      thresholds: Object.fromEntries(
        ['http_5xx', 'errors', 'retries', 'servers_down', 'queue', 'rtime'].map((m) => [
          m,
          d(`rollout.gate.thresholds.${m}`),
        ]),
      ),
    });
    expect(() => parseConfig('agent: {backlog: 70000}\n', 'p.yml')).toThrow(
      `p.yml: agent.backlog: expected an integer ${schemaNode('agent.backlog')!.minimum}..${schemaNode('agent.backlog')!.maximum}, got number 70000`,
    );
  });

  test('the example configs name the schema for editors (the original ProxyMgr example stays as it was)', () => {
    for (const name of ['agent.yml', 'controlplane.yml']) {
      const text = readFileSync(path.join(REPO, 'deploy', 'examples', name), 'utf8');
      expect(text).toMatch(/^# yaml-language-server: \$schema=\.\.\/\.\.\/common\/config\/config\.schema\.json$/m);
    }
  });
});

/** A key as the typed config names its field: `drift_check_interval_ms` → `driftCheckIntervalMs`. */
type Camel<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<Camel<T>>}` : S;
type Fields<Props> = Camel<keyof Props & string>;
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Keys = (typeof schemaJson)['properties'];
type Branches<Key extends 'gate' | 'preflight'> = Keys['rollout']['properties'][Key]['anyOf'][number];
type Gate = Extract<Branches<'gate'>, { properties: unknown }>['properties'];
type Preflight = Extract<Branches<'preflight'>, { properties: unknown }>['properties'];

describe('the schema is the one definition of proxymgr.yml', () => {
  test('the typed config has a field for every key of the schema and none it lacks (checked by tsc)', () => {
    // Exceptions are named: fields renamed (x-field), flattened (x-flatten) or added after compilation.
    const fields: true[] = [
      true satisfies Same<Fields<Keys['agent']['properties']>, keyof AgentConfig>,
      true satisfies Same<
        | Exclude<Fields<Keys['controlplane']['properties']>, 'dns' | 'pushBufferMb'>
        | `dns${Capitalize<Fields<Keys['controlplane']['properties']['dns']['properties']>>}`
        | 'pushBufferBytes',
        keyof ControlPlaneConfig
      >,
      true satisfies Same<
        Exclude<Fields<Keys['haproxy']['properties']>, 'path'> | 'binary' | 'userConfigured',
        keyof HaproxyConfig
      >,
      true satisfies Same<Fields<Keys['service_options']['properties']> | 'local', keyof ServiceOptionsPolicy>,
      true satisfies Same<Fields<Keys['rollout']['properties']>, keyof RolloutConfig>,
      true satisfies Same<Fields<Gate>, keyof GatePolicy>,
      true satisfies Same<Fields<Preflight>, keyof PreflightPolicy>,
      true satisfies Same<Fields<Keys['auth']['properties']>, keyof AuthConfig>,
      true satisfies Same<
        Exclude<Fields<Keys['auth']['properties']['clients']['items']['properties']>, 'cert' | 'tokenFile'> | 'match',
        keyof AuthClient
      >,
    ];
    expect(fields.every(Boolean)).toBe(true);
  });

  test('defaults, ranges and messages come from the schema: change a node and the compiled config follows', () => {
    const agent = JSON.parse(JSON.stringify(schemaNode('agent'))) as {
      properties: Record<string, { default?: number; minimum?: number; maximum?: number }>;
    };
    agent.properties.backlog = { ...agent.properties.backlog, default: 128, minimum: 16, maximum: 1024 };
    const run = (value: unknown) =>
      compile(agent, value, 'agent', { file: 'p.yml', base: '/etc', formats: CONFIG_FORMATS }) as AgentConfig;
    expect(run(undefined).backlog).toBe(128);
    expect(run({ backlog: 512 }).backlog).toBe(512);
    expect(() => run({ backlog: 2048 })).toThrow('p.yml: agent.backlog: expected an integer 16..1024, got number 2048');
    expect(run({ state_dir: 'state' }).stateDir).toBe('/etc/state');
  });

  test('every format the schema names (x-as) exists', () => {
    const names: string[] = [];
    const walk = (node: SchemaNode) => {
      if (node['x-as'] !== undefined) names.push(node['x-as']);
      for (const child of [
        ...Object.values(node.properties ?? {}),
        ...(node.anyOf ?? []),
        ...(node.items ? [node.items] : []),
      ])
        walk(child);
    };
    walk(CONFIG_SCHEMA);
    expect(names.length).toBeGreaterThan(20);
    expect(names.filter((n) => !(n in CONFIG_FORMATS))).toEqual([]);
  });

  test('editors get a valid JSON Schema: it compiles, and the example configs satisfy it', () => {
    const validate = new Ajv({ allErrors: true, strict: false }).compile(schemaJson);
    for (const name of ['agent.yml', 'controlplane.yml', 'proxymgr.yml']) {
      const doc = yaml.load(readFileSync(path.join(REPO, 'deploy', 'examples', name), 'utf8'));
      expect([name, validate(withoutNulls(doc) ?? {}), validate.errors ?? null]).toEqual([name, true, null]);
    }
  });
});

describe('review findings', () => {
  test('empty sections and keys (YAML nulls) and listen false still load, as before the schema', () => {
    const c = parseConfig(
      'agent:\n  backlog:\n  admin_listen: false\n  labels:\nhaproxy:\ncontrolplane:\n  dns:\n  metrics_listen: false\n',
      'p.yml',
    );
    expect(c.agent.backlog).toBe(schemaNode('agent.backlog')!.default);
    expect(c.agent.adminListen).toBe('');
    expect(c.controlplane.metricsListen).toBe('');
  });
});

describe('an empty switch that guards security is refused, not read as its default', () => {
  test.each(['controlplane', 'agent'])('%s.tls.require_client_cert: with nothing after it', (section) => {
    const yml = `${section}:\n  tls: {ca: ca.pem, cert: c.pem, key: k.pem, require_client_cert: }\n`;
    expect(() => parseConfig(yml, '/etc/proxymgr/proxymgr.yml')).toThrow(
      new RegExp(`^/etc/proxymgr/proxymgr\\.yml: ${section}\\.tls\\.require_client_cert: expected .*got null`),
    );
    const on = parseConfig(yml.replace('require_client_cert: ', 'require_client_cert: true'), 'p.yml');
    expect((section === 'agent' ? on.agent.tls : on.controlplane.tls)?.requireClientCert).toBe(true);
  });
});
