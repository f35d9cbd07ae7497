import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import zookeeper, { ACL } from 'node-zookeeper-client';
import { ConfigError } from '../../common/platform/errors';
import { Logger } from '../../common/platform/log';

/** An ACL's permission bits. The library keeps them in `permission`; its typings call the field `perms`. */
export function permsOf(a: ACL): number {
  return (a as unknown as { permission?: number }).permission ?? a.perms;
}

/** A credentials file holds one short line. */
const MAX_DIGEST_FILE_BYTES = 4096;

/**
 * ZooKeeper `digest` credentials of the control plane (`controlplane.zk_digest_file`). The password stays in a private
 * field: it leaves this object only as the auth packet, never in a log line, an error or JSON.
 */
export class ZkDigest {
  readonly user: string;
  /** The ACL id ZooKeeper derives from these credentials: `user:base64(sha1("user:password"))`. */
  readonly id: string;
  readonly #credentials: Buffer;

  constructor(
    credentials: string,
    /** The file the credentials came from (for messages). */
    readonly file: string,
  ) {
    const colon = credentials.indexOf(':');
    this.user = credentials.slice(0, colon);
    this.#credentials = Buffer.from(credentials, 'utf8');
    this.id = `${this.user}:${createHash('sha1').update(this.#credentials).digest('base64')}`;
  }

  /** What `addAuthInfo('digest', …)` sends: `user:password`. */
  authInfo(): Buffer {
    return Buffer.from(this.#credentials);
  }

  /** Full rights for these credentials, READ for everyone else: only the control plane changes its own nodes. */
  acls(): ACL[] {
    return [
      new zookeeper.ACL(zookeeper.Permission.ALL, new zookeeper.Id('digest', this.id)),
      new zookeeper.ACL(zookeeper.Permission.READ, new zookeeper.Id('world', 'anyone')),
    ];
  }

  /** True when `acls` lets anyone but these credentials change the node, or does not give them full rights. */
  isOpen(acls: readonly ACL[]): boolean {
    const mine = (a: ACL) => a.id.scheme === 'digest' && a.id.id === this.id;
    const othersWrite = acls.some((a) => !mine(a) && (permsOf(a) & ~zookeeper.Permission.READ) !== 0);
    const full = acls.some((a) => mine(a) && (permsOf(a) & zookeeper.Permission.ALL) === zookeeper.Permission.ALL);
    return othersWrite || !full;
  }

  toJSON(): object {
    return { user: this.user, file: this.file };
  }
}

/**
 * Reads `controlplane.zk_digest_file` (or the file of another `key`, e.g. a watcher ensemble's `digest_file`) once:
 * one line `user:password` (a trailing newline is fine). Errors name the file, the key and what is expected, never
 * its content; a file that group or others may access is loaded with a warning.
 */
export function loadZkDigest(file: string, log: Logger, key = 'controlplane.zk_digest_file'): ZkDigest {
  const fail = (what: string, cause?: unknown): never => {
    throw new ConfigError(`${file}: ${key}: ${what}`, cause === undefined ? undefined : { cause });
  };
  let text = '';
  let fd: number | undefined;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    const st = fstatSync(fd);
    if (!st.isFile()) fail('not a regular file');
    if (st.size > MAX_DIGEST_FILE_BYTES) fail(`${st.size} bytes; expected one line "user:password"`);
    if ((st.mode & 0o077) !== 0) {
      log.warn(
        { file, key, mode: '0' + (st.mode & 0o777).toString(8) },
        `${key} is accessible to group or others; chmod 600 it (only the control plane's user needs to read it)`,
      );
    }
    const buf = Buffer.alloc(MAX_DIGEST_FILE_BYTES);
    const n = readSync(fd, buf, 0, buf.length, 0);
    text = buf.subarray(0, n).toString('utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    fail(`cannot read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, err);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  const line = text.replace(/\r?\n$/, '');
  // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
  if (line.includes('\n') || /[\x00-\x1f\x7f]/.test(line))
    fail('expected exactly one line "user:password" (without control characters)');
  const colon = line.indexOf(':');
  if (colon <= 0 || colon === line.length - 1)
    fail('expected one line "user:password" (a non-empty user, a colon, a non-empty password)');
  return new ZkDigest(line, file);
}
