/**
 * `proxymgr standalone`: the composition root of the single-host mode — discovery (controlplane/) feeding one agent
 * (agent/) in one process, with no gRPC between them. The only place where the two halves meet.
 */
import { configFlag } from '../common/platform/args';
import { loadConfig } from '../common/config/config';
import { listenForSignals, runUntilSignal, startOrStop } from '../common/platform/lifecycle';
import { createLogger } from '../common/platform/log';
import { createAgentProcess } from '../agent/wiring';
import { StateSource } from '../agent/ports';
import { Discovery } from '../controlplane/discovery';
import { discoveryFromConfig } from '../controlplane/wiring';

const STANDALONE_HELP = `usage: proxymgr standalone --config FILE

Runs discovery and one agent in one process, with no gRPC between them: the original ProxyMgr's
proxymgr.yml works unchanged on a single host.

options:
  --config FILE   proxymgr.yml (haproxy: config_path, socket_path, path, global, defaults; service_config)
  --help          show this help`;

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
  const file = configFlag(argv, STANDALONE_HELP, 'standalone');
  if (typeof file === 'number') return file;
  const config = loadConfig(file);
  const log = createLogger({ role: 'standalone' });
  const discovery = discoveryFromConfig({ config, log });
  const proc = createAgentProcess(config, log, { source: new DiscoveryStateSource(discovery) });
  const signal = listenForSignals(false);
  await startOrStop(proc);
  return runUntilSignal(log, () => proc.stop(), undefined, signal); // stopping the source stops discovery
}
