/**
 * The named formats of proxymgr.yml (`x-as` in common/config/config.schema.json): each reads a value of one kind (a path, a
 * host:port, a listen address, a wave, …) wherever the schema uses it, and throws a ConfigError naming the file, the
 * key and what is expected. The compiler (common/config/config-compile.ts) has checked the value's type first, unless the
 * format is raw.
 */
import { isIP } from 'node:net';
import * as path from 'node:path';
import { parseClientLabels } from './auth-labels';
import { At, describe, expectObject, Format } from './config-compile';
import type { WaveSpec } from './config-types';
import { ConfigError } from '../platform/errors';
import type { TlsConfig } from '../platform/grpc';
import { deniedExtraKeyword, sectionLineProblem } from '../haproxy/option-policy';
import { parsePortList, parseTargetRule } from '../haproxy/target-policy';
import { ensembleServers, WatcherEnsemble } from './zk-ensembles';

export { describe, expectObject } from './config-compile';

/** `p` as written when absolute, else under `base` (the config file's directory). */
export function resolvePath(base: string, p: string): string {
  return path.isAbsolute(p) ? p : path.join(base, p);
}

/** "1", 5, "10%": a wave spec; throws a message naming `where`. */
export function parseWaveSpec(value: unknown, where: string): WaveSpec {
  const s = typeof value === 'number' ? String(value) : value;
  if (typeof s === 'string') {
    const pct = /^(\d+(?:\.\d+)?)%$/.exec(s.trim());
    if (pct && Number(pct[1]) > 0 && Number(pct[1]) <= 100) return { kind: 'share', share: Number(pct[1]) / 100 };
    if (/^\d+$/.test(s.trim()) && Number(s) >= 1) return { kind: 'count', count: Number(s) };
  }
  throw new ConfigError(
    `${where}: expected a number of agents (e.g. 1) or a share of the fleet (e.g. "10%"), got ${describe(value)}`,
  );
}

const fail = (at: At, message: string): never => {
  throw new ConfigError(`${at.file}: ${at.key}: ${message}`);
};

/** A format that reads a value of the node's type, checked. */
function checked<T>(read: (value: T, at: At) => unknown): Format {
  return { read: (value, at) => read(value as T, at) };
}

const HOST_PORT_RE = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;
const ZK_HOST_PORT_RE = /^[A-Za-z0-9.\-_[\]:]+:\d{1,5}$/;
const NAMESERVER_RE = /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\])(:\d{1,5})?$|^[0-9a-fA-F:]+$/;
const LABEL_NAME_RE = /^[A-Za-z0-9_./-]+$/;

/** Every format the schema names, by name. */
export const CONFIG_FORMATS: Readonly<Record<string, Format>> = {
  path: checked<string>((p, at) => resolvePath(at.base, p)),
  dirs: checked<string[]>((dirs, at) => dirs.map((d) => path.normalize(resolvePath(at.base, d)))),
  mebibytes: checked<number>((mb) => mb * 1024 * 1024),
  ip: checked<string>((s, at) =>
    isIP(s) === 0 ? fail(at, `"${s}" is not an IPv4 or IPv6 literal (e.g. 127.0.0.1, ::)`) : s,
  ),
  'user-name': checked<string>((s, at) =>
    s !== '' && !/^[a-z_][a-z0-9_-]*\$?$/i.test(s)
      ? fail(at, `"${s}" is not a user or group name ("" keeps HAProxy as the agent's user)`)
      : s,
  ),
  /** "host:port" with a port 1..65535 (host may be a name, an IPv4 or a bracketed IPv6). */
  'host-port': checked<string>((s, at) => {
    const m = HOST_PORT_RE.exec(s);
    return !m || Number(m[2]) < 1 || Number(m[2]) > 65535
      ? fail(at, `"${s}" is not host:port (e.g. "127.0.0.1:7000")`)
      : s;
  }),
  /** A listen address "host:port" (port 0 = any free port), or "" / false for off. */
  listen: {
    raw: true,
    read: (value, at) => {
      if (value === '' || value === false) return '';
      if (typeof value !== 'string') return fail(at, `expected a non-empty string, got ${describe(value)}`);
      if (!HOST_PORT_RE.test(value) || Number(value.slice(value.lastIndexOf(':') + 1)) > 65535)
        return fail(at, `"${value}" is not host:port (e.g. "127.0.0.1:7000"; "" turns it off)`);
      return value;
    },
  },
  nameserver: checked<string>((ns, at) =>
    NAMESERVER_RE.test(ns) ? ns : fail(at, `"${ns}" is not an IP or IP:port (e.g. "127.0.0.1:53", "[::1]:53")`),
  ),
  tls: checked<TlsConfig>((tls, at) => {
    if ((tls.cert === undefined) !== (tls.key === undefined)) fail(at, 'cert and key go together (both or neither)');
    if (tls.requireClientCert && !tls.ca)
      throw new ConfigError(
        `${at.file}: ${at.key}.require_client_cert: needs ${at.key}.ca to check client certificates against`,
      );
    return tls;
  }),
  /** Labels an agent sends in its hello: names of [A-Za-z0-9_./-], values written as strings. */
  labels: {
    raw: true,
    read: (value, at) => {
      const out: Record<string, string> = {};
      for (const [k, v] of Object.entries(expectObject(value, at.file, at.key))) {
        if (!LABEL_NAME_RE.test(k)) fail(at, `label name "${k}" must match [A-Za-z0-9_./-]+`);
        if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
          throw new ConfigError(`${at.file}: ${at.key}.${k}: expected a string, got ${describe(v)}`);
        out[k] = String(v);
      }
      return out;
    },
  },
  'client-labels': {
    raw: true,
    read: (value, at) => parseClientLabels(value, at.file, at.key, at.parent?.cert !== undefined),
  },
  wave: { raw: true, read: (value, at) => parseWaveSpec(value, `${at.file}: ${at.key}`) },
  /** A line of the operator's `global`/`defaults` section, except one that would open another section. */
  'section-line': checked<string>((line, at) => {
    const problem = sectionLineProblem(line);
    const section = /([a-z_]+)\[\d+\]$/.exec(at.key)?.[1];
    return problem
      ? fail(at, `${problem}; these lines belong to the ${section} section and HAProxy ignores indentation`)
      : line;
  }),
  // Listen keywords may have several words ("option foo"); server keywords are one word each.
  'listen-keyword': checked<string>((k, at) =>
    extraKeyword(k, at, 'listen', /^[a-z0-9][a-z0-9._-]*( [a-z0-9][a-z0-9._-]*)*$/),
  ),
  'server-keyword': checked<string>((k, at) => extraKeyword(k, at, 'server', /^[a-z0-9][a-z0-9._-]*$/)),
  'target-rule': checked<string>((text, at) => {
    const r = parseTargetRule(text);
    return typeof r === 'string'
      ? fail(
          at,
          `${r}; expected a CIDR with an optional port, e.g. "127.0.0.1/32:9100", "169.254.0.0/16" or "[fe80::/10]:80"`,
        )
      : r;
  }),
  'port-list': checked<string>((text, at) => {
    const r = parsePortList(text);
    return typeof r === 'string' ? fail(at, r) : r;
  }),
  /** The servers of a ZooKeeper ensemble `zookeeper` watchers may name: host:port list, no chroot. */
  'ensemble-servers': checked<string>((servers, at) => {
    if (servers.includes('/'))
      fail(at, `"${servers}" has a chroot; list the servers only (a watcher's path says where it reads)`);
    for (const hp of servers.split(','))
      if (!ZK_HOST_PORT_RE.test(hp.trim())) fail(at, `"${hp}" is not host:port (expected e.g. "zk-a:2181,zk-b:2181")`);
    return servers;
  }),
  /** Watcher ensembles: a server belongs to one of them only (one set of credentials). */
  'distinct-ensembles': checked<WatcherEnsemble[]>((ensembles, at) => {
    const owner = new Map<string, string>();
    ensembles.forEach((e, i) => {
      const key = `${at.key}[${i}]`;
      for (const s of ensembleServers(e.servers)) {
        const other = owner.get(s);
        if (other !== undefined && other !== key)
          throw new ConfigError(
            `${at.file}: ${key}.servers: ${s} is also in ${other}; a server belongs to one ensemble (one set of credentials)`,
          );
        owner.set(s, key);
      }
    });
    return ensembles;
  }),
};

function extraKeyword(k: string, at: At, kind: 'listen' | 'server', re: RegExp): string {
  if (!re.test(k)) {
    fail(
      at,
      `"${k}" is not a HAProxy keyword (lower case letters, digits, . _ -${kind === 'listen' ? ', words separated by one space' : ''})`,
    );
  }
  const denied = deniedExtraKeyword(kind, k);
  if (denied) fail(at, `"${k}" is on the deny list (${denied}) and cannot be allowed; see docs/service-options.md`);
  return k;
}

/** `service_config.servers`: "host:port,host:port". */
export function zkServersProblem(servers: string): string | undefined {
  const bad = servers.split(',').find((hp) => !ZK_HOST_PORT_RE.test(hp.trim()));
  return bad === undefined ? undefined : `"${bad}" is not host:port (expected e.g. "zk1:2181,zk2:2181")`;
}
