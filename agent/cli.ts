import { loadConfig } from '../common/config';
import { parseFlags, UsageError } from '../common/args';
import { createLogger } from '../common/log';
import { DesiredState } from '../common/types';
import { Agent } from './agent';
import { FileStateSource } from './sources/file';

const HELP = `usage: proxymgr agent --config FILE --state FILE

Runs the agent: binds every service's listening socket, runs HAProxy on those sockets and keeps it at the
desired state — runtime API first, a seamless reload only when a service's shape changes.

options:
  --config FILE   proxymgr.yml (haproxy: config_path, socket_path, path, global, defaults; agent: state_dir, ...)
  --state FILE    desired state (JSON or YAML, proto3 JSON form of proxymgr.v1.DesiredState), followed live
  --help          show this help`;

/** `proxymgr agent`: resolves to the exit code; keeps running until SIGINT/SIGTERM. */
export async function runAgentCommand(argv: string[]): Promise<number> {
  let flags;
  try {
    flags = parseFlags(argv, { config: 'string', state: 'string', help: 'boolean' });
    if (flags.help) {
      console.log(HELP);
      return 0;
    }
    if (typeof flags.config !== 'string') throw new UsageError('--config is required');
    if (typeof flags.state !== 'string') throw new UsageError('--state is required');
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`proxymgr agent: ${err.message}\n\n${HELP}`);
    return 2;
  }
  const config = loadConfig(flags.config);
  const log = createLogger({ role: 'agent' });
  const agent = new Agent({ config, log });
  const source = new FileStateSource(flags.state, log.child({ component: 'state-file' }));
  // The file may leave the HAProxy sections out; proxymgr.yml's global/defaults apply then.
  const withGlobals = (s: DesiredState): DesiredState =>
    s.haproxy.global.length === 0 && s.haproxy.defaults.length === 0 ? { ...s, haproxy: { global: config.haproxy.global, defaults: config.haproxy.defaults } } : s;
  await source.start((state) => {
    agent.apply(withGlobals(state)).catch((err: unknown) => log.error({ err: String(err) }, 'apply failed'));
  });
  agent.startDriftRepair();
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  log.info({}, 'stopping');
  source.stop();
  await agent.stop();
  return 0;
}
