import { errorMessage } from '../../common/platform/errors';
import type { DesiredState } from '../../common/protocol/types';
import { FIRST_LISTEN_FD, parseListeners } from '../haproxy/render';
import type { AdminChannelSet, AdoptedSocket, PreviousHaproxy } from '../ports';
import type { Binder } from './bind';
import { ConfigFiles, listenersOf, listenersOfState } from './config-files';
import type { ApplyContext } from './context';
import { parseDrainIds } from './drain-journal';

/** What a takeover uses besides the shared context. */
export interface TakeoverParts {
  readonly binder: Binder;
  readonly files: ConfigFiles;
  readonly previous: PreviousHaproxy;
  readonly channels: AdminChannelSet | undefined;
  /** The drain journal's file (the previous agent's drains). */
  readonly journalFile: string;
  /** Arms the drain timer for the drains taken over. */
  readonly armDrains: () => void;
}

/**
 * A HAProxy the previous agent left running (a restart, an upgrade, a kill -9) is taken over, not stopped: its
 * listening sockets are copied into the pool (pidfd_getfd), it becomes the supervisor's current process, and if
 * `desired` renders to exactly the config file it runs, the agent knows its shape, so the first apply needs no
 * reload. No port closes and no connection is cut. Only when the takeover fails is the old HAProxy stopped.
 */
export async function takeOver(ctx: ApplyContext, parts: TakeoverParts, desired: DesiredState): Promise<void> {
  const { binder, files, previous, channels } = parts;
  const configPath = ctx.config.haproxy.configPath;
  // Killed mid-reload, the previous agent may have left a newer HAProxy the pid file does not name yet (or no pid
  // file at all): take every one running our config; the newest is current, the others are soft-stopping.
  const all = previous.find(configPath);
  if (all.length === 0) {
    channels?.stopRecordedKeeper();
    return;
  }
  try {
    const held = all.map((p) => binder.sockets.adoptFrom(p));
    // A soft-stopping HAProxy has closed its listeners (2.6 unbinds them on soft stop, fd@ ones included): the
    // current one is the newest that still holds one. When none does — the previous agent's last launch is gone
    // and only older generations finish their connections — none is current: they are watched and soft-stopped
    // again, and the first apply starts HAProxy (adopting one would leave nothing accepting).
    const holding = all.filter((_, i) => held[i]!.size > 0);
    if (holding.length === 0) {
      ctx.supervisor.adoptSoftStopping?.(all);
      binder.pin(false);
      ctx.log.warn(
        { haproxy_pids: all },
        'the HAProxy processes the previous agent left are all soft-stopping (none holds a listener): starting one',
      );
      return;
    }
    const pid = holding.at(-1)!;
    const olderOrStopping = all.filter((p) => p !== pid);
    const sockets = [...new Set(held.flatMap((m) => [...m.values()].map((x) => x.address)))];
    const onDisk = await previous.readFile(configPath);
    // Every listener HAProxy runs must have been copied, or the first reload would close the ones missing.
    const listeners = [...onDisk.matchAll(/^\s*bind fd@(\d+)\s*$/gm)].map((m) => Number(m[1]));
    if (sockets.length < listeners.length)
      throw new Error(`copied ${sockets.length} of the ${listeners.length} listening sockets of HAProxy pid ${pid}`);
    binder.pin(sockets.length > 0);
    const state = binder.bind(desired, []);
    // Servers the previous agent was draining are in that config, with their drains: they go on draining (no
    // reload cuts their sessions short) when the config is exactly what this agent would write.
    const drains = ctx.drains.restore(onDisk, state, ctx.clock.now());
    // The file may be newer than the process (written, then the agent was killed before launching it): it is what
    // runs only if the process holds exactly the sockets its `# listener` lines name.
    const runsFile = sameSet(
      [...held[all.indexOf(pid)]!.values()].map((x) => x.address),
      [...parseListeners(onDisk).values()],
    );
    const same = runsFile && onDisk === files.configText(state);
    if (!same) ctx.drains.clear();
    // A crash restart before the first reload needs the fds of the file it runs: with the config this agent would
    // write, its own order; otherwise the sockets the file's `# listener` lines name, when the adopted processes
    // hold every one (else nothing is known to pair with the file, and the first apply reloads anyway).
    const fds = same ? binder.fdsFor(state) : fileOrder(onDisk, listeners, held);
    ctx.supervisor.adopt(pid, fds, olderOrStopping);
    // What a crash restart starts: with the same listeners as the file, the state being applied (the cache, flushed
    // before every config write, is never older than the file: a runtime change whose config write failed is in
    // it); otherwise the file as it is, when its sockets are known.
    const paired = runsFile && (fds.length > 0 || listeners.length === 0);
    const committed =
      paired && listenersOf(onDisk) === listenersOfState(state)
        ? () => files.configText(state)
        : paired
          ? () => onDisk
          : undefined;
    files.adopted(committed, listenersOf(onDisk), committed === undefined && listeners.length > 0);
    if (same) {
      ctx.running = ctx.drains.withDraining(state);
      parts.armDrains();
    }
    ctx.overrides.adopted(parseDrainIds(await previous.readFile(parts.journalFile)));
    const noChannel = await channels?.recover(pid);
    if (noChannel !== undefined)
      ctx.log.warn(
        { haproxy_pid: pid, reason: noChannel },
        'no admin channel to the adopted HAProxy: reads go to the read-only socket, the first change reloads it',
      );
    ctx.log.info(
      {
        haproxy_pid: pid,
        also_running: olderOrStopping,
        sockets,
        config_matches: same,
        draining: same ? drains : 0,
      },
      'took over the HAProxy the previous agent left running, with its listening sockets',
    );
  } catch (err) {
    ctx.log.error(
      { haproxy_pids: all, err: errorMessage(err) },
      'cannot take over the running HAProxy; stopping it and binding its ports again (connections in flight on it are cut)',
    );
    binder.pin(false);
    binder.sockets.closeAll();
    for (const p of all) await previous.stop(p);
    channels?.stopRecordedKeeper();
  }
}

/**
 * The fds for a config file that names `listeners` (its `fd@k`, k from 4 on): for each k, the pool's copy of the
 * socket its `# listener fd@k address:port` line names, or [] when a line is missing or no adopted process holds
 * that socket. By address, not by the fd numbers the adopted process holds them at: the file may be newer than the
 * process (an agent killed between writing it and launching it), and pairing by number would cross-wire ports.
 */
function fileOrder(
  config: string,
  listeners: readonly number[],
  held: readonly ReadonlyMap<number, AdoptedSocket>[],
): number[] {
  const named = parseListeners(config);
  const byAddress = new Map(held.flatMap((m) => [...m.values()].map((x) => [x.address, x.fd] as const)));
  const fds: number[] = [];
  for (let k = FIRST_LISTEN_FD; k < FIRST_LISTEN_FD + listeners.length; k++) {
    const fd = listeners.includes(k) ? byAddress.get(named.get(k) ?? '') : undefined;
    if (fd === undefined) return [];
    fds.push(fd);
  }
  return fds;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const x = new Set(a);
  return x.size === new Set(b).size && b.every((v) => x.has(v));
}
