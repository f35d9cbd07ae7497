import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { inspect } from 'node:util';
import yaml from 'js-yaml';
import { parseHostNode } from '../../../controlplane/host';
import { parseServiceConfig } from '../../../controlplane/service-config';
import { jsonErrorOffset, syntaxErrorMessage } from '../../../controlplane/syntax-error';
import { MAX_LINE_PROBLEMS, parseHostsFile } from '../../../controlplane/watchers/file';
import { loadZkDigest } from '../../../controlplane/zk/digest';
import { tempDir } from '../../../testkit/net';

/** A made-up key: every test below checks that no line of it shows up in a message. */
const KEY = [
  '-----BEGIN PRIVATE KEY-----',
  'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj',
  'MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu',
  'user:secretpass',
  'Proc-Type: 4,ENCRYPTED',
  '-----END PRIVATE KEY-----',
];
const leaks = (text: string) =>
  KEY.flatMap((l) => l.split(/[\s:,]+/)).filter((piece) => piece.length >= 4 && text.includes(piece));

describe('hosts files', () => {
  test('good lines become hosts; bad lines are named file:line with what was expected, never with their text', () => {
    const r = parseHostsFile(
      [
        '# web',
        '10.0.0.1:80',
        'web-1.example.com:8080 weight=3',
        'nope',
        '10.0.0.2:99999',
        '10.0.0.3:80 wieght=2',
        '[::1]:81',
      ].join('\n'),
      '/srv/hosts/web.txt',
    );
    expect(r.hosts.map((h) => `${h.address}:${h.port}/${h.weight}`)).toEqual([
      '10.0.0.1:80/1',
      'web-1.example.com:8080/3',
      '::1:81/1',
    ]);
    expect(r.problems).toEqual([
      {
        where: '/srv/hosts/web.txt:4',
        message:
          'line skipped: expected host:port (e.g. "10.0.0.1:8080" or "[::1]:8080"), optionally followed by weight=N',
      },
      { where: '/srv/hosts/web.txt:5', message: 'line skipped: port is outside 1-65535' },
      {
        where: '/srv/hosts/web.txt:6',
        message: 'line skipped: unknown option after host:port (only weight=N is allowed)',
      },
    ]);
    expect(r.problems.map((p) => p.message).join()).not.toMatch(/nope|99999|wieght/);
  });

  test('a private key read as a hosts file: one problem per line, none quoting it', () => {
    const r = parseHostsFile(KEY.join('\n') + '\n', '/srv/hosts/key.pem');
    expect(r.problems.map((p) => p.where)).toEqual([
      '/srv/hosts/key.pem:1',
      '/srv/hosts/key.pem:2',
      '/srv/hosts/key.pem:3',
      '/srv/hosts/key.pem:4',
      '/srv/hosts/key.pem:5',
      '/srv/hosts/key.pem:6',
    ]);
    expect(leaks(JSON.stringify(r))).toEqual([]);
  });

  test('a long file of garbage reports a bounded number of problems', () => {
    const r = parseHostsFile(Array.from({ length: 5000 }, (_, i) => `garbage-${i}`).join('\n'), '/srv/hosts/big');
    expect(r.problems).toHaveLength(MAX_LINE_PROBLEMS + 1);
    expect(r.problems.at(-1)).toEqual({
      where: `/srv/hosts/big:${MAX_LINE_PROBLEMS + 1}`,
      message: `${5000 - MAX_LINE_PROBLEMS} more line(s) skipped from here on (not host:port)`,
    });
  });
});

describe('syntax errors give a position, never the text', () => {
  test.each([
    ['{"a": secretkey}', 1, 7, 'unexpected character'],
    ['{"a": 1,\n "b": [1, 2,, 3]}', 2, 13, 'unexpected character'],
    ['{"type":"zookeeper", "port": ', 1, 30, 'unexpected end of input'],
    ['{"a": "line\nbreak"}', 1, 12, 'unexpected character'],
    ['[1] tail-secret', 1, 5, 'unexpected character'],
    ['-', 1, 1, 'unexpected character'],
  ])('JSON %j', (text, line, column, what) => {
    let err: unknown;
    try {
      JSON.parse(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeDefined();
    expect(syntaxErrorMessage(err, text, 'json')).toBe(`not valid JSON: ${what} at line ${line}, column ${column}`);
  });

  test('valid JSON has no error offset', () => {
    for (const t of ['{}', '[]', '0', '-1.5e+3', '"\\u00e9\\n"', ' {"a": [true, false, null, {"b": "c"}]} '])
      expect(jsonErrorOffset(t)).toBeUndefined();
  });

  test('YAML: js-yaml quotes the lines around the error; the message keeps the position and the reason only', () => {
    const text = 'web:\n  type: static\n  hosts: [secretkey\n';
    const err = (() => {
      try {
        yaml.load(text);
      } catch (e) {
        return e;
      }
    })();
    expect((err as Error).message).toContain('secretkey'); // why this exists
    const m = syntaxErrorMessage(err, text, 'yaml');
    expect(m).toMatch(/^not valid YAML: .+ at line \d+, column \d+$/);
    expect(m).not.toContain('secret');
    const alias = (() => {
      try {
        yaml.load('a: *secretalias\n');
      } catch (e) {
        return e;
      }
    })();
    expect(syntaxErrorMessage(alias, '', 'yaml')).toBe('not valid YAML: unidentified alias "…" at line 1, column 5');
  });

  test('service configs and host nodes use it: a key given as a service config or a host node is not quoted', () => {
    const raw = (text: string, format: 'json' | 'yaml') => ({
      name: 'web',
      text,
      origin: '/etc/proxymgr/service_config/web',
      format,
    });
    for (const [text, format] of [
      [KEY.join('\n'), 'json'],
      [KEY.join('\n'), 'yaml'],
      [`{"type": "${KEY[1]}`, 'json'],
    ] as const) {
      let message = '';
      try {
        parseServiceConfig(raw(text, format));
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).toMatch(/^\/etc\/proxymgr\/service_config\/web: (not valid|expected a)/);
      expect(leaks(message)).toEqual([]);
    }
    expect(() => parseHostNode('h', Buffer.from(KEY.join('\n')))).toThrow(
      /^not valid JSON: unexpected character at line 1, column 1$/,
    );
  });
});

describe('controlplane.zk_digest_file', () => {
  const tmp = tempDir('proxymgr-digest-');
  afterAll(() => tmp.cleanup());
  const warnings: object[] = [];
  const log = {
    warn: (f: object) => warnings.push(f),
    info: () => undefined,
    error: () => undefined,
    debug: () => undefined,
    child: () => log,
  };

  test('user:password; the digest id is user:base64(sha1(user:password)); the password never shows', () => {
    const f = path.join(tmp.dir, 'zk.digest');
    writeFileSync(f, 'proxymgr:s3cr:et\n', { mode: 0o600 });
    const d = loadZkDigest(f, log);
    expect(d.user).toBe('proxymgr');
    expect(d.id).toBe(`proxymgr:${createHash('sha1').update('proxymgr:s3cr:et').digest('base64')}`);
    expect(d.authInfo().toString()).toBe('proxymgr:s3cr:et');
    expect(JSON.stringify(d)).not.toContain('s3cr');
    expect(inspect(d)).not.toContain('s3cr');
    expect(warnings).toEqual([]);
  });

  test('a file others may read loads with a warning naming the file and its mode', () => {
    const f = path.join(tmp.dir, 'open.digest');
    writeFileSync(f, 'proxymgr:pw');
    chmodSync(f, 0o644);
    loadZkDigest(f, log);
    expect(warnings).toEqual([{ file: f, key: 'controlplane.zk_digest_file', mode: '0644' }]);
  });

  test.each([
    ['nocolon', /expected one line "user:password"/],
    [':pw', /a non-empty user/],
    ['user:', /a non-empty password/],
    ['user:pw\nsecond:line\n', /exactly one line/],
  ])('%j is refused without quoting it', (content, message) => {
    const f = path.join(tmp.dir, 'bad.digest');
    writeFileSync(f, content, { mode: 0o600 });
    let m = '';
    try {
      loadZkDigest(f, log);
    } catch (e) {
      m = (e as Error).message;
    }
    expect(m).toMatch(message);
    expect(m.startsWith(`${f}: controlplane.zk_digest_file: `)).toBe(true);
    expect(m).not.toContain('pw');
  });

  test('missing file and directory are refused naming the file', () => {
    expect(() => loadZkDigest(path.join(tmp.dir, 'missing'), log)).toThrow(
      `${path.join(tmp.dir, 'missing')}: controlplane.zk_digest_file: cannot read: ENOENT`,
    );
    const dir = path.join(tmp.dir, 'd');
    mkdirSync(dir);
    expect(() => loadZkDigest(dir, log)).toThrow(/not a regular file/);
  });
});
