/** The status pages' HTML pieces: every value from the fleet goes through `esc` (or `txt`), never into markup. */

/** HTML-escapes text from the fleet (service names, labels, NACK messages are input: never markup). */
export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/**
 * Escapes any value from a decoded document: a field typed as a number (proto, JSON, a ZooKeeper node) may hold a
 * string at run time, so numbers are escaped like text.
 */
export const txt = (x: unknown): string => esc(String(x));

/** A table of already-rendered cells (`td`); "none" when there are no rows. */
export function table(headers: string[], rows: string[][], cls = ''): string {
  if (rows.length === 0) return '<p class="empty">none</p>';
  return `<table class="${cls}"><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.join('')}</tr>`).join('')}</tbody></table>`;
}

/** A cell holding `text`, escaped. */
export const td = (text: string, cls = '') => `<td${cls ? ` class="${cls}"` : ''}>${esc(text)}</td>`;
