import { Exception, Stat } from 'node-zookeeper-client';

/** A ZooKeeper error's code (undefined for anything else). */
export const zkCode = (err: unknown) => (err instanceof Exception ? err.getCode() : undefined);

/** A catch handler that lets one ZooKeeper error code pass (e.g. NODE_EXISTS on a create that may race). */
export function ignore(c: number) {
  return (err: unknown) => {
    if (zkCode(err) !== c) throw err;
  };
}

/** A node-zookeeper-client callback call as a promise. */
export function call<T>(fn: (cb: (err: Error | Exception | null, v: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));
}

/** The same for callbacks with two results (data and stat). */
export function call2<A, B>(fn: (cb: (err: Error | Exception | null, a: A, b: B) => void) => void): Promise<[A, B]> {
  return new Promise((resolve, reject) => fn((err, a, b) => (err ? reject(err) : resolve([a, b]))));
}

/** A node that no session owns (ephemeralOwner 0): persistent, so not one a replica writes as its own. */
export function isPersistent(stat: Stat): boolean {
  return stat.ephemeralOwner.every((b) => b === 0);
}
