/**
 * HAProxy's reading of one config line: words split on blanks, quotes removed, backslash and `\xNN` escapes
 * decoded, `#` comments cut (HAProxy 2.6). The option policy (common/haproxy/option-policy.ts) judges words as HAProxy reads
 * them, never as they are written.
 */

const MAX_QUOTE = 60;

/** One word of a config line: as written, and as HAProxy reads it (quotes removed, escapes decoded). */
export interface Word {
  readonly raw: string;
  readonly value: string;
}

export interface Tokens {
  readonly words: Word[];
  /** A `$` inside double quotes: HAProxy substitutes an environment variable there. */
  readonly envExpansion: boolean;
  readonly unterminated: boolean;
  /**
   * A `\xNN` escape decoded to a control character. HAProxy keeps words as C strings, so `\x00` ends the word
   * there: `file\x00` is `file` to HAProxy, which would slip a file argument past every check.
   */
  readonly controlEscape: boolean;
}

/** Splits a config line the way HAProxy 2.6 does (quotes, backslash escapes, `\xNN`, `#` comments). */
export function tokenize(line: string): Tokens {
  const words: Word[] = [];
  let raw = '';
  let value = '';
  let inWord = false;
  let quote: '' | "'" | '"' = '';
  let envExpansion = false;
  let controlEscape = false;
  const flush = () => {
    if (inWord) words.push({ raw, value });
    raw = value = '';
    inWord = false;
  };
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote === '' && (c === ' ' || c === '\t')) {
      flush();
      continue;
    }
    if (quote === '' && c === '#') break;
    inWord = true;
    raw += c;
    if (c === '\\' && quote !== "'") {
      const n = line[i + 1];
      const hex = /^x[0-9A-Fa-f]{2}$/.test(line.slice(i + 1, i + 4));
      if (n !== undefined && ' \\#$\'"'.includes(n)) {
        value += n;
        raw += n;
        i++;
      } else if (n !== undefined && 'rnt'.includes(n)) {
        value += n === 'r' ? '\r' : n === 'n' ? '\n' : '\t';
        raw += n;
        i++;
      } else if (hex) {
        const code = parseInt(line.slice(i + 2, i + 4), 16);
        if (code < 0x20 || code === 0x7f) controlEscape = true;
        value += String.fromCharCode(code);
        raw += line.slice(i + 1, i + 4);
        i += 3;
      } else {
        value += c;
      }
      continue;
    }
    if ((c === '"' || c === "'") && (quote === '' || quote === c)) {
      quote = quote === '' ? c : '';
      continue;
    }
    if (c === '$' && quote === '"') envExpansion = true;
    value += c;
  }
  const unterminated = quote !== '';
  flush();
  return { words, envExpansion, unterminated, controlEscape };
}

/** A value quoted for a message, cut to a readable length: errors never echo huge inputs. */
export function quote(value: string): string {
  return JSON.stringify(value.length > MAX_QUOTE ? `${value.slice(0, MAX_QUOTE - 3)}...` : value);
}
