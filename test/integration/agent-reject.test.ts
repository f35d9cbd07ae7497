import { readFileSync } from 'node:fs';
import { Backend, startBackends } from '../../testkit/backends';
import { freePort, tally } from '../../testkit/net';
import { server, service, startTestAgent, state } from '../../testkit/agent';
import { Service } from '../../common/protocol/types';

jest.setTimeout(60_000);

describe('bad input is rejected with a clear error and traffic keeps flowing on the previous state', () => {
  let backends: Backend[];
  let t: Awaited<ReturnType<typeof startTestAgent>>;
  let port: number;
  let web: Service;

  beforeAll(async () => {
    backends = await startBackends(['a', 'b']);
    port = await freePort();
    t = await startTestAgent();
    web = service(
      'web',
      port,
      backends.map((b) => server(b.name, b.port)),
    );
    expect((await t.agent.apply(state([web]))).outcome).toBe('reload');
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all((backends ?? []).map((b) => b.close()));
  });

  async function expectUntouched(pid: number | undefined, cfg: string) {
    expect(t.agent.supervisor.pid).toBe(pid);
    expect(readFileSync(t.config.haproxy.configPath, 'utf8')).toBe(cfg);
    const counts = await tally(port, 10);
    expect(counts.get('a')).toBe(5);
    expect(counts.get('b')).toBe(5);
  }

  test('an option HAProxy rejects: the service keeps its previous version, reported with haproxy -c quoted', async () => {
    const pid = t.agent.supervisor.pid;
    const cfg = readFileSync(t.config.haproxy.configPath, 'utf8');
    // A keyword the option policy allows with an argument only HAProxy can judge.
    const r = await t.agent.apply(state([{ ...web, listenOptions: ['mode http', 'timeout server soon'] }]));
    expect(r.outcome).toBe('nothing');
    expect(r.problems).toEqual([
      {
        service: 'web',
        where: 'service web',
        message: expect.stringMatching(
          /haproxy -c rejected it \(kept its previous version\): .*unexpected character 's' in 'timeout server'/,
        ),
      },
    ]);
    await expectUntouched(pid, cfg);
  });

  const hostile: [string, (port2: number) => Service, RegExp][] = [
    [
      'a newline in a listen option',
      (p) => service('evil', p, [], { listenOptions: ['mode http\n    stats enable'] }),
      /listen_options\[0\]: contains a newline/,
    ],
    [
      'a newline in server_options',
      (p) => service('evil', p, [], { serverOptions: ['check\nlisten x'] }),
      /server_options\[0\]: contains a newline/,
    ],
    [
      'a new section in listen_options',
      (p) =>
        service('evil', p, [], { listenOptions: ['mode http', 'global', 'stats socket ipv4@127.0.0.1:1 level admin'] }),
      /listen_options\[1\]: "global" opens a new section/,
    ],
    [
      'a file outside service_options.file_dirs',
      (p) => service('evil', p, [], { listenOptions: ['errorfile 503 /etc/passwd'] }),
      /errorfile "\/etc\/passwd": file outside/,
    ],
    ['a service name outside [A-Za-z0-9_.:-]', (p) => service('evil name', p, []), /name must match/],
    ['a service port of 0', () => service('evil', 0, []), /port 0 is outside 1-65535/],
    ['a service port of 70000', () => service('evil', 70000, []), /port 70000 is outside 1-65535/],
    ['a duplicate port', () => service('evil', port, []), /port \d+ is already used by service web/],
  ];

  test.each(hostile)(
    '%s: rejected by name, nothing of it applied, the rest still served',
    async (_what, make, message) => {
      const pid = t.agent.supervisor.pid;
      const cfg = readFileSync(t.config.haproxy.configPath, 'utf8');
      const bad = make(await freePort());
      const r = await t.agent.apply(state([web, bad]));
      expect(r.problems.length).toBeGreaterThan(0);
      expect(r.problems.map((p) => `${p.where}: ${p.message}`).join('\n')).toMatch(message);
      expect(r.problems.every((p) => p.service === bad.name)).toBe(true);
      expect(r.outcome).toBe('nothing');
      await expectUntouched(pid, cfg);
    },
  );

  // A bad server (a host node: the least trusted input) is left out on its own; its service is served without it.
  const badServers: [string, Service['servers'][number], RegExp][] = [
    [
      'a control character in a server option',
      server('x', 1, { options: ['check\x07'] }),
      /options\[0\]: contains a newline or control character/,
    ],
    [
      'a server option HAProxy does not have',
      server('x', 1, { options: ['check', 'frobnicate'] }),
      /options\[1\]: "frobnicate" is not a server option/,
    ],
    ['a server name outside [A-Za-z0-9_.:-]', server('x y', 8080), /server "x y".*name must match/],
    ['a server port of 65536', server('x', 65536), /port 65536 is outside 1-65535/],
  ];
  test.each(badServers)(
    '%s: that server is left out by name, its service and the rest are served',
    async (_what, bad, message) => {
      const cfg = readFileSync(t.config.haproxy.configPath, 'utf8');
      const evil = service('evil', await freePort(), [server('good', backends[0]!.port), bad]);
      const r = await t.agent.apply(state([web, evil]));
      expect(r.problems.map((p) => `${p.where}: ${p.message}`).join('\n')).toMatch(message);
      expect(r.problems.map((p) => p.message).join()).toMatch(
        /this server is left out, the rest of the service is served/,
      );
      const served = readFileSync(t.config.haproxy.configPath, 'utf8');
      expect(served).toMatch(/server good /);
      expect(served).not.toMatch(new RegExp(`server ${bad.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} `));
      expect((await tally(evil.port, 2)).get('a')).toBe(2);
      // Back to the state before (the evil service removed: a reload), for the next case.
      expect((await t.agent.apply(state([web]))).outcome).toBe('reload');
      expect(readFileSync(t.config.haproxy.configPath, 'utf8')).toBe(cfg);
    },
  );

  test('a hostile change to a running service keeps its previous version', async () => {
    const pid = t.agent.supervisor.pid;
    const cfg = readFileSync(t.config.haproxy.configPath, 'utf8');
    const r = await t.agent.apply(state([{ ...web, listenOptions: ['mode http\nbind :1'] }]));
    expect(r.problems[0]?.where).toBe('service "web" listen_options[0]');
    expect(r.outcome).toBe('nothing');
    await expectUntouched(pid, cfg);
  });

  test('a newline in the global section rejects the whole state', async () => {
    const pid = t.agent.supervisor.pid;
    const cfg = readFileSync(t.config.haproxy.configPath, 'utf8');
    const s = state([web]);
    const r = await t.agent.apply({
      ...s,
      haproxy: { ...s.haproxy, global: ['maxconn 100\nstats socket /tmp/x level admin'] },
    });
    expect(r.outcome).toBe('rejected');
    expect(r.error?.message).toBe('haproxy.global[0]: contains a newline or control character');
    await expectUntouched(pid, cfg);
  });
});
