import { hasEffectiveCaps, IdentityHost, resolveHaproxyIdentity } from '../../agent/haproxy/privileges';
import { parseConfig } from '../../common/config/config';
import { ConfigError } from '../../common/platform/errors';
import { Logger } from '../../common/platform/log';

/** A logger that keeps what it was told, to assert on warnings. */
function recordingLogger() {
  const lines: { level: string; msg: string }[] = [];
  const log: Logger = {
    debug: (_f, msg) => lines.push({ level: 'debug', msg }),
    info: (_f, msg) => lines.push({ level: 'info', msg }),
    warn: (_f, msg) => lines.push({ level: 'warn', msg }),
    error: (_f, msg) => lines.push({ level: 'error', msg }),
    child: () => log,
  };
  return { log, warnings: () => lines.filter((l) => l.level === 'warn').map((l) => l.msg) };
}

const host = (over: Partial<IdentityHost> = {}): IdentityHost => ({
  euid: 0,
  canSetIds: true,
  userExists: (n) => ['haproxy', 'www'].includes(n),
  groupExists: (n) => ['haproxy', 'www'].includes(n),
  ...over,
});

const config = (yml = '') => parseConfig(`haproxy:\n  config_path: /x/haproxy.cfg\n${yml}`, '/etc/proxymgr/agent.yml');

describe('resolveHaproxyIdentity', () => {
  test('a root agent drops HAProxy to haproxy:haproxy by default, or to the configured user and group', () => {
    expect(resolveHaproxyIdentity(config(), recordingLogger().log, host())).toEqual({
      user: 'haproxy',
      group: 'haproxy',
    });
    expect(resolveHaproxyIdentity(config('  user: www\n'), recordingLogger().log, host())).toEqual({
      user: 'www',
      group: 'www',
    });
    expect(resolveHaproxyIdentity(config('  user: www\n  group: haproxy\n'), recordingLogger().log, host())).toEqual({
      user: 'www',
      group: 'haproxy',
    });
    expect(resolveHaproxyIdentity(config('  user: www\n  group: ""\n'), recordingLogger().log, host())).toEqual({
      user: 'www',
      group: 'www',
    });
  });

  test('a non-root agent renders nothing (HAProxy runs as the agent user); a configured user earns a warning', () => {
    const quiet = recordingLogger();
    expect(resolveHaproxyIdentity(config(), quiet.log, host({ euid: 65534 }))).toEqual({ user: '', group: '' });
    expect(quiet.warnings()).toEqual([]);
    const loud = recordingLogger();
    expect(resolveHaproxyIdentity(config('  user: www\n'), loud.log, host({ euid: 65534 }))).toEqual({
      user: '',
      group: '',
    });
    expect(loud.warnings().join()).toMatch(/does not run as root/);
  });

  test('haproxy.user: "" keeps HAProxy as the agent user', () => {
    expect(resolveHaproxyIdentity(config('  user: ""\n'), recordingLogger().log, host())).toEqual({
      user: '',
      group: '',
    });
  });

  test('a configured user or group that does not exist is an error naming the file, the keys and the fix', () => {
    expect(() => resolveHaproxyIdentity(config('  user: nosuch\n'), recordingLogger().log, host())).toThrow(
      ConfigError,
    );
    expect(() => resolveHaproxyIdentity(config('  user: nosuch\n'), recordingLogger().log, host())).toThrow(
      /\/etc\/proxymgr\/agent\.yml: haproxy\.user\/haproxy\.group: user "nosuch" and group "nosuch" do not exist on this host; create it \(useradd/,
    );
    expect(() => resolveHaproxyIdentity(config('  group: nosuch\n'), recordingLogger().log, host())).toThrow(
      /group "nosuch"/,
    );
  });

  test('the default user missing on this host: HAProxy stays root, with a warning saying so and how to fix it', () => {
    const r = recordingLogger();
    expect(resolveHaproxyIdentity(config(), r.log, host({ userExists: () => false }))).toEqual({ user: '', group: '' });
    expect(r.warnings().join()).toMatch(
      /user "haproxy" does not exist \(the default for haproxy\.user\): HAProxy runs as ROOT; create it/,
    );
  });

  test('root without CAP_SETUID/CAP_SETGID cannot drop: no user lines (HAProxy would fail to start), a warning', () => {
    const r = recordingLogger();
    expect(resolveHaproxyIdentity(config(), r.log, host({ canSetIds: false }))).toEqual({ user: '', group: '' });
    expect(r.warnings().join()).toMatch(/CAP_SETUID/);
  });
});

test('hasEffectiveCaps reads CapEff of /proc/<pid>/status', () => {
  expect(hasEffectiveCaps('Name:\tnode\nCapEff:\t000001ffffffffff\n', [6, 7])).toBe(true);
  expect(hasEffectiveCaps('CapEff:\t0000000000000400\n', [6, 7])).toBe(false); // CAP_NET_BIND_SERVICE only
  expect(hasEffectiveCaps('CapEff:\t00000000000000c0\n', [6, 7])).toBe(true);
});
