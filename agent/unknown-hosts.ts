import { StateProblem } from '../common/errors';
import { DesiredState, Service } from '../common/types';

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
  running: DesiredState | undefined,
  problems: StateProblem[],
): DesiredState {
  if (!running) return desired;
  const runs = new Map(running.services.map((s) => [s.name, s]));
  let changed = false;
  const services = desired.services.map((s): Service => {
    if (s.servers.length > 0 || s.hosts === 'reported') return s;
    const live = runs.get(s.name);
    if (!live || live.servers.length === 0) return s;
    changed = true;
    const why =
      s.hosts === 'unknown'
        ? 'the control plane cannot read its hosts (unknown, not empty)'
        : 'the update has no servers for it and does not say discovery reported none';
    problems.push({
      where: `service ${s.name}`,
      message: `${why}; keeping the ${live.servers.length} server(s) HAProxy runs for it`,
    });
    return { ...s, servers: live.servers };
  });
  return changed ? { ...desired, services } : desired;
}
