import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { alive } from '../../agent/haproxy/orphan';
import { StatsSocketClient } from '../../agent/haproxy/runtime';
import { inMaint, isDraining } from '../../agent/haproxy/servers-state';
import { Backend, startBackends } from '../../testkit/backends';
import { CliProcess, startCli, stopAllCli } from '../../testkit/cli';
import { startLoad } from '../../testkit/load';
import { eventually, freePort, listeningInodes, sleep, tally, tempDir } from '../../testkit/net';

jest.setTimeout(120_000);

const haproxyPid = (logs: string) =>
  Number([...logs.matchAll(/"haproxy_pid":(\d+)[^\n]*"msg":"haproxy (?:started|reloaded)"/g)].at(-1)?.[1] ?? 0);

/**
 * The documented agent restart (SIGUSR2: hand over, then start) and kill -9 + start, under load: the new agent
 * takes over the running HAProxy and its listening sockets — the same sockets, the same process — and the next
 * reload is seamless. Real HAProxy, real backends, fresh connections throughout.
 */
describe('hitless agent restart and kill -9 (built CLI, real HAProxy)', () => {
  const tmp = tempDir('proxymgr-hitless-');
  let backends: Backend[];
  let port: number;
  const cfg = path.join(tmp.dir, 'agent.yml');
  const stateFile = path.join(tmp.dir, 'state.json');
  const agents: CliProcess[] = [];

  const writeState = (servers: Backend[], listen: string[] = ['mode http']) => {
    const doc = {
      services: [
        {
          name: 'web',
          port,
          bind_address: '127.0.0.1',
          listen_options: listen,
          servers: servers.map((b) => ({ name: b.name, address: '127.0.0.1', port: b.port })),
        },
      ],
    };
    writeFileSync(`${stateFile}.tmp`, JSON.stringify(doc));
    renameSync(`${stateFile}.tmp`, stateFile);
  };
  /** Server `name` of web as the running HAProxy has it: drain, ready, maint, or absent. */
  const adminState = async (name: string) => {
    const state = await new StatsSocketClient(path.join(tmp.dir, 'haproxy.sock')).serversState('web');
    const s = state.get('web')?.get(name);
    if (!s) return 'absent';
    return inMaint(s) ? 'maint' : isDraining(s) ? 'drain' : 'ready';
  };
  /** `adminState`, failing with the agent's log (what it did to the server, and when) when it is not `want`. */
  const expectAdmin = async (agent: CliProcess, name: string, want: string) => {
    const got = await adminState(name);
    if (got !== want)
      throw new Error(
        `server ${name} is ${got}, expected ${want}; the agent's log:\n${agent
          .logs()
          .split('\n')
          .filter((l) => !/"level":20/.test(l))
          .slice(-30)
          .join('\n')}`,
      );
  };
  /** Fails with the agent's log (the takeover line says what did not match) when `line` is not logged. */
  const expectTakeover = async (agent: CliProcess, line: RegExp) => {
    if (await agent.waitForLog(line)) return;
    throw new Error(
      `no takeover matching ${line}; the agent's log:\n${agent
        .logs()
        .split('\n')
        .filter((l) => !/"level":20/.test(l))
        .slice(-25)
        .join('\n')}`,
    );
  };
  const start = async () => {
    const a = startCli(['agent', '--config', cfg, '--state', stateFile]);
    agents.push(a);
    expect(await a.waitForLog(/agent started/, 20_000)).toBe(true);
    return a;
  };

  beforeAll(async () => {
    backends = await startBackends(['a', 'b']);
    port = await freePort();
    writeFileSync(
      cfg,
      `haproxy: {config_path: ${tmp.dir}/haproxy.cfg, socket_path: ${tmp.dir}/haproxy.sock, defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]}
agent: {state_dir: ${tmp.dir}/state, admin_listen: "", drain_timeout_ms: 12000}
`,
    );
    writeState(backends);
  });
  afterAll(async () => {
    const hung = await stopAllCli();
    await Promise.all((backends ?? []).map((b) => b.close()));
    tmp.cleanup();
    expect(hung).toEqual([]);
  });

  test('restart (SIGUSR2 + start) and kill -9 + start: 0 refused, 0 reset; same HAProxy, same sockets; the next reload is seamless', async () => {
    let agent = await start();
    expect(await eventually(async () => (await tally(port, 4)).size === 2, 15_000)).toBe(true);
    const pid0 = haproxyPid(agent.logs());
    const inodes = listeningInodes(port);
    expect(pid0).toBeGreaterThan(0);
    expect(inodes).toHaveLength(1);
    const load = startLoad(port, 8);
    await sleep(500);

    // 1. The documented restart: hand over, then start again.
    // As systemd's ExecStop: the signal, then wait for the exit (a SIGTERM right behind it would race the hand-over).
    expect(await agent.stop('SIGUSR2')).toBe(0);
    expect(agent.logs()).toMatch(/handed over/);
    expect(alive(pid0)).toBe(true); // HAProxy keeps serving while no agent runs
    await sleep(500);
    agent = await start();
    await expectTakeover(agent, /"config_matches":true[^\n]*took over the HAProxy the previous agent left running/);
    await sleep(500);
    expect(agent.logs()).not.toMatch(/haproxy (started|reloaded)/); // adopted, not restarted
    expect(listeningInodes(port)).toEqual(inodes);

    // A host change goes through the runtime API of the adopted process; the removed host drains (12 s).
    writeState([backends[0]!]);
    // (Waiting for the drain itself: with the load's requests in HAProxy's round robin, four test requests can all
    // land on a while b is still ready.)
    expect(await eventually(async () => (await adminState('b')) === 'drain', 10_000)).toBe(true);
    expect([...(await tally(port, 8)).keys()]).toEqual(['a']);
    expect(agent.logs()).not.toMatch(/haproxy reloaded/);
    // haproxy.cfg (written within agent.write_delay_ms of a runtime change) keeps b, and its drain for the next agent.
    const cfgFile = path.join(tmp.dir, 'haproxy.cfg');
    expect(await eventually(() => readFileSync(cfgFile, 'utf8').includes('# draining {"backend":"web"'), 5000)).toBe(
      true,
    );

    // 2. kill -9 while b drains, then start: the drain goes on in the same process (no reload would cut it short),
    // and ends at its deadline.
    await agent.kill();
    expect(alive(pid0)).toBe(true);
    await sleep(500);
    agent = await start();
    await expectTakeover(
      agent,
      /"config_matches":true,"draining":1[^\n]*took over the HAProxy the previous agent left/,
    );
    expect(listeningInodes(port)).toEqual(inodes);
    await sleep(500);
    expect(agent.logs()).not.toMatch(/haproxy (started|reloaded)/);
    await expectAdmin(agent, 'b', 'drain');
    expect(await agent.waitForLog(/"server":"web\/b"[^\n]*drained server deleted/, 20_000)).toBe(true);
    await expectAdmin(agent, 'b', 'absent');
    expect(await eventually(() => !readFileSync(cfgFile, 'utf8').includes('# draining'), 5000)).toBe(true);
    expect(agent.logs()).not.toMatch(/haproxy (started|reloaded)/);

    // 3. The next reload (the first since the first agent started) is seamless: a new HAProxy on the same socket,
    // the adopted one soft-stops.
    writeState(backends, ['mode http', 'balance roundrobin']);
    expect(await agent.waitForLog(/haproxy reloaded/)).toBe(true);
    const pid1 = haproxyPid(agent.logs());
    expect(pid1).not.toBe(pid0);
    expect(await eventually(() => !alive(pid0), 15_000)).toBe(true);
    expect(await eventually(async () => (await tally(port, 4)).size === 2, 10_000)).toBe(true);
    expect(listeningInodes(port)).toEqual(inodes);
    await sleep(500);

    const r = await load.stop();
    expect(r.ok).toBeGreaterThan(100);
    expect({ refused: r.refused, reset: r.reset, empty: r.empty, other: r.other, errors: r.errors }).toEqual({
      refused: 0,
      reset: 0,
      empty: 0,
      other: 0,
      errors: [],
    });

    // 4. Stop is a stop: HAProxy ends and the port closes.
    expect(await agent.stop()).toBe(0);
    expect(alive(pid1)).toBe(false);
    expect(listeningInodes(port)).toEqual([]);
  });
});
