import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { silentLogger } from '../../common/platform/log';
import { ApplyFn } from '../../agent/ports';
import { createAgentProcess } from '../../agent/wiring';
import { Backend, startBackends } from '../../testkit/backends';
import { freePort, tally } from '../../testkit/net';
import { server, service, startTestAgent, state } from '../../testkit/agent';

jest.setTimeout(60_000);

/**
 * Issue 9 f: an I/O error that is not a ProxyMgrError (ENOSPC, EROFS, EISDIR … on the state dir) in drift repair
 * or the restart handler was an unhandled rejection that ended the agent, and an update whose haproxy.cfg could
 * not be written escaped as an exception. Real I/O errors here: haproxy.cfg is replaced by a directory, so every
 * write of it fails (EISDIR) the way a full or read-only disk would.
 */
describe('I/O errors in apply and drift repair (real HAProxy, real I/O errors)', () => {
  let backends: Backend[];
  let t: Awaited<ReturnType<typeof startTestAgent>>;
  let port: number;
  let cfgText: string;
  const web = (names = ['a', 'b'], listenOptions = ['mode http', 'balance roundrobin']) =>
    service(
      'web',
      port,
      backends.filter((b) => names.includes(b.name)).map((b) => server(b.name, b.port)),
      { listenOptions },
    );

  beforeAll(async () => {
    backends = await startBackends(['a', 'b']);
    port = await freePort();
    t = await startTestAgent();
    expect((await t.agent.apply(state([web()]))).outcome).toBe('reload');
    cfgText = readFileSync(t.config.haproxy.configPath, 'utf8');
    rmSync(t.config.haproxy.configPath);
    mkdirSync(t.config.haproxy.configPath);
  });
  afterAll(async () => {
    await t?.close();
    await Promise.all((backends ?? []).map((b) => b.close()));
  });

  async function expectServing(pid: number | undefined) {
    expect(t.agent.supervisor.pid).toBe(pid);
    const counts = await tally(port, 10);
    expect(counts.get('a')).toBe(5);
    expect(counts.get('b')).toBe(5);
  }

  test('drift repair that cannot write haproxy.cfg: the repair stands, the failed write is counted, never thrown; HAProxy keeps serving', async () => {
    const pid = t.agent.supervisor.pid;
    const v1 = t.agent.current?.version;
    await t.runtime.command('set server web/b weight 7'); // drift for the repair to fix
    const r = await t.agent.repairDrift(); // used to reject: an unhandled rejection from the timer ended the agent
    expect(r?.outcome).toBe('runtime');
    await t.agent.flushFiles(); // haproxy.cfg follows within agent.write_delay_ms; here the write fails (EISDIR)
    expect(t.agent.counters.errors).toBeGreaterThanOrEqual(1);
    expect(t.agent.current?.version).toBe(v1);
    expect((await t.runtime.serversState('web')).get('web')?.get('b')?.weight).toBe(1);
    await expectServing(pid);
  });

  test('an update needing a reload: rejected (a NACK), nothing half-applied, the previous state keeps running', async () => {
    const pid = t.agent.supervisor.pid;
    const v1 = t.agent.current?.version;
    const r = await t.agent.apply(state([web(['a', 'b'], ['mode http', 'balance roundrobin', 'option forwardfor'])]));
    expect(r.outcome).toBe('rejected');
    expect(r.error?.code).toBe('IO_FAILED');
    expect(r.error?.message).toMatch(/haproxy\.cfg.*EISDIR|EISDIR.*haproxy\.cfg/);
    expect(t.agent.current?.version).toBe(v1);
    await expectServing(pid);
  });

  test('an update applied at runtime whose haproxy.cfg cannot be written: applied, the failure reported with each apply until a write succeeds; once the disk is back the file says what runs', async () => {
    const pid = t.agent.supervisor.pid;
    const onlyA = state([web(['a'])]);
    const r = await t.agent.apply(onlyA);
    expect(r.outcome).toBe('runtime');
    expect(t.agent.current?.version).toBe(onlyA.version);
    await t.agent.flushFiles();
    const again = await t.agent.apply(onlyA);
    expect(again.outcome).toBe('nothing');
    expect(again.problems.map((p) => `${p.where}: ${p.message}`).join('\n')).toMatch(
      /haproxy\.cfg: cannot write .*EISDIR/,
    );
    expect(t.agent.supervisor.pid).toBe(pid);

    rmSync(t.config.haproxy.configPath, { recursive: true });
    await t.agent.flushFiles(); // the retry of what is pending
    const written = readFileSync(t.config.haproxy.configPath, 'utf8');
    expect(written).toMatch(/server a /);
    // b left the desired state: it drains (agent.drain_timeout_ms) and is in the file until it is deleted.
    expect(written).toMatch(/server b .*/);
    expect(t.agent.draining().map((d) => d.server)).toEqual(['web/b']);
    // (The same text as before the change: what runs is a and the draining b, and b's drain for the next agent. The
    // path was a directory, so the file was written afresh.)
    const [config, trailer] = written.split(/(?=^# proxymgr agent: servers draining)/m);
    expect(config).toBe(cfgText);
    expect(trailer).toMatch(/^# draining \{"backend":"web","server":\{"name":"b",/m);
    const counts = await tally(port, 10);
    expect([...counts.keys()]).toEqual(['a']);
  });
});

describe('the state cache (real HAProxy)', () => {
  test('a state cache that cannot be written is reported with the result, not passed over as a success', async () => {
    const backends = await startBackends(['a']);
    const port = await freePort();
    const t = await startTestAgent();
    mkdirSync(path.join(t.dir, 'desired-state.json')); // every write of the cache fails (EISDIR)
    let apply: ApplyFn | undefined;
    const proc = createAgentProcess(t.config, silentLogger, {
      source: { start: async (fn) => void (apply = fn), stop: async () => undefined },
    });
    try {
      await proc.start();
      const r = await apply!(state([service('web', port, [server('a', backends[0]!.port)])]));
      expect(r.outcome).toBe('reload');
      expect(r.problems.map((p) => `${p.where}: ${p.message}`).join('\n')).toMatch(/state cache.*EISDIR/);
    } finally {
      await proc.stop();
      await t.close();
      await backends[0]!.close();
    }
  });
});
