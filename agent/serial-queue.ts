/**
 * Runs tasks one at a time, in order — except that a task pushed to the front runs next, ahead of those waiting (a
 * drain whose deadline passed must not wait behind queued applies, each of which may spend 30 s in `haproxy -c`).
 */
export class SerialQueue {
  private readonly waiting: (() => Promise<void>)[] = [];
  private running: Promise<void> | undefined;

  /** Runs `fn` after the tasks queued before it; resolves or rejects with it. */
  push<T>(fn: () => Promise<T>): Promise<T> {
    return this.add(fn, false);
  }

  /** Runs `fn` as soon as the task running now (if any) has ended. */
  pushFront<T>(fn: () => Promise<T>): Promise<T> {
    return this.add(fn, true);
  }

  /** Resolves once nothing runs or waits. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private add<T>(fn: () => Promise<T>, front: boolean): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const task = () => fn().then(resolve, reject);
      if (front) this.waiting.unshift(task);
      else this.waiting.push(task);
      this.running ??= this.drain();
    });
  }

  private async drain(): Promise<void> {
    // (A turn first: a task pushed while this one is being set up still lands in order.)
    await Promise.resolve();
    for (let task = this.waiting.shift(); task; task = this.waiting.shift()) await task();
    this.running = undefined;
  }
}
