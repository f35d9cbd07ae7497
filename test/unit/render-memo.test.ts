import { renderHaproxyConfig } from '../../agent/haproxy/render';
import { DesiredState } from '../../common/protocol/types';
import { server, service, state } from '../../testkit/agent';

// renderHaproxyConfig memoizes each service's section per (service object, fd). Whatever it reuses, its text must
// be exactly what a render of fresh objects gives: structuredClone makes objects the memo has never seen.

const opts = {
  socketPath: '/run/pm/haproxy.sock',
  serverStateFile: '/var/lib/pm/server-state',
  hardStopAfterMs: 30000,
};
const render = (s: DesiredState) => renderHaproxyConfig(s, opts);
const fresh = (s: DesiredState) => render(structuredClone(s));

/** The `listen` section of `name` in a rendered config, up to the blank line after it. */
const section = (cfg: string, name: string) => new RegExp(`^listen ${name}\\n(?:    .*\\n)*`, 'm').exec(cfg)?.[0];

describe('renderHaproxyConfig: memoized sections', () => {
  const api = service('api', 8001, [server('a', 9001)]);
  const db = service('db', 8002, [server('d', 9002, { weight: 3 })], { serverOptions: ['check'] });
  const web = service('web', 8003, [server('w1', 9003), server('w2', 9004)]);

  test('a changed copy of one service, the others the same objects: the text a fresh render gives', () => {
    const before = state([api, db, web]);
    const first = render(before);
    expect(first).toBe(fresh(before));

    const web2 = { ...web, servers: [server('w1', 9003, { weight: 9 }), server('w3', 9005, { address: '::1' })] };
    const after = state([api, db, web2]);
    const second = render(after);
    expect(second).toBe(fresh(after));
    expect(section(second, 'web')).toBe(
      [
        'listen web',
        '    bind fd@6',
        '    mode http',
        '    balance roundrobin',
        '    server w1 127.0.0.1:9003 weight 9',
        '    server w3 [::1]:9005 weight 1',
        '',
      ].join('\n'),
    );
    // Only web's section differs from the first render.
    expect(section(second, 'api')).toBe(section(first, 'api'));
    expect(section(second, 'db')).toBe(section(first, 'db'));
    expect(section(second, 'web')).not.toBe(section(first, 'web'));

    // And back to the first version of web (an object rendered before, at the same fd).
    expect(render(before)).toBe(first);
  });

  test('a service added before the others shifts their fds: no section is reused with its old fd', () => {
    const before = state([db, web]); // db@4, web@5
    const first = render(before);
    expect(first).toBe(fresh(before));
    expect(section(first, 'db')).toContain('bind fd@4');

    const after = state([db, web, api]); // api sorts first: api@4, db@5, web@6
    const second = render(after);
    expect(second).toBe(fresh(after));
    expect(section(second, 'api')).toContain('bind fd@4\n');
    expect(section(second, 'db')).toContain('bind fd@5\n');
    expect(section(second, 'web')).toContain('bind fd@6\n');

    // And api removed again: db and web move back.
    expect(render(before)).toBe(first);
  });

  test('the same service object rendered at different fds gets the right fd each time', () => {
    const only = service('mmm', 8100, [server('s', 9100)]);
    const before = service('aaa', 8101, []);
    for (const [s, fd] of [
      [state([only]), 4],
      [state([before, only]), 5],
      [state([only]), 4],
      [state([only]), 4],
      [state([before, only]), 5],
    ] as const) {
      const out = render(s);
      expect(out).toBe(fresh(s));
      expect(section(out, 'mmm')).toBe(
        [
          'listen mmm',
          `    bind fd@${fd}`,
          '    mode http',
          '    balance roundrobin',
          '    server s 127.0.0.1:9100 weight 1',
          '',
        ].join('\n'),
      );
    }
  });
});
