// node-zookeeper-client's Exception is an Error at run time (`util.inherits(Exception, Error)` in its
// lib/Exception.js); its typings leave that out, so a promise rejected with one looked like a non-Error rejection.
import 'node-zookeeper-client';

declare module 'node-zookeeper-client' {
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type -- merges Error into the typings' class
  interface Exception extends Error {}
}
