import { gunzip, gzip } from 'node:zlib';
import { promisify } from 'node:util';
import { errorMessage, ProxyMgrError } from '../common/platform/errors';
import { NAME_RE } from '../common/haproxy/validate-state';
import { parseHostEntry } from './host';
import { MAX_SERVICE_CONFIG_BYTES } from './service-config';
import { Host, RawServiceConfig } from './types';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);

/**
 * The last known hosts of every service, kept where a restarted control-plane replica finds them: a replica that
 * starts while a watcher cannot read would otherwise have nothing to serve but "no hosts". Writes are recorded
 * cheaply and done later, coalesced, off the path that pushes host changes to agents.
 */
export interface KnownHostsStore {
  /** Every service's persisted hosts, validated like watcher input; rejects when the store cannot be read. */
  load(): Promise<LoadedKnownHosts>;
  /**
   * Records `hosts` (reported, after fail static) as the service's last known, with the config it is served with (a
   * restarted replica holds back the removal of a service whose config vanished meanwhile); written later, coalesced.
   */
  save(service: string, hosts: readonly Host[], config?: RawServiceConfig): void;
  /** The service is no longer followed: its record is marked removed (and pruned after a while). */
  remove(service: string): void;
  /** Writes what is pending (bounded wait) and lets go of the connection. */
  close(): Promise<void>;
}

export interface LoadedKnownHosts {
  readonly hosts: ReadonlyMap<string, readonly Host[]>;
  /** The config each service not marked removed was last served with (records from before configs: none). */
  readonly configs: ReadonlyMap<string, RawServiceConfig>;
  /** When each service marked removed was removed (epoch ms, the removing replica's clock). */
  readonly removed?: ReadonlyMap<string, number>;
  /** Records or entries that were refused, each naming where. */
  readonly problems: readonly { readonly where: string; readonly message: string }[];
}

/** What one record holds (JSON, gzip-compressed). */
export interface KnownHostsRecord {
  readonly v: 1;
  readonly service: string;
  /** Epoch ms of the write. */
  readonly at: number;
  /** Set when discovery stopped following the service (epoch ms). */
  readonly removedAt?: number;
  readonly hosts: readonly Host[];
  /** The service config as its source gave it (text, origin, format); parsed again, under today's policy, if used. */
  readonly config?: { readonly text: string; readonly origin: string; readonly format: 'json' | 'yaml' };
}

/** A record above this many bytes (compressed) is not written: ZooKeeper's 1 MB node limit less headroom. */
export const MAX_KNOWN_HOSTS_BYTES = 1000 * 1024;
/** Inflated size refused on read: a planted gzip bomb must not take the control plane's memory. */
export const MAX_KNOWN_HOSTS_JSON_BYTES = 32 * 1024 * 1024;
/** More hosts than this in one record are not believed. */
export const MAX_KNOWN_HOSTS = 100_000;

export class KnownHostsError extends ProxyMgrError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('HOST_INVALID', message, options);
  }
}

/** The JSON a host is stored as: the static-list form, read back by the same parser as watcher input. */
function hostJson(h: Host): object {
  return {
    name: h.name,
    address: h.address,
    port: h.port,
    weight: h.weight,
    options: h.options,
    ...(h.labels ? { labels: h.labels } : {}),
  };
}

/** Whether a service's name can be a record's node name (ZooKeeper refuses "." and ".."). */
export function storableName(service: string): boolean {
  return NAME_RE.test(service) && service !== '.' && service !== '..';
}

/** The hosts part of a record as text: two equal lists give equal text (used to skip writes of what is stored). */
export function hostsText(hosts: readonly Host[]): string {
  return JSON.stringify(hosts.map(hostJson));
}

/** What a record holds besides the service and its hosts. */
export interface RecordExtras {
  readonly removedAt?: number;
  readonly config?: RawServiceConfig;
  /** hostsText(hosts) when the caller has it already (the JSON of 10,000 hosts takes ~10 ms of the event loop). */
  readonly text?: string;
}

/** A record, gzip-compressed (on the thread pool); refuses one over MAX_KNOWN_HOSTS_BYTES, naming the service. */
export async function encodeKnownHosts(
  service: string,
  hosts: readonly Host[],
  at: number,
  { removedAt, config, text = hostsText(hosts) }: RecordExtras = {},
): Promise<Buffer> {
  const stored = config ? { text: config.text, origin: config.origin, format: config.format } : undefined;
  const json = `{"v":1,"service":${JSON.stringify(service)},"at":${at},${
    removedAt !== undefined ? `"removedAt":${removedAt},` : ''
  }${stored ? `"config":${JSON.stringify(stored)},` : ''}"hosts":${text}}`;
  const data = await gzipAsync(Buffer.from(json));
  if (data.length > MAX_KNOWN_HOSTS_BYTES)
    throw new KnownHostsError(
      `known hosts of service ${service}: ${hosts.length} host(s) are ${data.length} bytes compressed, over the limit of ${MAX_KNOWN_HOSTS_BYTES}; not stored (a restarted replica will not have them)`,
    );
  return data;
}

/**
 * Reads a record back. Anyone able to write the node could have planted it, so it is checked like watcher input:
 * bounded inflation, the service it names, and every host through the watchers' own host parser (names, addresses,
 * ports, weights, options). Bad hosts are left out and named; a bad record throws, naming `where`.
 */
export async function decodeKnownHosts(
  data: Buffer,
  where: string,
  service: string,
): Promise<{
  hosts: Host[];
  removedAt?: number;
  config?: RawServiceConfig;
  problems: { where: string; message: string }[];
}> {
  let json: Buffer;
  try {
    json = await gunzipAsync(data, { maxOutputLength: MAX_KNOWN_HOSTS_JSON_BYTES });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new KnownHostsError(
      code === 'ERR_BUFFER_TOO_LARGE'
        ? `${where}: inflates to more than ${MAX_KNOWN_HOSTS_JSON_BYTES} bytes; refused`
        : `${where}: not a gzip-compressed record (${code ?? errorMessage(err)})`,
      { cause: err },
    );
  }
  let doc: unknown;
  try {
    doc = JSON.parse(json.toString('utf8'));
  } catch (err) {
    throw new KnownHostsError(`${where}: not JSON (${errorMessage(err)})`, { cause: err });
  }
  const r = doc as Partial<KnownHostsRecord> | null;
  if (typeof r !== 'object' || r === null || r.v !== 1 || !Array.isArray(r.hosts))
    throw new KnownHostsError(`${where}: expected {"v":1,"service":…,"hosts":[…]}`);
  if (r.service !== service)
    throw new KnownHostsError(`${where}: names service ${JSON.stringify(r.service)}, not ${JSON.stringify(service)}`);
  if (r.hosts.length > MAX_KNOWN_HOSTS)
    throw new KnownHostsError(`${where}: ${r.hosts.length} hosts is more than the limit of ${MAX_KNOWN_HOSTS}`);
  const hosts: Host[] = [];
  const problems: { where: string; message: string }[] = [];
  const seen = new Set<string>();
  r.hosts.forEach((raw: unknown, i) => {
    try {
      const h = parseHostEntry(raw);
      if (seen.has(h.name)) throw new KnownHostsError(`duplicate server name ${JSON.stringify(h.name)}`);
      seen.add(h.name);
      hosts.push(h);
    } catch (err) {
      problems.push({ where: `${where} hosts[${i}]`, message: `${errorMessage(err)}; left out` });
    }
  });
  const removedAt = typeof r.removedAt === 'number' && Number.isFinite(r.removedAt) ? r.removedAt : undefined;
  let config: RawServiceConfig | undefined;
  if (r.config !== undefined) {
    const c = r.config as Partial<KnownHostsRecord['config']> | null;
    if (
      typeof c !== 'object' ||
      c === null ||
      typeof c.text !== 'string' ||
      typeof c.origin !== 'string' ||
      (c.format !== 'json' && c.format !== 'yaml')
    )
      problems.push({
        where: `${where} config`,
        message: 'expected {"text":…,"origin":…,"format":"json"|"yaml"}; left out',
      });
    else if (Buffer.byteLength(c.text) > MAX_SERVICE_CONFIG_BYTES || c.origin.length > 4096)
      problems.push({ where: `${where} config`, message: `larger than a service config may be; left out` });
    else config = { name: service, text: c.text, origin: c.origin, format: c.format };
  }
  return { hosts, problems, ...(removedAt !== undefined ? { removedAt } : {}), ...(config ? { config } : {}) };
}
