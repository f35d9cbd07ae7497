import * as net from 'node:net';
import { FakeClock } from '../../testkit/fake-clock';
import { parseConfig } from '../../common/config/config';
import { LifecycleError } from '../../common/platform/errors';
import { Lifecycle, settleWithin } from '../../common/platform/lifecycle';
import { silentLogger } from '../../common/platform/log';
import { createAgentProcess } from '../../agent/wiring';
import { GrpcStateSource } from '../../agent/sources/grpc';
import { Discovery } from '../../controlplane/discovery';
import { controlPlaneFromConfig } from '../../controlplane/wiring';
import { RolloutCoordinator } from '../../controlplane/rollout/coordinator';
import { MemoryRolloutStore } from '../../controlplane/rollout/memory-store';
import { ServiceConfigSource, SourceListener } from '../../controlplane/ports';
import { fakeWatchers, testDiscovery } from '../../testkit/discovery';

// Guarded lifecycle transitions of the long-lived components: stop is awaited and idempotent (the same promise),
// and whatever would start again after stop is refused with a LifecycleError naming the component and its state.

describe('Lifecycle', () => {
  type S = 'idle' | 'running' | 'stopped';
  const make = () =>
    new Lifecycle<S>('thing', 'idle', { idle: ['running', 'stopped'], running: ['stopped'], stopped: [] });

  test('allows the listed transitions and refuses the others, naming the component, the action and the state', () => {
    const lc = make();
    lc.to('running', 'start');
    expect(lc.state).toBe('running');
    expect(lc.is('idle', 'running')).toBe(true);
    expect(() => lc.to('running', 'start')).toThrow(new LifecycleError('thing: cannot start: it is running'));
    lc.to('stopped');
    expect(() => lc.to('running', 'start')).toThrow('thing: cannot start: it is stopped');
    expect(lc.refuse('apply')).toMatchObject({
      code: 'LIFECYCLE_INVALID',
      message: 'thing: cannot apply: it is stopped',
    });
  });

  test('settleWithin: true once the promise settles (either way), false when the clock runs out first', async () => {
    const clock = new FakeClock();
    expect(await settleWithin(Promise.reject(new Error('x')), 100, clock)).toBe(true);
    expect(clock.pending).toBe(0);
    const never = settleWithin(new Promise(() => undefined), 100, clock);
    clock.advance(100);
    expect(await never).toBe(false);
  });
});

/** A service-config source that reports nothing and records stops. */
class SilentSource implements ServiceConfigSource {
  stops = 0;
  start(_listener: SourceListener): void {}
  async stop(): Promise<void> {
    this.stops++;
  }
}

describe('Discovery lifecycle', () => {
  test('idle → running → stopped; stop twice is one stop; start again is refused', async () => {
    const source = new SilentSource();
    const d = new Discovery({
      config: {
        haproxy: { configPath: '', socketPath: '', binary: 'haproxy', global: [], defaults: [], user: '', group: '' },
      },
      source,
      watchers: fakeWatchers(),
      knownHosts: undefined,
      log: silentLogger,
    });
    expect(d.state).toBe('idle');
    d.start();
    expect(d.state).toBe('running');
    expect(() => d.start()).toThrow('discovery: cannot start: it is running');
    const stopping = d.stop();
    expect(d.state).toBe('stopping');
    expect(d.stop()).toBe(stopping);
    await stopping;
    expect(d.state).toBe('stopped');
    expect(source.stops).toBe(1);
    expect(() => d.start()).toThrow(LifecycleError);
  });

  test('a discovery never started can be stopped', async () => {
    const d = testDiscovery({ type: 'file', path: '/nonexistent/services' });
    await d.stop();
    expect(d.state).toBe('stopped');
  });
});

describe('RolloutCoordinator lifecycle', () => {
  test('start once; stop is awaited once; start after stop is refused', async () => {
    const clock = new FakeClock();
    let store: MemoryRolloutStore | undefined;
    const c = new RolloutCoordinator({
      config: {
        waves: [{ kind: 'share', share: 1 }],
        bakeMs: 1000,
        maxNacks: 0,
        autoRollback: true,
        zookeeper: '',
        zkPath: '/proxymgr',
        replicaId: 'cp1',
      },
      discovery: {
        current: () => undefined,
        configOf: () => undefined,
        onSnapshot: () => () => undefined,
      },
      log: silentLogger,
      clock,
      store: (listener) => (store = new MemoryRolloutStore(listener, { replicaId: 'cp1' })),
    });
    c.start();
    expect(c.state).toBe('running');
    expect(() => c.start()).toThrow('rollout coordinator: cannot start: it is running');
    const stopping = c.stop();
    expect(c.stop()).toBe(stopping);
    await stopping;
    expect(c.state).toBe('stopped');
    expect(store).toBeDefined();
    expect(clock.pending).toBe(0);
    expect(() => c.start()).toThrow('rollout coordinator: cannot start: it is stopped');
  });
});

describe('GrpcStateSource lifecycle', () => {
  /** A port nothing listens on (bound, then closed). */
  async function closedPort(): Promise<number> {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise((r) => srv.close(r));
    return port;
  }

  test('stop resolves once the stream has ended and the client is closed; stop twice is one stop; no restart', async () => {
    const clock = new FakeClock();
    const source = new GrpcStateSource({
      addresses: [`127.0.0.1:${await closedPort()}`],
      nodeId: 'n1',
      labels: {},
      agentVersion: 't',
      haproxyVersion: 't',
      runningVersion: () => '',
      log: silentLogger,
      clock,
    });
    expect(source.state).toBe('idle');
    await source.start(async () => {
      throw new Error('nothing is pushed');
    });
    expect(source.state).toBe('running');
    await expect(source.start(async () => Promise.reject(new Error('x')))).rejects.toThrow(
      'grpc state source: cannot start: it is running',
    );
    const stopping = source.stop();
    expect(source.stop()).toBe(stopping);
    await stopping;
    expect(source.state).toBe('stopped');
    expect(clock.pending).toBe(0); // no reconnect timer left
    await expect(source.start(async () => Promise.reject(new Error('x')))).rejects.toThrow(LifecycleError);
  });
});

describe('process lifecycles', () => {
  const yml = (dir: string) => `haproxy:
  config_path: ${dir}/haproxy.cfg
  socket_path: ${dir}/haproxy.sock
agent:
  state_dir: ${dir}
  controlplanes: ["127.0.0.1:1"]
service_config:
  type: file
  path: ${dir}/services
`;

  test('an agent process stopped before it started cannot be started, and stops once', async () => {
    const config = parseConfig(yml('/nonexistent/agent'), '/nonexistent/agent/proxymgr.yml');
    const proc = createAgentProcess(config, silentLogger);
    const stopping = proc.stop();
    expect(proc.stop()).toBe(stopping);
    await stopping;
    expect(proc.state).toBe('stopped');
    expect(proc.agent.state).toBe('stopped');
    await expect(proc.start()).rejects.toThrow('agent process: cannot start: it is stopped');
    await expect(proc.handOver()).rejects.toThrow('agent process: cannot hand over: it is stopped');
  });

  test('a control plane stopped before it started cannot be started, and stops once', async () => {
    const config = parseConfig(yml('/nonexistent/cp'), '/nonexistent/cp/proxymgr.yml');
    const cp = controlPlaneFromConfig({ config, log: silentLogger });
    const stopping = cp.stop();
    expect(cp.stop()).toBe(stopping);
    await stopping;
    expect(cp.state).toBe('stopped');
    expect(cp.discovery.state).toBe('stopped');
    await expect(cp.start()).rejects.toThrow('control plane: cannot start: it is stopped');
  });
});
