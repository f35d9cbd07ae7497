import { gzipSync } from 'node:zlib';
import { DEFAULT_CONTROLPLANE_CONFIG, ControlPlaneConfig } from '../../../common/config/config';
import { FakeClock } from '../../../testkit/fake-clock';
import { fakeWatchers } from '../../../testkit/discovery';
import { DesiredState } from '../../../common/protocol/types';
import { Discovery } from '../../../controlplane/discovery';
import {
  decodeKnownHosts,
  encodeKnownHosts,
  KnownHostsStore,
  LoadedKnownHosts,
  MAX_KNOWN_HOSTS_BYTES,
} from '../../../controlplane/known-hosts';
import { KnownHostsWriter } from '../../../controlplane/known-hosts-writer';
import { serviceRemovals } from '../../../controlplane/service-removal';
import { Host, RawServiceConfig } from '../../../controlplane/types';
import { ServiceConfigSource, SourceListener, Watcher, WatcherListener } from '../../../controlplane/ports';
import { composeState, revisionOf } from '../../../controlplane/rollout/revision';
import { silentLogger } from '../../../common/platform/log';

const host = (n: number): Host => ({ name: `h${n}`, address: `10.0.0.${n}`, port: 80, weight: 1, options: [] });

class FakeSource implements ServiceConfigSource {
  listener: SourceListener | undefined;
  start(l: SourceListener): void {
    this.listener = l;
  }
  async stop(): Promise<void> {}
  set(names: string[]): void {
    const m = new Map<string, RawServiceConfig>();
    names.forEach((name, i) =>
      m.set(name, {
        name,
        text: JSON.stringify({ type: 'static', hosts: [], port: 8000 + i }),
        origin: `test ${name}`,
        format: 'json',
      }),
    );
    this.listener!.configs(m);
  }
}

class FakeWatcher implements Watcher {
  listener: WatcherListener | undefined;
  start(l: WatcherListener): void {
    this.listener = l;
  }
  async stop(): Promise<void> {}
}

/** A store whose loads the test settles: resolve/reject settle the pending load (a rejected one makes way for the next). */
class FakeStore implements KnownHostsStore {
  saved = new Map<string, readonly Host[]>();
  savedConfigs = new Map<string, RawServiceConfig | undefined>();
  removed: string[] = [];
  loads = 0;
  private next = FakeStore.deferred();
  private static deferred() {
    let resolve!: (r: LoadedKnownHosts) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise<LoadedKnownHosts>((res, rej) => ((resolve = res), (reject = rej)));
    return { promise, resolve, reject };
  }
  resolve(r: Omit<LoadedKnownHosts, 'configs'> & Partial<Pick<LoadedKnownHosts, 'configs'>>): void {
    this.next.resolve({ configs: new Map(), ...r });
  }
  reject(e: Error): void {
    const d = this.next;
    this.next = FakeStore.deferred();
    d.reject(e);
  }
  load(): Promise<LoadedKnownHosts> {
    this.loads++;
    return this.next.promise;
  }
  save(service: string, hosts: readonly Host[], config?: RawServiceConfig): void {
    this.saved.set(service, hosts);
    this.savedConfigs.set(service, config);
  }
  remove(service: string): void {
    this.removed.push(service);
  }
  async close(): Promise<void> {}
}

function setup(cp: Partial<ControlPlaneConfig> = {}, store: KnownHostsStore | null = null) {
  const clock = new FakeClock(1_000_000);
  const source = new FakeSource();
  const watchers = new Map<string, FakeWatcher>();
  const d = new Discovery({
    config: {
      haproxy: {
        configPath: '/dev/null',
        socketPath: '/dev/null',
        binary: 'haproxy',
        global: [],
        defaults: [],
        user: '',
        group: '',
      },
      controlplane: { ...DEFAULT_CONTROLPLANE_CONFIG, coalesceMs: 0, coalesceMaxMs: 0, ...cp },
    },
    source,
    clock,
    knownHosts: store ?? undefined,
    watchers: fakeWatchers((config) => {
      const w = new FakeWatcher();
      watchers.set(config.name, w);
      return w;
    }),
  });
  const snaps: DesiredState[] = [];
  d.onSnapshot((s) => snaps.push(s));
  d.start();
  const svc = (name: string) => d.current()?.services.find((s) => s.name === name);
  return { d, clock, source, watchers, snaps, svc };
}

/** Lets gzip on the thread pool finish. */
const settle = () => new Promise((r) => setTimeout(r, 100));

const flush = async (clock: FakeClock, ms = 0) => {
  await clock.advanceAsync(ms);
  for (let i = 0; i < 5; i++) await Promise.resolve();
};

describe('unknown is not empty (discovery)', () => {
  test('a watcher silent past initial_sync_timeout_ms gives hosts unknown with the persisted hosts, never an empty "reported"', async () => {
    const store = new FakeStore();
    const { d, clock, source, svc, snaps } = setup({ initialSyncTimeoutMs: 5000 }, store);
    source.set(['web']);
    store.resolve({ hosts: new Map([['web', [host(1), host(2)]]]), problems: [] });
    await flush(clock, 5001);
    expect(svc('web')).toMatchObject({ hosts: 'unknown', servers: [{ name: 'h1' }, { name: 'h2' }] });
    expect(d.errors().services.web?.[0]?.message).toMatch(
      /hosts unknown: watcher did not report within 5000 ms; keeping the 2 previous host\(s\) \(persisted by an earlier control plane\)/,
    );
    for (const s of snaps)
      for (const x of s.services) expect(x.hosts === 'reported' && x.servers.length === 0).toBe(false);
    await d.stop();
  });

  test('a first "unavailable" without any known hosts publishes the service as unknown with none (not reported)', async () => {
    const { d, clock, source, watchers, svc } = setup({ initialSyncTimeoutMs: 5000 }, null);
    source.set(['web']);
    watchers.get('web')!.listener!.unavailable('dns: timeout querying web.example');
    await flush(clock, 1);
    expect(svc('web')).toMatchObject({ hosts: 'unknown', servers: [] });
    expect(d.errors().services.web?.[0]).toMatchObject({ code: 'WATCHER_FAILED', where: 'service web' });
    expect(d.errors().services.web?.[0]?.message).toMatch(/^hosts unknown: dns: timeout querying web\.example/);
    await d.stop();
  });

  test('an affirmative empty report is "reported"; a later unavailable keeps the reported hosts, saying why', async () => {
    const { d, clock, source, watchers, svc } = setup({}, null);
    source.set(['web', 'api']);
    watchers.get('web')!.listener!.hosts({ hosts: [], problems: [] });
    watchers.get('api')!.listener!.hosts({ hosts: [host(1), host(2)], problems: [] });
    await flush(clock, 1);
    expect(svc('web')).toMatchObject({ hosts: 'reported', servers: [] });
    expect(svc('api')).toMatchObject({ hosts: 'reported' });
    watchers.get('api')!.listener!.unavailable('lost session to zookeeper z:2181');
    await flush(clock, 1);
    // the last report stands (fail static); no new snapshot for every agent while the ensemble is away
    expect(svc('api')).toMatchObject({ hosts: 'reported', servers: [{ name: 'h1' }, { name: 'h2' }] });
    expect(d.errors().services.api?.[0]).toMatchObject({
      code: 'ZK_DISCONNECTED',
      message: 'lost session to zookeeper z:2181; keeping the 2 previous host(s) (fail static)',
    });
    watchers.get('api')!.listener!.hosts({ hosts: [host(1), host(2)], problems: [] });
    await flush(clock, 1);
    expect(svc('api')).toMatchObject({ hosts: 'reported' });
    expect(d.errors().services.api).toBeUndefined();
    await d.stop();
  });

  test('persisted hosts are "previous" for fail static after a restart: an empty first report keeps them', async () => {
    const store = new FakeStore();
    const { d, clock, source, watchers, svc } = setup({}, store);
    source.set(['web']);
    watchers.get('web')!.listener!.hosts({ hosts: [], problems: [] });
    await flush(clock, 1);
    expect(d.current()).toBeUndefined(); // nothing before the known hosts are loaded
    store.resolve({ hosts: new Map([['web', [host(1), host(2), host(3), host(4)]]]), problems: [] });
    await flush(clock, 1);
    expect(svc('web')?.servers.map((s) => s.name)).toEqual(['h1', 'h2', 'h3', 'h4']);
    expect(d.errors().services.web?.[0]?.message).toMatch(/watcher reported no hosts; keeping the 4 previous/);
    // and the removal cap (default 0.5) counts from them: a report of one host removes two now
    watchers.get('web')!.listener!.hosts({ hosts: [host(1)], problems: [] });
    await flush(clock, 1);
    expect(svc('web')?.servers).toHaveLength(2);
    await d.stop();
  });

  test('reported hosts are saved to the store; a service whose config goes is marked removed there', async () => {
    const store = new FakeStore();
    store.resolve({ hosts: new Map(), problems: [] });
    const { d, clock, source, watchers } = setup({}, store);
    source.set(['web', 'api']);
    watchers.get('web')!.listener!.hosts({ hosts: [host(1)], problems: [] });
    watchers.get('api')!.listener!.unavailable('dns: SERVFAIL');
    await flush(clock, 1);
    expect(store.saved.get('web')).toEqual([host(1)]);
    expect(store.saved.has('api')).toBe(false); // unknown is never stored as known
    source.set(['api']);
    await flush(clock, 1);
    expect(store.removed).toEqual(['web']);
    await d.stop();
  });

  test('a store that cannot be read lets discovery start, saying so', async () => {
    const store = new FakeStore();
    const { d, clock, source, watchers, svc } = setup({}, store);
    source.set(['web']);
    watchers.get('web')!.listener!.hosts({ hosts: [host(1)], problems: [] });
    store.reject(new Error('no ZooKeeper connection to z:2181 within 5000 ms'));
    await flush(clock, 1);
    expect(svc('web')).toMatchObject({ hosts: 'reported' });
    expect(d.errors().source[0]?.message).toMatch(/cannot read the last known hosts \(no ZooKeeper connection/);
    await d.stop();
  });

  test('a failed load is tried again with backoff; a service whose hosts are unknown then runs the hosts it brings (configs are not restored late)', async () => {
    const store = new FakeStore();
    const { d, clock, source, watchers, svc } = setup({}, store);
    source.set(['web']);
    watchers.get('web')!.listener!.unavailable('dns: SERVFAIL from 127.0.0.1:53');
    store.reject(new Error('no ZooKeeper connection to z:2181 within 5000 ms'));
    await flush(clock, 1);
    expect(svc('web')).toMatchObject({ hosts: 'unknown', servers: [] });
    expect(d.errors().source[0]?.message).toMatch(/runs without them until they are read \(trying again in 5 s\)/);
    await flush(clock, 5000);
    expect(store.loads).toBe(2);
    store.reject(new Error('still down'));
    await flush(clock, 1);
    expect(d.errors().source[0]?.message).toMatch(/\(still down\).*trying again in 10 s/);
    const old: RawServiceConfig = {
      name: 'old',
      text: '{"type":"static","hosts":[],"port":9999}',
      origin: 'o',
      format: 'json',
    };
    store.resolve({ hosts: new Map([['web', [host(1), host(2)]]]), configs: new Map([['old', old]]), problems: [] });
    await flush(clock, 10_000);
    expect(store.loads).toBe(3);
    expect(svc('web')).toMatchObject({ hosts: 'unknown', servers: [{ name: 'h1' }, { name: 'h2' }] });
    expect(d.errors().source).toEqual([]);
    expect(svc('old')).toBeUndefined(); // the first snapshot went out without it: for the agents it is gone already
    await d.stop();
  });

  test('a service whose config vanished while no control plane ran is restored from its record and removed at the capped pace', async () => {
    const names = ['s1', 's2', 's3', 's4', 's5', 's6', 's7', 's8'];
    const raw = (name: string, i: number): RawServiceConfig => ({
      name,
      text: JSON.stringify({ type: 'static', hosts: [], port: 8000 + i }),
      origin: `test ${name}`,
      format: 'json',
    });
    const store = new FakeStore();
    const { d, clock, source, watchers, svc } = setup(
      { maxServiceRemovalShare: 0.25, serviceRemovalStepMs: 60_000, initialSyncTimeoutMs: 1000 },
      store,
    );
    store.resolve({
      hosts: new Map([...names, 'bad'].map((n) => [n, [host(1)]])),
      configs: new Map([
        ...names.map((n, i): [string, RawServiceConfig] => [n, raw(n, i)]),
        ['bad', { name: 'bad', text: '{"type":"static","port":"no"}', origin: 'test bad', format: 'json' }],
      ]),
      problems: [],
    });
    await flush(clock, 1);
    source.set(['s1', 's2']); // only two of the eight configs are left (an emptied path, a bad restore)
    for (const n of ['s1', 's2']) watchers.get(n)!.listener!.hosts({ hosts: [host(2)], problems: [] });
    await flush(clock, 1001);
    // Served before: 8 (and 'bad', which no longer parses, is not held); 2 may go in this step.
    expect(d.current()?.services.map((s) => s.name)).toEqual(['s1', 's2', 's5', 's6', 's7', 's8']);
    expect(svc('s8')).toMatchObject({ hosts: 'unknown', servers: [{ name: 'h1' }] });
    expect(d.errors().source[0]?.message).toMatch(
      /the configs of 6 service\(s\) are gone, more than max_service_removal_share 0\.25 of 8/,
    );
    expect(store.removed).toEqual(['s3', 's4']);
    // Reported hosts are stored with the config they are served with.
    expect(store.savedConfigs.get('s1')).toMatchObject({ name: 's1', origin: 'test s1' });
    await flush(clock, 60_000); // the next step: a quarter of the 6 served now
    expect(d.current()?.services.map((s) => s.name)).toEqual(['s1', 's2', 's6', 's7', 's8']);
    await d.stop();
  });
});

describe('a restart with the records of an earlier replica (attacks on the cap and on fail static)', () => {
  const raw = (name: string, port: number, text?: string): RawServiceConfig => ({
    name,
    text: text ?? JSON.stringify({ type: 'static', hosts: [], port }),
    origin: `test ${name}`,
    format: 'json',
  });
  /** A source delivering exactly these configs. */
  const deliver = (source: FakeSource, configs: RawServiceConfig[]) =>
    source.listener!.configs(new Map(configs.map((c) => [c.name, c])));

  for (const order of ['records first', 'configs first'] as const)
    test(`a config that no longer parses is served with the version an earlier replica persisted (${order})`, async () => {
      const store = new FakeStore();
      const { d, clock, source, watchers, svc } = setup({}, store);
      const load = () =>
        store.resolve({
          hosts: new Map([['web', [host(1)]]]),
          configs: new Map([['web', raw('web', 8080)]]),
          problems: [],
        });
      if (order === 'records first') {
        load();
        await flush(clock, 1);
      }
      deliver(source, [raw('web', 8080, '{"type": "static", "port": ')]);
      if (order === 'configs first') {
        load();
        await flush(clock, 1);
      }
      watchers.get('web')!.listener!.hosts({ hosts: [host(1)], problems: [] });
      await flush(clock, 1);
      expect(svc('web')).toMatchObject({ port: 8080, servers: [{ name: 'h1' }] });
      expect(d.errors().services.web?.[0]).toMatchObject({
        code: 'SERVICE_CONFIG_INVALID',
        message: expect.stringMatching(
          /keeping the version an earlier control plane served \(from its known-hosts record\)$/,
        ),
      });
      await d.stop();
    });

  test('a load that failed is read again as soon as the source answers, and the first snapshot waits for it: fail static and the cap have their "previous"', async () => {
    const store = new FakeStore();
    const { d, clock, source, watchers, svc } = setup({ maxServiceRemovalShare: 0.25 }, store);
    store.reject(new Error('no ZooKeeper connection to z:2181 within 5000 ms'));
    await flush(clock, 1);
    expect(store.loads).toBe(1);
    store.resolve({
      hosts: new Map(['web', 'a', 'b', 'c'].map((n) => [n, [host(1), host(2)]])),
      configs: new Map(['web', 'a', 'b', 'c'].map((n, i) => [n, raw(n, 9000 + i)])),
      problems: [],
    });
    deliver(source, [raw('web', 9000)]); // a, b, c were deleted while no control plane ran
    watchers.get('web')!.listener!.hosts({ hosts: [], problems: [] }); // and web's host nodes
    await flush(clock, 1);
    expect(store.loads).toBe(2); // at once, not after the 5 s backoff
    await flush(clock, 5000); // the restored services' watchers stay silent: their hosts are unknown
    expect(svc('web')).toMatchObject({ hosts: 'reported', servers: [{ name: 'h1' }, { name: 'h2' }] }); // fail static
    // 3 of 4 gone, a quarter may go: b and c are held.
    expect(d.current()?.services.map((s) => s.name)).toEqual(['b', 'c', 'web']);
    await d.stop();
  });

  test("removals made by earlier replicas within the step count against the restarted one's first step", async () => {
    const store = new FakeStore();
    const { d, clock, source } = setup({ maxServiceRemovalShare: 0.25, serviceRemovalStepMs: 60_000 }, store);
    const names = ['a', 'b', 'c'];
    store.resolve({
      hosts: new Map([...names, 'x'].map((n) => [n, [host(1)]])),
      configs: new Map(names.map((n, i) => [n, raw(n, 9000 + i)])),
      removed: new Map([['x', clock.now() - 10_000]]), // the previous replica removed x 10 s ago
      problems: [],
    });
    await flush(clock, 1);
    deliver(source, [raw('a', 9000)]);
    await flush(clock, 30_000);
    // Budget of the step that began 10 s ago: a quarter of 4 = 1, used by x; b and c are held until it ends.
    expect(d.current()?.services.map((s) => s.name)).toEqual(['a', 'b', 'c']);
    await flush(clock, 25_000); // the step ends 60 s after x's removal
    expect(d.current()?.services.map((s) => s.name)).toEqual(['a', 'c']);
    await d.stop();
  });

  test('a service held back by the cap yields its port to a service whose config claims it', async () => {
    const { d, clock, source, watchers, svc } = setup({ maxServiceRemovalShare: 0.25 }, null);
    const names = ['a', 'b', 'c', 'd', 'e'];
    deliver(
      source,
      names.map((n, i) => raw(n, 9000 + i)),
    );
    for (const n of names) watchers.get(n)!.listener!.hosts({ hosts: [host(1)], problems: [] });
    await flush(clock, 1);
    // a and b deleted; c moves onto b's port.
    deliver(source, [raw('c', 9001), raw('d', 9003), raw('e', 9004)]);
    await flush(clock, 1);
    expect(d.current()?.services.map((s) => s.name)).toEqual(['c', 'd', 'e']);
    expect(svc('c')).toMatchObject({ port: 9001 });
    await d.stop();
  });
});

describe('the service-removal cap', () => {
  test('serviceRemovals: at most the share per step, names sorted, the rest held until the next step', () => {
    const a = serviceRemovals(['d', 'a', 'c', 'b'], 8, undefined, 1000, 0.25, 60_000);
    expect(a).toMatchObject({ remove: ['a', 'b'], held: ['c', 'd'], retryAt: 61_000 });
    const b = serviceRemovals(['c', 'd'], 6, a.step, 2000, 0.25, 60_000);
    expect(b).toMatchObject({ remove: [], held: ['c', 'd'] });
    const c = serviceRemovals(['c', 'd'], 6, b.step, 61_000, 0.25, 60_000);
    expect(c).toMatchObject({ remove: ['c'], held: ['d'] }); // floor(6 * 0.25) = 1
    expect(serviceRemovals(['a', 'b'], 2, undefined, 0, 1, 10)).toMatchObject({ remove: ['a', 'b'], held: [] });
  });

  test('an emptied service_config removes a share per step; held services stay served and are named', async () => {
    const { d, clock, source, watchers, svc } = setup(
      { maxServiceRemovalShare: 0.25, serviceRemovalStepMs: 60_000 },
      null,
    );
    const names = ['s1', 's2', 's3', 's4', 's5', 's6', 's7', 's8'];
    source.set(names);
    for (const n of names) watchers.get(n)!.listener!.hosts({ hosts: [host(1)], problems: [] });
    await flush(clock, 1);
    expect(d.current()?.services).toHaveLength(8);
    source.set([]);
    await flush(clock, 1);
    expect(d.current()?.services.map((s) => s.name)).toEqual(['s3', 's4', 's5', 's6', 's7', 's8']);
    expect(svc('s8')).toMatchObject({ servers: [{ name: 'h1' }] });
    expect(d.errors().source[0]?.message).toMatch(
      /the configs of 8 service\(s\) are gone, more than max_service_removal_share 0\.25 of 8 allows per step of 60000 ms; holding back 6 \(s3, s4, s5, s6, s7, s8\)/,
    );
    expect(d.errors().services.s3?.[0]?.message).toMatch(/removal held back by max_service_removal_share/);
    await flush(clock, 60_000);
    expect(d.current()?.services.map((s) => s.name)).toEqual(['s4', 's5', 's6', 's7', 's8']);
    // restoring the configs ends the hold
    source.set(names);
    await flush(clock, 1);
    expect(d.errors().source).toEqual([]);
    expect(d.errors().services.s4).toBeUndefined();
    await d.stop();
  });
});

describe('known hosts records', () => {
  test('round trip, and what is read back is checked like watcher input', async () => {
    const data = await encodeKnownHosts('web', [host(1), { ...host(2), labels: { zone: 'eu' } }], 5);
    expect(await decodeKnownHosts(data, 'zookeeper /proxymgr/known_hosts/web', 'web')).toEqual({
      hosts: [host(1), { ...host(2), labels: { zone: 'eu' } }],
      problems: [],
    });
    const planted = gzipSync(
      JSON.stringify({
        v: 1,
        service: 'web',
        hosts: [
          host(1),
          { name: 'x', address: '10.0.0.9\nserver evil 1.2.3.4:80', port: 80 },
          { name: 'y', address: '10.0.0.8', port: 99999 },
          { name: 'z', address: '10.0.0.7', port: 80, options: ['check\naddr /run/haproxy.sock'] },
          host(1),
        ],
      }),
    );
    const r = await decodeKnownHosts(planted, 'zookeeper /k/web', 'web');
    expect(r.hosts).toEqual([host(1)]);
    expect(r.problems.map((p) => p.where)).toEqual([
      'zookeeper /k/web hosts[1]',
      'zookeeper /k/web hosts[2]',
      'zookeeper /k/web hosts[3]',
      'zookeeper /k/web hosts[4]',
    ]);
    expect(r.problems[1]!.message).toMatch(/port 99999 is outside 1-65535; left out/);
    await expect(decodeKnownHosts(Buffer.from('{"v":1}'), 'zookeeper /k/web', 'web')).rejects.toThrow(
      /zookeeper \/k\/web: not a gzip-compressed record/,
    );
    const other = await encodeKnownHosts('api', [host(1)], 5);
    await expect(decodeKnownHosts(other, 'zookeeper /k/web', 'web')).rejects.toThrow(/names service "api", not "web"/);
    const bomb = gzipSync(Buffer.alloc(40 * 1024 * 1024, 0x20));
    await expect(decodeKnownHosts(bomb, 'zookeeper /k/web', 'web')).rejects.toThrow(/inflates to more than/);
  });

  test("a record's config is checked too: wrong types, a wrong format, one larger than a service config may be", async () => {
    const record = (config: unknown) => gzipSync(JSON.stringify({ v: 1, service: 'web', hosts: [host(1)], config }));
    const good = { text: '{"type":"static","port":8080}', origin: '/service_config/web', format: 'json' };
    expect((await decodeKnownHosts(record(good), 'zookeeper /k/web', 'web')).config).toEqual({ name: 'web', ...good });
    for (const [bad, message] of [
      [{ ...good, text: 5 }, /expected \{"text":…,"origin":…,"format":"json"\|"yaml"\}; left out/],
      [{ ...good, format: 'xml' }, /expected \{"text":…/],
      ['{"type":"static"}', /expected \{"text":…/],
      [{ ...good, text: 'x'.repeat(65 * 1024) }, /larger than a service config may be; left out/],
    ] as const) {
      const r = await decodeKnownHosts(record(bad), 'zookeeper /k/web', 'web');
      expect(r.config).toBeUndefined();
      expect(r.hosts).toEqual([host(1)]); // the hosts still count
      expect(r.problems).toEqual([{ where: 'zookeeper /k/web config', message: expect.stringMatching(message) }]);
    }
  });

  test('a record over the size limit is refused, naming the service and the sizes', async () => {
    const many = Array.from({ length: 60_000 }, (_, i) => ({
      name: `host-${i}-${Math.random().toString(36).slice(2)}`,
      address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      port: 1 + ((i * 7919) % 65535),
      weight: 1,
      options: [`# ${Math.random().toString(36)}`],
    }));
    await expect(encodeKnownHosts('big', many, 1)).rejects.toThrow(
      new RegExp(
        `known hosts of service big: 60000 host\\(s\\) are \\d+ bytes compressed, over the limit of ${MAX_KNOWN_HOSTS_BYTES}`,
      ),
    );
  });

  test('the writer coalesces: at most one write per service per interval, none for an unchanged list', async () => {
    const clock = new FakeClock(0);
    const puts: string[] = [];
    const w = new KnownHostsWriter({ put: async (s) => void puts.push(s) }, clock, silentLogger, 1000);
    w.loaded('web', [host(1)]);
    w.save('web', [host(1)]); // what is stored already
    for (let i = 2; i < 200; i++) w.save('api', [host(1), host(i)]);
    await clock.advanceAsync(0);
    await settle();
    expect(puts).toEqual(['api']);
    w.save('api', [host(3)]);
    await clock.advanceAsync(500);
    expect(puts).toEqual(['api']); // not before the interval
    await clock.advanceAsync(500);
    await settle();
    expect(puts).toEqual(['api', 'api']);
    expect(w.writes).toBe(2);
    await w.close();
  });

  test('composeState marks a service discovery does not follow as unknown with its last known servers', () => {
    const rev = revisionOf(
      {
        version: 'x',
        haproxy: { global: [], defaults: [] },
        services: [
          { name: 'gone', port: 80, bindAddress: '0.0.0.0', listenOptions: [], serverOptions: [], servers: [] },
        ],
      },
      () => undefined,
    );
    const s = composeState(rev, {}, () => ({
      servers: [{ name: 'h1', address: '10.0.0.1', port: 80, weight: 1, options: [] }],
      status: 'unknown',
    }));
    expect(s.services[0]).toMatchObject({ hosts: 'unknown', servers: [{ name: 'h1' }] });
  });
});
