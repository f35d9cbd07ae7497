import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { alive } from '../../agent/haproxy/orphan';
import { StatsSocketClient } from '../../agent/haproxy/runtime';
import { Backend, startBackends } from '../../testkit/backends';
import { eventually, freePort, tally, tempDir } from '../../testkit/net';

jest.setTimeout(90_000);

const CLI = path.join(__dirname, '..', '..', 'dist', 'bin', 'proxymgr.js');
const isRoot = process.getuid?.() === 0;
// Dropping privileges and switching users takes root; elsewhere there is nothing to show.
const describeAsRoot = isRoot ? describe : describe.skip;

/** The user a process runs as, as `ps` shows it. */
const psUser = (pid: number) => execFileSync('ps', ['-o', 'user=', '-p', String(pid)], { encoding: 'utf8' }).trim();
const modeOf = (file: string) => statSync(file).mode & 0o7777;
const ownerOf = (file: string) => statSync(file).uid;
const uidOf = (name: string) => Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
const gidOf = (name: string) => Number(execFileSync('getent', ['group', name], { encoding: 'utf8' }).split(':')[2]);

interface Agent {
  readonly proc: ChildProcess;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  logs(): string;
  waitFor(re: RegExp, timeoutMs?: number): Promise<boolean>;
  stop(): Promise<number | null>;
  kill(): Promise<void>;
}

const started = new Set<Agent>();

/** Runs the built CLI's agent, optionally behind a command prefix (setpriv), with debug JSON logs captured. */
function startAgent(cfg: string, stateFile: string, prefix: string[] = []): Agent {
  const argv = [...prefix, process.execPath, CLI, 'agent', '--config', cfg, '--state', stateFile];
  const proc = spawn(argv[0]!, argv.slice(1), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PROXYMGR_LOG_LEVEL: 'debug' },
  });
  let out = '';
  proc.stdout.on('data', (c) => (out += c.toString()));
  proc.stderr.on('data', (c) => (out += c.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const agent: Agent = {
    proc,
    exited,
    logs: () => out,
    waitFor: (re, timeoutMs = 15_000) => eventually(() => re.test(out), timeoutMs),
    stop: async () => {
      started.delete(agent);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      return exited;
    },
    kill: async () => {
      started.delete(agent);
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
  started.add(agent);
  return agent;
}

function writeState(file: string, port: number, servers: Backend[], listenOptions = ['balance roundrobin']): void {
  const doc = {
    services: [
      {
        name: 'web',
        port,
        bind_address: '127.0.0.1',
        listen_options: listenOptions,
        servers: servers.map((b) => ({ name: b.name, address: '127.0.0.1', port: b.port })),
      },
    ],
  };
  writeFileSync(`${file}.tmp`, JSON.stringify(doc));
  chmodSync(`${file}.tmp`, 0o644);
  renameSync(`${file}.tmp`, file);
}

const readPid = (dir: string) => Number(readFileSync(path.join(dir, 'haproxy.pid'), 'utf8').trim());

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve(body));
      })
      .on('error', reject);
  });
}

/** A port below 1024 on 127.0.0.1 that is free right now (found as root, used by the non-root agent). */
async function freeLowPort(): Promise<number> {
  const first = 600 + Math.floor(Math.random() * 300);
  for (let p = first; p < 1024; p++) {
    const free = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(p, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) return p;
  }
  throw new Error('no free port between 600 and 1023 on 127.0.0.1');
}

/** Every HAProxy pid a test saw, killed in afterAll should anything have gone wrong. */
const haproxyPids = new Set<number>();

describeAsRoot('least privilege: HAProxy unprivileged, agent optionally unprivileged (built CLI, real HAProxy)', () => {
  let backends: Backend[];
  let tmp: ReturnType<typeof tempDir>;

  beforeAll(async () => {
    expect(existsSync(CLI)).toBe(true);
    expect(() => uidOf('haproxy')).not.toThrow(); // the Debian haproxy package creates it
    backends = await startBackends(['a', 'b']);
    tmp = tempDir('proxymgr-lp-');
    chmodSync(tmp.dir, 0o755); // the non-root agent reads its config and state file from here
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
    tmp?.cleanup();
  });

  test('root agent: HAProxy runs as haproxy; runtime changes, reloads with the server state, kill -9 recovery; owner-only files', async () => {
    const port = await freePort();
    const dir = path.join(tmp.dir, 'root-state'); // created by the agent
    const cfg = path.join(tmp.dir, 'root.yml');
    const stateFile = path.join(tmp.dir, 'root-state.json');
    writeFileSync(
      cfg,
      // HAProxy drops to its own user, which cannot open the root-owned socket: the documented case for
      // socket_level admin (an operator's socket with a path).
      `haproxy:\n  socket_level: admin\n  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]\n` +
        `agent:\n  state_dir: ${dir}\n  admin_listen: ""\n  metrics_listen: 127.0.0.1:0\n  drift_check_interval_ms: 600000\n`,
    );
    writeState(stateFile, port, backends);
    const agent = startAgent(cfg, stateFile);
    expect(await agent.waitFor(/haproxy started/)).toBe(true);
    const pid = readPid(dir);
    haproxyPids.add(pid);
    expect(psUser(agent.proc.pid!)).toBe('root');
    expect(psUser(pid)).toBe('haproxy');
    expect(agent.logs()).toMatch(/HAProxy drops to user haproxy, group haproxy/);
    const cfgText = readFileSync(path.join(dir, 'haproxy.cfg'), 'utf8');
    expect(cfgText).toMatch(/^ {4}user haproxy$/m);
    expect(cfgText).toMatch(/^ {4}group haproxy$/m);
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^Gid:\s+(\d+)\s+\1\s+\1\s+\1$/m);
    expect(readFileSync(`/proc/${pid}/status`, 'utf8')).toContain(`Gid:\t${gidOf('haproxy')}\t`);
    expect(await eventually(async () => (await tally(port, 2)).size === 2, 10_000)).toBe(true);

    // Owner-only: the dir, haproxy.cfg, the server-state file, the pid file, the stats socket, the cache.
    expect(await eventually(() => existsSync(path.join(dir, 'desired-state.json')))).toBe(true);
    expect(modeOf(dir)).toBe(0o700);
    for (const f of ['haproxy.cfg', 'server-state', 'haproxy.pid', 'desired-state.json', 'haproxy.sock']) {
      expect([f, modeOf(path.join(dir, f)) & 0o777]).toEqual([f, 0o600]);
      expect([f, ownerOf(path.join(dir, f))]).toEqual([f, 0]); // root's: HAProxy reads them before dropping
    }
    const metricsPort = Number(/"metrics_port":(\d+)[^\n]*agent started/.exec(agent.logs())?.[1]);
    expect(metricsPort).toBeGreaterThan(0);

    // A host change goes through the runtime API (the agent's admin channel): no reload.
    writeState(stateFile, port, [backends[0]!]);
    expect(await eventually(async () => [...(await tally(port, 4)).keys()].join() === 'a', 10_000)).toBe(true);
    expect(await agent.waitFor(/server web\/b is no longer in the desired state/)).toBe(true);
    expect(agent.logs()).not.toMatch(/haproxy reloaded/);
    expect(readPid(dir)).toBe(pid);

    // By hand, behind the agent's back (drift repair is slowed down): only the server-state file carries this
    // weight into the next process, and the agent's pass right after the reload then puts weight 1 back.
    const runtime = new StatsSocketClient(path.join(dir, 'haproxy.sock'));
    expect((await runtime.command('set server web/a weight 7')).trim()).toBe('');

    // A shape change reloads (-sf from a root-started process to the haproxy-owned one).
    writeState(stateFile, port, [backends[0]!], ['balance leastconn']);
    expect(await agent.waitFor(/haproxy reloaded/)).toBe(true);
    const reloaded = readPid(dir);
    haproxyPids.add(reloaded);
    expect(reloaded).not.toBe(pid);
    expect(psUser(reloaded)).toBe('haproxy');
    expect(await eventually(() => !alive(pid), 10_000)).toBe(true); // the old one soft-stopped
    expect(modeOf(path.join(dir, 'server-state'))).toBe(0o600);
    expect(readFileSync(path.join(dir, 'server-state'), 'utf8')).toMatch(/^\d+ web \d+ a 127\.0\.0\.1 \d+ \d+ 7 /m);
    expect(
      await eventually(async () =>
        /proxymgr_agent_runtime_commands_total\{kind="set_weight"\} 1$/m.test(
          await httpGet(`http://127.0.0.1:${metricsPort}/metrics`),
        ),
      ),
    ).toBe(true);
    expect(agent.logs()).not.toMatch(/server state file|Permission denied/i);
    expect((await tally(port, 2)).get('a')).toBe(2);

    // kill -9 of HAProxy: the agent restarts it on the same sockets, unprivileged again.
    process.kill(reloaded, 'SIGKILL');
    expect(
      await eventually(
        () => existsSync(path.join(dir, 'haproxy.pid')) && readPid(dir) !== reloaded && alive(readPid(dir)),
        10_000,
      ),
    ).toBe(true);
    const restarted = readPid(dir);
    haproxyPids.add(restarted);
    expect(psUser(restarted)).toBe('haproxy');
    expect(await agent.waitFor(/haproxy died; restarting on the same sockets/)).toBe(true);
    expect(await eventually(async () => (await tally(port, 2)).get('a') === 2, 10_000)).toBe(true);

    expect(await agent.stop()).toBe(0);
    expect(alive(restarted)).toBe(false);
  });

  test('non-root agent (setpriv: nobody + CAP_NET_BIND_SERVICE only): binds a port below 1024, HAProxy runs as nobody; owner-only files; orphan takeover', async () => {
    const port = await freeLowPort();
    const [uid, gid] = [uidOf('nobody'), gidOf('nogroup')];
    const dir = path.join(tmp.dir, 'nobody-state');
    mkdirSync(dir);
    chownSync(dir, uid, gid);
    chmodSync(dir, 0o755); // looser than it should be: the agent tightens it
    const cfg = path.join(tmp.dir, 'nobody.yml');
    const stateFile = path.join(tmp.dir, 'nobody-state.json');
    writeFileSync(
      cfg,
      `haproxy:\n  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]\nagent:\n  state_dir: ${dir}\n  admin_listen: ""\n`,
    );
    chmodSync(cfg, 0o644);
    writeState(stateFile, port, backends);
    // What the systemd unit does (User=, AmbientCapabilities=, CapabilityBoundingSet=, NoNewPrivileges=).
    const setpriv = [
      'setpriv',
      '--reuid=nobody',
      '--regid=nogroup',
      '--clear-groups',
      '--no-new-privs',
      '--bounding-set=-all,+net_bind_service',
      '--inh-caps=+net_bind_service',
      '--ambient-caps=+net_bind_service',
    ];
    // The built code, node_modules and the native addon must be readable by that user.
    expect(
      execFileSync(
        setpriv[0]!,
        [
          ...setpriv.slice(1),
          process.execPath,
          '-e',
          `require(${JSON.stringify(path.join(path.dirname(CLI), '..', 'agent', 'agent-process.js'))}); console.log('readable')`,
        ],
        { encoding: 'utf8' },
      ).trim(),
    ).toBe('readable');

    const first = startAgent(cfg, stateFile, setpriv);
    expect(await first.waitFor(/haproxy started/)).toBe(true);
    const pid = readPid(dir);
    haproxyPids.add(pid);
    expect(psUser(first.proc.pid!)).toBe('nobody'); // setpriv execs node: same pid
    expect(psUser(pid)).toBe('nobody');
    expect(readFileSync(path.join(dir, 'haproxy.cfg'), 'utf8')).not.toMatch(/^\s*(user|group)\b/m);
    expect(await eventually(async () => (await tally(port, 2)).size === 2, 10_000)).toBe(true);
    expect(await eventually(() => existsSync(path.join(dir, 'desired-state.json')))).toBe(true);
    expect(modeOf(dir)).toBe(0o700);
    for (const f of ['haproxy.cfg', 'server-state', 'haproxy.pid', 'desired-state.json', 'haproxy.sock']) {
      expect([f, modeOf(path.join(dir, f)) & 0o777, ownerOf(path.join(dir, f))]).toEqual([f, 0o600, uid]);
    }

    // Hard-killed, the non-root agent leaves its HAProxy serving; the next one (same user) takes it over.
    await first.kill();
    expect(alive(pid)).toBe(true);
    expect((await tally(port, 2)).size).toBeGreaterThan(0);
    // The same user may copy its own HAProxy's sockets (pidfd_getfd): no privilege beyond CAP_NET_BIND_SERVICE.
    const second = startAgent(cfg, stateFile, setpriv);
    expect(
      await second.waitFor(
        new RegExp(`"haproxy_pid":${pid}[^\\n]*took over the HAProxy the previous agent left running`),
      ),
    ).toBe(true);
    expect(second.logs()).not.toMatch(/haproxy (started|reloaded)/);
    expect(alive(pid)).toBe(true);
    expect(psUser(pid)).toBe('nobody');
    expect(await eventually(async () => (await tally(port, 2)).size === 2, 10_000)).toBe(true);
    expect(await second.stop()).toBe(0);
    expect(await eventually(() => !alive(pid), 5000)).toBe(true);
  });

  test('a configured haproxy.user that does not exist stops the agent at start, naming the key and the fix', async () => {
    const cfg = path.join(tmp.dir, 'nosuch.yml');
    const stateFile = path.join(tmp.dir, 'nosuch-state.json');
    writeFileSync(
      cfg,
      `haproxy:\n  user: proxymgr-no-such-user\nagent:\n  state_dir: ${path.join(tmp.dir, 'nosuch-state')}\n  admin_listen: ""\n`,
    );
    writeState(stateFile, await freePort(), backends);
    const agent = startAgent(cfg, stateFile);
    expect(await agent.exited).toBe(1);
    started.delete(agent);
    expect(agent.logs()).toMatch(
      /nosuch\.yml: haproxy\.user\/haproxy\.group: user "proxymgr-no-such-user" and group "proxymgr-no-such-user" do not exist on this host; create it/,
    );
    expect(agent.logs()).not.toMatch(/haproxy started/);
  });
});
