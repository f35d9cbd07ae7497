import { createHash } from 'node:crypto';
import { DesiredState } from './types';

/**
 * A content hash of everything in a state except its version: equal states get equal versions, across
 * restarts of whoever computes them (the xDS lesson: counters repeat after a restart, hashes do not).
 */
export function stateVersion(state: Omit<DesiredState, 'version'>): string {
  const canonical = JSON.stringify({ haproxy: state.haproxy, services: state.services }, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as object).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}
