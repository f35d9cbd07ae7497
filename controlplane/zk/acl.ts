import zookeeper, { ACL, Client, Exception, Stat } from 'node-zookeeper-client';
import { errorMessage } from '../../common/platform/errors';
import { Logger } from '../../common/platform/log';
import { permsOf, ZkDigest } from './digest';

import { call, isPersistent, zkCode as codeOf } from './calls';

/**
 * Creates `path` and its missing parents with `acls`. Parents that exist are left as they are: a parent above the
 * control plane's root may belong to someone else and refuse the create that mkdirp would try on it.
 */
export async function ensurePath(client: Client, path: string, acls: ACL[]): Promise<void> {
  let at = '';
  for (const part of path.split('/').slice(1)) {
    at += '/' + part;
    if (await call<Stat | null>((cb) => client.exists(at, cb))) continue;
    await call<string>((cb) => client.create(at, acls, cb)).catch((err: unknown) => {
      if (codeOf(err) !== Exception.NODE_EXISTS) throw err;
    });
  }
}

/**
 * Gives every node of `paths` that others may change (an open ACL, from before digest credentials were configured)
 * the digest's ACLs: full rights for the digest, READ for everyone. Logs each change; a node it may not change is
 * logged with the zkCli command that fixes it by hand. Returns how many were changed.
 */
export async function secureNodes(
  client: Client,
  paths: readonly string[],
  digest: ZkDigest,
  log: Logger,
): Promise<number> {
  const acls = digest.acls();
  let fixed = 0;
  for (const path of paths) {
    try {
      const [was, stat] = await new Promise<[ACL[], Stat]>((resolve, reject) =>
        client.getACL(path, (err, a, s) => (err ? reject(err) : resolve([a, s]))),
      );
      if (!digest.isOpen(was)) continue;
      await call<Stat>((cb) => client.setACL(path, acls, stat.aversion, cb));
      fixed++;
      if (fixed <= 20)
        log.warn(
          { path, was: was.map(describeAcl).join(','), now: acls.map(describeAcl).join(',') },
          'ZooKeeper node of the control plane had an ACL that let others change it; ACL set',
        );
    } catch (err) {
      if (codeOf(err) === Exception.NO_NODE) continue;
      log.error(
        { path, err: errorMessage(err) },
        `cannot set the ACL of a control-plane node; set it by hand: setAcl ${path} digest:${digest.id}:cdrwa,world:anyone:r`,
      );
    }
  }
  return fixed;
}

/**
 * Removes the persistent children of `parent` that others may change. Under `agents/` and `traffic/` every node of
 * the control plane is ephemeral; a persistent one with an open ACL was planted while the ACLs were open, and its
 * content cannot be trusted (the readers ignore persistent nodes there too). Ephemeral ones are left: an older
 * replica's, during a rolling change to credentials, go with its session. Returns how many were removed.
 */
export async function removeOpenChildren(
  client: Client,
  parent: string,
  digest: ZkDigest,
  log: Logger,
): Promise<number> {
  const children = await call<string[]>((cb) => client.getChildren(parent, cb)).catch(() => [] as string[]);
  let removed = 0;
  for (const child of children) {
    const path = `${parent}/${child}`;
    try {
      const [acls, stat] = await new Promise<[ACL[], Stat]>((resolve, reject) =>
        client.getACL(path, (err, a, s) => (err ? reject(err) : resolve([a, s]))),
      );
      if (!digest.isOpen(acls) || !isPersistent(stat)) continue;
      await call((cb) => client.remove(path, -1, (e) => cb(e, undefined)));
      removed++;
      if (removed <= 20)
        log.warn({ path, was: acls.map(describeAcl).join(',') }, 'removed a ZooKeeper node others could change');
    } catch (err) {
      if (codeOf(err) === Exception.NO_NODE) continue;
      log.error({ path, err: errorMessage(err) }, 'cannot remove a ZooKeeper node others could change');
    }
  }
  return removed;
}

/** The nodes of `paths` that others may still change (read back after secureNodes); missing nodes do not count. */
export async function stillOpen(client: Client, paths: readonly string[], digest: ZkDigest): Promise<string[]> {
  const open: string[] = [];
  for (const path of paths) {
    try {
      const acls = await new Promise<ACL[]>((resolve, reject) =>
        client.getACL(path, (err, a) => (err ? reject(err) : resolve(a))),
      );
      if (digest.isOpen(acls)) open.push(path);
    } catch (err) {
      if (codeOf(err) !== Exception.NO_NODE) open.push(path);
    }
  }
  return open;
}

/** An ACL as zkCli writes it (`world:anyone:cdrwa`); a digest id shows its user only. */
export function describeAcl(a: ACL): string {
  const p = zookeeper.Permission;
  const bits: [number, string][] = [
    [p.CREATE, 'c'],
    [p.DELETE, 'd'],
    [p.READ, 'r'],
    [p.WRITE, 'w'],
    [p.ADMIN, 'a'],
  ];
  const id = a.id.scheme === 'digest' ? `${a.id.id.slice(0, a.id.id.indexOf(':'))}:…` : a.id.id;
  return `${a.id.scheme}:${id}:${bits.map(([bit, ch]) => (permsOf(a) & bit ? ch : '')).join('')}`;
}
