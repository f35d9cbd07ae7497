import * as path from 'node:path';
import { parseConfig, ProxyMgrConfig } from '../common/config/config';
import { createLogger, silentLogger } from '../common/platform/log';
import { DesiredState, Server, Service } from '../common/protocol/types';
import { stateVersion } from '../common/protocol/state-hash';
import type { AgentOptions } from '../agent/agent';
import { createAgent } from '../agent/wiring';
import { tempDir } from './net';

export const HTTP_DEFAULTS = [
  'mode http',
  'timeout connect 2s',
  'timeout client 10s',
  'timeout server 10s',
  'retries 1',
];

/**
 * A real agent (real HAProxy, real sockets) in a temp dir; `close()` stops HAProxy and removes the dir. `seams`
 * replaces parts of the agent (e.g. a runtime API that fails on demand).
 */
export async function startTestAgent(
  extraYaml = '',
  seams: Partial<Omit<AgentOptions, 'config' | 'log'>> = {},
  /** Lines (indented two spaces) added to the `haproxy:` section, e.g. `  path: /tmp/x/haproxy`. */
  haproxyYaml = '',
) {
  const tmp = tempDir('proxymgr-agent-');
  const yml = `haproxy:
  config_path: ${path.join(tmp.dir, 'haproxy.cfg')}
  socket_path: ${path.join(tmp.dir, 'haproxy.sock')}
${haproxyYaml}
agent:
  state_dir: ${tmp.dir}
  drift_check_interval_ms: 500
${/^ {2}hard_stop_after_ms:/m.test(extraYaml) ? '' : '  hard_stop_after_ms: 5000\n'}${extraYaml}`;
  const config: ProxyMgrConfig = parseConfig(yml, path.join(tmp.dir, 'proxymgr.yml'));
  const log = process.env.PROXYMGR_TEST_LOG ? createLogger({ test: true }, 'debug') : silentLogger;
  const agent = createAgent(config, log, seams);
  return {
    agent,
    config,
    dir: tmp.dir,
    // The agent's own admin channel: tests that play an operator changing servers use it.
    runtime: agent.runtime,
    close: async () => {
      await agent.stop();
      tmp.cleanup();
    },
  };
}

export function server(name: string, port: number, extra: Partial<Server> = {}): Server {
  return { name, address: '127.0.0.1', port, weight: 1, options: [], ...extra };
}

export function service(name: string, port: number, servers: Server[], extra: Partial<Service> = {}): Service {
  return {
    name,
    port,
    bindAddress: '127.0.0.1',
    listenOptions: ['mode http', 'balance roundrobin'],
    serverOptions: [],
    servers,
    ...extra,
  };
}

export function state(services: Service[], defaults = HTTP_DEFAULTS): DesiredState {
  const s = { haproxy: { global: [], defaults }, services };
  return { version: stateVersion(s.haproxy, s.services), ...s };
}
