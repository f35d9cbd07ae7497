import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Discovery } from '../../controlplane/discovery';
import { endpoints, service, testDiscovery } from '../../testkit/discovery';
import { tempDir } from '../../testkit/net';

let d: Discovery | undefined;
let tmp: { dir: string; cleanup: () => void };

beforeEach(() => {
  tmp = tempDir('proxymgr-files-');
});
afterEach(async () => {
  await d?.stop();
  d = undefined;
  tmp.cleanup();
});

/** Writes atomically (temp + rename), as deploy tools do. */
async function put(file: string, text: string): Promise<void> {
  await fsp.writeFile(file + '.tmp', text);
  await fsp.rename(file + '.tmp', file);
}

test('file source (a directory of JSON/YAML configs) with file and static watchers, all followed live', async () => {
  const configs = path.join(tmp.dir, 'service_config');
  await fsp.mkdir(configs);
  const hostsFile = path.join(tmp.dir, 'web.hosts');
  await put(hostsFile, '# web backends\n10.0.0.1:80\n10.0.0.2:80 weight=3\n');
  await put(
    path.join(configs, 'web.json'),
    JSON.stringify({ type: 'file', file: hostsFile, port: 8080, listen_options: ['mode http'] }),
  );
  await put(
    path.join(configs, 'cache.yml'),
    'type: static\nport: 6379\nhosts:\n  - 10.1.0.1:6379\n  - {address: 10.1.0.2, port: 6379, name: replica, weight: 0}\n',
  );
  await put(path.join(configs, 'README.txt'), 'not a service');
  d = testDiscovery({ type: 'file', path: configs }, { filePollMs: 5000, fileWatcherDirs: [tmp.dir] }); // fs events must do it, well before a poll
  d.start();

  const first = await d.waitFor((s) => s.services.length === 2);
  expect(first.services.map((s) => s.name)).toEqual(['cache', 'web']);
  expect(service(first, 'web')!.servers).toEqual([
    { name: '10.0.0.1_80', address: '10.0.0.1', port: 80, weight: 1, options: [] },
    { name: '10.0.0.2_80', address: '10.0.0.2', port: 80, weight: 3, options: [] },
  ]);
  expect(service(first, 'cache')!.servers).toEqual([
    { name: '10.1.0.1_6379', address: '10.1.0.1', port: 6379, weight: 1, options: [] },
    { name: 'replica', address: '10.1.0.2', port: 6379, weight: 0, options: [] },
  ]);

  // the hosts file changes; a bad line is skipped and named file:line
  await put(hostsFile, '10.0.0.2:80\n10.0.0.3:80\nbogus line\n');
  const changed = await d.waitFor((s) => endpoints(s).web?.join() === '10.0.0.2:80,10.0.0.3:80', 3000);
  expect(service(changed, 'web')!.servers[0]!.weight).toBe(1);
  expect(d.errors().services.web).toEqual([expect.objectContaining({ code: 'HOST_INVALID', where: `${hostsFile}:3` })]);

  // an emptied hosts file keeps the previous hosts (fail static)
  await put(hostsFile, '');
  await expectEventually(() => (d!.errors().services.web ?? []).some((p) => p.code === 'FAIL_STATIC'));
  expect(endpoints(d.current()).web).toEqual(['10.0.0.2:80', '10.0.0.3:80']);

  // service configs: changed, added, removed
  await put(path.join(configs, 'cache.yml'), 'type: static\nport: 6380\nhosts: [10.1.0.1:6379]\n');
  await d.waitFor((s) => service(s, 'cache')?.port === 6380, 3000);
  await put(path.join(configs, 'api.json'), JSON.stringify({ type: 'static', port: 9000, hosts: ['10.2.0.1:9000'] }));
  await d.waitFor((s) => endpoints(s).api?.join() === '10.2.0.1:9000', 3000);
  await fsp.unlink(path.join(configs, 'cache.yml'));
  const final = await d.waitFor((s) => service(s, 'cache') === undefined, 3000);
  expect(final.services.map((s) => s.name)).toEqual(['api', 'web']);
});

test('file source as one YAML file mapping name → config, rewritten in place; a broken file keeps every service', async () => {
  const file = path.join(tmp.dir, 'services.yml');
  await fsp.writeFile(file, 'web:\n  type: static\n  port: 8080\n  hosts: ["10.0.0.1:80"]\n');
  d = testDiscovery({ type: 'file', path: file }, { filePollMs: 150 });
  d.start();
  await d.waitFor((s) => endpoints(s).web?.join() === '10.0.0.1:80');
  // a broken file as a whole keeps every service; the source reports why
  await fsp.writeFile(file, 'web: [unclosed\n');
  await expectEventually(() => d!.errors().source.length === 1);
  expect(d.errors().source[0]!.message).toMatch(/services.yml cannot be read: .*services.yml/);
  expect(endpoints(d.current()).web).toEqual(['10.0.0.1:80']);
  // in-place rewrite, then a second service
  await fsp.writeFile(
    file,
    'web:\n  type: static\n  port: 8080\n  hosts: ["10.0.0.2:80"]\napi:\n  type: static\n  port: 8081\n  hosts: ["10.0.0.3:80"]\n',
  );
  const s = await d.waitFor((x) => endpoints(x).web?.join() === '10.0.0.2:80' && endpoints(x).api !== undefined, 3000);
  expect(endpoints(s)).toEqual({ api: ['10.0.0.3:80'], web: ['10.0.0.2:80'] });
  expect(d.errors().source).toEqual([]);
});

async function expectEventually(check: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  expect(check()).toBe(true);
}
