import { errorMessage, StateProblem } from '../../common/platform/errors';
import type { DesiredState, Service } from '../../common/protocol/types';
import { socketKey } from '../ports';
import type { Trigger } from '../results';
import type { Binder } from './bind';
import type { ConfigFiles } from './config-files';
import type { ApplyContext } from './context';

/** How long a moving service's new address is tried once its old socket is closed. */
const VACATE_WAIT_MS = 2000;

/**
 * Services with a bind address change on the same port (see Binder): HAProxy is first reloaded without them, so the
 * old process soft-stops and closes its copies of their old sockets, the agent closes its own, and the new addresses
 * are bound; the caller then reloads with everything. For the services that move, the port is closed between the two
 * reloads, and connections still waiting in an old socket's backlog are reset: the price of an operation Linux does
 * not allow otherwise (the other services are served throughout). A new address that still cannot be bound keeps
 * the service at its previous version (reported), or leaves it out.
 */
export async function vacate(
  ctx: ApplyContext,
  binder: Binder,
  files: ConfigFiles,
  state: DesiredState,
  problems: StateProblem[],
  trigger: Trigger,
): Promise<DesiredState> {
  const moving = state.services.filter((s) => binder.awaitsBind(s));
  if (moving.length === 0) return state;
  const names = moving.map((s) => s.name).join(', ');
  const interim: DesiredState = { ...state, services: state.services.filter((s) => !moving.includes(s)) };
  if (!ctx.supervisor.running && files.hasCommitted) {
    // HAProxy is being (re)started on the committed fds, the old sockets among them: closing one now would leave a
    // crash restart without it. The moving services wait (kept or left out) and the retry of the state moves them.
    return withoutMoving(
      ctx,
      binder,
      state,
      moving,
      problems,
      'HAProxy is restarting on the sockets of the old address',
    );
  }
  if (ctx.supervisor.running) {
    await files.saveServerState();
    const pid = await files.launch(files.configText(interim), binder.fdsFor(interim));
    ctx.counters.reloads++;
    ctx.running = ctx.drains.withDraining(interim);
    ctx.actions.record(
      trigger,
      'reload',
      `haproxy pid ${pid}`,
      `reload: without ${names} first, so that the old sockets of their ports close`,
    );
  }
  binder.sockets.release(new Set(interim.services.map((s) => socketKey(s.bindAddress, s.port))));
  // The old process closes its listeners as soon as it gets the soft-stop signal; give it a moment.
  const closedAt = ctx.clock.now();
  const deadline = closedAt + VACATE_WAIT_MS;
  const previous = new Map((ctx.lastGood?.services ?? []).map((s) => [s.name, s]));
  const services = [...interim.services];
  for (const s of moving) {
    for (;;) {
      try {
        binder.sockets.acquire(s.bindAddress, s.port);
        ctx.log.info(
          { service: s.name, address: `${s.bindAddress}:${s.port}`, waited_ms: ctx.clock.now() - closedAt },
          'listening on the new address',
        );
        services.push(s);
        break;
      } catch (err) {
        if (ctx.clock.now() < deadline) {
          await new Promise((r) => ctx.clock.setTimeout(() => r(undefined), 20));
          continue;
        }
        const prev = previous.get(s.name);
        let kept = false;
        if (prev && !services.some((o) => o.port === prev.port)) {
          try {
            binder.sockets.acquire(prev.bindAddress, prev.port);
            services.push(prev);
            kept = true;
          } catch {
            // its old address is gone too
          }
        }
        problems.push({
          service: s.name,
          where: `service ${s.name}`,
          message: `${errorMessage(err)} (after closing the old socket); ${kept ? 'kept its previous version' : 'left out'}`,
          transient: true,
        });
        break;
      }
    }
  }
  binder.clearAwaiting();
  return { ...state, services: services.sort(byName) };
}

/** `state` with each moving service at its previous version (when its port is free for it) or left out. */
function withoutMoving(
  ctx: ApplyContext,
  binder: Binder,
  state: DesiredState,
  moving: readonly Service[],
  problems: StateProblem[],
  why: string,
): DesiredState {
  const previous = new Map((ctx.lastGood?.services ?? []).map((s) => [s.name, s]));
  const services = state.services.filter((s) => !moving.includes(s));
  for (const s of moving) {
    const prev = previous.get(s.name);
    const kept = prev !== undefined && !services.some((o) => o.port === prev.port);
    if (kept) services.push(prev);
    problems.push({
      service: s.name,
      where: `service ${s.name}`,
      message: `${why}; ${kept ? 'kept its previous version' : 'left out'} for now`,
      transient: true,
    });
  }
  binder.clearAwaiting();
  return { ...state, services: services.sort(byName) };
}

function byName(a: Service, b: Service): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
