import { describe, expectObject } from './config-compile';
import { ConfigError } from '../platform/errors';

/** Label names as a hello may carry them (the stream server checks the same pattern). */
export const LABEL_KEY_RE = /^[A-Za-z0-9_./-]{1,63}$/;
const PLACEHOLDER_RE = /\{(cn|san_dns|san_uri)\}/;

/**
 * `auth.clients[i].labels`: for each label name, the values (patterns: `*` wildcards; `{cn}`, `{san_dns}`,
 * `{san_uri}` for the certificate's values, literally) an agent of this identity may claim in its hello. A single
 * string fixes the label to one value (`zone: "{san_dns}"`), a list limits it (`role: [web, api]`), `"*"` leaves
 * its value free. Names not listed may not be claimed at all. Absent = labels are self-declared.
 */
export function parseClientLabels(
  value: unknown,
  file: string,
  key: string,
  fromCertificate: boolean,
): Readonly<Record<string, readonly string[]>> | undefined {
  if (value === undefined || value === null) return undefined;
  const raw = expectObject(value, file, key);
  const out: Record<string, string[]> = {};
  for (const [name, v] of Object.entries(raw)) {
    if (!LABEL_KEY_RE.test(name))
      throw new ConfigError(`${file}: ${key}: "${name}" is not a label name (1-63 of A-Z a-z 0-9 _ . / -)`);
    const list = Array.isArray(v) ? v : [v];
    if (list.length === 0)
      throw new ConfigError(
        `${file}: ${key}.${name}: an empty list allows no value; leave "${name}" out to refuse the label`,
      );
    out[name] = list.map((p, i) => {
      const at = Array.isArray(v) ? `${key}.${name}[${i}]` : `${key}.${name}`;
      if (typeof p !== 'string' && typeof p !== 'number' && typeof p !== 'boolean')
        throw new ConfigError(`${file}: ${at}: expected a value pattern (a string), got ${describe(p)}`);
      const s = String(p);
      // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
      if (s === '' || /[\x00-\x1f\x7f]/.test(s))
        throw new ConfigError(`${file}: ${at}: expected a non-empty pattern without control characters`);
      if (!fromCertificate && PLACEHOLDER_RE.test(s))
        throw new ConfigError(
          `${file}: ${at}: {cn}, {san_dns} and {san_uri} come from a client certificate; a token entry lists its values`,
        );
      return s;
    });
  }
  return out;
}
