import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { nativeAddon } from '../../agent/haproxy/native';
import { alive } from '../../agent/haproxy/orphan';
import { StatsSocketClient } from '../../agent/haproxy/runtime';
import { Backend, startBackends } from '../../testkit/backends';
import { CLI } from '../../testkit/cli';
import { startLoad } from '../../testkit/load';
import { eventually, freePort, sleep, tally, tempDir } from '../../testkit/net';

jest.setTimeout(120_000);

const isRoot = process.getuid?.() === 0;
// Switching to the systemd unit's unprivileged user takes root; elsewhere there is nothing to show.
const describeAsRoot = isRoot ? describe : describe.skip;

/** What deploy/systemd/proxymgr-agent.service does: an unprivileged agent, HAProxy under the same user. */
const SETPRIV = [
  'setpriv',
  '--reuid=nobody',
  '--regid=nogroup',
  '--clear-groups',
  '--no-new-privs',
  '--bounding-set=-all',
  '--inh-caps=-all',
];

const hex = (s: string) => Buffer.from(s).toString('hex');

interface Agent {
  readonly proc: ChildProcess;
  logs(): string;
  waitFor(re: RegExp, timeoutMs?: number): Promise<boolean>;
  kill(): Promise<void>;
  stop(): Promise<void>;
}

const started = new Set<Agent>();

function startAgent(cfg: string, stateFile: string): Agent {
  const argv = [...SETPRIV, process.execPath, CLI, 'agent', '--config', cfg, '--state', stateFile];
  const proc = spawn(argv[0]!, argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PROXYMGR_LOG_LEVEL: 'debug' },
  });
  let out = '';
  proc.stdout.on('data', (c) => (out += c.toString()));
  proc.stderr.on('data', (c) => (out += c.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const agent: Agent = {
    proc,
    logs: () => out,
    waitFor: (re, timeoutMs = 15_000) => eventually(() => re.test(out), timeoutMs),
    kill: async () => {
      started.delete(agent);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
    stop: async () => {
      started.delete(agent);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
  started.add(agent);
  return agent;
}

/**
 * The admin API must be out of HAProxy's reach even where HAProxy runs as the agent's own user (the systemd
 * layout): a service config aiming a health check at the stats socket is refused, and a check written by hand into
 * haproxy.cfg — run by the agent's own HAProxy — reaches nothing that changes a server. Real HAProxy, real agent
 * (built CLI) as `nobody`, real backends.
 */
describeAsRoot('HAProxy cannot drive its own runtime API (agent and HAProxy as nobody)', () => {
  let backends: Backend[];
  const tmp = tempDir('proxymgr-isolation-');
  const haproxyPids = new Set<number>();

  beforeAll(async () => {
    expect(existsSync(CLI)).toBe(true);
    backends = await startBackends(['a', 'b']);
    chmodSync(tmp.dir, 0o755);
  });

  afterAll(async () => {
    await Promise.all([...started].map((a) => a.kill()));
    for (const pid of haproxyPids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone, as it should be
      }
    }
    await Promise.all((backends ?? []).map((b) => b.close()));
    tmp.cleanup();
  });

  test('refused in a service config; written by hand, the checks change nothing; kill -9 + start under load resets nothing', async () => {
    const [port, attackPort] = [await freePort(), await freePort()];
    const uid = Number(execFileSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('getent', ['group', 'nogroup'], { encoding: 'utf8' }).split(':')[2]);
    const dir = path.join(tmp.dir, 'state');
    mkdirSync(dir);
    chownSync(dir, uid, gid);
    const socket = path.join(dir, 'haproxy.sock');
    const cfg = path.join(tmp.dir, 'agent.yml');
    writeFileSync(
      cfg,
      `haproxy:\n  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]\n` +
        `agent:\n  state_dir: ${dir}\n  admin_listen: ""\n  drift_check_interval_ms: 600000\n`,
    );
    chmodSync(cfg, 0o644);
    const stateFile = path.join(tmp.dir, 'state.json');
    const setAddr = `set server web/a addr 10.9.9.9\n`;
    const doc = {
      services: [
        {
          name: 'web',
          port,
          bind_address: '127.0.0.1',
          listen_options: ['mode http', 'balance roundrobin'],
          servers: backends.map((b) => ({ name: b.name, address: '127.0.0.1', port: b.port })),
        },
        {
          // The attack as a service owner would write it: a health check that talks to the stats socket.
          name: 'probe',
          port: attackPort,
          bind_address: '127.0.0.1',
          listen_options: [
            'mode tcp',
            'option tcp-check',
            `tcp-check connect addr ${socket}`,
            `tcp-check send-binary ${hex(setAddr)}`,
          ],
          server_options: ['check', 'inter', '100'],
          servers: [{ name: 'p', address: '127.0.0.1', port: backends[0]!.port }],
        },
      ],
    };
    writeFileSync(`${stateFile}.tmp`, JSON.stringify(doc));
    chmodSync(`${stateFile}.tmp`, 0o644);
    renameSync(`${stateFile}.tmp`, stateFile);

    let agent = startAgent(cfg, stateFile);
    expect(await agent.waitFor(/haproxy started/)).toBe(true);
    const pid0 = Number(readFileSync(path.join(dir, 'haproxy.pid'), 'utf8'));
    haproxyPids.add(pid0);
    expect(execFileSync('ps', ['-o', 'user=', '-p', String(pid0)], { encoding: 'utf8' }).trim()).toBe('nobody');

    // 1. Refused by the agent's own policy, naming the service, the line and why; web is served.
    expect(
      await agent.waitFor(/service \\"probe\\"[^\n]*listen_options\[2\][^\n]*connect addr[^\n]*not an IP literal/),
    ).toBe(true);
    const rendered = readFileSync(path.join(dir, 'haproxy.cfg'), 'utf8');
    expect(rendered).not.toMatch(/listen probe/);
    expect(rendered).not.toContain(socket.replace(/.*\//, 'addr '));
    expect(await eventually(async () => (await tally(port, 4)).size === 2, 10_000)).toBe(true);

    // The socket with a path is read-only: HAProxy's user (and anyone else who can open it) only reads.
    const observer = new StatsSocketClient(socket);
    expect((await observer.command('set server web/a addr 10.9.9.9')).trim()).toBe('Permission denied');
    const addrOf = async (name: string) => (await observer.serversState('web')).get('web')?.get(name);
    expect((await addrOf('a'))?.address).toBe('127.0.0.1');

    // 2. The same checks written by hand into a copy of haproxy.cfg, run by a HAProxy as nobody with the agent's fd
    // layout: fd 3 a datagram socketpair (the admin channel's kind), fd 4 web's listener. (A crash restart of the
    // agent's own HAProxy no longer runs a hand-edited haproxy.cfg: it writes the committed config back first.) Each
    // check sends `set server web/a addr 10.9.9.9` every 100 ms: to the agent's socket with a path, over its own
    // channel fd (sockpair@3), and to /proc/self/fd/3. A control check aimed at an admin socket the hand-written
    // global opens shows that such checks do send commands.
    const control = path.join(dir, 'control.sock');
    const attack = (name: string, addr: string, cmd: string, p: number) =>
      [
        `listen ${name}`,
        `    bind 127.0.0.1:${p}`,
        '    mode tcp',
        '    option tcp-check',
        `    tcp-check connect addr ${addr}`,
        `    tcp-check send-binary ${hex(cmd)}`,
        `    server p 127.0.0.1:${backends[0]!.port} check inter 100`,
        '',
      ].join('\n');
    const handWritten =
      rendered
        .replace(/^ {4}stats socket \/.*\n/m, '') // (it would take the agent's socket path over)
        .replace(/^global\n/m, `global\n    stats socket ${control} mode 600 level admin\n`) +
      '\n' +
      attack('by_path', socket, setAddr, await freePort()) +
      attack('by_proc_fd', 'unix@/proc/self/fd/3', setAddr, await freePort()) +
      [
        'listen by_channel',
        `    bind 127.0.0.1:${await freePort()}`,
        '    mode tcp',
        '    option tcp-check',
        `    tcp-check send-binary ${hex(setAddr)}`,
        '    server p sockpair@3 check inter 100',
        '',
      ].join('\n') +
      attack('control', control, 'set server web/b weight 42\n', await freePort());
    const handFile = path.join(dir, 'hand-written.cfg');
    writeFileSync(handFile, handWritten);
    chownSync(handFile, uid, gid);
    const native = nativeAddon();
    const [channelPeer, channelEnd] = native.socketPair(true);
    const webCopy = native.listenTcp('127.0.0.1', await freePort(), 128);
    const byHand = spawn(SETPRIV[0]!, [...SETPRIV.slice(1), 'haproxy', '-db', '-f', handFile], {
      stdio: ['ignore', 'ignore', 'pipe', channelEnd, webCopy],
    });
    haproxyPids.add(byHand.pid!);
    expect(await eventually(() => existsSync(control), 10_000)).toBe(true);
    const byHandAdmin = new StatsSocketClient(control);
    const byHandAddrOf = async (name: string) => (await byHandAdmin.serversState('web')).get('web')?.get(name);
    // The control check changes web/b: the checks run and send their commands where a socket lets them.
    expect(await eventually(async () => (await byHandAddrOf('b'))?.weight === 42, 10_000)).toBe(true);
    await sleep(1000); // ten more rounds of every check
    expect((await byHandAddrOf('a'))?.address).toBe('127.0.0.1');
    expect((await addrOf('a'))?.address).toBe('127.0.0.1'); // the agent's HAProxy: the path socket only reads
    byHand.kill('SIGKILL');
    for (const fd of [channelPeer, channelEnd, webCopy]) native.closeFd(fd);

    // 3. kill -9 the agent and start it again, under load: it takes the HAProxy over (its config is the one it
    // writes: no reload), and still refuses the probe service.
    const load = startLoad(port, 8);
    await sleep(300);
    await agent.kill();
    expect(alive(pid0)).toBe(true);
    agent = startAgent(cfg, stateFile);
    expect(
      await agent.waitFor(/"config_matches":true[^\n]*took over the HAProxy the previous agent left running/),
    ).toBe(true);
    expect(
      await agent.waitFor(/service \\"probe\\"[^\n]*listen_options\[2\][^\n]*connect addr[^\n]*not an IP literal/),
    ).toBe(true);
    await sleep(500);
    expect(agent.logs()).not.toMatch(/haproxy (started|reloaded)/);
    const r = await load.stop();
    expect(r.ok).toBeGreaterThan(50);
    expect({ refused: r.refused, reset: r.reset, empty: r.empty, other: r.other, errors: r.errors }).toEqual({
      refused: 0,
      reset: 0,
      empty: 0,
      other: 0,
      errors: [],
    });
    expect((await addrOf('a'))?.address).toBe('127.0.0.1');
    await agent.stop();
    expect(await eventually(() => !alive(pid0), 10_000)).toBe(true);
  });
});
