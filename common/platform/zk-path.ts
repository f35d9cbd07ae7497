/**
 * What is wrong with a ZooKeeper path, or undefined. node-zookeeper-client throws synchronously on a path it
 * does not like ("." or ".." segments, empty segments, a trailing slash) — from inside a reply callback that
 * crashed a control plane (found by `npm run bench -- hostile`) — so every path from input is checked here first.
 */
export function zkPathProblem(p: unknown): string | undefined {
  if (typeof p !== 'string') return 'expected a string such as "/services/web"';
  if (!p.startsWith('/') || p.length < 2) return 'must start with "/" and name a node, e.g. "/services/web"';
  if (p.length > 1024) return `${p.length} characters; at most 1024`;
  const segments = p.slice(1).split('/');
  if (segments.some((s) => s === '')) return 'has an empty segment ("//" or a trailing "/")';
  if (segments.some((s) => s === '.' || s === '..')) return 'has a "." or ".." segment';
  // ZooKeeper refuses these characters in node names (PathUtils.validatePath).
  // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
  if (/[\u0000-\u001f\u007f-\u009f\ud800-\uf8ff\ufff0-\uffff]/.test(p))
    return 'contains a control, surrogate or reserved character';
  if (segments.includes('zookeeper') && segments[0] === 'zookeeper')
    return "is under /zookeeper (ZooKeeper's own nodes)";
  return undefined;
}
