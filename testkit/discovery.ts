import {
  DEFAULT_CONTROLPLANE_CONFIG,
  ControlPlaneConfig,
  ServiceConfigSource as SourceConfig,
} from '../common/config/config';
import { DesiredState, Service } from '../common/protocol/types';
import { Discovery } from '../controlplane/discovery';
import { ServiceConfig } from '../controlplane/types';
import { Watcher, WatcherFactory, WatcherListener } from '../controlplane/ports';
import { watcherIdentity } from '../controlplane/watchers';
import { discoveryFromConfig } from '../controlplane/wiring';

/** A Discovery on the real adapters (wiring.ts) with test-friendly timings; stop it in `finally`. */
export function testDiscovery(
  serviceConfig: SourceConfig,
  controlplane: Partial<ControlPlaneConfig> = {},
  global: string[] = [],
): Discovery {
  return discoveryFromConfig({
    config: {
      haproxy: {
        configPath: '/dev/null',
        socketPath: '/dev/null',
        binary: 'haproxy',
        global,
        defaults: ['timeout connect 5s'],
        user: '',
        group: '',
      },
      serviceConfig,
      controlplane: {
        ...DEFAULT_CONTROLPLANE_CONFIG,
        filePollMs: 200,
        initialSyncTimeoutMs: 2000,
        zkSessionTimeoutMs: 4000,
        ...controlplane,
      },
    },
  });
}

/** `name → ["addr:port", …]` of a snapshot, sorted: the part of the state most assertions are about. */
export function endpoints(state: DesiredState | undefined): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const s of state?.services ?? []) out[s.name] = s.servers.map((x) => `${x.address}:${x.port}`).sort();
  return out;
}

export function service(state: DesiredState | undefined, name: string): Service | undefined {
  return state?.services.find((s) => s.name === name);
}

/** A watcher that never reports (until a test drives its listener). */
export class SilentWatcher implements Watcher {
  listener: WatcherListener | undefined;
  start(listener: WatcherListener): void {
    this.listener = listener;
  }
  async stop(): Promise<void> {}
}

/** Watchers made by `create` (a test's fakes), identified as the real ones are (no default ZooKeeper ensemble). */
export function fakeWatchers(create: (config: ServiceConfig) => Watcher = () => new SilentWatcher()): WatcherFactory {
  return { create, identity: (config) => watcherIdentity(config, {}) };
}
