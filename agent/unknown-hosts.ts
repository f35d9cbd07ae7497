import { StateProblem } from '../common/platform/errors';
import { DesiredState, Server, Service } from '../common/protocol/types';
import { drainingIn } from './drains';
import { inMaint, isDraining, RuntimeServer, RuntimeState } from './haproxy/servers-state';

/** Per service, the servers HAProxy runs for it (without those draining on their way out). */
export type RunningServers = ReadonlyMap<string, readonly Server[]>;

export function runningServersOf(state: DesiredState): RunningServers {
  return new Map(state.services.map((s) => [s.name, s.servers]));
}

/** A server as HAProxy's `show servers state` has it (per-server options are not in it). */
export function serverFromRuntime(v: RuntimeServer): Server {
  return { name: v.name, address: v.address, port: v.port, weight: v.weight, options: [] };
}

/**
 * What an adopted HAProxy runs when its config is not one this agent would write (a kill -9 before a write, a stale
 * state cache): its `show servers state`, without servers in maint or draining. Per-server options are not in it.
 */
export function runningServersFromActual(actual: RuntimeState): RunningServers {
  return new Map(
    [...actual].map(([backend, servers]) => [
      backend,
      [...servers.values()].filter((v) => !inMaint(v) && !isDraining(v)).map(serverFromRuntime),
    ]),
  );
}

/**
 * What HAProxy last ran, from the config file the agent left (no HAProxy runs now: it crashed and its restart has not
 * come back, or the host rebooted): the `server NAME ADDRESS:PORT weight W` lines of each `listen` section.
 */
export function runningServersFromConfig(config: string): RunningServers {
  const draining = new Set(drainingIn(config)); // on their way out: not kept
  const out = new Map<string, Server[]>();
  let current: Server[] | undefined;
  for (const line of config.split('\n')) {
    const listen = /^listen (\S+)$/.exec(line);
    if (listen) {
      out.set(listen[1]!, (current = []));
      continue;
    }
    if (!line.startsWith(' ')) current = undefined;
    const m = /^\s+server (\S+) (?:\[([^\]]+)\]|([^\s:]+)):(\d+) weight (\d+)/.exec(line);
    if (m && current && !draining.has(`${[...out.keys()].at(-1)}/${m[1]}`))
      current.push({ name: m[1]!, address: m[2] ?? m[3]!, port: Number(m[4]), weight: Number(m[5]), options: [] });
  }
  return out;
}

/**
 * Unknown is not empty. A service sent without servers keeps the servers HAProxy runs for it unless the control
 * plane says discovery *reported* it empty (`hosts: 'reported'`): its watcher may be unable to read (a DNS server
 * down while the control plane restarted), or the sender predates the status (an older control plane). Each service
 * kept so is named in `problems` (the ACK's warnings and the agent's status say so); the returned state is what the
 * agent applies and caches, so a restarted agent still runs the kept servers.
 *
 * `running` is what HAProxy runs without the servers draining on their way out (they are not kept as desired).
 */
export function keepUnknownHosts(
  desired: DesiredState,
  running: RunningServers | undefined,
  problems: StateProblem[],
): DesiredState {
  if (!running) return desired;
  let changed = false;
  const services = desired.services.map((s): Service => {
    if (s.servers.length > 0 || s.hosts === 'reported') return s;
    const live = running.get(s.name);
    if (!live || live.length === 0) return s;
    changed = true;
    const why =
      s.hosts === 'unknown'
        ? 'the control plane cannot read its hosts (unknown, not empty)'
        : 'the update has no servers for it and does not say discovery reported none';
    problems.push({
      where: `service ${s.name}`,
      message: `${why}; keeping the ${live.length} server(s) HAProxy runs for it`,
    });
    return { ...s, servers: live };
  });
  return changed ? { ...desired, services } : desired;
}
