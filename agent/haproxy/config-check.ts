import { spawn as nodeSpawn } from 'node:child_process';
import { HaproxyConfigError, ProxyMgrError } from '../../common/platform/errors';
import { nativeAddon } from './native';
import type { SpawnFn } from './process';

export interface CheckOptions {
  /** `haproxy -c` is killed and the check fails after this long (a big config takes about a second). */
  readonly timeoutMs?: number;
  readonly spawn?: SpawnFn;
}

export const DEFAULT_CHECK_TIMEOUT_MS = 30_000;

/**
 * Runs `haproxy -c` on a candidate config. HAProxy checks `bind fd@N` and `stats socket sockpair@3` even in check
 * mode, so the listening fds are handed over exactly as for a real start (the check process never accepts), with a
 * socketpair of its own at fd 3 in place of the admin channel. Throws HaproxyConfigError naming
 * the services whose lines HAProxy complained about and quoting its messages, or HAPROXY_CHECK_FAILED when the
 * check itself could not run or did not finish in time (it is killed then).
 */
export async function checkConfig(
  binary: string,
  configFile: string,
  configText: string,
  fds: readonly number[],
  opts: CheckOptions = {},
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
  const pair = nativeAddon().socketPair(true);
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    let child;
    try {
      child = (opts.spawn ?? nodeSpawn)(binary, ['-c', '-f', configFile], {
        stdio: ['ignore', 'pipe', 'pipe', pair[1], ...fds],
      });
    } catch (err) {
      return reject(
        new ProxyMgrError('HAPROXY_CHECK_FAILED', `cannot run ${binary} -c: ${(err as Error).message}`, { cause: err }),
      );
    }
    let output = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new ProxyMgrError(
          'HAPROXY_CHECK_FAILED',
          `haproxy -c did not finish within ${timeoutMs} ms (killed): ${output.trim().slice(-500)}`,
        ),
      );
    }, timeoutMs);
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new ProxyMgrError('HAPROXY_CHECK_FAILED', `cannot run ${binary} -c: ${err.message}`, { cause: err }));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  }).finally(() => pair.forEach((fd) => nativeAddon().closeFd(fd)));
  if (code === 0) return;
  const { alerts, byService, unattributed } = attributeAlerts(output, configText);
  const services = [...byService.keys()];
  const where =
    services.length > 0
      ? `service ${services.join(', ')}${unattributed.length > 0 ? ' and global/defaults' : ''}`
      : 'global/defaults';
  const quoted = alerts.length > 0 ? alerts.join(' | ') : output.trim();
  throw new HaproxyConfigError(
    `haproxy -c rejected the configuration (${where}): ${quoted}`,
    output,
    services,
    unattributed,
    byService,
  );
}

export interface Attribution {
  /** HAProxy's ALERT and WARNING messages without their prefix (what is quoted to the operator). */
  readonly alerts: readonly string[];
  /** The ALERTs that point at a `listen` section, by service name. */
  readonly byService: ReadonlyMap<string, readonly string[]>;
  /** ALERTs that point at no service: global or defaults lines, or no location HAProxy names. */
  readonly unattributed: readonly string[];
}

// HAProxy's closing summary lines: they name no cause of their own.
// "Failed to initialize server(s) addr." follows the alert that names the server: a summary, not a finding.
const SUMMARY =
  /Fatal errors found in configuration|Error\(s\) found in configuration file|Errors found in configuration file|Failed to initialize server\(s\) addr/;

/**
 * Maps `haproxy -c` output back to the `listen` sections of the rendered config (pure). HAProxy 2.6 locates an
 * ALERT as `[file:line]` (parse errors and most server errors), `Proxy 'name'` / `proxy 'name'` (post-parse
 * checks) or `'server name/srv'`; anything else is unattributed. Only ALERTs count: WARNINGs do not fail a check.
 */
export function attributeAlerts(output: string, configText: string): Attribution {
  const sections = sectionsByLine(configText);
  const names = new Set(sections.filter((s): s is string => s !== undefined));
  const alerts: string[] = [];
  const byService = new Map<string, string[]>();
  const unattributed: string[] = [];
  let sawAlert = false;
  for (const raw of output.split('\n')) {
    const m = /\[(ALERT|WARNING)\]\s+\(\d+\)\s+:\s+(.*)$/.exec(raw);
    if (!m || SUMMARY.test(m[2]!)) continue;
    const text = m[2]!.trim();
    alerts.push(text);
    if (m[1] !== 'ALERT') continue;
    sawAlert = true;
    const line = /\[[^\]]*:(\d+)\]/.exec(text);
    const proxy = /[Pp]roxy '([^']+)'/.exec(text) ?? /'server ([^'/]+)\//.exec(text);
    const service = line ? sections[Number(line[1]) - 1] : proxy && names.has(proxy[1]!) ? proxy[1] : undefined;
    if (service) byService.set(service, [...(byService.get(service) ?? []), text]);
    else unattributed.push(text);
  }
  // A failure without any ALERT of its own (a crash, a missing file) is nobody's in particular: the whole config's.
  if (!sawAlert) unattributed.push(output.trim() || 'haproxy -c failed without saying why');
  return { alerts, byService, unattributed };
}

/** For each line of a rendered config (0-based), the `listen` section it belongs to, or undefined. */
function sectionsByLine(text: string): (string | undefined)[] {
  let current: string | undefined;
  return text.split('\n').map((line) => {
    const m = /^(listen|frontend|backend)\s+(\S+)/.exec(line);
    if (m) current = m[2];
    else if (/^(global|defaults)\b/.test(line)) current = undefined;
    return current;
  });
}
