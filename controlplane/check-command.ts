import { loadConfig } from '../common/config/config';
import { parseFlags, UsageError } from '../common/platform/args';
import { errorMessage } from '../common/platform/errors';
import { createLogger } from '../common/platform/log';
import { Discovery } from './discovery';
import { discoveryFromConfig } from './wiring';

export const CHECK_HELP = `usage: proxymgr check --config FILE [--json] [--timeout-ms N]

Reads every service config and the hosts behind each once, the way a control plane of this version would, and
reports what it would refuse (a service config, an option, a host) — before upgrading the control plane (a service
whose options this version refuses would be removed from every agent), or after editing service configs.
Hosts and check targets the target policy refuses (ProxyMgr's own ports on loopback or this host's addresses,
link-local ranges, service_options.targets.deny) are listed per server; they are judged with this host's
addresses, and each agent judges again with its own. Nothing is written anywhere.

exit status: 0 nothing refused, 1 something refused (listed), 2 usage or config error, 3 no snapshot in time

options:
  --config FILE     proxymgr.yml (service_config, service_options, controlplane: file_watcher_dirs, dns, ...)
  --json            one JSON object: {"version", "services": [names served], "problems": {service: [..]}}
  --timeout-ms N    how long to wait for the first full read (default 30000)
  --help            show this help`;

/** `proxymgr check`: a dry run of discovery and the option policy against the configured sources. */
export async function runCheckCommand(
  argv: string[],
  out: (s: string) => void = (s) => process.stdout.write(s),
): Promise<number> {
  let flags;
  try {
    flags = parseFlags(argv, { config: 'string', json: 'boolean', 'timeout-ms': 'string', help: 'boolean' });
    if (flags.help) {
      out(CHECK_HELP + '\n');
      return 0;
    }
    if (typeof flags.config !== 'string') throw new UsageError('--config is required');
    if (flags['timeout-ms'] !== undefined && !/^\d+$/.test(String(flags['timeout-ms'])))
      throw new UsageError('--timeout-ms: expected a number of milliseconds');
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`proxymgr check: ${err.message}\n\n${CHECK_HELP}`);
    return 2;
  }
  let discovery: Discovery;
  try {
    const config = loadConfig(flags.config);
    if (!config.serviceConfig) throw new UsageError(`${flags.config}: no service_config section: nothing to check`);
    discovery = discoveryFromConfig({
      config,
      log: createLogger({ role: 'check' }, process.env.PROXYMGR_LOG_LEVEL ?? 'error'),
    });
  } catch (err) {
    console.error(`proxymgr check: ${errorMessage(err)}`);
    return 2;
  }
  discovery.start();
  try {
    const state = await discovery.waitFor(() => true, Number(flags['timeout-ms'] ?? 30_000));
    const errors = discovery.errors();
    const problems: Record<string, string[]> = {};
    if (errors.source.length > 0) problems['service_config'] = errors.source.map((p) => `${p.where}: ${p.message}`);
    for (const [name, list] of Object.entries(errors.services))
      problems[name] = list.map((p) => `${p.where}: ${p.message}`);
    const served = state.services.map((s) => s.name);
    if (flags.json) {
      out(JSON.stringify({ version: state.version, services: served, problems }) + '\n');
    } else {
      out(`${served.length} service(s) would be served: ${served.join(', ') || '(none)'}\n`);
      const names = Object.keys(problems);
      if (names.length === 0) out('nothing refused\n');
      for (const name of names) for (const p of problems[name]!) out(`REFUSED ${name}: ${p}\n`);
    }
    return Object.keys(problems).length > 0 ? 1 : 0;
  } catch (err) {
    console.error(`proxymgr check: ${errorMessage(err)}`);
    return 3;
  } finally {
    await discovery.stop();
  }
}
