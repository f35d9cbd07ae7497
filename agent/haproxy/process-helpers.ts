import { backoffMs } from '../../common/platform/backoff';

/** Restart delay after the n-th consecutive crash (n ≥ 1): base·2^(n-1), capped. */
export function backoffDelay(n: number, baseMs: number, maxMs: number): number {
  return backoffMs(n - 1, { baseMs, maxMs });
}

/** HAProxy tags its own lines [NOTICE], [WARNING], [ALERT]: keep that severity in the agent's log. */
export function haproxyLogLevel(line: string): 'info' | 'warn' | 'error' {
  if (/\[(ALERT|EMERG)\]/.test(line)) return 'error';
  if (/\[WARNING\]/.test(line)) return 'warn';
  return 'info';
}
