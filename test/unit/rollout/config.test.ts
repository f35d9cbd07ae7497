import { parseConfig } from '../../../common/config/config';
import { parseServiceConfig } from '../../../controlplane/service-config';

const zk = 'service_config: {type: zookeeper, servers: "zk1:2181", path: /service_config}\n';

describe('rollout config', () => {
  test('no rollout section: rollouts off', () => {
    expect(parseConfig(zk, 'cp.yml').rollout).toBeUndefined();
  });

  test('an empty section takes the default policy and the service-config ensemble', () => {
    expect(parseConfig(zk + 'rollout: {}\n', 'cp.yml').rollout).toMatchObject({
      bakeMs: 60000,
      maxNacks: 0,
      autoRollback: true,
      zookeeper: 'zk1:2181',
      zkPath: '/proxymgr',
    });
  });

  test('errors name the file, the key and what is expected', () => {
    expect(() => parseConfig(zk + 'rollout: {waves: [1, "150%"]}\n', 'cp.yml')).toThrow(
      /cp\.yml: rollout\.waves\[1\]: expected a number of agents/,
    );
    expect(() => parseConfig(zk + 'rollout: {auto_rollback: "yes"}\n', 'cp.yml')).toThrow(
      /rollout\.auto_rollback: expected true or false/,
    );
    expect(() => parseConfig('service_config: {type: file, path: /x}\nrollout: {}\n', 'cp.yml')).toThrow(
      /rollout\.zookeeper: missing/,
    );
    expect(() => parseConfig(zk + 'rollout: {spread_by: "zone name"}\n', 'cp.yml')).toThrow(
      /cp\.yml: rollout\.spread_by: "zone name" is not a label key/,
    );
  });

  test('spread_by names an agent label', () => {
    expect(parseConfig(zk + 'rollout: {spread_by: zone}\n', 'cp.yml').rollout).toMatchObject({ spreadBy: 'zone' });
    expect(parseConfig(zk + 'rollout: {}\n', 'cp.yml').rollout?.spreadBy).toBeUndefined();
  });

  test('a service config may carry an agents label selector', () => {
    const raw = (agents: unknown) => ({
      name: 'web',
      origin: '/service_config/web',
      format: 'json' as const,
      text: JSON.stringify({ type: 'static', hosts: [], port: 8080, agents }),
    });
    expect(parseServiceConfig(raw({ zone: 'eu' })).agents).toEqual({ zone: 'eu' });
    expect(parseServiceConfig(raw(undefined)).agents).toBeUndefined();
    expect(() => parseServiceConfig(raw(['eu']))).toThrow(/agents: expected a label selector/);
  });
});
