/**
 * The control plane's side of `bench simulate`: a fleet model (services, their hosts, their configs), the registry
 * the watchers read (ZooKeeper's stand-in: a service's watcher can be healthy, failing, silent or find its path
 * gone), the service-config source and the known-hosts store a restarted replica reads. Discovery itself is the
 * real one; only its watchers, source and store are these.
 */
import type { Clock } from '../common/platform/clock';
import type { KnownHostsStore, LoadedKnownHosts } from '../controlplane/known-hosts';
import type { Host, RawServiceConfig } from '../controlplane/types';
import type { ServiceConfigSource, SourceListener, Watcher, WatcherListener } from '../controlplane/ports';
import { BAD_OPTION } from './lib-sim-world';

export type WatchMode = 'ok' | 'failing' | 'silent' | 'missing';

/** One service as the fleet has it. */
export interface SvcModel {
  present: boolean;
  /** Which of its two ports (a port change forces a new socket). */
  variant: 0 | 1;
  /** Bound on 0.0.0.0 instead of 127.0.0.1 (a bind-address change on the same port). */
  anyAddress: boolean;
  /** A listen option toggled (reload). */
  opt: boolean;
  /** server_options toggled (reload). */
  sopt: boolean;
  /** Carries BAD_OPTION: haproxy -c refuses it. */
  bad: boolean;
  /** host index → weight */
  readonly hosts: Map<number, number>;
  mode: WatchMode;
}

export const SERVICES = 4;
export const HOSTS = 6;
export const svcName = (s: number): string => `svc${s}`;
export const portOf = (s: number, variant: number): number => 8000 + s * 10 + variant;
/** Both ports a service may have: a listener on another service's port is cross-wired. */
export const portsOf = (name: string): number[] => {
  const s = Number(name.slice(3));
  return [portOf(s, 0), portOf(s, 1)];
};
export const drainTimeoutOf = (s: number): number => 2000 + 1000 * s;

export function hostOf(s: number, h: number, weight: number): Host {
  return { name: `h${h}`, address: `10.0.${s}.${h + 1}`, port: 9000 + h, weight, options: [] };
}

export function configText(s: number, m: SvcModel): string {
  return JSON.stringify({
    type: 'zookeeper',
    path: `/services/${svcName(s)}`,
    port: portOf(s, m.variant),
    bind_address: m.anyAddress ? '0.0.0.0' : '10.9.0.1',
    listen_options: ['mode http', m.opt ? 'balance leastconn' : 'balance roundrobin', ...(m.bad ? [BAD_OPTION] : [])],
    server_options: m.sopt ? ['maxconn 50'] : [],
    drain_timeout_ms: drainTimeoutOf(s),
  });
}

interface Sub {
  readonly listener: WatcherListener;
  readonly clock: Clock;
}

/** The registry and the service-config node, shared by every control-plane incarnation. */
export class SimRegistry {
  readonly svcs: SvcModel[] = [];
  sourceOk = true;
  private readonly subs = new Map<number, Set<Sub>>();
  private readonly sources = new Set<{ listener: SourceListener; clock: Clock }>();
  /** The store a restarted replica reads: ZooKeeper's, so it outlives every replica. */
  readonly known = new Map<string, readonly Host[]>();
  readonly knownConfigs = new Map<string, RawServiceConfig>();

  constructor(init: (s: number) => SvcModel) {
    for (let s = 0; s < SERVICES; s++) this.svcs.push(init(s));
  }

  /** Tells every watcher of `s` what it reads now (a ZooKeeper event arrives a millisecond later). */
  changed(s: number): void {
    for (const sub of this.subs.get(s) ?? []) sub.clock.setTimeout(() => this.deliver(s, sub), 1);
  }

  configsChanged(): void {
    for (const src of this.sources) src.clock.setTimeout(() => this.deliverConfigs(src.listener), 1);
  }

  private deliver(s: number, sub: Sub): void {
    const m = this.svcs[s]!;
    if (!this.subs.get(s)?.has(sub)) return;
    if (m.mode === 'ok')
      sub.listener.hosts({
        hosts: [...m.hosts].sort((a, b) => a[0] - b[0]).map(([h, w]) => hostOf(s, h, w)),
        problems: [],
      });
    else if (m.mode === 'missing')
      sub.listener.hosts({
        hosts: [],
        problems: [{ where: `zookeeper /services/${svcName(s)}`, message: 'path does not exist' }],
      });
    else if (m.mode === 'failing') sub.listener.unavailable('zookeeper: connection lost');
  }

  private deliverConfigs(listener: SourceListener): void {
    if (!this.sourceOk) return listener.unavailable('zookeeper: connection lost');
    const configs = new Map<string, RawServiceConfig>();
    this.svcs.forEach((m, s) => {
      if (!m.present) return;
      const name = svcName(s);
      configs.set(name, { name, text: configText(s, m), origin: `/service_config/${name}`, format: 'json' });
    });
    listener.configs(configs);
  }

  /** The watcher of service `name` for one control-plane incarnation. */
  watcher(name: string, clock: Clock): Watcher {
    const s = Number(name.slice(3));
    let sub: Sub | undefined;
    return {
      start: (listener) => {
        sub = { listener, clock };
        let set = this.subs.get(s);
        if (!set) this.subs.set(s, (set = new Set()));
        set.add(sub);
        const mine = sub;
        clock.setTimeout(() => this.deliver(s, mine), 1);
      },
      stop: async () => {
        if (sub) this.subs.get(s)?.delete(sub);
      },
    };
  }

  source(clock: Clock): ServiceConfigSource {
    let src: { listener: SourceListener; clock: Clock } | undefined;
    return {
      start: (listener) => {
        src = { listener, clock };
        this.sources.add(src);
        clock.setTimeout(() => this.deliverConfigs(listener), 1);
      },
      stop: async () => {
        if (src) this.sources.delete(src);
      },
    };
  }

  /** Forgets every watcher and source of a control plane that died. */
  unsubscribeAll(clock: Clock): void {
    for (const set of this.subs.values()) for (const sub of [...set]) if (sub.clock === clock) set.delete(sub);
    for (const src of [...this.sources]) if (src.clock === clock) this.sources.delete(src);
  }

  /** Subscriptions open (a measure that must not grow across control-plane restarts). */
  get subscriptions(): number {
    let n = this.sources.size;
    for (const set of this.subs.values()) n += set.size;
    return n;
  }

  knownHostsStore(): KnownHostsStore {
    return {
      load: async (): Promise<LoadedKnownHosts> => ({
        hosts: new Map(this.known),
        configs: new Map(this.knownConfigs),
        problems: [],
      }),
      save: (service, hosts, config) => {
        this.known.set(service, hosts);
        if (config) this.knownConfigs.set(service, config);
      },
      remove: (service) => {
        this.known.delete(service);
        this.knownConfigs.delete(service);
      },
      close: async () => undefined,
    };
  }
}
