import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { CLI } from '../../testkit/cli';
import { tempDir } from '../../testkit/net';

jest.setTimeout(60_000);

/** `proxymgr check`: the dry run an operator runs before upgrading the control plane or after editing configs. */
describe('proxymgr check (built CLI)', () => {
  const tmp = tempDir('proxymgr-check-');
  const services = path.join(tmp.dir, 'services');
  const cfg = path.join(tmp.dir, 'cp.yml');
  afterAll(() => tmp.cleanup());

  const check = (...args: string[]) =>
    spawnSync(process.execPath, [CLI, 'check', '--config', cfg, '--timeout-ms', '10000', ...args], {
      encoding: 'utf8',
      timeout: 30_000,
    });

  test('names every service this version would refuse and why; exit 1', () => {
    mkdirSync(services);
    writeFileSync(cfg, `service_config: {type: file, path: ${services}}\n`);
    writeFileSync(
      path.join(services, 'web.json'),
      JSON.stringify({ type: 'static', port: 18080, listen_options: ['mode http'], hosts: ['127.0.0.1:9001'] }),
    );
    writeFileSync(
      path.join(services, 'evil.json'),
      JSON.stringify({
        type: 'static',
        port: 18081,
        listen_options: ['mode http', 'stats socket ipv4@0.0.0.0:9999 level admin'],
        hosts: ['127.0.0.1:9002'],
      }),
    );
    writeFileSync(
      path.join(services, 'files.json'),
      JSON.stringify({ type: 'file', file: '/etc/passwd', port: 18082 }),
    );
    const r = check();
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/^1 service\(s\) would be served: web$/m);
    expect(r.stdout).toMatch(/^REFUSED evil: .*listen_options\[1\]: "stats socket" is not allowed/m);
    expect(r.stdout).toMatch(/^REFUSED files: .*\/etc\/passwd/m);
    expect(r.stdout).not.toMatch(/root:/); // never the file's content
    const json = JSON.parse(check('--json').stdout) as { services: string[]; problems: Record<string, string[]> };
    expect(json.services).toEqual(['web']);
    expect(Object.keys(json.problems).sort()).toEqual(['evil', 'files']);
  });

  test('nothing refused: exit 0; a config without service_config: exit 2 naming it', () => {
    rmSync(path.join(services, 'evil.json'));
    rmSync(path.join(services, 'files.json'));
    const r = check();
    expect(r.stdout).toMatch(/nothing refused/);
    expect(r.status).toBe(0);
    writeFileSync(cfg, 'controlplane: {listen: "127.0.0.1:0"}\n');
    const bad = check();
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/no service_config section/);
  });
});
