import { ProxyMgrError } from '../common/platform/errors';
import { DEFAULT_WEIGHT } from '../common/protocol/types';
import { hostAddressProblem } from '../common/haproxy/target-policy';
import { NAME_RE } from '../common/haproxy/validate-state';
import { syntaxErrorMessage } from './syntax-error';
import { Host } from './types';

// eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
const CONTROL_RE = /[\x00-\x1f\x7f]/;
/** Host nodes are a few hundred bytes; anything far larger is a mistake and is not parsed. */
export const MAX_HOST_NODE_BYTES = 16 * 1024;

/** Turns anything into a valid HAProxy server name (`[A-Za-z0-9_.:-]+`), deterministically. */
/** A host entry that is not one (the watcher leaves it out, naming it; its service keeps its other hosts). */
export class HostError extends ProxyMgrError {
  constructor(message: string) {
    super('HOST_INVALID', message);
  }
}

export function serverName(raw: string): string {
  const s = raw.replace(/[^A-Za-z0-9_.:-]/g, '_').slice(0, 200);
  return s === '' ? '_' : s;
}

/** `address_port`, the stable name of hosts that have no name of their own (dns, file, static). */
export function addressPortName(address: string, port: number): string {
  return serverName(`${address}_${port}`);
}

/**
 * Parses a ZooKeeper host node: `{"address","port"}` (ProxyMgr) or the Nerve form
 * `{"host","port","name","weight","haproxy_server_options","labels"}`. The server name is Nerve's `name` when
 * present, otherwise the child node's name. Throws an Error saying what is wrong (the caller adds the path).
 */
export function parseHostNode(childName: string, data: Buffer | undefined): Host {
  if (!data || data.length === 0) throw new HostError('empty node; expected JSON {"address":"1.2.3.4","port":8080}');
  if (data.length > MAX_HOST_NODE_BYTES)
    throw new HostError(`${data.length} bytes is larger than the limit of ${MAX_HOST_NODE_BYTES}`);
  let doc: unknown;
  try {
    doc = JSON.parse(data.toString('utf8'));
  } catch (err) {
    throw new HostError(syntaxErrorMessage(err, data.toString('utf8'), 'json'));
  }
  return hostFromObject(doc, childName);
}

/** A static list entry: `"host:port"` or `{"address"|"host","port","name"?,"weight"?,...}`. */
export function parseHostEntry(value: unknown): Host {
  if (typeof value === 'string') return parseHostPort(value);
  return hostFromObject(value, undefined);
}

/**
 * `host:port`, `[v6]:port`, optionally followed by a weight: `10.0.0.1:80 weight=5`. Messages say what is wrong
 * without quoting the text: hosts files are read from disk, and a wrong file must not end up in logs line by line.
 */
export function parseHostPort(text: string): Host {
  const [hp, ...rest] = text.trim().split(/\s+/);
  const m = /^(\[([0-9A-Fa-f:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(hp ?? '');
  if (!m)
    throw new HostError('expected host:port (e.g. "10.0.0.1:8080" or "[::1]:8080"), optionally followed by weight=N');
  const address = (m[2] ?? m[3])!;
  const port = Number(m[4]);
  let weight = DEFAULT_WEIGHT;
  for (const opt of rest) {
    const w = /^weight=(\d+)$/.exec(opt);
    if (!w) throw new HostError('unknown option after host:port (only weight=N is allowed)');
    weight = Number(w[1]);
  }
  return checked({ name: addressPortName(address, port), address, port, weight, options: [] }, false);
}

function hostFromObject(doc: unknown, childName: string | undefined): Host {
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw new HostError(
      `expected a JSON object with "address" and "port", got ${Array.isArray(doc) ? 'a list' : typeof doc}`,
    );
  const o = doc as Record<string, unknown>;
  const nerve = o.address === undefined && o.host !== undefined;
  const address = nerve ? o.host : o.address;
  if (typeof address !== 'string' || address === '')
    throw new HostError(
      `${nerve ? 'host' : 'address'}: expected an IP or hostname string, got ${JSON.stringify(address)}`,
    );
  const port = typeof o.port === 'string' && /^\d+$/.test(o.port) ? Number(o.port) : o.port;
  if (typeof port !== 'number') throw new HostError(`port: expected an integer 1-65535, got ${JSON.stringify(o.port)}`);
  let weight = DEFAULT_WEIGHT;
  if (o.weight !== undefined && o.weight !== null) {
    if (typeof o.weight !== 'number')
      throw new HostError(`weight: expected an integer 0-256, got ${JSON.stringify(o.weight)}`);
    weight = o.weight;
  }
  const options: string[] = [];
  const hso = o.haproxy_server_options ?? o.options;
  if (typeof hso === 'string') {
    if (hso.trim() !== '') options.push(hso.trim());
  } else if (Array.isArray(hso) && hso.every((x) => typeof x === 'string')) {
    options.push(...hso);
  } else if (hso !== undefined && hso !== null) {
    throw new HostError(`haproxy_server_options: expected a string or a list of strings, got ${JSON.stringify(hso)}`);
  }
  let labels: Record<string, string> | undefined;
  if (o.labels !== undefined && o.labels !== null) {
    if (typeof o.labels !== 'object' || Array.isArray(o.labels))
      throw new HostError('labels: expected an object of strings');
    labels = {};
    for (const [k, v] of Object.entries(o.labels as Record<string, unknown>)) labels[k] = String(v);
  }
  let name: string;
  if (typeof o.name === 'string' && o.name !== '') name = serverName(o.name);
  else if (childName !== undefined) name = serverName(childName);
  else name = addressPortName(address, port);
  const host: Host = { name, address, port, weight, options, ...(labels ? { labels } : {}) };
  return checked(host);
}

/** `quote`: name the offending value in the message (not for text read from files). */
function checked(h: Host, quote = true): Host {
  const q = (v: unknown) => (quote ? ` ${JSON.stringify(v)}` : '');
  const badAddress = hostAddressProblem(h.address);
  if (badAddress) throw new HostError(`address${q(h.address)} ${badAddress}`);
  if (!Number.isInteger(h.port) || h.port < 1 || h.port > 65535)
    throw new HostError(`port${q(h.port)} is outside 1-65535`);
  if (!Number.isInteger(h.weight) || h.weight < 0 || h.weight > 256)
    throw new HostError(`weight${q(h.weight)} is outside 0-256`);
  if (!NAME_RE.test(h.name)) throw new HostError(`server name${q(h.name)} is invalid`);
  for (const opt of h.options)
    if (CONTROL_RE.test(opt)) throw new HostError('haproxy_server_options contains a newline or control character');
  return h;
}
