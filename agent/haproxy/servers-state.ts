import { ProxyMgrError } from '../../common/platform/errors';
/** One server as HAProxy runs it, from `show servers state`. */
export interface RuntimeServer {
  readonly backend: string;
  readonly name: string;
  readonly address: string;
  readonly port: number;
  /** User-set weight (srv_uweight). */
  readonly weight: number;
  /** srv_admin_state bit field (see SRV_ADMF_*). */
  readonly adminState: number;
  /** srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping. */
  readonly operState: number;
}

/** backend name → server name → server. */
export type RuntimeState = ReadonlyMap<string, ReadonlyMap<string, RuntimeServer>>;

export const ADMF_FMAINT = 0x01; // forced maintenance (set server … state maint)
export const ADMF_IMAINT = 0x02; // inherited from a tracked server
export const ADMF_CMAINT = 0x04; // `disabled` in the config
export const ADMF_FDRAIN = 0x08;
export const ADMF_RMAINT = 0x20; // DNS resolution failed
const ANY_MAINT = ADMF_FMAINT | ADMF_IMAINT | ADMF_CMAINT | ADMF_RMAINT;

export function inMaint(s: RuntimeServer): boolean {
  return (s.adminState & ANY_MAINT) !== 0;
}

export function isDraining(s: RuntimeServer): boolean {
  return (s.adminState & ADMF_FDRAIN) !== 0;
}

/**
 * Parses `show servers state` (format version 1): a version line, a `#` header naming the columns, then one
 * line per server. Columns are looked up by header name so later HAProxy versions that append columns still parse.
 */
export function parseServersState(text: string): RuntimeState {
  const lines = text.split('\n');
  const header = lines.find((l) => l.startsWith('# '));
  if (!header)
    throw new ProxyMgrError(
      'HAPROXY_RUNTIME',
      `show servers state: no header line in ${JSON.stringify(text.slice(0, 200))}`,
    );
  const cols = header.slice(2).trim().split(/\s+/);
  const col = (name: string) => {
    const i = cols.indexOf(name);
    if (i < 0) throw new ProxyMgrError('HAPROXY_RUNTIME', `show servers state: no column ${name}`);
    return i;
  };
  const iBe = col('be_name');
  const iName = col('srv_name');
  const iAddr = col('srv_addr');
  const iOp = col('srv_op_state');
  const iAdmin = col('srv_admin_state');
  const iWeight = col('srv_uweight');
  const iPort = col('srv_port');
  const result = new Map<string, Map<string, RuntimeServer>>();
  for (const line of lines) {
    if (line === '' || line.startsWith('#') || /^\d+$/.test(line.trim())) continue;
    const f = line.trim().split(/\s+/);
    if (f.length < cols.length - 2) continue;
    const backend = f[iBe]!;
    const server: RuntimeServer = {
      backend,
      name: f[iName]!,
      address: f[iAddr]!,
      port: Number(f[iPort]),
      weight: Number(f[iWeight]),
      adminState: Number(f[iAdmin]),
      operState: Number(f[iOp]),
    };
    let be = result.get(backend);
    if (!be) result.set(backend, (be = new Map<string, RuntimeServer>()));
    be.set(server.name, server);
  }
  return result;
}
