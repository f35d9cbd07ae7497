import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { alive } from '../../agent/haproxy/orphan';
import { Backend, startBackends } from '../../testkit/backends';
import { startCli, stopAllCli } from '../../testkit/cli';
import { eventually, freePort, tally, tempDir } from '../../testkit/net';

jest.setTimeout(60_000);

/**
 * Two agents started on one state_dir would both take the running HAProxy over and both reload it: the second is
 * refused at start, naming the directory and the first agent's pid; a kill -9 of the first releases the lock.
 * Built CLI, real HAProxy.
 */
describe('one agent per state_dir', () => {
  const tmp = tempDir('proxymgr-lock-');
  let backends: Backend[];

  afterAll(async () => {
    const hung = await stopAllCli();
    await Promise.all((backends ?? []).map((b) => b.close()));
    tmp.cleanup();
    expect(hung).toEqual([]);
  });

  test('the second agent exits with an error naming the holder; after a kill -9 of the first, the next one starts', async () => {
    backends = await startBackends(['a']);
    const port = await freePort();
    const cfg = path.join(tmp.dir, 'agent.yml');
    const stateFile = path.join(tmp.dir, 'state.json');
    const stateDir = path.join(tmp.dir, 'state');
    writeFileSync(cfg, `agent: {state_dir: ${stateDir}, admin_listen: ""}\n`);
    writeFileSync(
      stateFile,
      JSON.stringify({
        services: [
          {
            name: 'web',
            port,
            bind_address: '127.0.0.1',
            listen_options: ['mode http'],
            servers: [{ name: 'a', address: '127.0.0.1', port: backends[0]!.port }],
          },
        ],
      }),
    );
    const first = startCli(['agent', '--config', cfg, '--state', stateFile]);
    expect(await first.waitForLog(/haproxy started/, 20_000)).toBe(true);
    const haproxyPid = Number(readFileSync(path.join(stateDir, 'haproxy.pid'), 'utf8'));

    const second = startCli(['agent', '--config', cfg, '--state', stateFile]);
    const code = await new Promise<number | null>((resolve) => second.proc.once('exit', (c) => resolve(c)));
    expect(code).not.toBe(0);
    expect(second.logs()).toContain(
      `agent.state_dir ${stateDir} is in use by another agent (pid ${first.proc.pid}): one agent per state_dir and config_path`,
    );
    expect(second.logs()).not.toMatch(/took over|haproxy (started|reloaded)/);
    // Another state_dir, the same haproxy.cfg: the takeover finds HAProxy by its config file, so this one is locked too.
    const otherCfg = path.join(tmp.dir, 'other.yml');
    const config = path.join(stateDir, 'haproxy.cfg');
    writeFileSync(
      otherCfg,
      `haproxy: {config_path: ${config}}\nagent: {state_dir: ${tmp.dir}/other, admin_listen: ""}\n`,
    );
    const other = startCli(['agent', '--config', otherCfg, '--state', stateFile]);
    expect(await new Promise<number | null>((resolve) => other.proc.once('exit', (c) => resolve(c)))).not.toBe(0);
    expect(other.logs()).toContain(`haproxy.config_path ${config} is in use by another agent (pid ${first.proc.pid})`);
    expect(other.logs()).not.toMatch(/took over|haproxy (started|reloaded)/);
    expect(alive(haproxyPid)).toBe(true);
    expect((await tally(port, 2)).get('a')).toBe(2);

    // The kernel releases the lock with its holder, a kill -9 included: the next agent takes HAProxy over.
    await first.kill();
    const third = startCli(['agent', '--config', cfg, '--state', stateFile]);
    expect(await third.waitForLog(/took over the HAProxy the previous agent left running/, 20_000)).toBe(true);
    expect(await eventually(async () => (await tally(port, 2)).get('a') === 2, 10_000)).toBe(true);
    expect(await third.stop()).toBe(0);
    expect(await eventually(() => !alive(haproxyPid), 10_000)).toBe(true);
  });
});
