import { createHash } from 'node:crypto';
import { HaproxyGlobals, Service } from './types';

const serviceHash = new WeakMap<Service, string>();

/**
 * A content hash of a desired state's HAProxy sections and services: equal content gives equal versions, across
 * processes and restarts (the xDS lesson: counters repeat after a restart, hashes do not). Each service's own hash
 * is memoized per (immutable) service object, so a new snapshot only hashes the services that changed.
 */
export function stateVersion(haproxy: HaproxyGlobals, services: readonly Service[]): string {
  const h = createHash('sha256');
  h.update(canonicalJson({ global: haproxy.global, defaults: haproxy.defaults }));
  for (const s of services) h.update('\n' + hashService(s));
  return h.digest('hex').slice(0, 32);
}

/** sha256 (hex) of a service's canonical JSON, memoized per (immutable) service object. */
export function hashService(s: Service): string {
  let hash = serviceHash.get(s);
  if (hash === undefined) {
    hash = createHash('sha256').update(canonicalJson(s)).digest('hex');
    serviceHash.set(s, hash);
  }
  return hash;
}

/** JSON with object keys sorted at every level, so equal content always gives equal bytes. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const o = value as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}
