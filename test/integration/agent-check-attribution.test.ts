import { readFileSync } from 'node:fs';
import { Backend, startBackends } from '../../testkit/backends';
import { freePort, get, tally } from '../../testkit/net';
import { HTTP_DEFAULTS, server, service, startTestAgent, state } from '../../testkit/agent';
import { Service } from '../../common/protocol/types';

jest.setTimeout(60_000);

/**
 * Issue 9 h: one service failing `haproxy -c` used to make every later version NACK on every agent. HAProxy names
 * the failing file:line (or proxy); the agent maps it to the service's `listen` section, keeps that service's
 * previous version (or leaves a new one out), applies the rest and reports the service. Only an error it cannot
 * attribute to a service (global, defaults, …) rejects the whole version.
 */
describe('a service that fails haproxy -c next to good ones (real HAProxy)', () => {
  let backends: Backend[];
  let t: Awaited<ReturnType<typeof startTestAgent>>;
  let webPort: number;
  let apiPort: number;
  let web: Service;
  let api: Service;
  const srv = (name: string) => server(name, backends.find((b) => b.name === name)!.port);
  const cfg = () => readFileSync(t.config.haproxy.configPath, 'utf8');

  beforeAll(async () => {
    backends = await startBackends(['a', 'b', 'c']);
    [webPort, apiPort] = [await freePort(), await freePort()];
    t = await startTestAgent();
    web = service('web', webPort, [srv('a')]);
    api = service('api', apiPort, [srv('b')]);
    expect((await t.agent.apply(state([web, api]))).outcome).toBe('reload');
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all((backends ?? []).map((b) => b.close()));
  });

  test('the bad service keeps its previous version and is reported; the good change is applied and ACKed', async () => {
    const badWeb = { ...web, listenOptions: ['mode http', 'timeout server soon'] }; // passes the option policy
    const newApi = { ...api, listenOptions: [...api.listenOptions, 'http-response set-header X-Api 2'] };
    const r = await t.agent.apply(state([badWeb, newApi]));
    expect(r.outcome).toBe('reload');
    expect(r.error).toBeUndefined();
    expect(r.problems).toEqual([
      {
        service: 'web',
        where: 'service web',
        message: expect.stringMatching(
          /haproxy -c rejected it.*previous version.*unexpected character 's' in 'timeout server'/,
        ),
      },
    ]);
    expect(t.agent.current?.services.find((s) => s.name === 'web')).toEqual(web);
    expect(t.agent.current?.services.find((s) => s.name === 'api')).toEqual(newApi);
    expect(cfg()).toMatch(/set-header X-Api 2/);
    expect(cfg()).not.toMatch(/timeout server soon/);
    expect((await get(webPort)).body.trim()).toBe('a');
    expect((await get(apiPort)).body.trim()).toBe('b');
  });

  test('later versions that still carry the bad service: host changes of the others apply at runtime, no reload', async () => {
    const badWeb = { ...web, listenOptions: ['mode http', 'timeout server soon'] };
    const newApi = {
      ...api,
      listenOptions: [...api.listenOptions, 'http-response set-header X-Api 2'],
      servers: [srv('b'), srv('c')],
    };
    const pid = t.agent.supervisor.pid;
    const r = await t.agent.apply(state([badWeb, newApi]));
    expect(r.outcome).toBe('runtime');
    expect(r.problems.map((p) => p.service)).toEqual(['web']);
    expect(t.agent.supervisor.pid).toBe(pid);
    const counts = await tally(apiPort, 10);
    expect(counts.get('b')).toBe(5);
    expect(counts.get('c')).toBe(5);
  });

  test('a new service that fails haproxy -c is left out and reported; the rest is applied', async () => {
    const badNew = service('fresh', await freePort(), [srv('a')], {
      listenOptions: ['mode http', 'timeout client forever'],
    });
    const r = await t.agent.apply(state([web, api, badNew]));
    expect(r.outcome).not.toBe('rejected');
    expect(r.problems).toEqual([
      {
        service: 'fresh',
        where: 'service fresh',
        message: expect.stringMatching(/haproxy -c rejected it \(left out\).*timeout client/),
        leftOut: true,
      },
    ]);
    expect(t.agent.current?.services.map((s) => s.name).sort()).toEqual(['api', 'web']);
    expect(cfg()).not.toMatch(/listen fresh/);
  });

  test('an error that names no service (defaults) rejects the whole version, quoting haproxy -c', async () => {
    const pid = t.agent.supervisor.pid;
    const before = cfg();
    const r = await t.agent.apply(state([web, { ...api, port: api.port }], [...HTTP_DEFAULTS, 'timeout queue never']));
    expect(r.outcome).toBe('rejected');
    expect(r.error?.code).toBe('HAPROXY_CONFIG_INVALID');
    expect(r.error?.message).toMatch(/global\/defaults.*timeout queue/);
    expect(t.agent.supervisor.pid).toBe(pid);
    expect(cfg()).toBe(before);
  });
});
