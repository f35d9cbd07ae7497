import { errorMessage, StateProblem } from '../../common/platform/errors';
import type { DesiredState, Service } from '../../common/protocol/types';
import { listenOrder } from '../haproxy/render';
import { socketKey, SocketPool } from '../ports';
import type { ApplyContext } from './context';

/**
 * The bind step: every service's listening socket, bound before anything is checked or launched (HAProxy gets them
 * as `fd@N`). A service whose port cannot be bound is left out (a transient problem: retried with the held state);
 * one whose port is held by a socket of ours the new state no longer wants waits to be bound inside the reload
 * (see rebind.ts).
 */
export class Binder {
  /** Socket keys of this apply that can only be bound once an old socket on their port is closed (see rebind.ts). */
  private readonly awaiting = new Set<string>();
  /** Sockets were copied from an adopted HAProxy and are kept until it runs a config of ours (releaseUnused). */
  private pinned = false;

  constructor(
    private readonly ctx: ApplyContext,
    readonly sockets: SocketPool,
  ) {}

  /** `state` without the services whose socket cannot be bound (each a problem). */
  bind(state: DesiredState, problems: StateProblem[]): DesiredState {
    this.awaiting.clear();
    const wanted = new Set(state.services.map((s) => socketKey(s.bindAddress, s.port)));
    let released = false;
    const services = state.services.filter((s) => {
      try {
        this.sockets.acquire(s.bindAddress, s.port);
        return true;
      } catch (first) {
        let err = first;
        if (this.blockedByUnwanted(s, err, wanted)) {
          this.awaiting.add(socketKey(s.bindAddress, s.port));
          return true;
        }
        if (!released && errnoOf(err) === 'EADDRINUSE') {
          // A socket of ours that nothing runs on may be in the way (one kept for a check, or left by a version
          // that never ran): closed, the port may be free.
          released = true;
          this.releaseUnused(wanted);
          try {
            this.sockets.acquire(s.bindAddress, s.port);
            return true;
          } catch (again) {
            err = again;
          }
        }
        // (A port taken for a moment: retried with the held state.)
        problems.push({ service: s.name, where: `service ${s.name}`, message: errorMessage(err), transient: true });
        return false;
      }
    });
    return services.length === state.services.length ? state : { ...state, services };
  }

  /** Whether `s` waits for an old socket on its port to close (a bind address change). */
  awaitsBind(s: Service): boolean {
    return this.awaiting.has(socketKey(s.bindAddress, s.port));
  }

  /** Nothing waits any more (the apply or preflight is over). */
  clearAwaiting(): void {
    this.awaiting.clear();
  }

  /**
   * The fds of the state's services in listen order. For `haproxy -c`, a service whose new address is not bound yet
   * is checked on the old socket of its port: HAProxy checks that `fd@N` is a listening socket.
   */
  fdsFor(state: DesiredState, forCheck = false): number[] {
    return listenOrder(state).map((s) => {
      if (forCheck && this.awaitsBind(s)) {
        const old = (this.ctx.running?.services ?? []).find(
          (r) => r.port === s.port && r.bindAddress !== s.bindAddress,
        );
        if (old) return this.sockets.acquire(old.bindAddress, old.port);
      }
      return this.sockets.acquire(s.bindAddress, s.port);
    });
  }

  /** Sockets copied from an adopted HAProxy are kept (`true`) until it runs a config this agent knows. */
  pin(pinned: boolean): void {
    this.pinned = pinned;
  }

  /** Closes the sockets no running service uses (and none in `alsoKeep`). */
  releaseUnused(alsoKeep: ReadonlySet<string> = new Set()): void {
    // Sockets copied from an adopted HAProxy stay until HAProxy runs a config this agent knows: closing them after a
    // refused first apply would leave the next apply unable to bind its own ports.
    if (this.ctx.running === undefined && this.pinned) return;
    const keep = new Set([
      ...alsoKeep,
      ...(this.ctx.running?.services ?? []).map((s) => socketKey(s.bindAddress, s.port)),
    ]);
    const closed = this.sockets.release(keep);
    if (closed.length > 0) this.ctx.log.info({ closed }, 'closed listening sockets no service uses');
  }

  /**
   * Linux refuses to bind 127.0.0.1:P while 0.0.0.0:P is bound (and the reverse). When the socket in the way is one
   * of ours that the new state no longer wants (a bind_address change on the same port), the new one is bound
   * inside the reload, once the old one is closed (see rebind.ts).
   */
  private blockedByUnwanted(s: Service, err: unknown, wanted: ReadonlySet<string>): boolean {
    if (errnoOf(err) !== 'EADDRINUSE') return false;
    return (this.ctx.running?.services ?? []).some(
      (r) => r.port === s.port && !wanted.has(socketKey(r.bindAddress, r.port)),
    );
  }
}

/** The errno code a SOCKET_BIND_FAILED carries as its cause ('' when none). */
function errnoOf(err: unknown): string {
  return (err as { cause?: { code?: string } }).cause?.code ?? '';
}
