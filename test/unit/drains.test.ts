import { Drains } from '../../agent/drains';
import { DesiredState, Server, Service } from '../../common/protocol/types';

const server = (name: string, extra: Partial<Server> = {}): Server => ({
  name,
  address: '127.0.0.1',
  port: 8000,
  weight: 1,
  options: [],
  ...extra,
});
const service = (name: string, servers: Server[]): Service => ({
  name,
  port: 9000,
  bindAddress: '127.0.0.1',
  listenOptions: ['mode http'],
  serverOptions: [],
  servers,
});
const state = (...services: Service[]): DesiredState => ({
  version: 'v1',
  haproxy: { global: [], defaults: [] },
  services,
});

describe('Drains: carried to the next agent in haproxy.cfg', () => {
  test('the trailer restores every drain as it was (server definition, since, deadline), in a fixed order', () => {
    const d = new Drains(30_000);
    const zoned = server('b', { zone: 'z1', options: ['backup'], weight: 7 });
    d.started('web', zoned, undefined, 1000);
    d.started('api', server('x'), { ...service('api', []), drainTimeoutMs: 5000 }, 2000);
    const trailer = d.trailer();
    expect(trailer.split('\n')[0]).toMatch(/^# proxymgr agent: servers draining/);
    expect(trailer.split('\n').filter((l) => l.startsWith('# draining '))).toHaveLength(2);

    const next = new Drains(30_000);
    const desired = state(service('web', [server('a')]), service('api', [server('y')]));
    expect(next.restore(`listen web\n    server a 127.0.0.1:8000\n${trailer}`, desired, 0)).toBe(2);
    expect(next.trailer()).toBe(trailer); // byte for byte: the takeover compares whole files
    expect(next.list().map((x) => [x.backend, x.server, x.since, x.deadline, x.attempts])).toEqual([
      ['api', server('x'), 2000, 7000, 0],
      ['web', zoned, 1000, 31_000, 0],
    ]);
  });

  test('a drain of a server that is desired again, or of a service that is gone, is not restored', () => {
    const d = new Drains(30_000);
    d.started('web', server('b'), undefined, 0);
    d.started('gone', server('c'), undefined, 0);
    const next = new Drains(30_000);
    expect(next.restore(d.trailer(), state(service('web', [server('b')])), 0)).toBe(0);
    expect(next.size).toBe(0);
  });

  test('a restored deadline further away than the longest drain timeout (a skewed clock) is held to it', () => {
    const d = new Drains(30_000);
    const far = { backend: 'web', server: server('b'), since: 0, deadline: 1e15 };
    expect(d.restore(`# draining ${JSON.stringify(far)}`, state(service('web', [server('a')])), 5000)).toBe(1);
    expect(d.nextDeadline()).toBe(5000 + 86_400_000);
  });

  test('lines that are not drains are skipped: junk JSON, wrong types, infinite deadlines, no comment marker', () => {
    const desired = state(service('web', [server('a')]));
    const ok = { backend: 'web', server: server('b'), since: 1, deadline: 2 };
    const lines = [
      '# draining {not json',
      '# draining null',
      `# draining ${JSON.stringify({ ...ok, backend: 7 })}`,
      `# draining ${JSON.stringify({ ...ok, server: { ...server('b'), options: 'check' } })}`,
      `# draining ${JSON.stringify({ ...ok, server: { ...server('b'), port: '80' } })}`,
      `# draining ${JSON.stringify({ ...ok, deadline: 'soon' })}`,
      `# draining ${JSON.stringify(ok).replace('"deadline":2', '"deadline":1e999')}`,
      `draining ${JSON.stringify(ok)}`,
      `    # draining ${JSON.stringify(ok)}`,
    ];
    const d = new Drains(30_000);
    expect(d.restore(lines.join('\n'), desired, 0)).toBe(0);
    expect(d.restore(`# draining ${JSON.stringify(ok)}`, desired, 0)).toBe(1);
  });
});
