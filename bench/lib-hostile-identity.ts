/**
 * Hostile inputs against identity and credentials, for `bench hostile`: seeded generators of the classes "foreign
 * ensembles" (service configs whose zookeeper watcher names a server the operator did not list) and "labels" (hello
 * label maps an agent identity may not claim). Every input is well-formed, so what refuses it is the trust
 * boundary, not the parser; test/unit/identity-bounds.test.ts checks that each one is refused.
 */
import { pickIndex } from './lib-common';

/**
 * The allowed ensembles the foreign-ensemble inputs are generated against: the service-config ensemble first, then
 * `controlplane.watcher_ensembles`. The runner configures these (or passes its own list to the generator).
 */
export const HOSTILE_ALLOWED_ENSEMBLES: readonly string[] = [
  '127.0.0.1:2181',
  'zk-a.internal:2181,zk-b.internal:2181',
  'zk-team.internal:2182',
];

const FOREIGN_HOSTS = [
  'evil.example',
  'evil.example.',
  '169.254.169.254',
  '0.0.0.0',
  'localhost',
  '127.0.0.2',
  '[::1]',
  '[::ffff:127.0.0.1]',
  'zk-a.internal.evil.example',
  'zk-a-internal',
  'zk-a.internal.',
  'zk-c.internal',
  '10.0.0.1',
  'xn--zk-a-internal',
  '2130706433',
  '0x7f000001',
];

const one = <T>(rand: () => number, items: readonly T[]): T => items[pickIndex(rand, items.length)]!;

/** The servers of a connect string as written ("a:1, b:2" → ["a:1", "b:2"]). */
const serversOf = (ensemble: string) => ensemble.split(',').map((s) => s.trim());

/**
 * A foreign `server` value: a host nobody listed, a listed host on another port, a listed server mixed with a
 * foreign one, or servers of two different allowed ensembles in one connect string.
 */
export function foreignServer(rand: () => number, allowed: readonly string[] = HOSTILE_ALLOWED_ENSEMBLES): string {
  const listed = allowed.flatMap(serversOf);
  const port = () => one(rand, ['2181', '2182', '2888', '3888', '80', '1', '65535']);
  const foreign = (): string => {
    for (;;) {
      const s = `${one(rand, FOREIGN_HOSTS)}:${port()}`;
      if (!listed.includes(s.toLowerCase())) return s;
    }
  };
  const otherPort = (): string => {
    for (;;) {
      const [host] = one(rand, listed).split(/:(?=\d+$)/);
      const s = `${host}:${port()}`;
      if (!listed.includes(s.toLowerCase())) return s;
    }
  };
  switch (pickIndex(rand, 5)) {
    case 0:
      return foreign();
    case 1:
      return otherPort();
    case 2:
      return [...serversOf(one(rand, allowed)), foreign()].sort(() => rand() - 0.5).join(',');
    case 3: {
      if (allowed.length < 2) return foreign();
      const i = pickIndex(rand, allowed.length);
      const j = (i + 1 + pickIndex(rand, allowed.length - 1)) % allowed.length;
      return `${serversOf(allowed[i]!)[0]},${serversOf(allowed[j]!)[0]}`;
    }
    default:
      return `${one(rand, listed)},${otherPort()}`;
  }
}

/** A service config (JSON text) whose zookeeper watcher names a foreign server; valid in every other respect. */
export function foreignEnsembleConfig(
  rand: () => number,
  allowed: readonly string[] = HOSTILE_ALLOWED_ENSEMBLES,
): string {
  return JSON.stringify({
    type: 'zookeeper',
    server: foreignServer(rand, allowed),
    path: one(rand, ['/services/web', '/proxymgr/rollout', '/service_config', '/x']),
    port: 20_000 + pickIndex(rand, 10_000),
    listen_options: ['mode http'],
  });
}

/**
 * The label rules of the identity the label inputs are generated against (an `auth.clients` entry's `labels`,
 * token entry: no certificate placeholders).
 */
export const HOSTILE_LABEL_RULES: Readonly<Record<string, readonly string[]>> = {
  role: ['web', 'api'],
  zone: ['eu-*'],
};

/** Values an allowed label takes: mixed into a hostile map so that only one entry is the wrong one. */
const ALLOWED_PAIRS: readonly [string, string][] = [
  ['role', 'web'],
  ['role', 'api'],
  ['zone', 'eu-west-1a'],
  ['zone', 'eu-'],
];

const BAD_PAIRS: readonly [string, string][] = [
  ['role', 'payments'],
  ['role', 'Web'],
  ['role', 'web '],
  ['role', ' web'],
  ['role', ''],
  ['role', 'web,payments'],
  ['role', 'w*'],
  ['role', '*'],
  ['role', 'wеb'], // Cyrillic е
  ['role', 'web\u200b'],
  ['role', 'apiweb'],
  ['zone', 'us-east-1'],
  ['zone', 'eu'],
  ['zone', 'EU-west-1'],
  ['zone', 'xeu-1'],
  ['Role', 'web'],
  ['ROLE', 'web'],
  ['role.', 'web'],
  ['team', 'payments'],
  ['canary', 'true'],
  ['spread/zone', 'eu-1'],
  ['zone_', 'eu-1'],
];

/** A hello label map with at least one label the HOSTILE_LABEL_RULES identity may not claim; well-formed otherwise. */
export function hostileLabels(rand: () => number): Record<string, string> {
  const out: Record<string, string> = {};
  const extra = pickIndex(rand, 3);
  for (let i = 0; i < extra; i++) {
    const [k, v] = one(rand, ALLOWED_PAIRS);
    out[k] = v;
  }
  const [k, v] = one(rand, BAD_PAIRS);
  out[k] = v; // last, so an allowed value of the same name cannot replace it
  return out;
}
