/**
 * Text from the fleet (agents' messages, labels, names) made safe to print: control characters — escape sequences
 * that would drive a terminal — become spaces. `keepNewlines` keeps line breaks (a whole rendered text).
 */
export function plainText(s: string, keepNewlines = false): string {
  // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
  return s.replace(keepNewlines ? /[\x00-\x09\x0b-\x1f\x7f-\x9f]/g : /[\x00-\x1f\x7f-\x9f]/g, ' ');
}

/** How long ago `iso` was, coarse ("42s", "17m", "3h"; "never" for none). */
export function ageText(iso: string, now: number): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

/** `s` cut to `max` characters, marked "…" (and, with `sayLength`, how long it was), or `s` when it fits. */
export function clipText(s: string, max: number, sayLength = false): string {
  if (s.length <= max) return s;
  return `${s.slice(0, max)}…${sayLength ? ` (${s.length} characters)` : ''}`;
}

/** A share 0..1 as a percentage, at most two decimals ("5%", "97.5%"). */
export function percent(x: number): string {
  return `${+(x * 100).toFixed(2)}%`;
}

/**
 * A gate figure as people read it: a percentage for the ratios, requests per agent (two decimals) for the queue,
 * milliseconds for the response time.
 */
export function figureText(metric: string, x: number): string {
  // Number(): a figure decoded from a document may be a string; it must not throw (the status page renders it).
  if (metric === 'rtime') return `${Math.round(Number(x))} ms`;
  return metric === 'queue' ? String(+Number(x).toFixed(2)) : percent(Number(x));
}
