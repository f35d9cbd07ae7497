import { constants } from 'node:os';
import { alive } from './orphan';
import { nativeAddon } from './native';

/**
 * Processes the agent did not start (an adopted HAProxy) held by pidfd: a signal reaches the process that was
 * adopted or nobody — never an unrelated one that reused its pid after it exited and was reaped. (Children the agent
 * spawned are Node ChildProcess objects, which never signal a reaped pid.)
 */
export class PidHandles {
  private readonly fds = new Map<number, number>();

  /** Holds `pid` from now on; false when it already exited. */
  track(pid: number): boolean {
    if (this.fds.has(pid)) return true;
    const fd = nativeAddon().pidOpen(pid);
    if (fd === null) return false;
    this.fds.set(pid, fd);
    return true;
  }

  /** Whether the process held as `pid` runs (a zombie whose threads have all exited counts as gone). */
  alive(pid: number): boolean {
    const fd = this.fds.get(pid);
    if (fd === undefined) return false;
    if (!nativeAddon().pidSignal(fd, 0)) return this.forget(pid);
    return alive(pid); // still ours while the pidfd says it exists
  }

  /** Sends `signal` to the process held as `pid`; false when it is gone (or not held). */
  signal(pid: number, signal: NodeJS.Signals): boolean {
    const fd = this.fds.get(pid);
    if (fd === undefined) return false;
    return nativeAddon().pidSignal(fd, constants.signals[signal]) || this.forget(pid);
  }

  softStop(pid: number): void {
    this.signal(pid, 'SIGUSR1');
  }

  /** SIGTERM, SIGKILL after `graceMs`, and waits (bounded) until it is gone; then lets it go. */
  async stop(pid: number, graceMs = 3000): Promise<void> {
    if (this.signal(pid, 'SIGTERM')) {
      const deadline = Date.now() + graceMs;
      while (this.alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (this.signal(pid, 'SIGKILL'))
        for (let i = 0; i < 200 && this.alive(pid); i++) await new Promise((r) => setTimeout(r, 10));
    }
    this.forget(pid);
  }

  /** Closes the pidfd of `pid` (returns false, for the callers above). */
  forget(pid: number): false {
    const fd = this.fds.get(pid);
    if (fd !== undefined) nativeAddon().closeFd(fd);
    this.fds.delete(pid);
    return false;
  }
}
