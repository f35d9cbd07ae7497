import { sanitizeState } from '../../common/haproxy/validate-state';
import { DEFAULT_SERVICE_OPTIONS } from '../../common/config/config';
import { StateError } from '../../common/platform/errors';
import { server, service, state } from '../../testkit/agent';

describe('sanitizeState (pure)', () => {
  test('a clean state passes unchanged, services sorted by name', () => {
    const s = state([service('web', 80, [server('a', 1)]), service('api', 81, [])]);
    const r = sanitizeState(s);
    expect(r.problems).toEqual([]);
    expect(r.state.services.map((x) => x.name)).toEqual(['api', 'web']);
  });

  test('duplicate port: the service already running keeps it', () => {
    const prev = state([service('web', 80, [])]);
    const r = sanitizeState(state([service('aaa', 80, []), service('web', 80, [])]), prev);
    expect(r.state.services.map((x) => x.name)).toEqual(['web']);
    expect(r.problems).toEqual([
      { service: 'aaa', where: 'service aaa', message: 'port 80 is already used by service web' },
    ]);
  });

  test('a bad server is left out on its own; the rest of its service is served', () => {
    const r = sanitizeState(state([service('web', 80, [server('a', 1), server('bad name', 2)])]));
    expect(r.state.services.map((x) => [x.name, x.servers.map((y) => y.name)])).toEqual([['web', ['a']]]);
    expect(r.problems[0]).toEqual({
      service: 'web',
      server: 'bad name',
      where: 'service "web" server "bad name"',
      message: 'name must match [A-Za-z0-9_.:-]+; this server is left out, the rest of the service is served',
    });
  });

  test('a rejected service falls back to its previous version', () => {
    const prev = state([service('web', 80, [server('a', 1)])]);
    const r = sanitizeState(state([service('web', 80, [server('a', 1)], { listenOptions: ['bind :1'] })]), prev);
    expect(r.state.services).toEqual(prev.services);
    expect(r.problems[0]!.where).toBe('service "web" listen_options[0]');
  });

  test('weights, addresses, bind address and duplicate names are checked', () => {
    const r = sanitizeState(
      state([
        service('w1', 1, [server('a', 1, { weight: 300 })]),
        service('w2', 2, [server('a', 1, { address: 'not an address!' })]),
        service('w3', 3, [], { bindAddress: 'localhost' }),
        service('w4', 4, [server('a', 1), server('a', 2)]),
      ]),
    );
    expect(r.state.services.map((x) => [x.name, x.servers.length])).toEqual([
      ['w1', 0],
      ['w2', 0],
    ]); // bad servers left out
    expect(r.problems.map((p) => p.message)).toEqual([
      'weight 300 is outside 0-256; this server is left out, the rest of the service is served',
      'address "not an address!" is neither an IP literal nor a hostname; this server is left out, the rest of the service is served',
      'bind address "localhost" is not an IP literal',
      'duplicate server name',
    ]);
  });

  test('a control character in defaults rejects the whole state', () => {
    const s = state([]);
    expect(() => sanitizeState({ ...s, haproxy: { global: [], defaults: ['mode http\r'] } })).toThrow(StateError);
  });

  test('a global or defaults line that opens a section rejects the whole state', () => {
    const s = state([service('web', 80, [])]);
    expect(() => sanitizeState({ ...s, haproxy: { global: ['maxconn 100', 'listen evil'], defaults: [] } })).toThrow(
      new StateError([{ where: 'haproxy.global[1]', message: '"listen" opens a new section' }]),
    );
    expect(() => sanitizeState({ ...s, haproxy: { global: [], defaults: ['mode http', '  "frontend" f'] } })).toThrow(
      /haproxy.defaults\[1\]: "frontend" opens a new section/,
    );
  });
});

describe('sanitizeState: service options (common/haproxy/option-policy)', () => {
  const honest = service('api', 81, [server('a', 1)]);

  test('a hostile listen option rejects only its service, naming it, the option and why; the others stay', () => {
    const evil = service('web', 80, [server('a', 1)], {
      listenOptions: ['mode http', 'global', 'stats socket ipv4@0.0.0.0:9999 level admin', 'listen x'],
    });
    const r = sanitizeState(state([evil, honest]));
    expect(r.state.services.map((s) => s.name)).toEqual(['api']);
    expect(r.problems.map((p) => `${p.where}: ${p.message}`)).toEqual([
      'service "web" listen_options[1]: "global" opens a new section',
      'service "web" listen_options[2]: "stats socket" is not allowed in a listen section: opens an admin socket (a global keyword) (deny list; service_options.extra_listen_keywords cannot allow it)',
      'service "web" listen_options[3]: "listen" opens a new section',
    ]);
    expect(r.problems.every((p) => p.service === 'web')).toBe(true);
  });

  test('a service that was good and turns hostile keeps its previous version', () => {
    const good = service('web', 80, [server('a', 1)]);
    const prev = state([good, honest]);
    const r = sanitizeState(state([{ ...good, listenOptions: ['mode http', 'bind 127.0.0.1:9999'] }, honest]), prev);
    expect(r.state.services).toEqual([honest, good]); // sorted by name; web is its previous version
    expect(r.problems[0]?.where).toBe('service "web" listen_options[1]');
  });

  test.each([
    [
      'server_options',
      { serverOptions: ['check', 'crt /etc/shadow'] },
      'service "web" server_options[1]',
      /crt "\/etc\/shadow": file outside service_options.file_dirs \(none listed\)/,
    ],
    [
      'server_options',
      { serverOptions: ['check bogus'] },
      'service "web" server_options[0]',
      /"bogus" is not a server option/,
    ],
    [
      'listen_options',
      { listenOptions: ['errorfile 503 /etc/shadow'] },
      'service "web" listen_options[0]',
      /errorfile "\/etc\/shadow": file outside/,
    ],
    [
      'listen_options',
      { listenOptions: ['external-check command /bin/touch'] },
      'service "web" listen_options[0]',
      /runs a program/,
    ],
  ])('%s: %j', (_key, extra, where, message) => {
    const r = sanitizeState(state([service('web', 80, [], extra)]));
    expect(r.state.services).toEqual([]);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]!.where).toBe(where);
    expect(r.problems[0]!.message).toMatch(message);
  });

  test('per-host options are checked like server_options', () => {
    const r = sanitizeState(
      state([service('web', 80, [server('a', 1, { options: ['backup', 'ca-file /etc/ssl/private/x.pem'] })])]),
    );
    expect(r.problems.map((p) => `${p.where}: ${p.message}`)).toEqual([
      'service "web" server "a": options[1]: ca-file "/etc/ssl/private/x.pem": file outside service_options.file_dirs (none listed); this server is left out, the rest of the service is served',
    ]);
  });

  test('a newline is reported as such, not as a keyword problem too', () => {
    const r = sanitizeState(state([service('web', 80, [], { listenOptions: ['mode http\nbind :1'] })]));
    expect(r.problems.map((p) => p.message)).toEqual(['contains a newline or control character']);
  });

  test('the policy comes from the caller; answers are cached per policy, not across policies', () => {
    const web = service('web', 80, [server('a', 1, { options: ['curves X25519'] })], {
      listenOptions: ['mode http', 'errorfile 503 /srv/errors/503.http', 'option my-option'],
    });
    const s = state([web]);
    expect(sanitizeState(s).problems).toHaveLength(3);
    const policy = {
      extraListenKeywords: ['option my-option'],
      extraServerKeywords: ['curves'],
      fileDirs: ['/srv/errors'],
      targets: DEFAULT_SERVICE_OPTIONS.targets,
      bindPorts: DEFAULT_SERVICE_OPTIONS.bindPorts,
      bindLoopback: false,
      local: DEFAULT_SERVICE_OPTIONS.local,
    };
    expect(sanitizeState(s, undefined, policy).problems).toEqual([]);
    expect(sanitizeState(s, undefined, DEFAULT_SERVICE_OPTIONS).problems).toHaveLength(3);
  });
});
