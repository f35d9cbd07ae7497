import { Host } from '../types';
import { Watcher, WatcherListener } from '../ports';

/** Hosts listed in the service config itself (`"hosts": ["10.0.0.1:80", {"address":..,"port":..}]`). */
export class StaticWatcher implements Watcher {
  constructor(private readonly hosts: readonly Host[]) {}

  start(listener: WatcherListener): void {
    // Reported on the next tick so a listener never hears from a watcher before start() returned.
    setImmediate(() => listener.hosts({ hosts: this.hosts, problems: [] }));
  }

  async stop(): Promise<void> {}
}
