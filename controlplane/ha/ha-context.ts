import type { ACL, Client } from 'node-zookeeper-client';
import type { Logger } from '../../common/platform/log';

/** What the parts of the HA store share: the current ZooKeeper client and connection epoch, paths, ACLs, log. */
export interface HaContext {
  readonly log: Logger;
  readonly replicaId: string;
  readonly acls: ACL[];
  /** The client of the current connection (undefined while disconnected). */
  client(): Client | undefined;
  /** Bumped on every (re)connection: watches of an earlier one stop. */
  epoch(): number;
  /** A path under the store's root. */
  p(...parts: string[]): string;
  closed(): boolean;
}
