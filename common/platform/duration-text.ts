/**
 * A duration in milliseconds as people read it: "0.4 ms", "12 ms", "1 s", "3.2 s", "45 s". A value that is not a number
 * (a field of a decoded document may hold anything) is returned as it came, for the caller to escape.
 */
export function msText(ms: number): string {
  const n = Number(ms);
  if (!Number.isFinite(n)) return String(ms);
  if (n >= 10_000) return `${Math.round(n / 1000)} s`;
  if (Math.round(n) >= 1000) return `${+(n / 1000).toFixed(1)} s`;
  return n < 10 && n !== Math.round(n) ? `${n.toFixed(1)} ms` : `${Math.round(n)} ms`;
}
