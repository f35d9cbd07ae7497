import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ControlPlaneAdminClient, ListServicesResponse } from '../../common/gen/proxymgr/v1/admin';
import { Backend, startBackends } from '../../testkit/backends';
import { CliProcess, startCli, stopAllCli } from '../../testkit/cli';
import { eventually, freePort, get, pidsListenOn, sleep, tally, tempDir } from '../../testkit/net';
import { findHaproxies } from '../../agent/haproxy/orphan';
import { startZooKeeper, ZooKeeper } from '../../testkit/zookeeper';
import { connectZk } from '../../testkit/zk-client';

jest.setTimeout(180_000);

/**
 * Service configs cannot take over HAProxy, end to end: a real ZooKeeper, the built control plane, a real agent with
 * its real HAProxy, real backends. An honest service carries traffic throughout; service configs written to
 * ZooKeeper try to open a section with an admin stats socket, bind a port, open a TCP stats socket, run a program,
 * read files and slip in server options, and `file` watchers try to read outside controlplane.file_watcher_dirs.
 * Each is refused with an error naming the service (ListServices, the log); nothing of it reaches the agent's
 * haproxy.cfg, no port it names listens, nothing of a file outside the listed directory shows up anywhere, and the
 * honest service never misses a request. A service that was good and turns hostile keeps running its previous version.
 */
describe('hostile service configs in ZooKeeper → refused by name, nothing reaches HAProxy, the rest keeps serving', () => {
  let zk: ZooKeeper;
  let zkc: Awaited<ReturnType<typeof connectZk>>;
  let backends: Backend[];
  let tmp: ReturnType<typeof tempDir>;
  let cp: CliProcess;
  let cpPort: number;
  let webPort: number;
  let web2Port: number;
  let haproxyCfg: string;
  /** Ports attacks try to open: none may ever listen. */
  const attackPorts: number[] = [];
  let agentPid: number | undefined;
  /** controlplane.file_watcher_dirs: the only directory `file` watchers may read under. */
  let allowedDir: string;
  /** A "private key" outside allowedDir: file watchers must never read it, nothing of it may show up anywhere. */
  let secretFile: string;
  const SECRET_LINES = [
    '-----BEGIN PRIVATE KEY-----',
    'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj',
    'root:$6$pr0xymgrS3cret$Zq9wQx:19000:0:99999:7:::',
    'admin:hunter2-b4ttery-st4ple',
    '-----END PRIVATE KEY-----',
  ];
  /** Pieces (6+ characters) of the secret found in `text`. */
  const leaked = (text: string) =>
    SECRET_LINES.flatMap((l) => l.split(/[\s:$]+/)).filter((p) => p.length >= 6 && p !== 'PRIVATE' && text.includes(p));
  /** Everything an operator (or an attacker reading the admin API or logs) sees: ListServices, the log, haproxy.cfg. */
  const everywhere = async () =>
    [JSON.stringify(await listServices()), cp.logs(), readFileSync(haproxyCfg, 'utf8')].join('\n');
  /**
   * Whether this test's agent or HAProxy listens on `port`. The attack ports were free when picked, but a test file
   * running alongside may take one later: only our own processes count.
   */
  const oursListen = (port: number) =>
    pidsListenOn([...findHaproxies(haproxyCfg), ...(agentPid ? [agentPid] : [])], port);
  const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  /** The honest service, probed every 20 ms on a fresh connection for the whole run. */
  const probe = { ok: 0, failed: [] as string[], running: true, done: Promise.resolve() };

  const json = (v: unknown) => JSON.stringify(v);
  const hostNode = (b: Backend, extra: object = {}) => json({ address: '127.0.0.1', port: b.port, ...extra });
  const serviceConfig = (name: string, port: number, extra: object = {}) =>
    json({
      type: 'zookeeper',
      server: zk.connectString,
      path: `/services/${name}`,
      port,
      listen_options: ['mode http'],
      server_options: ['check inter 2000'],
      ...extra,
    });
  const listServices = () =>
    new Promise<ListServicesResponse>((resolve, reject) => {
      const c = new ControlPlaneAdminClient(`127.0.0.1:${cpPort}`, grpc.credentials.createInsecure());
      c.listServices({}, (err, res) => {
        c.close();
        if (err) reject(err);
        else resolve(res);
      });
    });
  const served = async (port: number) => [...(await tally(port, 4)).keys()].sort().join(',');
  /** Waits until ListServices reports `message` for `service`; returns that error text. */
  const refusal = async (service: string, message: RegExp): Promise<string> => {
    let last = '';
    const seen = await eventually(async () => {
      last = (await listServices()).errors[service] ?? '';
      return message.test(last);
    }, 15_000);
    if (!seen)
      throw new Error(
        `no error matching ${message} for service ${service}; ListServices says: ${JSON.stringify(last)}`,
      );
    return last;
  };

  beforeAll(async () => {
    [zk, backends] = await Promise.all([startZooKeeper(), startBackends(['a', 'b', 'c'])]);
    zkc = await connectZk(zk.connectString);
    tmp = tempDir('proxymgr-attacks-');
    [cpPort, webPort, web2Port] = [await freePort(), await freePort(), await freePort()];
    for (let i = 0; i < 8; i++) attackPorts.push(await freePort());
    allowedDir = path.join(tmp.dir, 'hosts');
    mkdirSync(allowedDir);
    mkdirSync(path.join(tmp.dir, 'secret'));
    secretFile = path.join(tmp.dir, 'secret', 'tls.key');
    writeFileSync(secretFile, SECRET_LINES.join('\n') + '\n');
    await zkc.put(
      '/service_config/web',
      serviceConfig('web', webPort, {
        listen_options: [
          'mode http',
          'balance roundrobin',
          'option httpchk GET /',
          'http-response set-header X-Via proxymgr',
        ],
      }),
    );
    await zkc.put('/services/web/a', hostNode(backends[0]!));
    await zkc.put('/services/web/b', hostNode(backends[1]!));
    await zkc.put('/service_config/web2', serviceConfig('web2', web2Port));
    await zkc.put('/services/web2/c', hostNode(backends[2]!));
    const cpConfig = path.join(tmp.dir, 'cp.yml');
    writeFileSync(
      cpConfig,
      `haproxy:
  defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]
service_config:
  type: zookeeper
  servers: ${zk.connectString}
  path: /service_config
controlplane:
  listen: 127.0.0.1:${cpPort}
  file_watcher_dirs: ["${allowedDir}"]
  file_poll_ms: 200
`,
    );
    const dir = path.join(tmp.dir, 'agent');
    mkdirSync(dir);
    haproxyCfg = path.join(dir, 'haproxy.cfg');
    const agentConfig = path.join(dir, 'proxymgr.yml');
    writeFileSync(
      agentConfig,
      `haproxy:
  config_path: ${haproxyCfg}
  socket_path: ${dir}/haproxy.sock
agent:
  state_dir: ${dir}
  node_id: agent0
  controlplanes: ["127.0.0.1:${cpPort}"]
  admin_listen: 127.0.0.1:${await freePort()}
  bind_address: 127.0.0.1
`,
    );
    cp = startCli(['controlplane', '--config', cpConfig]);
    expect(await cp.waitForLog(/control plane started/)).toBe(true);
    agentPid = startCli(['agent', '--config', agentConfig]).proc.pid; // stopped by stopAllCli in afterAll
    expect(
      await eventually(async () => (await served(webPort)) === 'a,b' && (await served(web2Port)) === 'c', 20_000),
    ).toBe(true);
    probe.done = (async () => {
      while (probe.running) {
        try {
          const r = await get(webPort);
          if (r.status === 200) probe.ok++;
          else probe.failed.push(`status ${r.status}`);
        } catch (err) {
          probe.failed.push((err as Error).message);
        }
        await sleep(20);
      }
    })();
  });

  afterAll(async () => {
    probe.running = false;
    await probe.done;
    const hung = await stopAllCli();
    zkc?.close();
    await zk?.stop();
    await Promise.all((backends ?? []).map((b) => b.close()));
    tmp?.cleanup();
    expect(hung).toEqual([]);
  });

  const attacks: [string, (p: number) => object, RegExp][] = [
    [
      'a new section with an admin stats socket',
      (p) => ({ listen_options: ['mode http', 'global', `stats socket ipv4@127.0.0.1:${p} level admin`, 'listen x'] }),
      /listen_options\[1\]: "global" opens a new section/,
    ],
    [
      'a bind',
      (p) => ({ listen_options: ['mode http', `bind 127.0.0.1:${p}`] }),
      /listen_options\[1\]: "bind" is not allowed in a listen section: the agent owns every listening socket/,
    ],
    [
      'a TCP stats socket',
      (p) => ({ listen_options: [`stats socket ipv4@127.0.0.1:${p} level admin`] }),
      /listen_options\[0\]: "stats socket" is not allowed in a listen section/,
    ],
    [
      'option external-check',
      () => ({ listen_options: ['mode http', 'option external-check', 'external-check command /bin/touch'] }),
      /listen_options\[1\]: "option external-check" is not allowed .*runs a program/,
    ],
    [
      'external-check command',
      () => ({ listen_options: ['external-check command /bin/touch'] }),
      /listen_options\[0\]: "external-check" is not allowed .*runs a program/,
    ],
    [
      'errorfile /etc/passwd',
      () => ({ listen_options: ['mode http', 'errorfile 503 /etc/passwd'] }),
      /listen_options\[1\]: errorfile "\/etc\/passwd": file outside service_options.file_dirs \(none listed\)/,
    ],
    [
      'http-request return file /etc/shadow',
      () => ({ listen_options: ['http-request return status 200 file /etc/shadow'] }),
      /listen_options\[0\]: file "\/etc\/shadow": file outside/,
    ],
    [
      'a server option reading a file',
      () => ({ server_options: ['check', 'crt /etc/shadow'] }),
      /server_options\[1\]: crt "\/etc\/shadow": file outside/,
    ],
    [
      'an unknown server option',
      (p) => ({ server_options: [`check inter 1000 global stats socket ipv4@127.0.0.1:${p}`] }),
      /server_options\[0\]: "global" is not a server option/,
    ],
  ];

  test.each(attacks.map(([what, make, message], i) => [what, make, message, i] as const))(
    '%s: refused by name, nothing of it applied',
    async (_what, make, message, i) => {
      const name = `evil${i}`;
      const attackPort = attackPorts[i % attackPorts.length]!;
      const ownPort = await freePort();
      await zkc.put(`/services/${name}/a`, hostNode(backends[0]!));
      await zkc.put(`/service_config/${name}`, serviceConfig(name, ownPort, make(attackPort)));
      const error = await refusal(name, message);
      expect(error).toMatch(/the service is not served until this is fixed/);
      expect(error.length).toBeLessThan(600);
      expect(await cp.waitForLog(new RegExp(`"service":"${name}".*invalid service config`))).toBe(true);
      expect((await listServices()).services.map((s) => s.name)).not.toContain(name);
      expect(oursListen(attackPort)).toBe(false);
      expect(oursListen(ownPort)).toBe(false);
      expect(readFileSync(haproxyCfg, 'utf8')).not.toContain(name);
      expect(await served(webPort)).toBe('a,b');
    },
  );

  const fileWatcher = (file: string, port: number) =>
    json({ type: 'file', file, port, listen_options: ['mode http'], server_options: ['check inter 2000'] });

  test('positive control: a file watcher inside controlplane.file_watcher_dirs is served; lines that are not host:port are named by file:line, never quoted', async () => {
    const name = 'filehosts';
    const file = path.join(allowedDir, 'filehosts.txt');
    // the secret's lines inside the allowed directory: read, skipped by line number, quoted nowhere
    writeFileSync(file, ['# hosts of filehosts', `127.0.0.1:${backends[2]!.port}`, ...SECRET_LINES].join('\n') + '\n');
    const port = await freePort();
    await zkc.put(`/service_config/${name}`, fileWatcher(file, port));
    expect(await eventually(async () => (await served(port)) === 'c', 15_000)).toBe(true);
    expect((await listServices()).services.find((s) => s.name === name)?.servers.length).toBe(1);
    const error = await refusal(name, new RegExp(`${escapeRe(file)}:3: line skipped`));
    for (const n of [3, 4, 5, 6, 7]) expect(error).toContain(`${file}:${n}: line skipped`);
    expect(readFileSync(haproxyCfg, 'utf8')).toContain(`listen ${name}`);
    expect(leaked(await everywhere())).toEqual([]);
    expect(await served(webPort)).toBe('a,b');
  });

  const fileAttacks: [string, () => string][] = [
    ['/etc/shadow', () => '/etc/shadow'],
    ['a file outside the listed directory', () => secretFile],
    ['a ".." escape from inside the listed directory', () => `${allowedDir}/../secret/tls.key`],
  ];

  /** A file watcher at `file` written to ZooKeeper: refused with `why`, by name, with nothing of the file anywhere. */
  const fileWatcherRefused = async (name: string, file: string, why: string) => {
    const ownPort = await freePort();
    await zkc.put(`/service_config/${name}`, fileWatcher(file, ownPort));
    const error = await refusal(
      name,
      new RegExp(`service ${name}: file watcher refused for ${escapeRe(file)}: ${why} \\(${escapeRe(allowedDir)}\\)`),
    );
    expect(error).toMatch(/the service is not served until this is fixed/);
    expect(error.length).toBeLessThan(600);
    expect(await cp.waitForLog(new RegExp(`"service":"${name}".*invalid service config`))).toBe(true);
    expect((await listServices()).services.map((s) => s.name)).not.toContain(name);
    expect(oursListen(ownPort)).toBe(false);
    expect(readFileSync(haproxyCfg, 'utf8')).not.toContain(name);
    expect(leaked(await everywhere())).toEqual([]);
    expect(await served(webPort)).toBe('a,b');
  };

  test.each(fileAttacks.map(([what, file], i) => [what, file, i] as const))(
    'a file watcher reading %s: refused by name, nothing of the file anywhere',
    async (_what, fileOf, i) =>
      fileWatcherRefused(`evilfile${i}`, fileOf(), 'not under controlplane.file_watcher_dirs'),
  );

  test('a file watcher reading through a symlink from inside the listed directory to a file outside: refused by name, nothing of the file anywhere', async () => {
    const link = path.join(allowedDir, 'linked.txt');
    symlinkSync(secretFile, link);
    // Lexically inside the directory, but its real path is not: refused with the service, like the attacks above.
    await fileWatcherRefused(
      'evilfilelink',
      link,
      'it resolves \\(through a symlink\\) to a path outside controlplane.file_watcher_dirs',
    );
    await zkc.remove('/service_config/evilfilelink');
  });

  test('a hostile per-host option (Nerve haproxy_server_options): that host is left out by name, its service is served without it', async () => {
    const name = 'hostopts';
    await zkc.put(
      `/services/${name}/x`,
      hostNode(backends[0]!, { haproxy_server_options: 'check ca-file /etc/shadow' }),
    );
    await zkc.put(`/services/${name}/y`, hostNode(backends[1]!));
    await zkc.put(`/service_config/${name}`, serviceConfig(name, await freePort()));
    await refusal(
      name,
      /service "hostopts" server "x": options\[0\]: ca-file "\/etc\/shadow": file outside service_options.file_dirs.*this server is left out/,
    );
    expect(
      await eventually(
        async () =>
          (await listServices()).services
            .find((s) => s.name === name)
            ?.servers.map((x) => x.name)
            .join() === 'y',
        10_000,
      ),
    ).toBe(true);
    expect(await eventually(() => readFileSync(haproxyCfg, 'utf8').includes(`listen ${name}`), 10_000)).toBe(true);
    expect(readFileSync(haproxyCfg, 'utf8')).not.toContain('/etc/shadow');
  });

  test('a service that was good and turns hostile keeps its previous version', async () => {
    const before = readFileSync(haproxyCfg, 'utf8');
    expect(before).toContain('listen web2');
    const attackPort = attackPorts[attackPorts.length - 1]!;
    await zkc.put(
      '/service_config/web2',
      serviceConfig('web2', web2Port, {
        listen_options: [
          'mode http',
          `bind 127.0.0.1:${attackPort}`,
          'global',
          'stats socket /tmp/evil.sock level admin',
        ],
      }),
    );
    await refusal('web2', /listen_options\[1\]: "bind" is not allowed.*keeping its previous version/);
    expect(await served(web2Port)).toBe('c');
    // A hostile host under it, judged by the builder: web2 still runs its previous version (host c only).
    await zkc.put('/service_config/web2', serviceConfig('web2', web2Port));
    await zkc.put('/services/web2/z', hostNode(backends[0]!, { haproxy_server_options: ['check', 'namespace other'] }));
    await refusal('web2', /server "z": options\[1\]: "namespace" is not allowed/);
    expect(await served(web2Port)).toBe('c');
    expect((await listServices()).services.find((s) => s.name === 'web2')?.servers.map((s) => s.name)).toEqual(['c']);
    expect(oursListen(attackPort)).toBe(false);
  });

  test('afterwards: a benign change still flows; haproxy.cfg holds nothing of any attack; no attack port listens; the honest service never missed a request', async () => {
    await zkc.put('/services/web/c', hostNode(backends[2]!));
    expect(await eventually(async () => (await served(webPort)) === 'a,b,c', 15_000)).toBe(true);
    const cfg = readFileSync(haproxyCfg, 'utf8');
    for (const marker of [
      'evil',
      'stats socket ipv4@',
      'external-check',
      '/etc/passwd',
      '/etc/shadow',
      'listen x',
      'namespace',
      'crt ',
      'ca-file',
    ])
      expect(cfg).not.toContain(marker);
    // (Comment lines aside: the header and each section's `# listener fd@k address:port`.)
    expect(cfg.match(/^[^\s#].*$/gm)).toEqual([
      'global',
      'defaults',
      'listen filehosts',
      'listen hostopts',
      'listen web',
      'listen web2',
    ]);
    expect(oursListen(webPort)).toBe(true); // the check sees our listeners (so it cannot pass for want of looking)
    for (const p of attackPorts) expect(oursListen(p)).toBe(false);
    expect(leaked(await everywhere())).toEqual([]);
    probe.running = false;
    await probe.done;
    expect(probe.ok).toBeGreaterThan(20);
    expect(probe.failed).toEqual([]);
  });
});
