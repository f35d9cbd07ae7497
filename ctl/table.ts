import { plainText } from '../common/platform/text';

/** A progress bar: `done` of `total` as `[####------] done/total`. */
export function bar(done: number, total: number, width = 30): string {
  const filled = total === 0 ? width : Math.round((done / total) * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total}`;
}

/** Text from the fleet (NACK messages, names an agent reports) cannot drive the operator's terminal. */
export const printable = (s: string) => plainText(s);
/** The same for a whole rendered text: line breaks stay. */
export const printableText = (s: string) => plainText(s, true);

/** Rows as aligned columns (the first row is the header); every cell made printable. */
export function table(rows: string[][]): string {
  rows = rows.map((r) => r.map(printable));
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}
