import { ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, renameSync } from 'node:fs';
import * as path from 'node:path';
import { alive } from '../../agent/haproxy/orphan';
import { Backend, startBackends } from '../../testkit/backends';
import { eventually, freePort, tally, tempDir } from '../../testkit/net';

jest.setTimeout(60_000);

const CLI = path.join(__dirname, '..', '..', 'dist', 'bin', 'proxymgr.js');

/** The built CLI (`npm run build`), a state file, real HAProxy and real backends. */
describe('proxymgr agent (built CLI) follows a state file', () => {
  let backends: Backend[];
  let tmp: ReturnType<typeof tempDir>;
  let proc: ChildProcess | undefined;
  let logs = '';

  beforeAll(async () => {
    expect(existsSync(CLI)).toBe(true);
    backends = await startBackends(['a', 'b']);
    tmp = tempDir();
  });
  afterAll(async () => {
    if (proc && proc.exitCode === null) proc.kill('SIGKILL');
    await Promise.all((backends ?? []).map((b) => b.close()));
    tmp?.cleanup();
  });

  test('serves the file, follows edits at runtime, stops cleanly with its HAProxy', async () => {
    const port = await freePort();
    const cfg = path.join(tmp.dir, 'proxymgr.yml');
    const stateFile = path.join(tmp.dir, 'state.yml');
    writeFileSync(
      cfg,
      `haproxy:\n  config_path: ${tmp.dir}/haproxy.cfg\n  socket_path: ${tmp.dir}/haproxy.sock\n  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]\nagent:\n  state_dir: ${tmp.dir}\n  admin_listen: 127.0.0.1:0\n  drain_timeout_ms: 1000\n`,
    );
    const write = (servers: Backend[]) => {
      const doc = {
        services: [
          {
            name: 'web',
            port,
            bind_address: '127.0.0.1',
            listen_options: ['balance roundrobin'],
            servers: servers.map((b) => ({ name: b.name, address: '127.0.0.1', port: b.port })),
          },
        ],
      };
      writeFileSync(`${stateFile}.tmp`, JSON.stringify(doc));
      renameSync(`${stateFile}.tmp`, stateFile);
    };
    write(backends);
    proc = spawn(process.execPath, [CLI, 'agent', '--config', cfg, '--state', stateFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc.stderr!.on('data', (c) => (logs += c.toString()));

    expect(await eventually(async () => (await tally(port, 2)).size === 2, 15_000)).toBe(true);
    expect(await eventually(() => /haproxy started/.test(logs))).toBe(true);
    const haproxyPid = Number(/"haproxy_pid":(\d+)[^\n]*haproxy started/.exec(logs)?.[1]);
    expect(haproxyPid).toBeGreaterThan(0);

    write([backends[0]!]);
    expect(await eventually(async () => [...(await tally(port, 4)).keys()].join() === 'a', 10_000)).toBe(true);
    // HAProxy acts on the command before the agent rewrites the config and logs: wait for both. b drains, and is
    // deleted (and leaves the file) after agent.drain_timeout_ms.
    expect(await eventually(() => /server web\/b is no longer in the desired state: draining/.test(logs))).toBe(true);
    expect(await eventually(() => /drained server deleted/.test(logs), 5000)).toBe(true);
    expect(await eventually(() => !/server b /.test(readFileSync(path.join(tmp.dir, 'haproxy.cfg'), 'utf8')))).toBe(
      true,
    );
    expect(logs).not.toMatch(/haproxy reloaded/);

    const exited = new Promise<number | null>((resolve) => proc!.once('exit', (code) => resolve(code)));
    proc.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(() => process.kill(haproxyPid, 0)).toThrow();
  });

  test('an agent killed hard leaves HAProxy serving; the next agent takes that HAProxy and its ports over', async () => {
    const port = await freePort();
    const dir = path.join(tmp.dir, 'orphan');
    const cfg = path.join(tmp.dir, 'orphan.yml');
    const stateFile = path.join(tmp.dir, 'orphan-state.json');
    writeFileSync(
      cfg,
      `haproxy:\n  config_path: ${dir}/haproxy.cfg\n  socket_path: ${dir}/haproxy.sock\n  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]\nagent:\n  state_dir: ${dir}\n  admin_listen: ""\n`,
    );
    writeFileSync(
      stateFile,
      JSON.stringify({
        services: [
          {
            name: 'web',
            port,
            bind_address: '127.0.0.1',
            servers: [{ name: 'a', address: '127.0.0.1', port: backends[0]!.port }],
          },
        ],
      }),
    );
    const start = () => {
      const p = spawn(process.execPath, [CLI, 'agent', '--config', cfg, '--state', stateFile], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      p.stderr.on('data', (c) => (out += c.toString()));
      return { p, out: () => out };
    };
    const first = start();
    expect(await eventually(() => /haproxy started/.test(first.out()), 15_000)).toBe(true);
    const orphan = Number(readFileSync(path.join(dir, 'haproxy.pid'), 'utf8'));
    first.p.kill('SIGKILL');
    await new Promise((r) => first.p.once('exit', r));
    expect(alive(orphan)).toBe(true); // still running, still serving
    expect((await tally(port, 2)).get('a')).toBe(2);

    const second = start();
    try {
      expect(await eventually(() => /agent started/.test(second.out()), 15_000)).toBe(true);
      expect(second.out()).toMatch(
        new RegExp(`"haproxy_pid":${orphan}[^\\n]*took over the HAProxy the previous agent left running`),
      );
      expect(second.out()).not.toMatch(/haproxy (started|reloaded)/); // adopted, not replaced
      expect(alive(orphan)).toBe(true);
      expect((await tally(port, 2)).get('a')).toBe(2);
    } finally {
      second.p.kill('SIGTERM');
      await new Promise((r) => second.p.once('exit', r));
      // Whatever happened above, no HAProxy of this test may outlive it.
      for (const pid of [orphan, Number(readFileSync(path.join(dir, 'haproxy.pid'), 'utf8'))]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone, as it should be
        }
      }
    }
  });

  test('--help prints usage; a bad flag exits 2 naming it', async () => {
    const run = (args: string[]) =>
      new Promise<{ code: number | null; out: string }>((resolve) => {
        const p = spawn(process.execPath, [CLI, ...args]);
        let out = '';
        p.stdout.on('data', (c) => (out += c));
        p.stderr.on('data', (c) => (out += c));
        p.on('exit', (code) => resolve({ code, out }));
      });
    const help = await run(['agent', '--help']);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/usage: proxymgr agent --config FILE .*\[--state FILE\]/);
    const bad = await run(['agent', '--bogus']);
    expect(bad.code).toBe(2);
    expect(bad.out).toMatch(/unknown option --bogus/);
  });
});
