import { DEFAULT_SERVICE_OPTIONS } from '../../../common/config/config';
import { revisionProblem } from '../../../controlplane/rollout/revision';

/** Revisions are read back from ZooKeeper, where (without a digest) anyone could plant one. */
describe('revisions read back from ZooKeeper are checked like snapshots', () => {
  const good = {
    id: 'abcdef012345',
    haproxy: { global: ['maxconn 100'], defaults: ['mode http'] },
    services: [
      {
        name: 'web',
        port: 80,
        bindAddress: '0.0.0.0',
        listenOptions: ['mode http'],
        serverOptions: ['check'],
        agents: { zone: 'a' },
      },
      {
        name: 'web-b',
        port: 80,
        bindAddress: '0.0.0.0',
        listenOptions: ['mode http'],
        serverOptions: [],
        agents: { zone: 'b' },
      },
    ],
  };
  test('a sound revision passes (two services on one port for different agents included)', () => {
    expect(revisionProblem(good, DEFAULT_SERVICE_OPTIONS)).toBeUndefined();
  });
  test.each([
    [
      'a hostile listen option',
      {
        ...good,
        services: [
          { ...good.services[0]!, listenOptions: ['mode http', 'stats socket ipv4@0.0.0.0:9999 level admin'] },
        ],
      },
      /listen_options\[1\]: "stats socket" is not allowed/,
    ],
    [
      'a section opened in global',
      { ...good, haproxy: { global: ['listen evil'], defaults: [] } },
      /haproxy.global\[0\]: "listen" opens a new section/,
    ],
    [
      'a server option on the deny list',
      { ...good, services: [{ ...good.services[0]!, serverOptions: ['namespace x'] }] },
      /server_options/,
    ],
    ['no services list', { id: 'x', haproxy: good.haproxy }, /not a revision/],
    ['a service without its fields', { ...good, services: [{ name: 'web' }] }, /services\[0\] is not a service/],
    ['globals that are not lines', { ...good, haproxy: { global: 'maxconn 1', defaults: [] } }, /lists of lines/],
    ['null', null, /not a revision/],
  ])('%s is refused', (_what, rev, message) => {
    expect(revisionProblem(rev, DEFAULT_SERVICE_OPTIONS)).toMatch(message);
  });
});
