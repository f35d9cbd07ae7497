import { Logger } from './log';

/** How long a stopped process may take to exit by itself before it is made to. */
const EXIT_GRACE_MS = 5000;

/**
 * Runs until SIGINT/SIGTERM, then stops HAProxy and everything else cleanly. Once `stop` is done, whatever a library
 * leaves open (a ZooKeeper client's reconnect timer, a socket) must not keep a stopped process alive: after a grace
 * period it exits anyway, naming what was still open.
 */
export async function runUntilSignal(log: Logger, stop: () => Promise<void>): Promise<number> {
  // Later signals are ignored while stopping: a second Ctrl-C must not kill the agent before it has stopped its
  // HAProxy (which would be left running on the inherited sockets). SIGKILL still works.
  await new Promise<void>((resolve) => {
    process.on('SIGINT', resolve);
    process.on('SIGTERM', resolve);
  });
  log.info({}, 'stopping');
  await stop();
  log.info({}, 'stopped');
  setTimeout(() => {
    log.warn({ open: openHandles() }, `still running ${EXIT_GRACE_MS} ms after stopping; exiting`);
    process.exit(0);
  }, EXIT_GRACE_MS).unref();
  return 0;
}

/** What keeps the event loop alive, by kind (and address for sockets). */
function openHandles(): string[] {
  const handles = (process as unknown as { _getActiveHandles(): object[] })._getActiveHandles();
  return handles.map((h) => {
    const name = h.constructor?.name ?? typeof h;
    const sock = h as { remoteAddress?: string; remotePort?: number; localPort?: number };
    return sock.remoteAddress ? `${name} ${sock.remoteAddress}:${sock.remotePort}` : sock.localPort ? `${name} :${sock.localPort}` : name;
  });
}

/** Starts a process; if that fails half-way, stops what did start (HAProxy included) before the error surfaces. */
export async function startOrStop(proc: { start(): Promise<void>; stop(): Promise<void> }): Promise<void> {
  try {
    await proc.start();
  } catch (err) {
    await proc.stop().catch(() => undefined);
    throw err;
  }
}
