import { parseConfig } from '../../common/config/config';
import { seededRandom } from '../../bench/lib-common';
import { HOSTILE_TARGET_CLASSES, HOSTILE_TARGET_LISTENS } from '../../bench/lib-hostile-targets';
import { buildDesiredStateChecked } from '../../controlplane/builder';
import { parseServiceConfig } from '../../controlplane/service-config';

const [cp, cpMetrics, admin, metrics] = HOSTILE_TARGET_LISTENS;
const policy = parseConfig(
  `controlplane: {listen: "${cp}", metrics_listen: "${cpMetrics}"}\nagent: {admin_listen: "${admin}", metrics_listen: "${metrics}"}\n`,
  'p.yml',
).serviceOptions;

/** Refused: the config does not parse, or the builder reports a problem for it (a server left out counts). */
function refusal(text: string): string | undefined {
  let config;
  try {
    config = parseServiceConfig({ name: 'victim', text, origin: 'hostile', format: 'json' }, policy);
  } catch (err) {
    return (err as Error).message;
  }
  if (config.watcher.type !== 'static') throw new Error('generators write static services');
  const { state, problems } = buildDesiredStateChecked({
    haproxy: { global: [], defaults: [] },
    services: [{ config, hosts: config.watcher.hosts }],
    policy,
  });
  const served = state.services.find((s) => s.name === 'victim');
  // A refused host must not be served either.
  if (problems.length > 0 && served && served.servers.length === config.watcher.hosts.length)
    throw new Error(`problems reported but every server served: ${text}`);
  return problems[0]?.message;
}

describe.each(Object.entries(HOSTILE_TARGET_CLASSES))('hostile class %s', (_name, generate) => {
  test('500 seeded inputs, every one refused with a reason', () => {
    const rand = seededRandom(19);
    for (let i = 0; i < 500; i++) {
      const text = generate(rand);
      const why = refusal(text);
      if (why === undefined) throw new Error(`accepted: ${text}`);
      expect(why.length).toBeGreaterThan(10);
    }
  });
});
