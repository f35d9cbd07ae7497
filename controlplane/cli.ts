import { loadConfig } from '../common/config/config';
import { configFlag } from '../common/platform/args';
import { createLogger } from '../common/platform/log';
import { listenForSignals, runUntilSignal, startOrStop } from '../common/platform/lifecycle';
import { controlPlaneFromConfig } from './wiring';

const CONTROLPLANE_HELP = `usage: proxymgr controlplane --config FILE

Runs a control plane: follows service configs (service_config in the config) and the hosts behind each
service, and streams the desired state to every connected agent over gRPC (controlplane.listen).
Serves ControlPlaneAdmin, grpc.health.v1 and server reflection on the same port.

options:
  --config FILE   proxymgr.yml (service_config; haproxy global/defaults; controlplane: listen, metrics_listen,
                  tls, dns, coalesce_ms, max_removal_share, ...)
  --help          show this help`;

/** `proxymgr controlplane`. */
export async function runControlPlaneCommand(argv: string[]): Promise<number> {
  const file = configFlag(argv, CONTROLPLANE_HELP, 'controlplane');
  if (typeof file === 'number') return file;
  const config = loadConfig(file);
  const log = createLogger({ role: 'controlplane' });
  const cp = controlPlaneFromConfig({ config, log });
  const signal = listenForSignals(false);
  await startOrStop(cp);
  return runUntilSignal(log, () => cp.stop(), undefined, signal);
}
