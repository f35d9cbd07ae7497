/**
 * `npm run bench -- hostile [--seed=N] [--inputs=N]`: a hostile-input campaign against real processes. A
 * control plane (ZooKeeper source, auth on), a second one (file source, rollouts on), an agent streaming from the
 * first and one following a `--state` file, both with real HAProxy, while an honest service carries traffic through
 * both agents. A seeded generator (bench/lib-hostile.ts) throws malformed and malicious inputs at every entry point:
 * service configs in ZooKeeper and in files, host nodes in both formats, desired-state files, AgentStream messages,
 * admin requests and proxymgr.yml documents. After every batch both haproxy.cfg files are scanned for anything
 * an attack tried to inject, and the processes are checked for crashes.
 *
 * Last line: {"inputs","rejected","accepted","crashes","injected_lines_rendered","honest_failed_requests",...}.
 * Targets: crashes 0, injected_lines_rendered 0, honest_failed_requests 0, inputs ≥ 2,000.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ControlPlaneAdminClient, ListServicesResponse } from '../common/gen/proxymgr/v1/admin';
import { RolloutClient } from '../common/gen/proxymgr/v1/rollout';
import { AgentMessage, AgentStreamClient, ControlMessage } from '../common/gen/proxymgr/v1/stream';
import { parseConfig } from '../common/config';
import { ProxyMgrError } from '../common/errors';
import { freePort, listening, sleep, tempDir } from '../test/helpers/net';
import { connectZk } from '../test/helpers/zk-client';
import { startZooKeeper } from '../test/helpers/zookeeper';
import { intArg, pickIndex, say, seededRandom } from './lib-common';
import { CLI, CliChild, onInterruptStopChildren, startCli } from './lib-grpc';
import {
  attackLines,
  configText,
  FORBIDDEN_MARKERS,
  hostNodeText,
  oddName,
  picker,
  serviceConfigText,
  stateFileText,
} from './lib-hostile';
import { startTraffic } from './lib-traffic';

interface Tally {
  inputs: number;
  rejected: number;
  accepted: number;
  crashes: number;
}

const SECTION_WORDS = new Set([
  'global',
  'defaults',
  'frontend',
  'backend',
  'listen',
  'peers',
  'resolvers',
  'userlist',
  'program',
  'cache',
  'ring',
  'http-errors',
  'mailers',
]);

export async function main(args: string[]): Promise<object> {
  const seed = intArg(args, 'seed', 7);
  const target = intArg(args, 'inputs', 2400);
  const rand = seededRandom(seed);
  const pick = picker(rand);
  const tmp = tempDir('proxymgr-hostile-');
  const zk = await startZooKeeper();
  const zkc = await connectZk(zk.connectString);
  const traffic = await startTraffic([{ name: 'honest', host: '127.0.0.1' }]);
  const backend = traffic.backends[0]!;
  const children: CliChild[] = [];
  const stopInterrupt = onInterruptStopChildren(async () => {
    await zk.stop();
  });
  const tokens: Record<string, string> = {};
  for (const name of ['agent', 'ops', 'view', 'attacker']) {
    tokens[name] = `${name}-${seed}-${'0123456789abcdef'.repeat(2)}`;
    writeFileSync(path.join(tmp.dir, `${name}.token`), tokens[name]!, { mode: 0o600 });
  }
  const auth = `auth:
  clients:
    - {name: honest-agent, token_file: ${tmp.dir}/agent.token, roles: [agent], node_ids: [honest-a]}
    - {name: attacker-agent, token_file: ${tmp.dir}/attacker.token, roles: [agent], node_ids: ["attacker-*"]}
    - {name: ops, token_file: ${tmp.dir}/ops.token, roles: [operator]}
    - {name: viewer, token_file: ${tmp.dir}/view.token, roles: [viewer]}
`;
  const haproxyYaml =
    'haproxy: {defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]}';
  const [honestA, honestB, attackPort, cp1Port, cp2Port, zkwebPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const used = new Set([honestA, honestB, attackPort, cp1Port, cp2Port, zkwebPort, backend.port, zk.port]);
  const free = () => {
    for (;;) {
      const p = 20_000 + pickIndex(rand, 40_000);
      if (!used.has(p)) return p;
    }
  };
  const portsFor = { free, honest: honestA, attack: attackPort };
  const honestConfig = JSON.stringify({
    type: 'static',
    port: honestA,
    listen_options: ['mode http', 'balance roundrobin'],
    hosts: [`127.0.0.1:${backend.port}`],
  });
  await zkc.put('/service_config/honest', honestConfig);
  await zkc.put(
    '/service_config/zkweb',
    JSON.stringify({ type: 'zookeeper', path: '/services/zkweb', port: zkwebPort, listen_options: ['mode http'] }),
  );
  await zkc.put('/services/zkweb/base', JSON.stringify({ address: '127.0.0.1', port: backend.port }));
  const fileConfigs = path.join(tmp.dir, 'file-configs');
  mkdirSync(fileConfigs);

  const write = (name: string, text: string) => {
    const f = path.join(tmp.dir, name);
    writeFileSync(f, text);
    return f;
  };
  const cp1 = startCli(
    [
      'controlplane',
      '--config',
      write(
        'cp1.yml',
        `${haproxyYaml}\nservice_config: {type: zookeeper, servers: "${zk.connectString}", path: /service_config}\ncontrolplane: {listen: "127.0.0.1:${cp1Port}"}\n${auth}`,
      ),
    ],
    path.join(tmp.dir, 'cp1.log'),
  );
  const cp2 = startCli(
    [
      'controlplane',
      '--config',
      write(
        'cp2.yml',
        `${haproxyYaml}\nservice_config: {type: file, path: ${fileConfigs}}\ncontrolplane: {listen: "127.0.0.1:${cp2Port}"}\nrollout: {zookeeper: "${zk.connectString}", zk_path: /hostile-cp2, replica_id: cp2, bake_ms: 1000}\n${auth}`,
      ),
    ],
    path.join(tmp.dir, 'cp2.log'),
  );
  children.push(cp1, cp2);
  await cp1.waitForLog(/control plane started/);
  await cp2.waitForLog(/control plane started/);
  const agentYaml = (name: string, extra: string) => {
    const dir = path.join(tmp.dir, name);
    mkdirSync(dir);
    return write(
      `${name}.yml`,
      `${haproxyYaml.slice(0, -1)}, config_path: ${dir}/haproxy.cfg, socket_path: ${dir}/haproxy.sock}\nagent: {state_dir: ${dir}, bind_address: 127.0.0.1, admin_listen: "", ${extra}}\n`,
    );
  };
  const cfgA = path.join(tmp.dir, 'agent-a', 'haproxy.cfg');
  const cfgB = path.join(tmp.dir, 'agent-b', 'haproxy.cfg');
  const agentA = startCli(
    [
      'agent',
      '--config',
      agentYaml(
        'agent-a',
        `node_id: honest-a, controlplanes: ["127.0.0.1:${cp1Port}"], token_file: ${tmp.dir}/agent.token`,
      ),
    ],
    path.join(tmp.dir, 'agent-a.log'),
  );
  const honestService = {
    name: 'honest',
    port: honestB,
    bind_address: '127.0.0.1',
    listen_options: ['mode http'],
    servers: [{ name: 'b1', address: '127.0.0.1', port: backend.port }],
  };
  const stateFile = write('state.json', JSON.stringify({ services: [honestService] }));
  const agentB = startCli(
    ['agent', '--config', agentYaml('agent-b', 'node_id: honest-b'), '--state', stateFile],
    path.join(tmp.dir, 'agent-b.log'),
  );
  children.push(agentA, agentB);
  await waitForPort(honestA);
  await waitForPort(honestB);
  say(
    `hostile: honest service on :${honestA} (agent A, control plane) and :${honestB} (agent B, state file); seed ${seed}`,
  );
  await traffic.startLoad([honestA, honestB], 4);

  const injected = new Set<string>();
  const scan = () => {
    for (const file of [cfgA, cfgB]) {
      let text = '';
      try {
        text = readFileSync(file, 'utf8');
      } catch {
        continue;
      }
      let statsSockets = 0;
      let sections = 0;
      for (const full of text.split('\n')) {
        // HAProxy ignores everything after an unquoted, unescaped "#": a comment is not an injected line.
        const raw = full.replace(/(^|[^\\])#.*$/, '$1').trimEnd();
        const line = raw.trim();
        const word = line.split(/\s+/)[0] ?? '';
        // A server's name comes from a host node, sanitized to [A-Za-z0-9_.:-] ("evil;listen" → "evil_listen"): it
        // may carry a marker harmlessly; everything after it may not.
        const parts = line.split(/\s+/);
        const judged = word === 'server' && /^[A-Za-z0-9_.:-]+$/.test(parts[1] ?? '') ? parts.slice(2).join(' ') : line;
        const bad =
          FORBIDDEN_MARKERS.some((m) => judged.includes(m)) ||
          (word === 'bind' && !/^bind fd@\d+$/.test(line)) ||
          (line.startsWith('stats socket') && ++statsSockets > 1) ||
          (SECTION_WORDS.has(word) && raw !== line) || // a section keyword inside a section
          (SECTION_WORDS.has(word) && !['global', 'defaults', 'listen'].includes(word)) ||
          ((word === 'global' || word === 'defaults') && ++sections > 2);
        if (bad) injected.add(`${path.basename(path.dirname(file))}: ${line.slice(0, 120)}`);
      }
    }
  };
  const crashed = () =>
    children
      .filter((c) => c.proc.exitCode !== null || c.proc.signalCode !== null)
      .map((c) => `${path.basename(c.logFile)} exited ${c.proc.exitCode ?? c.proc.signalCode}`);

  const rpcOpts = { 'grpc.max_receive_message_length': 64 * 1024 * 1024 };
  const admin1 = new ControlPlaneAdminClient(`127.0.0.1:${cp1Port}`, grpc.credentials.createInsecure(), rpcOpts);
  const admin2 = new ControlPlaneAdminClient(`127.0.0.1:${cp2Port}`, grpc.credentials.createInsecure(), rpcOpts);
  const rollout2 = new RolloutClient(`127.0.0.1:${cp2Port}`, grpc.credentials.createInsecure(), rpcOpts);
  const md = (tok?: string) => {
    const m = new grpc.Metadata();
    if (tok !== undefined) m.set('authorization', `Bearer ${tok}`);
    return m;
  };
  const listServices = (c: ControlPlaneAdminClient) =>
    new Promise<ListServicesResponse>((resolve, reject) =>
      c.listServices({}, md(tokens.view), { deadline: Date.now() + 5000 }, (err, res) =>
        err ? reject(err) : resolve(res),
      ),
    );

  const share = (n: number) => Math.round((target * n) / 24);
  const tallies: Record<string, Tally> = {};
  const tally = (name: string) => (tallies[name] ??= { inputs: 0, rejected: 0, accepted: 0, crashes: 0 });
  let namesNotInErrors = 0;

  // 1. Service configs in ZooKeeper, in batches: wait until each is served or reported, then remove the batch.
  {
    const t = tally('zk_service_config');
    const total = share(7);
    for (let i = 0; i < total;) {
      const batch: string[] = [];
      for (let j = 0; j < 25 && i < total; j++, i++) {
        const name = oddName(rand, i);
        t.inputs++;
        try {
          await zkc.put(`/service_config/${name}`, serviceConfigText(rand, i, portsFor));
          batch.push(name);
        } catch {
          t.rejected++; // ZooKeeper itself refused the node name or size
        }
      }
      const verdicts = await settle(() => listServices(admin1), batch);
      scan();
      for (const name of batch) {
        if (verdicts.served.has(name)) t.accepted++;
        else {
          t.rejected++;
          if (!verdicts.errors.has(name)) namesNotInErrors++;
        }
      }
      for (const name of batch) await zkc.remove(`/service_config/${name}`).catch(() => undefined);
      await sleep(50);
    }
    say(`  zk service configs: ${JSON.stringify(t)}`);
  }

  // 2. Service configs in files (second control plane).
  {
    const t = tally('file_service_config');
    const total = share(3);
    for (let i = 0; i < total;) {
      const batch: string[] = [];
      for (let j = 0; j < 25 && i < total; j++, i++) {
        // A file name cannot hold "/" or NUL: both are replaced on purpose.
        // eslint-disable-next-line no-control-regex -- NUL is what this pattern finds
        const unsafe = /[/\u0000]/g;
        const name = oddName(rand, i).replace(unsafe, '_').slice(0, 200);
        t.inputs++;
        const ext = pick(['.json', '.yml', '.yaml', '.json']);
        try {
          writeFileSync(path.join(fileConfigs, name + ext), serviceConfigText(rand, i, portsFor));
          batch.push(name);
        } catch {
          t.rejected++;
        }
      }
      const verdicts = await settle(() => listServices(admin2), batch);
      for (const name of batch) {
        if (verdicts.served.has(name)) t.accepted++;
        else t.rejected++;
      }
      for (const f of readdirSync(fileConfigs)) unlinkSync(path.join(fileConfigs, f));
      await sleep(50);
    }
    say(`  file service configs: ${JSON.stringify(t)}`);
  }

  // 3. Host nodes under a watched path, both formats.
  {
    const t = tally('zk_host');
    const total = share(4);
    for (let i = 0; i < total;) {
      const batch: string[] = [];
      for (let j = 0; j < 40 && i < total; j++, i++) {
        const node = `h${i}`;
        t.inputs++;
        try {
          await zkc.put(`/services/zkweb/${node}`, hostNodeText(rand, portsFor));
          batch.push(node);
        } catch {
          t.rejected++;
        }
      }
      await sleep(400);
      const served = ((await listServices(admin1)).services.find((s) => s.name === 'zkweb')?.servers.length ?? 1) - 1;
      scan();
      t.accepted += Math.min(served, batch.length);
      t.rejected += batch.length - Math.min(served, batch.length);
      for (const node of batch) await zkc.remove(`/services/zkweb/${node}`).catch(() => undefined);
      await sleep(100);
    }
    say(`  host nodes: ${JSON.stringify(t)}`);
  }

  // 4. Desired-state files for agent B: each write is judged from the agent's log lines that follow it.
  {
    const t = tally('state_file');
    const total = share(2);
    for (let i = 0; i < total; i++) {
      t.inputs++;
      const before = agentB.logs().length;
      writeFileSync(stateFile, stateFileText(rand, honestService, portsFor) + `\n${' '.repeat(i % 7)}`);
      let fresh = '';
      for (let k = 0; k < 40; k++) {
        await sleep(25);
        fresh = agentB.logs().slice(before);
        if (/"outcome"|state file rejected|cannot read state file/.test(fresh)) break;
      }
      scan();
      if (/state file rejected|"outcome":"rejected"|"problems":\["/.test(fresh)) t.rejected++;
      else t.accepted++;
    }
    writeFileSync(stateFile, JSON.stringify({ services: [honestService] }));
    say(`  state files: ${JSON.stringify(t)}`);
  }

  // 5. AgentStream messages: odd hellos, impersonation, unknown and replayed nonces, out-of-order ACKs.
  {
    const t = tally('agent_stream');
    const total = share(2);
    const client = new AgentStreamClient(`127.0.0.1:${cp1Port}`, grpc.credentials.createInsecure(), rpcOpts);
    for (let i = 0; i < total; i++) {
      t.inputs++;
      const outcome = await streamScenario(client, pickIndex(rand, 16), i, tokens);
      if (outcome === 'refused') t.rejected++;
      else t.accepted++;
    }
    client.close();
    say(`  agent stream messages: ${JSON.stringify(t)}`);
  }

  // 6. Admin requests with odd arguments and odd credentials.
  {
    const t = tally('admin');
    const total = share(2);
    for (let i = 0; i < total; i++) {
      t.inputs++;
      const tok = pick([
        tokens.ops,
        tokens.ops,
        tokens.view,
        tokens.attacker,
        undefined,
        'x',
        'Bearer',
        '\u00ff'.repeat(10),
      ]);
      const odd = pick(['', 'x', 'a'.repeat(100_000), '\u0000', '../../etc', '"; DROP', String(i)]);
      const call = pickIndex(rand, 7);
      const done = new Promise<boolean>((resolve) => {
        const cb = (err: grpc.ServiceError | null) => resolve(err === null);
        const opts = { deadline: Date.now() + 5000 };
        let m: grpc.Metadata;
        try {
          m = md(tok);
        } catch {
          return resolve(false); // grpc-js refuses the header value itself
        }
        if (call === 0)
          rollout2.setPolicy(
            {
              waves: pick([
                ['0'],
                ['-1'],
                ['101%'],
                ['abc'],
                ['1e309'],
                Array.from({ length: 10_000 }, () => '1'),
                ['1', '100%'],
              ]),
              hasBakeMs: true,
              bakeMs: pick([0, -1, 2 ** 31, 1e12]),
              hasMaxNacks: true,
              maxNacks: pick([0, 1_000_000, -5]),
              hasAutoRollback: false,
              autoRollback: false,
              next: rand() < 0.5,
            },
            m,
            opts,
            cb,
          );
        else if (call === 1)
          rollout2[pick(['pause', 'resume', 'promote', 'abort'] as const)]({ rolloutId: odd }, m, opts, cb);
        else if (call === 2) rollout2.history({ limit: pick([0, 1, 2 ** 31 - 1, 4e9]) }, m, opts, cb);
        else if (call === 3) admin1.getAgentState({ nodeId: odd }, m, opts, cb);
        else if (call === 4) admin2.getAgentState({ nodeId: odd }, m, opts, cb);
        else if (call === 5) admin1.listAgents({}, m, opts, cb);
        else rollout2.status({}, m, opts, cb);
      });
      if (await done) t.accepted++;
      else t.rejected++;
    }
    say(`  admin requests: ${JSON.stringify(t)}`);
  }

  // 7. proxymgr.yml documents: parsed by the real parser in process; a handful also by a real `proxymgr agent`.
  {
    const t = tally('proxymgr_yml');
    const total = target - Object.values(tallies).reduce((n, x) => n + x.inputs, 0);
    const cfgDir = path.join(tmp.dir, 'yml');
    mkdirSync(cfgDir);
    for (let i = 0; i < total; i++) {
      t.inputs++;
      const text = configText(rand, cfgDir);
      const file = path.join(cfgDir, `c${i}.yml`);
      if (i < 12) {
        writeFileSync(file, text);
        const r = spawnSync(
          process.execPath,
          [CLI, 'agent', '--config', file, '--state', path.join(cfgDir, 'missing.json')],
          { encoding: 'utf8', timeout: 5000, env: { ...process.env, PROXYMGR_LOG_LEVEL: 'error' } },
        );
        if (r.signal === 'SIGTERM' || r.status === 0 || r.status === null) {
          t.accepted++; // it started (the timeout stopped it): the document was valid
        } else if (/\n\s+at /.test(r.stderr)) {
          t.crashes++;
          say(`  CRASH (stack trace) for ${file}: ${r.stderr.slice(0, 300)}`);
        } else t.rejected++;
        continue;
      }
      try {
        parseConfig(text, file);
        t.accepted++;
      } catch (err) {
        if (err instanceof ProxyMgrError) t.rejected++;
        else {
          t.crashes++;
          say(`  CRASH: ${String(err).slice(0, 200)} for ${JSON.stringify(text.slice(0, 200))}`);
        }
      }
    }
    say(`  proxymgr.yml documents: ${JSON.stringify(t)}`);
  }

  await sleep(500);
  scan();
  const loads = await traffic.stopLoad();
  const honestFailed = loads.reduce((n, r) => n + r.refused + r.reset + r.empty + r.other, 0);
  const honestOk = loads.reduce((n, r) => n + r.ok, 0);
  const attackPortsOpen = (await Promise.all([attackPort].map((p) => listening(p)))).filter(Boolean).length;
  const dead = crashed();
  const crashes = dead.length + Object.values(tallies).reduce((n, x) => n + x.crashes, 0);
  for (const line of injected) say(`  INJECTED: ${line}`);
  for (const d of dead) say(`  PROCESS DIED: ${d}`);
  if (honestFailed > 0) say(`  honest failures: ${JSON.stringify(loads.map((l) => l.errors))}`);

  admin1.close();
  admin2.close();
  rollout2.close();
  for (const c of children) await c.stop();
  await traffic.close();
  zkc.close();
  await zk.stop();
  stopInterrupt();
  if (process.env.BENCH_KEEP) say(`kept ${tmp.dir}`);
  else rmSync(tmp.dir, { recursive: true, force: true });

  const sum = (k: keyof Tally) => Object.values(tallies).reduce((n, x) => n + x[k], 0);
  return {
    bench: 'hostile',
    seed,
    inputs: sum('inputs'),
    rejected: sum('rejected'),
    accepted: sum('accepted'),
    crashes,
    injected_lines_rendered: injected.size + attackPortsOpen,
    honest_failed_requests: honestFailed,
    honest_ok_requests: honestOk,
    rejected_without_error_entry: namesNotInErrors,
    by_entry_point: tallies,
  };
}

/** Polls ListServices until every name of the batch is served or reported (or 3 s passed). */
async function settle(
  list: () => Promise<ListServicesResponse>,
  names: readonly string[],
): Promise<{ served: Set<string>; errors: Set<string> }> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const r = await list();
    const served = new Set(r.services.map((s) => s.name));
    const errors = new Set(Object.keys(r.errors));
    if (names.every((n) => served.has(n) || errors.has(n)) || Date.now() > deadline) return { served, errors };
    await sleep(50);
  }
}

type StreamOutcome = 'refused' | 'taken';

const pick3 = <T>(xs: readonly T[], i: number): T => xs[i % xs.length]!;

/** One AgentStream conversation; refused = the server ended it with an error status. */
function streamScenario(
  client: AgentStreamClient,
  kind: number,
  i: number,
  tokens: Record<string, string>,
): Promise<StreamOutcome> {
  const md = new grpc.Metadata();
  if (kind !== 0) md.set('authorization', `Bearer ${kind === 1 ? tokens.agent : tokens.attacker}`);
  const call = client.stream(md, { deadline: Date.now() + 5000 });
  const hello = (nodeId: string, extra: object = {}) =>
    ({
      hello: { nodeId, labels: {}, agentVersion: 'x', haproxyVersion: 'x', runningVersion: '', ...extra },
    }) as AgentMessage;
  return new Promise((resolve) => {
    let settled = false;
    const finish = (o: StreamOutcome) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      call.cancel();
      resolve(o);
    };
    const timer = setTimeout(() => finish('taken'), 400);
    call.on('error', (err: grpc.ServiceError) => finish(err.code === grpc.status.CANCELLED ? 'taken' : 'refused'));
    call.on('end', () => finish('taken'));
    const pushes: ControlMessage[] = [];
    call.on('data', (m: ControlMessage) => {
      pushes.push(m);
      const p = m.push;
      if (!p) return;
      if (kind === 8)
        call.write({
          ack: { version: p.version, nonce: p.nonce, method: 1, reasons: [], warnings: [], durationMs: 0 },
        } as unknown as AgentMessage);
      if (kind === 8)
        call.write({
          ack: { version: p.version, nonce: p.nonce, method: 1, reasons: [], warnings: [], durationMs: 0 },
        } as unknown as AgentMessage); // replayed
      if (kind === 9)
        call.write({
          ack: { version: 'other', nonce: p.nonce, method: 1, reasons: [], warnings: [], durationMs: 0 },
        } as unknown as AgentMessage);
      if (kind === 10)
        call.write({
          nack: {
            version: p.version,
            nonce: p.nonce,
            reason: 'r'.repeat(1_000_000),
            runningVersion: 'v'.repeat(10_000),
          },
        } as unknown as AgentMessage);
      if (kind === 13) {
        // Protocol 2: Resync spam (unknown nonces, the real one twice, then one for the full push that answers it).
        for (let k = 0; k < 50; k++) call.write({ resync: { nonce: `forged-${k}`, reason: 'x'.repeat(k * 100) } });
        call.write({ resync: { nonce: p.nonce, reason: p.full ? 'cannot take even a full push' : 'does not fit' } });
        call.write({ resync: { nonce: p.nonce, reason: 'again' } });
      }
    });
    switch (kind) {
      case 0:
        call.write(hello(`attacker-${i}`)); // no token
        break;
      case 1:
        call.write(hello('attacker-1')); // the honest agent's token, another node id
        break;
      case 2:
        call.write(hello('honest-a')); // impersonation of the honest agent
        break;
      case 3:
        call.write(
          hello(`attacker-${i}`, {
            labels: Object.fromEntries(Array.from({ length: 1000 }, (_, k) => [`k${k}`, 'v'])),
          }),
        );
        break;
      case 4:
        call.write(hello(`attacker-${i}`, { labels: { zone: 'x'.repeat(100_000) } }));
        break;
      case 5:
        call.write(hello(['', 'attacker- x', `attacker-${'x'.repeat(300)}`, 'attacker-\n', 'attacker-ü'][i % 5]!));
        break;
      case 6:
        call.write({
          ack: { version: 'v', nonce: 'n', method: 1, reasons: [], warnings: [], durationMs: 0 },
        } as unknown as AgentMessage); // before hello
        break;
      case 7:
        call.write(hello(`attacker-${i}`));
        call.write(hello(`attacker-${i}`)); // twice
        break;
      case 12: // protocol 2 with a declared base that is junk
        call.write(
          hello(`attacker-${i}`, {
            protocolVersion: 2,
            baseVersion: 'v',
            baseResources: pick3(
              [
                { 'a b': 'ff' },
                { web: 'NOT-HEX' },
                Object.fromEntries(Array.from({ length: 120_000 }, (_, k) => [`s${k}`, 'ab'])),
              ],
              i,
            ),
            baseGlobalsVersion: '',
          }),
        );
        break;
      case 13:
        call.write(
          hello(`attacker-${i}`, {
            protocolVersion: 2,
            baseVersion: 'v1',
            baseResources: { web: 'a'.repeat(32) },
            baseGlobalsVersion: 'b'.repeat(32),
          }),
        );
        break;
      case 14:
        call.write(hello(`attacker-${i}`, { protocolVersion: 99 }));
        break;
      case 15: // a StateReport nobody asked for, with a big server list
        call.write(hello(`attacker-${i}`, { protocolVersion: 2 }));
        call.write({
          stateReport: {
            id: `q${i}`,
            servers: Array.from({ length: 20_000 }, (_, k) => ({
              backend: 'web',
              name: `s${k}`,
              address: '10.0.0.1',
              port: 80,
              weight: 1,
              adminState: 'ready',
              operState: 'up',
            })),
            error: '',
            runningVersion: '',
          },
        });
        break;
      case 11:
        call.write(hello(`attacker-${i}`));
        call.write({
          ack: { version: 'v', nonce: `unknown-${i}`, method: 1, reasons: [], warnings: [], durationMs: 0 },
        } as unknown as AgentMessage);
        call.write({} as AgentMessage);
        break;
      default:
        call.write(hello(`attacker-${i}`));
    }
  });
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await listening(port)) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${port}`);
}

export { attackLines };
