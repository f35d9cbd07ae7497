import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Clock, systemClock } from '../common/platform/clock';
import type { ProxyMgrConfig } from '../common/config/config';
import { readTokenFile } from '../common/platform/auth';
import { writeFileAtomic } from '../common/platform/fs';
import type { Logger } from '../common/platform/log';
import { Agent, AgentAdapters, AgentOptions } from './agent';
import { AgentHooks, AgentProcess } from './agent-process';
import { AdminChannels } from './haproxy/admin-channel';
import { checkConfig } from './haproxy/config-check';
import { findHaproxies, stopOrphan } from './haproxy/orphan';
import { resolveHaproxyIdentity } from './haproxy/privileges';
import { HaproxySupervisor } from './haproxy/process';
import { clientConnections } from './haproxy/proc-connections';
import { StatsSocketClient } from './haproxy/runtime';
import { NativeSocketPool } from './haproxy/sockets';
import type { StateSource } from './ports';
import { FileStateSource } from './sources/file';
import { GrpcStateSource } from './sources/grpc';

/**
 * The agent's composition root: the real adapters — HAProxy processes (HaproxySupervisor) with their admin channels,
 * the native socket pool, `haproxy -c`, atomic state-dir writes, /proc for a previous agent's HAProxy — built from
 * proxymgr.yml. `replace` swaps single adapters (tests: a runtime API that fails on demand, a writer that fails).
 */
export function realAgentAdapters(
  config: ProxyMgrConfig,
  log: Logger,
  replace: Partial<AgentAdapters> = {},
): AgentAdapters {
  const { haproxy, agent } = config;
  const clock: Clock = replace.clock ?? systemClock;
  // Every HAProxy the agent starts gets its admin channel at fd 3 (render.ts); a replaced `runtime` only changes
  // what the agent sends its commands to (tests wrap the channel to fail on demand).
  const adminChannels =
    replace.makeSupervisor !== undefined
      ? undefined
      : new AdminChannels({
          observer: new StatsSocketClient(haproxy.socketPath),
          keeperFile: path.join(agent.stateDir, 'admin-channel.json'),
        });
  // Channels come with the supervisor that opens them: replaced only together with makeSupervisor.
  const channels = replace.makeSupervisor !== undefined ? replace.channels : adminChannels;
  const runtime = replace.runtime ?? channels;
  if (!runtime) throw new TypeError('realAgentAdapters: a replaced supervisor needs a runtime');
  return {
    runtime,
    channels,
    clock,
    sockets: replace.sockets ?? new NativeSocketPool(agent.backlog),
    checkConfig: replace.checkConfig ?? checkConfig,
    writeFile: replace.writeFile ?? writeFileAtomic,
    previous: replace.previous ?? {
      find: (configPath) => findHaproxies(configPath, haproxy.binary),
      readFile: (file) => fsp.readFile(file, 'utf8').catch(() => ''),
      stop: (pid) => stopOrphan(pid, log.child({ component: 'agent' })),
    },
    identity: replace.identity ?? resolveHaproxyIdentity(config, log.child({ component: 'agent' })),
    makeSupervisor:
      replace.makeSupervisor ??
      (({ beforeRestart }) =>
        new HaproxySupervisor({
          binary: haproxy.binary,
          configPath: haproxy.configPath,
          channels: adminChannels!,
          log: log.child({ component: 'haproxy' }),
          pidFile: path.join(agent.stateDir, 'haproxy.pid'),
          clock,
          maxOldGenerations: agent.maxOldGenerations,
          connectionsOf: clientConnections,
          // A crash restart starts from the committed config (with the runtime changes made since), whatever a
          // failed launch or a pending write left in the file.
          beforeRestart,
        })),
  };
}

/** An Agent on the real adapters (see realAgentAdapters), with `extra` options (a hook, replaced adapters). */
export function createAgent(
  config: ProxyMgrConfig,
  log: Logger,
  extra: Partial<Omit<AgentOptions, 'config' | 'log'>> = {},
): Agent {
  return new Agent({ ...extra, config, log, ...realAgentAdapters(config, log, extra) });
}

/** The agent's version, sent in every hello. */
export const AGENT_VERSION = '0.1.0';

/**
 * An agent process on the real adapters, following `source` (standalone: in-process discovery), or a state file, or
 * — neither given — the control planes of proxymgr.yml over gRPC.
 */
export function createAgentProcess(
  config: ProxyMgrConfig,
  log: Logger,
  from: { readonly stateFile?: string; readonly source?: StateSource } = {},
): AgentProcess {
  return new AgentProcess({
    config,
    log,
    makeAgent: (hooks) => createAgent(config, log, hooks),
    makeSource: (hooks) =>
      from.source ??
      (from.stateFile
        ? new FileStateSource(from.stateFile, log.child({ component: 'state-file' }))
        : controlPlaneSource(config, log, hooks)),
    haproxyRunning: () => findHaproxies(config.haproxy.configPath, config.haproxy.binary).length > 0,
    fillHaproxySections: Boolean(from.stateFile),
  });
}

/** The gRPC stream to the control planes of proxymgr.yml (agent.controlplanes), asking the agent through `hooks`. */
function controlPlaneSource(config: ProxyMgrConfig, log: Logger, hooks: AgentHooks): GrpcStateSource {
  const { agent, haproxy } = config;
  if (agent.controlplanes.length === 0) {
    throw new Error(
      `${config.file}: agent.controlplanes: no control plane address and no --state FILE: the agent has nowhere to get a desired state from`,
    );
  }
  return new GrpcStateSource({
    addresses: agent.controlplanes,
    nodeId: agent.nodeId,
    labels: agent.labels,
    agentVersion: AGENT_VERSION,
    haproxyVersion: haproxyVersion(haproxy.binary),
    ...hooks,
    tls: agent.tls,
    ...(agent.tokenFile ? { token: readTokenFile(agent.tokenFile, 'agent.token_file') } : {}),
    log: log.child({ component: 'grpc' }),
  });
}

function haproxyVersion(binary: string): string {
  try {
    return /version (\S+)/.exec(execFileSync(binary, ['-v'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  } catch {
    return 'unknown';
  }
}
