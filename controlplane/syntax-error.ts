/**
 * A JSON or YAML syntax error as its position and kind, never quoting the input: V8's JSON.parse messages carry a
 * snippet of the text (`Unexpected token 's', "{"a": secret…" is not valid JSON`) and js-yaml's carry the lines
 * around the error, and these messages end up in logs and in the admin API. Works on anything JSON.parse or
 * yaml.load threw for `text`.
 */
export function syntaxErrorMessage(err: unknown, text: string, format: 'json' | 'yaml'): string {
  if (format === 'yaml') {
    // js-yaml's YAMLException: `reason` is the bare phrase, `mark` the position; its message adds the lines around.
    const e = err as { reason?: unknown; mark?: { line?: unknown; column?: unknown } } | undefined;
    if (e && typeof e.reason === 'string') {
      const what = safeReason(e.reason);
      const mark = e.mark;
      if (mark && typeof mark.line === 'number' && typeof mark.column === 'number')
        return `not valid YAML: ${what} at line ${mark.line + 1}, column ${mark.column + 1}`;
      return `not valid YAML: ${what}`;
    }
    return 'not valid YAML';
  }
  const at = jsonErrorOffset(text);
  if (at === undefined) return 'not valid JSON';
  const { line, column } = lineColumn(text, at);
  return `not valid JSON: ${at >= text.length ? 'unexpected end of input' : 'unexpected character'} at line ${line}, column ${column}`;
}

/** js-yaml's reasons are fixed phrases except for a few that quote a tag, alias or handle name: those parts go. */
function safeReason(reason: string): string {
  return reason
    .replace(/!<[^>]*>/g, '!<…>')
    .replace(/"[^"]*"/g, '"…"')
    .replace(/(such characters): .*$/, '$1');
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let start = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    start = i + 1;
  }
  return { line, column: offset - start + 1 };
}

/** Thrown inside jsonErrorOffset to unwind the parse at the offending offset (caught there, never escapes). */
class At extends Error {
  constructor(readonly offset: number) {
    super(`JSON syntax error at offset ${offset}`);
  }
}

const NUMBER_RE = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

/**
 * The offset of the first JSON syntax error in `text` (RFC 8259, as JSON.parse reads it), or undefined when there is
 * none or it cannot be told (nesting deep enough to exhaust the stack).
 */
export function jsonErrorOffset(text: string): number | undefined {
  let i = 0;
  const n = text.length;
  const fail = (): never => {
    throw new At(i);
  };
  const ws = () => {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const str = () => {
    if (text[i] !== '"') fail();
    i++;
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) fail();
      if (c === 0x5c) {
        i++;
        const e = text[i];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail();
          i += 5;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i++;
        else fail();
      } else i++;
    }
    fail();
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        str();
        ws();
        if (text[i] !== ':') fail();
        i++;
        value();
        ws();
        if (text[i] === '}') {
          i++;
          return;
        }
        if (text[i] !== ',') fail();
        i++;
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i] === ']') {
          i++;
          return;
        }
        if (text[i] !== ',') fail();
        i++;
      }
    }
    if (c === '"') return str();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) {
      NUMBER_RE.lastIndex = i;
      if (!NUMBER_RE.test(text)) fail();
      i = NUMBER_RE.lastIndex;
      return;
    }
    for (const lit of ['true', 'false', 'null']) {
      if (text.startsWith(lit, i)) {
        i += lit.length;
        return;
      }
    }
    fail();
  };
  try {
    value();
    ws();
    if (i < n) fail();
    return undefined;
  } catch (err) {
    if (err instanceof At) return err.offset;
    return undefined;
  }
}
