import { DEFAULT_SERVICE_OPTIONS, parseConfig, ServiceOptionsPolicy } from '../../common/config/config';
import { ConfigError } from '../../common/platform/errors';
import { LISTEN_KEYWORDS, SERVER_KEYWORDS } from '../../common/haproxy/haproxy-keywords';
import { quote, tokenize } from '../../common/haproxy/haproxy-tokens';
import { listenOptionProblem, sectionLineProblem, serverOptionsProblems } from '../../common/haproxy/option-policy';
import { ORDINARY_LISTEN_OPTIONS, ORDINARY_SERVER_OPTIONS } from '../../testkit/service-options';

const policy = (p: Partial<ServiceOptionsPolicy> = {}): ServiceOptionsPolicy => ({ ...DEFAULT_SERVICE_OPTIONS, ...p });
const none = DEFAULT_SERVICE_OPTIONS;
const withDirs = policy({ fileDirs: ['/etc/haproxy/errors', '/etc/ssl/proxymgr/', '/dev/log'] });

describe('the keyword tables (generated from the HAProxy 2.6 manual)', () => {
  test('hold the listen and server keywords services use', () => {
    for (const k of [
      'mode',
      'balance',
      'option httpchk',
      'timeout server',
      'http-request',
      'stats uri',
      'stick-table',
      'use_backend',
      'errorfile',
    ])
      expect(LISTEN_KEYWORDS).toContain(k);
    expect(LISTEN_KEYWORDS).not.toContain('stats socket');
    expect(SERVER_KEYWORDS.check).toEqual({ args: 0 });
    expect(SERVER_KEYWORDS.inter).toEqual({ args: 1 });
    expect(SERVER_KEYWORDS.track).toEqual({ args: 1 });
    expect(SERVER_KEYWORDS.source).toEqual({ args: 1, optional: ['usesrc', 'interface'] });
  });
});

describe('listen options', () => {
  test.each(ORDINARY_LISTEN_OPTIONS)('allowed: %s', (line) => {
    expect(listenOptionProblem(line, none, 'web')).toBeUndefined();
  });

  test.each([
    ['global', /^"global" opens a new section$/],
    ['  global', /"global" opens a new section/],
    ['listen x', /"listen" opens a new section/],
    ['frontend f', /opens a new section/],
    ['backend b', /opens a new section/],
    ['defaults', /opens a new section/],
    ['peers p', /opens a new section/],
    ['userlist u', /opens a new section/],
    ['program evil', /opens a new section/],
    ['resolvers dns', /opens a new section/],
    ['ring r', /opens a new section/],
    ['http-errors e', /opens a new section/],
    ['mailers m', /opens a new section/],
    ['cache c', /opens a new section/],
    ['Global', /"Global" opens a new section/],
    ['"global"', /"global" opens a new section/],
    ["'listen' x", /"listen" opens a new section/],
    ['glo""bal', /"global" opens a new section/],
    ['\\x67lobal', /"global" opens a new section/], // HAProxy decodes \xNN
    ['global#x', /"global" opens a new section/], // # starts a comment anywhere
    ['no listen', /"listen" opens a new section/],
  ])('a new section: %s', (line, message) => {
    expect(listenOptionProblem(line, none, 'web')).toMatch(message);
  });

  test.each([
    [
      'stats socket ipv4@0.0.0.0:9999 level admin',
      /^"stats socket" is not allowed in a listen section: opens an admin socket/,
    ],
    [
      'bind 127.0.0.1:9999',
      /^"bind" is not allowed in a listen section: the agent owns every listening socket .*\(deny list; service_options.extra_listen_keywords cannot allow it\)$/,
    ],
    ['bind :80 ssl crt /etc/shadow', /"bind" is not allowed/],
    ['server evil 10.0.0.1:80', /"server" is not allowed .*watcher/],
    ['server-template s 10 db.example.com:80', /"server-template" is not allowed/],
    ['default-server ca-file /etc/shadow', /"default-server" is not allowed/],
    ['dispatch 10.0.0.1:80', /"dispatch" is not allowed/],
    ['external-check command /bin/touch', /"external-check" is not allowed .*runs a program/],
    ['external-check path /bin', /"external-check" is not allowed/],
    ['option external-check', /"option external-check" is not allowed .*runs a program/],
    ['no option external-check', /"option external-check" is not allowed/],
    ['stats admin if TRUE', /"stats admin" is not allowed/],
    ['load-server-state-from-file none', /"load-server-state-from-file" is not allowed .*server-state file/],
    ['server-state-file-name /etc/shadow', /"server-state-file-name" is not allowed/],
  ])('denied: %s', (line, message) => {
    expect(listenOptionProblem(line, none, 'web')).toMatch(message);
  });

  test.each([
    [
      'option no-such-option',
      /^"option no-such-option" is not allowed in a listen section \(not a listen keyword of HAProxy 2\.6 .*extra_listen_keywords\)$/,
    ],
    ['frobnicate 1 2', /^"frobnicate" is not allowed/],
    ['stats bogus', /^"stats" is not allowed in a listen section: a stats page shows .*every service/],
    ['no option httplog', /"no option httplog": "no" only goes before options/],
    ['description "abc', /unterminated quote/],
    ['"mode" http', /keyword "\\"mode\\"" must be written plainly/],
    ['mo\\de http', /must be written plainly/],
  ])('unknown or odd: %s', (line, message) => {
    expect(listenOptionProblem(line, none, 'web')).toMatch(message);
  });

  test.each([
    [
      'errorfile 503 /etc/shadow',
      /^errorfile "\/etc\/shadow": file outside service_options.file_dirs \(none listed\)$/,
    ],
    ['errorfile 503 /etc/passwd', /file outside service_options.file_dirs/],
    ['errorfile 503 "/etc/shadow"', /errorfile "\\"\/etc\/shadow\\"": a file name must be written plainly/],
    ['errorfile 503 503.http', /not an absolute path/],
    ['http-request return status 200 file /etc/shadow', /^file "\/etc\/shadow": file outside/],
    [
      'http-request return status 200 content-type text/plain lf-file /etc/passwd',
      /^lf-file "\/etc\/passwd": file outside/,
    ],
    ['http-request return status 503 errorfile /etc/shadow', /^errorfile "\/etc\/shadow": file outside/],
    ['http-response return status 200 file /etc/shadow', /file outside/],
    ['http-error status 503 content-type text/html file /etc/shadow', /file outside/],
    ['acl leak req.hdr(x) -m beg -f /etc/shadow', /^pattern file \(-f\) "\/etc\/shadow": file outside/],
    ['http-request deny if { req.hdr(x) -f /etc/shadow }', /pattern file \(-f\)/],
    ['http-request set-header X %[req.hdr(x),map(/etc/shadow)]', /^map\(\) "\/etc\/shadow": file outside/],
    ['http-request set-header X %[req.hdr(x),map_beg(/etc/shadow,none)]', /^map_beg\(\) "\/etc\/shadow"/],
    ['http-request set-var(txn.x) req.hdr(x),map_str_int(/etc/shadow,0)', /map_str_int\(\)/],
    [
      'http-request set-header X "%[req.hdr(x),map(\'/etc/shadow\')]"',
      /map\(\) "'\/etc\/shadow'": a file name must be written plainly/,
    ],
    ['http-request set-map(/etc/passwd) %[src] x', /^set-map\(\) "\/etc\/passwd"/],
    ['http-request add-acl(/etc/passwd) %[src]', /add-acl\(\)/],
    [
      'http-request deny unless { req.hdr(authorization),jwt_verify(RS256,/etc/ssl/private/key.pem) -m int 1 }',
      /^jwt_verify\(\) "\/etc\/ssl\/private\/key.pem": file outside/,
    ],
    ['filter spoe engine x config /etc/shadow', /^filter config "\/etc\/shadow": file outside/],
    ['log /dev/log local0', /^log socket "\/dev\/log": file outside service_options.file_dirs \(none listed\)$/],
    ['log unix@/run/other.sock local0', /log socket "\/run\/other.sock"/],
    ['log fd@3 local0', /writes to a file descriptor/],
    ['log abns@x local0', /abstract unix socket/],
  ])('a file or descriptor outside file_dirs: %s', (line, message) => {
    expect(listenOptionProblem(line, none, 'web')).toMatch(message);
  });

  test('files inside file_dirs are fine; .. cannot climb out; the list of dirs is shown', () => {
    expect(listenOptionProblem('errorfile 503 /etc/haproxy/errors/503.http', withDirs, 'web')).toBeUndefined();
    expect(
      listenOptionProblem('http-request return status 200 file /etc/haproxy/errors/ok.txt', withDirs, 'web'),
    ).toBeUndefined();
    expect(listenOptionProblem('acl allow src -f /etc/ssl/proxymgr/allow.lst', withDirs, 'web')).toBeUndefined();
    expect(listenOptionProblem('log /dev/log local0', withDirs, 'web')).toBeUndefined();
    expect(listenOptionProblem('errorfile 503 /etc/haproxy/errors/../../shadow', withDirs, 'web')).toMatch(
      /^errorfile "\/etc\/haproxy\/errors\/..\/..\/shadow": file outside service_options.file_dirs \(\/etc\/haproxy\/errors, \/etc\/ssl\/proxymgr, \/dev\/log\)$/,
    );
    expect(listenOptionProblem('errorfile 503 /etc/haproxy/errors-evil/x', withDirs, 'web')).toMatch(/file outside/);
  });

  test.each([
    ['http-request lua.foo', /"lua.foo" calls Lua/],
    ['http-request use-service lua.svc', /calls Lua/],
    ['tcp-request content use-service lua.svc', /calls Lua/],
    ['http-request set-header X %[lua.fetch]', /calls Lua/],
    ['http-request set-header X %[env(AWS_SECRET_ACCESS_KEY)]', /reads HAProxy's environment \(env\(\)\)/],
    ['http-request return status 200 content-type text/plain string "$HOME"', /expands an environment variable/],
    ['log-format "${SECRET}"', /expands an environment variable/],
  ])('Lua and the environment: %s', (line, message) => {
    expect(listenOptionProblem(line, none, 'web')).toMatch(message);
  });

  test('extra_listen_keywords widen the list but cannot re-allow a denied keyword', () => {
    const extra = policy({ extraListenKeywords: ['option my-patched-option', 'frobnicate', 'bind', 'global'] });
    expect(listenOptionProblem('option my-patched-option 1', extra, 'web')).toBeUndefined();
    expect(listenOptionProblem('frobnicate', extra, 'web')).toBeUndefined();
    expect(listenOptionProblem('bind :80', extra, 'web')).toMatch(
      /deny list; service_options.extra_listen_keywords cannot allow it/,
    );
    expect(listenOptionProblem('global', extra, 'web')).toMatch(/opens a new section/);
    expect(listenOptionProblem('frobnicate %[lua.x]', extra, 'web')).toMatch(/calls Lua/);
  });

  test('a huge line is quoted cut short', () => {
    const message = listenOptionProblem(`x${'a'.repeat(10_000)}`, none, 'web')!;
    expect(message.length).toBeLessThan(250);
    expect(quote('b'.repeat(100))).toBe(JSON.stringify(`${'b'.repeat(57)}...`));
  });
});

describe('server options', () => {
  test.each(ORDINARY_SERVER_OPTIONS.map((o) => [o.join(' | '), o] as const))('allowed: %s', (_name, options) => {
    expect(serverOptionsProblems(options, none, 'web')).toEqual([]);
  });

  test('a file inside file_dirs is fine', () => {
    expect(
      serverOptionsProblems(
        ['ssl verify required ca-file /etc/ssl/proxymgr/ca.pem crt /etc/ssl/proxymgr/client.pem'],
        withDirs,
        'web',
      ),
    ).toEqual([]);
  });

  test.each([
    [['crt /etc/shadow'], 0, /^crt "\/etc\/shadow": file outside service_options.file_dirs \(none listed\)$/],
    [['ssl', 'ca-file /etc/ssl/private/ca.pem'], 1, /^ca-file "\/etc\/ssl\/private\/ca.pem": file outside/],
    [['ssl crl-file /etc/passwd'], 0, /crl-file/],
    [['namespace other'], 0, /"namespace" is not allowed: connects from another network namespace \(deny list/],
    [['check', 'bogus'], 1, /^"bogus" is not a server option of HAProxy 2\.6 .*extra_server_keywords/],
    [['check inter'], 0, /"inter" expects 1 argument$/],
    [['check; shutdown sessions server web/a'], 0, /server options are plain words/],
    [['check "inter" 2000'], 0, /plain words/],
    [['check # comment'], 0, /plain words/],
    [['check inter $X'], 0, /plain words/],
    [['sni env(SECRET)'], 0, /reads HAProxy's environment/],
    [['sni lua.x'], 0, /calls Lua/],
    [['source 10.0.0.1 usesrc'], 0, /expects an argument after "usesrc"/],
    [['check backup weight 5 global'], 0, /"global" is not a server option/],
    [['check track other/a'], 0, /"track other\/a" follows a server of another proxy/],
  ])('refused: %j', (options, index, message) => {
    const problems = serverOptionsProblems(options, none, 'web');
    expect(problems).toHaveLength(1);
    expect(problems[0]!.index).toBe(index);
    expect(problems[0]!.message).toMatch(message);
  });

  test('an argument is read as an argument, as HAProxy reads it ("verifyhost crt" names a host)', () => {
    expect(serverOptionsProblems(['ssl verifyhost crt'], none, 'web')).toEqual([]);
    expect(serverOptionsProblems(['check track a'], none, 'web')).toEqual([]);
  });

  test('extra_server_keywords: arguments run to the next known keyword, whose own checks still apply', () => {
    const extra = policy({ extraServerKeywords: ['curves', 'namespace'] });
    expect(serverOptionsProblems(['ssl curves X25519:P-256 check inter 2000'], extra, 'web')).toEqual([]);
    expect(serverOptionsProblems(['curves X25519 crt /etc/shadow'], extra, 'web')[0]?.message).toMatch(
      /crt "\/etc\/shadow": file outside/,
    );
    expect(serverOptionsProblems(['namespace x'], extra, 'web')[0]?.message).toMatch(/deny list/);
  });
});

describe('escapes HAProxy reads differently (found in review)', () => {
  // Each of these passed `haproxy -c` on 2.6.12 and made HAProxy open the file: \x00 ends a word in C.
  test.each([
    'http-request return status 200 content-type text/plain file\\x00 /etc/shadow',
    'http-request return status 200 content-type text/plain lf-file\\x00 /etc/shadow',
    'acl x src -f\\x00 /etc/shadow',
    'errorfile\\x00 503 /etc/shadow',
    'mode http\\x0aglobal',
  ])('an escaped control character is refused: %s', (line) => {
    expect(listenOptionProblem(line, none, 'web')).toMatch(/escaped control character/);
  });
  test('in global/defaults too: "listen\\x00" would open a section', () => {
    expect(sectionLineProblem('"listen\\x00" x')).toMatch(/escaped control character/);
  });
  test('the deny list sees decoded words: an extra "stats" keyword does not allow stats "admin"', () => {
    const p = policy({ extraListenKeywords: ['stats', 'option'] });
    expect(listenOptionProblem('stats "admin" if TRUE', p, 'web')).toMatch(/"stats admin" is not allowed/);
    expect(listenOptionProblem("option 'external-check'", p, 'web')).toMatch(/"option external-check" is not allowed/);
    expect(listenOptionProblem('stats\\ admin if TRUE', p, 'web')).toMatch(/not allowed|plainly/);
  });
});

describe("global and defaults lines (the operator's own) may not open a section", () => {
  test.each(['listen evil', '  frontend f', '"backend" b', 'userlist u', 'no defaults'])('%s', (line) => {
    expect(sectionLineProblem(line)).toMatch(/opens a new section/);
  });
  test.each([
    'maxconn 4096',
    'stats socket /run/haproxy.sock level admin',
    'log stdout format raw local0',
    'mode http',
    'option httplog',
    'lua-load /etc/haproxy/x.lua',
    '',
  ])('free-form: %s', (line) => {
    expect(sectionLineProblem(line)).toBeUndefined();
  });

  test('proxymgr.yml: the error names the file, the key and the index', () => {
    expect(() => parseConfig('haproxy:\n  global: ["maxconn 10", "listen evil"]\n', '/etc/proxymgr.yml')).toThrow(
      new ConfigError(
        '/etc/proxymgr.yml: haproxy.global[1]: "listen" opens a new section; these lines belong to the global section and HAProxy ignores indentation',
      ),
    );
    expect(() => parseConfig('haproxy:\n  defaults: ["mode http", "  backend b"]\n', 'p.yml')).toThrow(
      /p.yml: haproxy.defaults\[1\]: "backend" opens a new section/,
    );
  });

  test('proxymgr.yml: service_options are read; a denied extra keyword is refused by name', () => {
    const c = parseConfig(
      'service_options:\n  extra_listen_keywords: ["option foo", "bar"]\n  extra_server_keywords: [curves]\n  file_dirs: [/etc/haproxy/errors/]\n',
      '/x/p.yml',
    );
    expect(c.serviceOptions).toMatchObject({
      extraListenKeywords: ['option foo', 'bar'],
      extraServerKeywords: ['curves'],
      fileDirs: ['/etc/haproxy/errors/'],
    });
    expect(() => parseConfig('service_options:\n  extra_listen_keywords: ["stats admin"]\n', 'p.yml')).toThrow(
      /p.yml: service_options.extra_listen_keywords\[0\]: "stats admin" is on the deny list \(.*\) and cannot be allowed/,
    );
    expect(() => parseConfig('service_options:\n  extra_listen_keywords: [bind]\n', 'p.yml')).toThrow(/deny list/);
    expect(() => parseConfig('service_options:\n  extra_listen_keywords: [global]\n', 'p.yml')).toThrow(
      /opens a new section/,
    );
    expect(() => parseConfig('service_options:\n  extra_server_keywords: [namespace]\n', 'p.yml')).toThrow(/deny list/);
    expect(() => parseConfig('service_options:\n  extra_server_keywords: ["a b"]\n', 'p.yml')).toThrow(
      /is not a HAProxy keyword/,
    );
  });
});

describe('tokenize reads a line as HAProxy 2.6 does', () => {
  test('quotes, escapes, comments, environment expansion', () => {
    const values = (line: string) => tokenize(line).words.map((w) => w.value);
    expect(values(`a "b c" 'd e' f\\ g h#i`)).toEqual(['a', 'b c', 'd e', 'f g', 'h']);
    expect(values('\\x67lobal')).toEqual(['global']);
    expect(values('g\\lobal')).toEqual(['g\\lobal']);
    expect(tokenize('x "$HOME"').envExpansion).toBe(true);
    expect(tokenize('x \'$HOME\' $HOME "\\$HOME"').envExpansion).toBe(false);
    expect(tokenize('x "abc').unterminated).toBe(true);
  });
});
