import { loadConfig } from '../common/config/config';
import { parseFlags, UsageError } from '../common/platform/args';
import { createLogger } from '../common/platform/log';
import { listenForSignals, runUntilSignal, startOrStop } from '../common/platform/lifecycle';
import { createAgentProcess } from './wiring';

const HELP = `usage: proxymgr agent --config FILE [--node-id ID] [--labels k=v,...] [--state FILE]

Runs the agent: binds every service's listening socket, runs HAProxy on those sockets and keeps it at the
desired state from the control plane (agent.controlplanes in the config) — runtime API first, a seamless
reload only when a service's shape changes. The last applied state is cached in agent.state_dir and served at
start while no control plane answers.

signals:
  SIGTERM, SIGINT   stop: HAProxy ends, the ports close
  SIGUSR2           hand over (restart, upgrade): the agent exits, HAProxy keeps serving on its sockets, and the
                    next agent started with the same config takes it over — no port closes, no connection is cut.
                    After a kill -9 the next agent takes over the same way.

options:
  --config FILE     proxymgr.yml (haproxy: config_path, socket_path, path, global, defaults;
                    agent: controlplanes, node_id, labels, state_dir, admin_listen, metrics_listen, tls)
  --node-id ID      overrides agent.node_id (default: the host name)
  --labels k=v,...  overrides agent.labels
  --state FILE      follow a desired-state file (JSON/YAML, proto3 JSON of proxymgr.v1.DesiredState)
                    instead of a control plane
  --help            show this help`;

/** Parses "k=v,k2=v2". */
export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(',').filter((p) => p !== '')) {
    const m = /^([A-Za-z0-9_./-]+)=([^,]*)$/.exec(pair);
    if (!m) throw new UsageError(`--labels: "${pair}" is not key=value (key: [A-Za-z0-9_./-]+)`);
    out[m[1]!] = m[2]!;
  }
  return out;
}

/** `proxymgr agent`. */
export async function runAgentCommand(argv: string[]): Promise<number> {
  let flags;
  try {
    flags = parseFlags(argv, {
      config: 'string',
      state: 'string',
      'node-id': 'string',
      labels: 'string',
      help: 'boolean',
    });
    if (flags.help) {
      console.log(HELP);
      return 0;
    }
    if (typeof flags.config !== 'string') throw new UsageError('--config is required');
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`proxymgr agent: ${err.message}\n\n${HELP}`);
    return 2;
  }
  let config = loadConfig(flags.config);
  const nodeId = typeof flags['node-id'] === 'string' ? flags['node-id'] : undefined;
  const labels = typeof flags.labels === 'string' ? parseLabels(flags.labels) : undefined;
  config = { ...config, agent: { ...config.agent, ...(nodeId ? { nodeId } : {}), ...(labels ? { labels } : {}) } };
  const log = createLogger({ role: 'agent', node_id: config.agent.nodeId });
  const proc = createAgentProcess(config, log, {
    stateFile: typeof flags.state === 'string' ? flags.state : undefined,
  });
  const signal = listenForSignals(true); // before starting: a signal during start is acted on once started
  await startOrStop(proc);
  return runUntilSignal(
    log,
    () => proc.stop(),
    () => proc.handOver(),
    signal,
  );
}
