import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_CONTROLPLANE_CONFIG, ControlPlaneConfig, ServiceConfigSource } from '../../common/config/config';
import { Logger } from '../../common/platform/log';
import { Discovery } from '../../controlplane/discovery';
import { discoveryFromConfig } from '../../controlplane/wiring';
import { endpoints } from '../../testkit/discovery';
import { tempDir } from '../../testkit/net';

/**
 * How far `file` watchers and the `file` service-config source reach: only under controlplane.file_watcher_dirs
 * (resp. the service_config directory), symlinks and `..` resolved on every read, no devices/FIFOs/huge files, and
 * nothing of a file's content in errors or logs.
 */
let d: Discovery | undefined;
let tmp: { dir: string; cleanup: () => void };
let lines: string[];

/** Every log call as one JSON line, children included: what an operator (or an attacker reading logs) would see. */
function capturingLogger(bound: object = {}): Logger {
  const rec = (level: string) => (fields: object, msg: string) =>
    void lines.push(JSON.stringify({ level, ...bound, ...fields, msg }));
  return {
    debug: rec('debug'),
    info: rec('info'),
    warn: rec('warn'),
    error: rec('error'),
    child: (f) => capturingLogger({ ...bound, ...f }),
  };
}

function discovery(source: ServiceConfigSource, cp: Partial<ControlPlaneConfig>): Discovery {
  return discoveryFromConfig({
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
      serviceConfig: source,
      controlplane: { ...DEFAULT_CONTROLPLANE_CONFIG, filePollMs: 100, initialSyncTimeoutMs: 1000, ...cp },
    },
    log: capturingLogger(),
  });
}

const KEY_LINES = [
  '-----BEGIN PRIVATE KEY-----',
  'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj',
  'MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu',
  'bG9naW46aHVudGVyMg==:443',
  'admin:hunter2',
  '-----END PRIVATE KEY-----',
];
const KEY = KEY_LINES.join('\n') + '\n';
/** Pieces of the key (4+ characters) found in `text`. */
const leaked = (text: string) =>
  KEY_LINES.flatMap((l) => l.split(/[\s:]+/)).filter((p) => p.length >= 4 && p !== 'PRIVATE' && text.includes(p));

beforeEach(() => {
  tmp = tempDir('proxymgr-reach-');
  lines = [];
});
afterEach(async () => {
  await d?.stop();
  d = undefined;
  tmp.cleanup();
});

async function eventually(check: () => boolean, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  expect(check()).toBe(true);
}

async function setup(services: Record<string, object>): Promise<{ allowed: string; outside: string }> {
  const allowed = path.join(tmp.dir, 'hosts');
  const outside = path.join(tmp.dir, 'secret');
  await fsp.mkdir(allowed);
  await fsp.mkdir(outside);
  await fsp.writeFile(path.join(outside, 'tls.key'), KEY);
  await fsp.writeFile(path.join(tmp.dir, 'services.json'), JSON.stringify(services));
  return { allowed, outside };
}

const problems = (name: string) => d!.errors().services[name] ?? [];
const text = () => JSON.stringify(d!.errors()) + '\n' + lines.join('\n');

test('without controlplane.file_watcher_dirs every file watcher is refused, naming the service and the file', async () => {
  await setup({
    web: { type: 'file', file: '/etc/passwd', port: 8080 },
    api: { type: 'static', port: 8081, hosts: ['10.0.0.1:80'] },
  });
  d = discovery({ type: 'file', path: path.join(tmp.dir, 'services.json') }, {});
  d.start();
  const s = await d.waitFor((x) => x.services.length > 0);
  expect(endpoints(s)).toEqual({ api: ['10.0.0.1:80'] });
  expect(problems('web')).toEqual([
    expect.objectContaining({
      code: 'SERVICE_CONFIG_INVALID',
      message: expect.stringContaining(
        'service web: file watcher refused for /etc/passwd: file watchers may only read under controlplane.file_watcher_dirs (controlplane.file_watcher_dirs: none listed)',
      ),
    }),
  ]);
});

test('a file outside the listed directories (also by "..") is refused; one inside is read', async () => {
  const { allowed, outside } = await setup({});
  await fsp.writeFile(path.join(allowed, 'web.txt'), '10.0.0.1:80\n');
  await fsp.writeFile(
    path.join(tmp.dir, 'services.json'),
    JSON.stringify({
      web: { type: 'file', file: path.join(allowed, 'web.txt'), port: 8080 },
      direct: { type: 'file', file: path.join(outside, 'tls.key'), port: 8081 },
      dotdot: { type: 'file', file: `${allowed}/../secret/tls.key`, port: 8082 },
    }),
  );
  d = discovery({ type: 'file', path: path.join(tmp.dir, 'services.json') }, { fileWatcherDirs: [allowed] });
  d.start();
  const s = await d.waitFor((x) => x.services.length > 0);
  expect(endpoints(s)).toEqual({ web: ['10.0.0.1:80'] });
  for (const [name, file] of [
    ['direct', path.join(outside, 'tls.key')],
    ['dotdot', `${allowed}/../secret/tls.key`],
  ]) {
    expect(problems(name!)).toEqual([
      expect.objectContaining({
        code: 'SERVICE_CONFIG_INVALID',
        message: expect.stringContaining(
          `service ${name}: file watcher refused for ${file}: not under controlplane.file_watcher_dirs (${allowed})`,
        ),
      }),
    ]);
  }
  expect(leaked(text())).toEqual([]);
});

test('a symlink inside an allowed directory pointing outside is refused — also when a good file is replaced by one later', async () => {
  const { allowed, outside } = await setup({});
  const web = path.join(allowed, 'web.txt');
  const evil = path.join(allowed, 'evil.txt');
  await fsp.writeFile(web, '10.0.0.1:80\n10.0.0.2:80\n');
  await fsp.symlink(path.join(outside, 'tls.key'), evil);
  await fsp.writeFile(
    path.join(tmp.dir, 'services.json'),
    JSON.stringify({ web: { type: 'file', file: web, port: 8080 }, evil: { type: 'file', file: evil, port: 8081 } }),
  );
  d = discovery({ type: 'file', path: path.join(tmp.dir, 'services.json') }, { fileWatcherDirs: [allowed] });
  d.start();
  await d.waitFor((x) => endpoints(x).web?.length === 2);
  await eventually(() => problems('evil').length > 0);
  // A symlink already in place is refused with the service config: the service is not served at all.
  expect(problems('evil')).toEqual([
    expect.objectContaining({
      code: 'SERVICE_CONFIG_INVALID',
      message: expect.stringContaining(
        `service evil: file watcher refused for ${evil}: it resolves (through a symlink) to a path outside controlplane.file_watcher_dirs (${allowed}); the service is not served until this is fixed`,
      ),
    }),
  ]);
  expect(Object.keys(endpoints(d.current()))).toEqual(['web']);

  // web.txt becomes a symlink to the key (atomically): refused on the next read, the previous hosts stay
  await fsp.symlink(path.join(outside, 'tls.key'), web + '.new');
  await fsp.rename(web + '.new', web);
  await eventually(() => problems('web').some((p) => p.message.includes('refused: it resolves')));
  expect(problems('web')[0]!.message).toContain('keeping the 2 previous host(s)');
  expect(endpoints(d.current()).web).toEqual(['10.0.0.1:80', '10.0.0.2:80']);
  expect(leaked(text())).toEqual([]);
});

test('a "private key" inside an allowed directory: errors name file:line, neither errors nor logs hold any of it', async () => {
  const { allowed } = await setup({});
  const key = path.join(allowed, 'web.txt');
  await fsp.writeFile(key, KEY);
  await fsp.writeFile(
    path.join(tmp.dir, 'services.json'),
    JSON.stringify({ web: { type: 'file', file: key, port: 8080 } }),
  );
  d = discovery({ type: 'file', path: path.join(tmp.dir, 'services.json') }, { fileWatcherDirs: [allowed] });
  d.start();
  await eventually(() => problems('web').filter((p) => p.code === 'HOST_INVALID').length === 6);
  const hostProblems = problems('web').filter((p) => p.code === 'HOST_INVALID');
  expect(hostProblems.map((p) => p.where)).toEqual([1, 2, 3, 4, 5, 6].map((n) => `${key}:${n}`));
  for (const p of hostProblems)
    expect(p.message).toMatch(/^line skipped: (expected host:port|address is neither|unknown option)/);
  // 'admin:hunter2' has no numeric port, the base64 line has a port but no valid host: nothing becomes a host
  expect(endpoints(d.current()).web ?? []).toEqual([]);
  expect(lines.some((l) => l.includes(`${key}:1`))).toBe(true); // the log names the lines …
  expect(leaked(text())).toEqual([]); // … and quotes none
});

test('devices, FIFOs and oversized files are refused without hanging', async () => {
  const { allowed } = await setup({});
  const fifo = path.join(allowed, 'fifo.txt');
  execFileSync('mkfifo', [fifo]);
  const big = path.join(allowed, 'big.txt');
  await fsp.writeFile(big, '10.0.0.1:80\n'.repeat(400_000)); // 4.8 MB
  await fsp.symlink('/dev/zero', path.join(allowed, 'zero.txt'));
  await fsp.writeFile(
    path.join(tmp.dir, 'services.json'),
    JSON.stringify({
      fifo: { type: 'file', file: fifo, port: 8080 },
      big: { type: 'file', file: big, port: 8081 },
      zero: { type: 'file', file: path.join(allowed, 'zero.txt'), port: 8082 },
    }),
  );
  // /dev listed on purpose: /dev/zero is then inside an allowed directory and must still be refused as a device
  d = discovery({ type: 'file', path: path.join(tmp.dir, 'services.json') }, { fileWatcherDirs: [allowed, '/dev'] });
  d.start();
  await eventually(() => ['fifo', 'big', 'zero'].every((n) => problems(n).length > 0));
  expect(problems('fifo')[0]!.message).toContain(`${fifo}: refused: not a regular file`);
  expect(problems('zero')[0]!.message).toContain('refused: not a regular file');
  expect(problems('big')[0]!.message).toContain(`${big}: refused: 4800000 bytes is over the limit of 4194304 bytes`);
});

test('file source: entries may not lead out of the directory; ConfigMap-style symlinks inside it work', async () => {
  const { outside } = await setup({});
  const dir = path.join(tmp.dir, 'service_config');
  await fsp.mkdir(path.join(dir, '..data'), { recursive: true });
  await fsp.writeFile(
    path.join(dir, '..data', 'web.json'),
    JSON.stringify({ type: 'static', port: 8080, hosts: ['10.0.0.1:80'] }),
  );
  await fsp.symlink('..data/web.json', path.join(dir, 'web.json'));
  await fsp.symlink(path.join(outside, 'tls.key'), path.join(dir, 'key.yml'));
  await fsp.writeFile(
    path.join(outside, 'api.json'),
    JSON.stringify({ type: 'static', port: 8081, hosts: ['10.0.0.2:80'] }),
  );
  await fsp.symlink(path.join(outside, 'api.json'), path.join(dir, 'api.json'));
  d = discovery({ type: 'file', path: dir }, {});
  d.start();
  const s = await d.waitFor((x) => x.services.length > 0);
  expect(endpoints(s)).toEqual({ web: ['10.0.0.1:80'] });
  expect(lines.filter((l) => l.includes('refused: it resolves')).map((l) => JSON.parse(l).file)).toEqual([
    path.join(dir, 'api.json'),
    path.join(dir, 'key.yml'),
  ]);
  expect(leaked(text())).toEqual([]);

  // a service config file given as one file: a symlink out of its directory makes the source unavailable
  const one = path.join(tmp.dir, 'etc', 'one.yml');
  await fsp.mkdir(path.dirname(one));
  await fsp.symlink(path.join(outside, 'api.json'), one);
  const d2 = discovery({ type: 'file', path: one }, {});
  d2.start();
  try {
    await eventually(() => d2.errors().source.length === 1);
    expect(d2.errors().source[0]!.message).toContain(`${one}: refused: it resolves`);
  } finally {
    await d2.stop();
  }
});

test('file source: a service config that is not valid YAML/JSON is reported by position, not quoted', async () => {
  const dir = path.join(tmp.dir, 'service_config');
  await fsp.mkdir(dir);
  await fsp.writeFile(path.join(dir, 'web.json'), `{"type": "static", "port": 8080, "hosts": [${KEY_LINES[1]}]}`);
  await fsp.writeFile(path.join(dir, 'key.yml'), KEY);
  await fsp.writeFile(path.join(dir, 'flow.yml'), `hosts: [${KEY_LINES[4]}\n`);
  d = discovery({ type: 'file', path: dir }, {});
  d.start();
  await eventually(() => ['web', 'key', 'flow'].every((n) => problems(n).length > 0));
  expect(problems('web')[0]!.message).toContain('not valid JSON: unexpected character at line 1, column 44');
  expect(problems('key')[0]!.message).toContain('expected a mapping, got text');
  expect(problems('flow')[0]!.message).toMatch(/not valid YAML: .* at line \d+, column \d+/);
  expect(leaked(text())).toEqual([]);
});
