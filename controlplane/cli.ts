import { loadConfig } from '../common/config';
import { parseFlags, UsageError } from '../common/args';
import { createLogger } from '../common/log';
import { listenForSignals, runUntilSignal, startOrStop } from '../common/lifecycle';
import { AgentProcess } from '../agent/main';
import { StateSource } from '../agent/sources/file';
import { Discovery } from './discovery';
import { ControlPlaneProcess } from './main';

const CONTROLPLANE_HELP = `usage: proxymgr controlplane --config FILE

Runs a control plane: follows service configs (service_config in the config) and the hosts behind each
service, and streams the desired state to every connected agent over gRPC (controlplane.listen).
Serves ControlPlaneAdmin, grpc.health.v1 and server reflection on the same port.

options:
  --config FILE   proxymgr.yml (service_config; haproxy global/defaults; controlplane: listen, metrics_listen,
                  tls, dns, coalesce_ms, max_removal_share, ...)
  --help          show this help`;

const STANDALONE_HELP = `usage: proxymgr standalone --config FILE

Runs discovery and one agent in one process, with no gRPC between them: the original ProxyMgr's
proxymgr.yml works unchanged on a single host.

options:
  --config FILE   proxymgr.yml (haproxy: config_path, socket_path, path, global, defaults; service_config)
  --help          show this help`;

function parseConfigFlag(argv: string[], help: string, name: string): string | number {
  try {
    const flags = parseFlags(argv, { config: 'string', help: 'boolean' });
    if (flags.help) {
      console.log(help);
      return 0;
    }
    if (typeof flags.config !== 'string') throw new UsageError('--config is required');
    return flags.config;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`proxymgr ${name}: ${err.message}\n\n${help}`);
    return 2;
  }
}

/** `proxymgr controlplane`. */
export async function runControlPlaneCommand(argv: string[]): Promise<number> {
  const file = parseConfigFlag(argv, CONTROLPLANE_HELP, 'controlplane');
  if (typeof file === 'number') return file;
  const config = loadConfig(file);
  const log = createLogger({ role: 'controlplane' });
  const cp = new ControlPlaneProcess({ config, log });
  const signal = listenForSignals(false);
  await startOrStop(cp);
  return runUntilSignal(log, () => cp.stop(), undefined, signal);
}

/** Feeds an in-process agent from discovery: every snapshot, in order, no network in between. */
export class DiscoveryStateSource implements StateSource {
  private off: (() => void) | undefined;

  constructor(private readonly discovery: Discovery) {}

  async start(apply: Parameters<StateSource['start']>[0]): Promise<void> {
    this.off = this.discovery.onSnapshot((s) => void apply(s));
    this.discovery.start();
    const first = this.discovery.current();
    if (first) await apply(first);
  }

  async stop(): Promise<void> {
    this.off?.();
    await this.discovery.stop();
  }
}

/** `proxymgr standalone`. */
export async function runStandaloneCommand(argv: string[]): Promise<number> {
  const file = parseConfigFlag(argv, STANDALONE_HELP, 'standalone');
  if (typeof file === 'number') return file;
  const config = loadConfig(file);
  const log = createLogger({ role: 'standalone' });
  const discovery = new Discovery({ config, log });
  const proc = new AgentProcess({ config, log, source: new DiscoveryStateSource(discovery) });
  const signal = listenForSignals(false);
  await startOrStop(proc);
  return runUntilSignal(log, () => proc.stop(), undefined, signal); // stopping the source stops discovery
}
