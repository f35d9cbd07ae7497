/**
 * Regenerates common/haproxy/haproxy-keywords.ts from HAProxy's configuration manual (Debian: `apt-get install haproxy-doc`).
 *
 *   npx tsc -p tsconfig.json
 *   node dist/deploy/tools/extract-haproxy-keywords.js [/usr/share/doc/haproxy/configuration.txt.gz] > common/haproxy/haproxy-keywords.ts
 *
 * What it reads:
 *  - "4.1. Proxy keywords matrix": every row with an X in the "listen" column; "(*)" marks keywords that take a
 *    "no" (or "default") prefix.
 *  - "4.2. Alphabetically sorted keywords reference": entries whose "May be used in sections" says yes for listen
 *    and that no matrix keyword already covers (the matrix misses a few, e.g. "dynamic-cookie-key"); "no <kw>"
 *    headers mark <kw> as negatable too.
 *  - "5.2. Server and default-server options": every setting header, e.g. "inter <delay>", "check",
 *    "source <addr>[:<port>] [usesrc {...}] [interface <name>]". Each required argument group counts as one
 *    argument; an optional "[word <arg>]" group becomes an optional pair. A header whose only group is a bracketed
 *    choice ("verify [none|required]", "ssl-max-ver [ SSLv3 | ... ]") takes one argument: HAProxy requires it.
 *
 * The result is committed so nothing at run time depends on haproxy-doc. The policy on top of it (what is denied,
 * which arguments are files) lives in common/haproxy/option-policy.ts.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

export interface ServerKeywordSpec {
  readonly args: number;
  readonly optional?: readonly string[];
}

export interface ExtractedKeywords {
  readonly version: string;
  readonly listen: string[];
  readonly negatable: string[];
  readonly server: Record<string, ServerKeywordSpec>;
}

/** Extracts the keyword tables from the manual's text. */
export function extractKeywords(text: string): ExtractedKeywords {
  const lines = text.split('\n');
  const version = /^\s+version (\S+)\s*$/m.exec(text)?.[1] ?? '?';
  const date = /^\s+(\d{4}\/\d{2}\/\d{2})\s*$/m.exec(text)?.[1] ?? '?';
  const section = (start: RegExp, end: RegExp): string[] => {
    const from = lines.findIndex((l) => start.test(l));
    const to = lines.findIndex((l, i) => i > from && end.test(l));
    if (from < 0 || to < 0) throw new Error(`section ${start} not found in the manual`);
    return lines.slice(from, to);
  };

  const listen = new Set<string>();
  const negatable = new Set<string>();
  const row = /^(\S.*?)\s+(\(\*\)|\(deprecated\))?\s+(X|-)(?: \(!\))?\s+(X|-)\s+(X|-)\s+(X|-)\s*$/;
  for (const l of section(/^4\.1\. Proxy keywords matrix/, /^4\.2\. /)) {
    const m = row.exec(l);
    if (!m || m[1]!.startsWith('keyword') || m[1]!.startsWith('--')) continue;
    if (m[5] !== 'X') continue;
    const kw = m[1]!.trim().replace(/\s+/g, ' ');
    listen.add(kw);
    if (m[2] === '(*)') negatable.add(kw);
  }

  const covered = (kw: string) => [...listen].some((k) => kw === k || kw.startsWith(`${k} `));
  const ref = section(/^4\.2\. Alphabetically sorted keywords reference/, /^5\. Bind and server options/);
  ref.forEach((l, i) => {
    if (!l.includes('May be used in sections')) return;
    if (!/^yes/.test((ref[i + 1] ?? '').split('|')[2]?.trim() ?? '')) return;
    let j = i - 1;
    while (j >= 0 && /^\s/.test(ref[j]!)) j--; // the description between header and "May be used"
    for (; j >= 0 && ref[j] !== '' && !/^\s/.test(ref[j]!); j--) {
      const words: string[] = [];
      for (const w of ref[j]!.split(/\s+/)) {
        // "persist rdp-cookie(<name>)", "http-check set-var(<var-name>)": the keyword ends before the "(".
        const plain = /^([a-z][a-z0-9_.-]*)(\(.*)?$/.exec(w);
        if (!plain) break;
        words.push(plain[1]!);
        if (plain[2] !== undefined) break;
      }
      const no = words[0] === 'no';
      const kw = (no ? words.slice(1) : words).join(' ');
      if (kw === '') continue;
      if (no) negatable.add(kw);
      else if (!covered(kw)) listen.add(kw);
    }
  });

  const server: Record<string, ServerKeywordSpec> = {};
  const settings = section(/^5\.2\. Server and default-server options/, /^5\.3\. /);
  const first = settings.findIndex((l) => /The currently supported settings are the following ones/.test(l));
  for (const l of settings.slice(first + 1)) {
    if (!/^[a-z]/.test(l)) continue;
    const [kw, ...groups] = splitGroups(l);
    let args = 0;
    const optional: string[] = [];
    for (const g of groups) {
      if (g === '...') continue;
      const opt = /^\[\s*([a-z][a-z0-9-]*)\s+(.*)\]\*?$/.exec(g);
      if (opt && /[<{]/.test(opt[2]!)) optional.push(opt[1]!);
      else if (enclosed(g) && !(groups.length === 1 && g.includes('|')))
        continue; // optional argument
      else args++;
    }
    const prev = server[kw!];
    const allOptional = [...new Set([...(prev?.optional ?? []), ...optional])];
    server[kw!] = {
      args: Math.max(prev?.args ?? 0, args),
      ...(allOptional.length > 0 ? { optional: allOptional } : {}),
    };
  }
  return { version: `${version} (${date})`, listen: [...listen].sort(), negatable: [...negatable].sort(), server };
}

/** "[...]" or "[...]*" as a whole (not "[<proxy>/]<server>", which is a required argument). */
function enclosed(group: string): boolean {
  if (!group.startsWith('[')) return false;
  let depth = 0;
  for (let i = 0; i < group.length; i++) {
    if (group[i] === '[') depth++;
    if (group[i] === ']' && --depth === 0) return group.slice(i + 1) === '' || group.slice(i + 1) === '*';
  }
  return false;
}

/** Splits a syntax line on blanks outside [], {} and <>. */
function splitGroups(line: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const c of line.trim()) {
    if ('[{<'.includes(c)) depth++;
    if (']}>'.includes(c)) depth--;
    if (/\s/.test(c) && depth === 0) {
      if (cur !== '') out.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  if (cur !== '') out.push(cur);
  return out;
}

/** The TypeScript module committed as common/haproxy/haproxy-keywords.ts. */
export function renderModule(k: ExtractedKeywords, source: string): string {
  const q = (x: string) => `'${x.replace(/[\\']/g, '\\$&')}'`;
  const list = (xs: readonly string[]) => xs.map((x) => `  ${q(x)},`).join('\n');
  const servers = Object.keys(k.server)
    .sort()
    .map((name) => {
      const s = k.server[name]!;
      const key = /^[a-z_][a-z0-9_]*$/.test(name) ? name : q(name);
      return `  ${key}: { args: ${s.args}${s.optional ? `, optional: [${s.optional.map(q).join(', ')}]` : ''} },`;
    })
    .join('\n');
  return `// GENERATED by deploy/tools/extract-haproxy-keywords.ts from the HAProxy configuration manual
// (${source}, version ${k.version}). Do not edit by hand; regenerate:
//   apt-get install haproxy-doc && npx tsc -p tsconfig.json &&
//   node dist/deploy/tools/extract-haproxy-keywords.js > common/haproxy/haproxy-keywords.ts
// What may actually be used (deny list, file arguments) is decided in common/haproxy/option-policy.ts.

/** The manual these tables come from. */
export const HAPROXY_DOC_VERSION = ${q(k.version)};

/** Keywords valid in a \`listen\` section (4.1 matrix, plus 4.2 entries the matrix misses). */
export const LISTEN_KEYWORDS: readonly string[] = [
${list(k.listen)}
];

/** Listen keywords that take a "no" (or "default") prefix. */
export const NEGATABLE_LISTEN_KEYWORDS: readonly string[] = [
${list(k.negatable)}
];

/** A server setting: how many arguments follow it, and optional "word <arg>" pairs after those (\`source\`). */
export interface ServerKeywordSpec {
  readonly args: number;
  readonly optional?: readonly string[];
}

/** \`server\` / \`default-server\` settings (5.2). */
export const SERVER_KEYWORDS: Readonly<Record<string, ServerKeywordSpec>> = {
${servers}
};
`;
}

if (require.main === module) {
  const file = process.argv[2] ?? '/usr/share/doc/haproxy/configuration.txt.gz';
  const raw = readFileSync(file);
  // configuration.txt of 2.6 is under 1 MiB; the bound keeps a wrong or hostile .gz from inflating without end.
  const text = file.endsWith('.gz')
    ? gunzipSync(raw, { maxOutputLength: 64 * 1024 * 1024 }).toString('utf8')
    : raw.toString('utf8');
  process.stdout.write(renderModule(extractKeywords(text), file));
}
