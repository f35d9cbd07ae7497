import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import yaml from 'js-yaml';
import { authTlsWarning, loadConfig, parseConfig } from '../../common/config/config';
import { readStateFile } from '../../agent/sources/file';
import { sanitizeState } from '../../common/haproxy/validate-state';
import { DEFAULT_SERVICE_OPTIONS } from '../../common/config/config';
import { parseServiceConfig } from '../../controlplane/service-config';

const examples = path.join(__dirname, '..', '..', 'deploy', 'examples');

describe('deploy/examples stay in step with the code', () => {
  test('the original ProxyMgr example loads unchanged', () => {
    const c = loadConfig(path.join(examples, 'proxymgr.yml'));
    expect(c.haproxy.configPath).toBe('/etc/haproxy/haproxy.cfg');
    expect(c.haproxy.socketPath).toBe('/var/run/haproxy/stats.sock');
    expect(c.serviceConfig).toEqual({ type: 'zookeeper', servers: 'localhost:2181', path: '/service_config' });
  });

  test.each(['controlplane.yml', 'agent.yml'])('%s loads', (name) => {
    expect(() => loadConfig(path.join(examples, name))).not.toThrow();
  });

  test('controlplane.yml: roles for agents (as their own DNS SAN), operators and viewers', () => {
    const c = loadConfig(path.join(examples, 'controlplane.yml'));
    expect(c.auth?.clients.map((x) => [x.name, x.roles.join(), x.nodeIds.join()])).toEqual([
      ['agents', 'agent', '{san_dns}'],
      ['operators', 'operator', ''],
      ['dashboards', 'viewer', ''],
    ]);
    expect(authTlsWarning(c.auth, c.controlplane.tls, c.file, 'controlplane.tls')).toBeUndefined();
  });

  test('controlplane.yml: the rollout policy is read', () => {
    const c = loadConfig(path.join(examples, 'controlplane.yml'));
    expect(c.rollout).toMatchObject({
      bakeMs: 60000,
      maxNacks: 0,
      autoRollback: true,
      zkPath: '/proxymgr',
      zookeeper: 'zk1:2181,zk2:2181,zk3:2181',
    });
    expect(c.rollout!.waves).toEqual([
      { kind: 'count', count: 1 },
      { kind: 'share', share: 0.1 },
      { kind: 'share', share: 0.5 },
      { kind: 'share', share: 1 },
    ]);
    expect(c.rollout!.preflight).toEqual({ enabled: true, maxFailures: 0, timeoutMs: 30000 });
    expect(c.rollout!.gate).toEqual({
      enabled: true,
      minRequests: 100,
      onInsufficientTraffic: 'pass',
      sampleMs: 2000,
      baselineMs: 60000,
      falseHaltRate: 0.01,
      thresholds: { http_5xx: 0.05, errors: 0.05, retries: 0.1, servers_down: 0.2, queue: 10, rtime: 100 },
    });
  });

  test('every cert entry takes node ids and labels only from certificate fields it matches on', () => {
    const k8s = readFileSync(path.join(__dirname, '..', '..', 'deploy', 'k8s', 'proxymgr.yaml'), 'utf8');
    const cm = (yaml.loadAll(k8s) as { kind: string; data?: Record<string, string> }[]).find(
      (d) => d.kind === 'ConfigMap',
    )!;
    const configs = [
      loadConfig(path.join(examples, 'controlplane.yml')),
      ...Object.entries(cm.data!).map(([name, text]) => parseConfig(text, name)),
    ];
    const field = { cn: 'cn', san_dns: 'sanDns', san_uri: 'sanUri' } as const;
    let checked = 0;
    for (const c of configs) {
      for (const client of c.auth?.clients ?? []) {
        if (client.match.kind !== 'cert') continue;
        const patterns = [...client.nodeIds, ...Object.values(client.labels ?? {}).flat()];
        for (const p of patterns)
          for (const [, name] of p.matchAll(/\{(cn|san_dns|san_uri)\}/g)) {
            checked++;
            expect([client.name, name, client.match[field[name as keyof typeof field]]]).toEqual([
              client.name,
              name,
              expect.any(String),
            ]);
          }
      }
    }
    expect(checked).toBeGreaterThan(0);
    // And an agent of the example fleet says hello with labels its entry allows.
    const cp = configs[0]!;
    const agent = loadConfig(path.join(examples, 'agent.yml'));
    const rules = cp.auth!.clients.find((x) => x.name === 'agents')!.labels!;
    for (const [k, v] of Object.entries(agent.agent.labels))
      expect([k, rules[k]?.some((p) => new RegExp(`^${p.split('*').join('.*')}$`).test(v))]).toEqual([k, true]);
  });

  test('agent.yml: control planes, labels and TLS are read', () => {
    const c = loadConfig(path.join(examples, 'agent.yml'));
    expect(c.agent.controlplanes).toEqual(['cp1.internal:7000', 'cp2.internal:7000']);
    expect(c.agent.labels).toEqual({ zone: 'eu-west-1a', role: 'web' });
    expect(c.agent.tls?.cert).toBe('/etc/proxymgr/tls/agent.crt');
  });

  test('state.yml is a clean desired state', async () => {
    const s = await readStateFile(path.join(examples, 'state.yml'));
    expect(s.services.map((x) => x.name)).toEqual(['web', 'db']);
    expect(s.services[0]!.servers[1]!.weight).toBe(2);
    expect(sanitizeState(s).problems).toEqual([]);
  });

  test('k8s: the control plane runs as a non-root user without any capability, and can read its tokens', () => {
    const text = readFileSync(path.join(__dirname, '..', '..', 'deploy', 'k8s', 'proxymgr.yaml'), 'utf8');
    const docs = yaml.loadAll(text) as {
      kind: string;
      metadata: { name: string };
      spec: { template: { spec: Record<string, unknown> } };
    }[];
    const pod = docs.find((d) => d.kind === 'Deployment' && d.metadata.name === 'proxymgr-controlplane')!.spec.template
      .spec as {
      securityContext: { runAsNonRoot: boolean; runAsUser: number; fsGroup: number };
      containers: { securityContext: { allowPrivilegeEscalation: boolean; capabilities: { drop: string[] } } }[];
      volumes: { name: string; secret?: object }[];
    };
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true });
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(pod.containers[0]!.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
    });
    // Secret files belong to root with the pod's fsGroup as group: the mode must let that group read them. (Kubernetes
    // reads a leading 0 as octal, js-yaml as decimal: compare the text.)
    expect(pod.volumes.find((v) => v.name === 'tokens')!.secret).toBeDefined();
    expect(text).toMatch(/\{name: tokens, secret: \{secretName: proxymgr-tokens, defaultMode: 0440\}\}/);
  });

  test('the k8s configmap holds configs that load', () => {
    const text = readFileSync(path.join(__dirname, '..', '..', 'deploy', 'k8s', 'proxymgr.yaml'), 'utf8');
    const docs = yaml.loadAll(text) as { kind: string; data?: Record<string, string> }[];
    const cm = docs.find((d) => d.kind === 'ConfigMap')!;
    for (const [name, text] of Object.entries(cm.data!)) expect(() => parseConfig(text, name)).not.toThrow();
  });

  test('every service config example parses (the traffic-management one with all four options)', () => {
    const dir = path.join(examples, 'service_config');
    for (const f of readdirSync(dir)) {
      const text = readFileSync(path.join(dir, f), 'utf8');
      const c = parseServiceConfig(
        { name: f.replace(/\.(json|yml)$/, ''), text, origin: f, format: f.endsWith('.json') ? 'json' : 'yaml' },
        { ...DEFAULT_SERVICE_OPTIONS, fileDirs: ['/etc/proxymgr'], bindLoopback: true }, // as deploy/examples/controlplane.yml
      );
      if (f === 'api.json') {
        expect(c).toMatchObject({
          drainTimeoutMs: 60000,
          zoneLabel: 'zone',
          canary: { labels: { canary: 'true' }, share: 0.05 },
        });
        expect(c.serverOptions).toContain('slowstart 30000ms');
      }
    }
  });

  test('every example file is covered here', () => {
    expect(
      readdirSync(examples)
        .filter((f) => f.endsWith('.yml'))
        .sort(),
    ).toEqual(['agent.yml', 'controlplane.yml', 'proxymgr.yml', 'state.yml']);
  });
});

/** `Key=value` lines of a systemd unit (last one wins, as systemd reads them; comments dropped). */
function unitSettings(name: string): Map<string, string> {
  const text = readFileSync(path.join(__dirname, '..', '..', 'deploy', 'systemd', name), 'utf8');
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) out.set(m[1]!, m[2]!.trim());
  }
  return out;
}

describe('deploy/systemd runs with least privilege', () => {
  test('the agent: its own user, CAP_NET_BIND_SERVICE as its only capability, owner-only state, read-only system', () => {
    const u = unitSettings('proxymgr-agent.service');
    expect(u.get('User')).toBe('proxymgr');
    expect(u.get('Group')).toBe('proxymgr');
    expect(u.get('AmbientCapabilities')).toBe('CAP_NET_BIND_SERVICE');
    expect(u.get('CapabilityBoundingSet')).toBe('CAP_NET_BIND_SERVICE');
    expect(u.get('NoNewPrivileges')).toBe('yes');
    expect(u.get('StateDirectoryMode')).toBe('0700');
    expect(u.get('RuntimeDirectoryMode')).toBe('0700');
    expect(u.get('ProtectSystem')).toBe('strict');
    expect(u.get('ProtectHome')).toBe('yes');
    expect(u.get('PrivateTmp')).toBe('yes');
    // HAProxy must outlive the agent across a restart (the agent stops it on a stop); V8's JIT needs W+X memory.
    expect(u.get('KillMode')).toBe('process');
    expect(u.get('RuntimeDirectoryPreserve')).toBe('yes');
    expect(u.has('MemoryDenyWriteExecute')).toBe(false);
    expect(u.has('PrivateUsers')).toBe(false); // capabilities in a user namespace do not bind host ports
  });

  test("agent.yml keeps every file the agent writes in the unit's writable directories, and names HAProxy's user", () => {
    const u = unitSettings('proxymgr-agent.service');
    const c = loadConfig(path.join(examples, 'agent.yml'));
    expect(c.agent.stateDir).toBe(`/var/lib/${u.get('StateDirectory')}`);
    expect(path.dirname(c.haproxy.configPath)).toBe(c.agent.stateDir);
    expect(path.dirname(c.haproxy.socketPath)).toBe(`/run/${u.get('RuntimeDirectory')}`);
    expect(u.has('ReadWritePaths')).toBe(false); // nothing else needs to be writable
    expect(c.haproxy).toMatchObject({ user: 'haproxy', group: 'haproxy', userConfigured: true });
  });

  test('ExecStop: only a stop job stops (SIGTERM), a restart or anything else hands over (SIGUSR2); ExecStopPost ends a leftover HAProxy only on a stop', async () => {
    const u = unitSettings('proxymgr-agent.service');
    const script = (key: string) => /^\/bin\/sh -c '(.*)'$/.exec(u.get(key)!)![1]!;
    const tmp = mkdtempSync(path.join(tmpdir(), 'proxymgr-unit-'));
    try {
      // A fake systemctl that lists the given job, and a fake agent that records the signal it gets.
      const run = async (job: string) => {
        writeFileSync(
          path.join(tmp, 'systemctl'),
          `#!/bin/sh\n[ -n "${job}" ] && echo "42 proxymgr-agent.service ${job} running"\nexit 0\n`,
          { mode: 0o755 },
        );
        const stopScript = script('ExecStop').split('%n').join('proxymgr-agent.service');
        const got = path.join(tmp, 'got');
        rmSync(got, { force: true });
        const agent = spawn('/bin/sh', [
          '-c',
          `trap 'echo USR2 > ${got}; exit 0' USR2; trap 'echo TERM > ${got}; exit 0' TERM; while :; do sleep 0.05; done`,
        ]);
        await new Promise((r) => setTimeout(r, 200));
        const agentExit = new Promise((r) => agent.once('exit', r));
        // Asynchronously: the fake agent must be reaped (as systemd reaps the real one) for `kill -0` to fail.
        const stop = spawn('/bin/sh', ['-c', stopScript], {
          env: { PATH: `${tmp}:/usr/bin:/bin`, MAINPID: String(agent.pid) },
        });
        expect(await new Promise((r) => stop.once('exit', r))).toBe(0); // returns only once the agent is gone
        expect(await agentExit).toBe(0);
        return readFileSync(got, 'utf8').trim();
      };
      expect(await run('restart')).toBe('USR2');
      expect(await run('try-restart')).toBe('USR2');
      expect(await run('')).toBe('USR2'); // no job: not a stop
      expect(await run('stop')).toBe('TERM');
      // ExecStopPost ends HAProxy only for a stop job (after a crash, Restart=always's next agent takes it over),
      // whether haproxy.path is a bare name or absolute (the example's /usr/sbin/haproxy), and nothing else.
      const stopPost = async (job: string, argv0: string) => {
        writeFileSync(
          path.join(tmp, 'systemctl'),
          `#!/bin/sh\n[ -n "${job}" ] && echo "42 proxymgr-agent.service ${job} running"\nexit 0\n`,
          { mode: 0o755 },
        );
        const haproxy = spawn('/bin/sh', ['-c', 'while :; do sleep 0.05; done', '-f', '/x/haproxy.cfg'], { argv0 });
        mkdirSync(path.join(tmp, 'proxymgr'), { recursive: true });
        writeFileSync(path.join(tmp, 'proxymgr', 'haproxy.pid'), `${haproxy.pid}\n`);
        const exited = new Promise<NodeJS.Signals | null>((r) => haproxy.once('exit', (_code, sig) => r(sig)));
        const post = script('ExecStopPost').split('%n').join('proxymgr-agent.service').split('%S').join(tmp);
        const done = spawn('/bin/sh', ['-c', post], { env: { PATH: `${tmp}:/usr/bin:/bin` } });
        expect(await new Promise((r) => done.once('exit', r))).toBe(0);
        const sig = await Promise.race([exited, new Promise((r) => setTimeout(() => r('alive'), 500))]);
        haproxy.kill('SIGKILL');
        return sig;
      };
      expect(await stopPost('stop', '/usr/sbin/haproxy')).toBe('SIGTERM');
      expect(await stopPost('stop', 'haproxy')).toBe('SIGTERM');
      expect(await stopPost('restart', '/usr/sbin/haproxy')).toBe('alive');
      expect(await stopPost('stop', '/usr/bin/not-haproxy')).toBe('alive'); // a reused pid is left alone
      expect(u.get('SystemCallFilter')).toBe('pidfd_open pidfd_getfd'); // the takeover's syscalls (in @debug)
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('the control plane: a dynamic user without any capability', () => {
    const u = unitSettings('proxymgr-controlplane.service');
    expect(u.get('DynamicUser')).toBe('yes');
    expect(u.get('CapabilityBoundingSet')).toBe('');
    expect(u.get('AmbientCapabilities')).toBe('');
    expect(u.get('NoNewPrivileges')).toBe('yes');
    expect(u.get('ProtectSystem')).toBe('strict');
    expect(u.has('MemoryDenyWriteExecute')).toBe(false);
  });
});
