/** Runs until SIGINT/SIGTERM, then stops HAProxy and everything else cleanly. */
export async function runUntilSignal(stop: () => Promise<void>): Promise<number> {
  // Later signals are ignored while stopping: a second Ctrl-C must not kill the agent before it has stopped its
  // HAProxy (which would be left running on the inherited sockets). SIGKILL still works.
  await new Promise<void>((resolve) => {
    process.on('SIGINT', resolve);
    process.on('SIGTERM', resolve);
  });
  await stop();
  return 0;
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
