import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import yaml from 'js-yaml';
import { loadConfig, parseConfig } from '../../common/config';
import { readStateFile } from '../../agent/sources/file';
import { sanitizeState } from '../../common/validate-state';

const examples = path.join(__dirname, '..', '..', 'deploy', 'examples');

describe('deploy/examples stay in step with the code', () => {
  test('the original ProxyMgr example loads unchanged', () => {
    const c = loadConfig(path.join(examples, 'proxymgr.yml'));
    expect(c.haproxy.configPath).toBe('/etc/haproxy/haproxy.cfg');
    expect(c.haproxy.socketPath).toBe('/var/run/haproxy/stats.sock');
    expect(c.serviceConfig).toEqual({ type: 'zookeeper', servers: 'localhost:2181', path: '/service_config' });
  });

  test.each(['controlplane.yml', 'agent.yml'])('%s loads', (name) => {
    expect(() => loadConfig(path.join(examples, name))).not.toThrow();
  });

  test('controlplane.yml: the rollout policy is read', () => {
    const c = loadConfig(path.join(examples, 'controlplane.yml'));
    expect(c.rollout).toMatchObject({ bakeMs: 60000, maxNacks: 0, autoRollback: true, zkPath: '/proxymgr', zookeeper: 'zk1:2181,zk2:2181,zk3:2181' });
    expect(c.rollout!.waves).toEqual([{ kind: 'count', count: 1 }, { kind: 'share', share: 0.1 }, { kind: 'share', share: 0.5 }, { kind: 'share', share: 1 }]);
  });

  test('agent.yml: control planes, labels and TLS are read', () => {
    const c = loadConfig(path.join(examples, 'agent.yml'));
    expect(c.agent.controlplanes).toEqual(['cp1.internal:7000', 'cp2.internal:7000']);
    expect(c.agent.labels).toEqual({ zone: 'eu-west-1a', role: 'web' });
    expect(c.agent.tls?.cert).toBe('/etc/proxymgr/tls/agent.crt');
  });

  test('state.yml is a clean desired state', async () => {
    const s = await readStateFile(path.join(examples, 'state.yml'));
    expect(s.services.map((x) => x.name)).toEqual(['web', 'db']);
    expect(s.services[0]!.servers[1]!.weight).toBe(2);
    expect(sanitizeState(s).problems).toEqual([]);
  });

  test('the k8s configmap holds configs that load', () => {
    const docs = yaml.loadAll(readFileSync(path.join(__dirname, '..', '..', 'deploy', 'k8s', 'proxymgr.yaml'), 'utf8')) as { kind: string; data?: Record<string, string> }[];
    const cm = docs.find((d) => d.kind === 'ConfigMap')!;
    for (const [name, text] of Object.entries(cm.data!)) expect(() => parseConfig(text, name)).not.toThrow();
  });

  test('every example file is covered here', () => {
    expect(readdirSync(examples).filter((f) => f.endsWith('.yml')).sort()).toEqual(['agent.yml', 'controlplane.yml', 'proxymgr.yml', 'state.yml']);
  });
});
