import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ProxyMgrConfig } from '../../common/config/config';
import { ConfigError } from '../../common/platform/errors';
import { Logger } from '../../common/platform/log';
import type { HaproxyIdentity } from '../ports';

/** What the decision depends on, injected so it is tested without root or a particular /etc/passwd. */
export interface IdentityHost {
  readonly euid: number;
  /** Whether this process may change its uid and gid (CAP_SETUID and CAP_SETGID effective). */
  readonly canSetIds: boolean;
  userExists(name: string): boolean;
  groupExists(name: string): boolean;
}

const KEEP: HaproxyIdentity = { user: '', group: '' };

/**
 * Decides which unprivileged identity HAProxy drops to. HAProxy gets its listening sockets from the agent, reads
 * its config and server-state file and binds the stats socket before it drops privileges, so after that it needs
 * none. Dropping only works for a root agent: a non-root agent's HAProxy already runs as the agent's user.
 *
 * A user or group that does not exist is a ConfigError when proxymgr.yml names it; the built-in default
 * (`haproxy`, created by the Debian/RPM packages) falls back to running HAProxy as root with a warning, so a host
 * with a hand-built HAProxy keeps working.
 */
export function resolveHaproxyIdentity(
  config: Pick<ProxyMgrConfig, 'file' | 'haproxy'>,
  log: Logger,
  host: IdentityHost = realHost(),
): HaproxyIdentity {
  const { haproxy } = config;
  const user = haproxy.user;
  const group = haproxy.group || user; // HAProxy 2.6 keeps gid 0 after `user` alone
  const explicit = haproxy.userConfigured === true;
  if (user === '') {
    log.info({ key: 'haproxy.user' }, 'haproxy.user is "": HAProxy keeps the agent\'s user');
    return KEEP;
  }
  if (host.euid !== 0) {
    // The normal unprivileged setup: nothing to drop to, and HAProxy would fail trying.
    log[explicit ? 'warn' : 'debug'](
      { key: 'haproxy.user', euid: host.euid },
      `the agent does not run as root: HAProxy runs as the agent's user, not ${user}`,
    );
    return KEEP;
  }
  if (!host.canSetIds) {
    log.warn(
      { key: 'haproxy.user' },
      `the agent runs as root without CAP_SETUID/CAP_SETGID: HAProxy cannot drop to ${user} and runs as root`,
    );
    return KEEP;
  }
  const missing = [
    ...(host.userExists(user) ? [] : [`user "${user}"`]),
    ...(host.groupExists(group) ? [] : [`group "${group}"`]),
  ];
  if (missing.length === 0) {
    log.info({ user, group }, `HAProxy drops to user ${user}, group ${group} once it has its sockets and files`);
    return { user, group };
  }
  const what = `${missing.join(' and ')} ${missing.length > 1 ? 'do' : 'does'} not exist`;
  const fix = `create it (useradd --system --no-create-home --shell /usr/sbin/nologin ${user}), name another in haproxy.user/haproxy.group, or set haproxy.user: "" to run HAProxy as root`;
  if (explicit) throw new ConfigError(`${config.file}: haproxy.user/haproxy.group: ${what} on this host; ${fix}`);
  log.warn({ key: 'haproxy.user' }, `${what} (the default for haproxy.user): HAProxy runs as ROOT; ${fix}`);
  return KEEP;
}

function realHost(): IdentityHost {
  return {
    euid: process.geteuid?.() ?? -1,
    canSetIds: hasEffectiveCaps(readProcStatus(), [CAP_SETGID, CAP_SETUID]),
    userExists: (name) => nssHas('passwd', name),
    groupExists: (name) => nssHas('group', name),
  };
}

const CAP_SETGID = 6;
const CAP_SETUID = 7;

function readProcStatus(): string {
  try {
    return readFileSync('/proc/self/status', 'utf8');
  } catch {
    return '';
  }
}

/** Whether /proc/<pid>/status text shows every one of `caps` in CapEff (no /proc: assume a plain root has them). */
export function hasEffectiveCaps(status: string, caps: readonly number[]): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)$/im.exec(status);
  if (!m) return true;
  const eff = BigInt(`0x${m[1]}`);
  return caps.every((c) => (eff & (1n << BigInt(c))) !== 0n);
}

/**
 * Looks a name up the way HAProxy will (getpwnam/getgrnam, so NSS sources such as LDAP count): `getent`, or the
 * local files where getent is missing.
 */
function nssHas(db: 'passwd' | 'group', name: string): boolean {
  try {
    execFileSync('getent', [db, name], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return false; // exit 2: not found
  }
  try {
    return readFileSync(`/etc/${db}`, 'utf8')
      .split('\n')
      .some((l) => l.split(':')[0] === name);
  } catch {
    return false;
  }
}
