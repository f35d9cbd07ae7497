/**
 * `npm run bench -- hostile [--seed=N] [--inputs=N]`: a hostile-input campaign against real processes. A
 * control plane (ZooKeeper source, auth on), a second one (file source, rollouts on), an agent streaming from the
 * first and one following a `--state` file, both with real HAProxy, while an honest service carries traffic through
 * both agents. A seeded generator (bench/lib-hostile.ts) throws malformed and malicious inputs at every entry point:
 * service configs in ZooKeeper and in files, host nodes in both formats, desired-state files, AgentStream messages,
 * admin requests and proxymgr.yml documents. After every batch both haproxy.cfg files are scanned for anything
 * an attack tried to inject, and the processes are checked for crashes.
 *
 * Last line: {"inputs","rejected","accepted","crashes","injected_lines_rendered","honest_failed_requests",
 * "gate_floods_swayed", "by_class": {class: {inputs, rejected, accepted, crashes}}, ...}.
 * Targets (judged by the harness): crashes, injected lines, honest failures, client-side errors, unsanitized texts and
 * forged answers all 0; the agent admin API alive; at least `--inputs` inputs thrown.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  AgentView,
  ControlPlaneAdminClient,
  ListAgentsResponse,
  ListServicesResponse,
} from '../common/gen/proxymgr/v1/admin';
import { RolloutClient, RolloutStatus } from '../common/gen/proxymgr/v1/rollout';
import { AgentMessage, AgentStreamClient, ControlMessage } from '../common/gen/proxymgr/v1/stream';
import { parseConfig } from '../common/config/config';
import { ProxyMgrError } from '../common/platform/errors';
import { SECTION_KEYWORDS } from '../common/haproxy/option-policy';
import { bulkPortRange, freePort, listening, sleep, tempDir } from '../testkit/net';
import { connectZk } from '../testkit/zk-client';
import { startZooKeeper } from '../testkit/zookeeper';
import { pickIndex, say, seededRandom } from './lib-common';
import { CLI, CliChild, onInterruptStopChildren, startCli } from './lib-grpc';
import {
  attackLines,
  configText,
  FORBIDDEN_MARKERS,
  HOSTILE_INTEGERS,
  hostileCapabilities,
  hostilePreflightReport,
  hostileSetPolicy,
  hostileStateReport,
  hostileStats,
  hostNodeText,
  oddName,
  oddNodeId,
  picker,
  RawPb,
  serviceConfigText,
  serviceOptionsText,
  stateFileText,
} from './lib-hostile';
import { startTraffic } from './lib-traffic';
import { encodeFloodStats, gateFloodCase, judgeGateFlood } from './lib-hostile-gates';
import { foreignEnsembleConfig, HOSTILE_LABEL_RULES, hostileLabels } from './lib-hostile-identity';
import { HOSTILE_TARGET_CLASSES } from './lib-hostile-targets';
import { defineBenchmark, Figures, int, num, OptionsOf } from './harness';

interface Tally {
  inputs: number;
  rejected: number;
  accepted: number;
  crashes: number;
}

/** Words that open a section: in a rendered haproxy.cfg only global, defaults and listen may. */
const SECTION_WORDS = new Set(SECTION_KEYWORDS);

const options = {
  seed: int(7, 'seed of the input mix'),
  inputs: int(3200, 'hostile inputs', 1),
};

async function run(o: OptionsOf<typeof options>): Promise<Figures> {
  const seed = o.seed;
  const target = o.inputs;
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
    writeFileSync(path.join(tmp.dir, `${name}.token`), tokens[name], { mode: 0o600 });
  }
  const auth = `auth:
  clients:
    - {name: honest-agent, token_file: ${tmp.dir}/agent.token, roles: [agent], node_ids: [honest-a]}
    - {name: attacker-agent, token_file: ${tmp.dir}/attacker.token, roles: [agent], node_ids: ["attacker-*"], labels: ${JSON.stringify(HOSTILE_LABEL_RULES)}}
    - {name: ops, token_file: ${tmp.dir}/ops.token, roles: [operator]}
    - {name: viewer, token_file: ${tmp.dir}/view.token, roles: [viewer]}
`;
  const haproxyYaml =
    'haproxy: {defaults: ["mode http", "timeout connect 2s", "timeout client 10s", "timeout server 10s"]}';
  const [honestA, honestB, attackPort, cp1Port, cp2Port, zkwebPort, agentAdminPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const used = new Set([
    honestA,
    honestB,
    attackPort,
    cp1Port,
    cp2Port,
    zkwebPort,
    agentAdminPort,
    backend.port,
    zk.port,
  ]);
  // Ports the generated services listen on: from the bulk range, so that under jest (the smoke run) no service of
  // the campaign takes a port another worker's test picked (freePort's slices).
  const bulk = bulkPortRange();
  const free = () => {
    for (;;) {
      const p = bulk.low + pickIndex(rand, bulk.high - bulk.low + 1);
      if (!used.has(p)) return p;
    }
  };
  /** A generated service config with its listening port from `free` (the generators pick their own). */
  const onFreePort = (text: string) => JSON.stringify({ ...(JSON.parse(text) as object), port: free() });
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
  // Hosts for the traffic options (canary weights, zones): canaries and others, one with a hostile label value.
  const canaryPath = '/services/canaryweb';
  for (const [node, labels] of [
    ['c1', { canary: 'true', zone: 'a', rack: 'r1' }],
    ['c2', { canary: 'true', zone: 'b', rack: 'evil listen' }],
    ['s1', { zone: 'a', rack: 'r1' }],
    ['s2', { zone: 'b', rack: 'x'.repeat(200) }],
    ['s3', { zone: 'c' }],
  ] as const)
    await zkc.put(`${canaryPath}/${node}`, JSON.stringify({ host: '127.0.0.1', port: free(), name: node, labels }));
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
        `${haproxyYaml}\nservice_config: {type: zookeeper, servers: "${zk.connectString}", path: /service_config}\ncontrolplane: {listen: "127.0.0.1:${cp1Port}", new_streams_per_identity_per_second: 1000}\n${auth}`,
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
        `${haproxyYaml}\nservice_config: {type: file, path: ${fileConfigs}}\ncontrolplane: {listen: "127.0.0.1:${cp2Port}", new_streams_per_identity_per_second: 1000}\nrollout: {zookeeper: "${zk.connectString}", zk_path: /hostile-cp2, replica_id: cp2, bake_ms: 1000, preflight: {timeout_ms: 1000}}\n${auth}`,
      ),
    ],
    path.join(tmp.dir, 'cp2.log'),
  );
  children.push(cp1, cp2);
  await cp1.waitForLog(/control plane started/);
  await cp2.waitForLog(/control plane started/);
  const agentYaml = (name: string, extra: string, adminListen = '', tail = '') => {
    const dir = path.join(tmp.dir, name);
    mkdirSync(dir);
    return write(
      `${name}.yml`,
      `${haproxyYaml.slice(0, -1)}, config_path: ${dir}/haproxy.cfg, socket_path: ${dir}/haproxy.sock}\nagent: {state_dir: ${dir}, bind_address: 127.0.0.1, admin_listen: "${adminListen}", ${extra}}\n${tail}`,
    );
  };
  // Agent A serves AgentAdmin, with its own auth: the viewer and operator tokens, and the attacker's (agent role).
  const agentAuth = `auth:
  clients:
    - {name: viewer, token_file: ${tmp.dir}/view.token, roles: [viewer]}
    - {name: ops, token_file: ${tmp.dir}/ops.token, roles: [operator]}
    - {name: attacker-agent, token_file: ${tmp.dir}/attacker.token, roles: [agent], node_ids: ["attacker-*"]}
`;
  const cfgA = path.join(tmp.dir, 'agent-a', 'haproxy.cfg');
  const cfgB = path.join(tmp.dir, 'agent-b', 'haproxy.cfg');
  const agentA = startCli(
    [
      'agent',
      '--config',
      agentYaml(
        'agent-a',
        `node_id: honest-a, controlplanes: ["127.0.0.1:${cp1Port}"], token_file: ${tmp.dir}/agent.token`,
        `127.0.0.1:${agentAdminPort}`,
        agentAuth,
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
  await waitForPort(agentAdminPort);
  say(
    `hostile: honest service on :${honestA} (agent A, control plane) and :${honestB} (agent B, state file); seed ${seed}`,
  );
  await traffic.startLoad([honestA, honestB], 4);

  const injected = new Set<string>();
  // What the control classes try to render: sockets and relays, other services' tables and variables, stats pages,
  // link-local targets, and servers or checks at the control plane's or agent A's own ports.
  const CONTROL_MARKERS = [
    'unix@',
    'abns@',
    'uxst@',
    'sockpair@',
    'addr /',
    'set-dst',
    'transparent',
    'use-service',
    'use_backend',
    'default_backend',
    'stats enable',
    'stats uri',
    'proc.',
    '169.254.',
    'fe80',
  ];
  const ownPorts = [cp1Port, agentAdminPort];
  const ownPortTargets = ownPorts.map((p) => new RegExp(`(:${p}\\b|port ${p}\\b)`));
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
        // Its address too, when it is an IP literal or a host name (checked by the agent): a host named "evil" is a
        // name, and renders disabled if it does not resolve.
        const plainAddress = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):\d+$/.test(parts[2] ?? '');
        const judged =
          word === 'server' && /^[A-Za-z0-9_.:-]+$/.test(parts[1] ?? '')
            ? parts.slice(plainAddress ? 3 : 2).join(' ')
            : line;
        // The agent's own two: the admin channel (fd 3) and the read-only socket with a path.
        const ownStatsSocket = /^stats socket (sockpair@3 level admin|\/\S+ mode 600 level user)$/.test(line);
        const bad =
          (!ownStatsSocket && FORBIDDEN_MARKERS.some((m) => judged.includes(m))) ||
          (!ownStatsSocket && CONTROL_MARKERS.some((m) => judged.includes(m))) ||
          ownPortTargets.some((re) => re.test(judged)) ||
          (word === 'bind' && !/^bind fd@\d+$/.test(line)) ||
          (line.startsWith('stats socket') && (!ownStatsSocket || ++statsSockets > 2)) ||
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
  /** Options for a client with a connection of its own (grpc-js shares one per target across clients otherwise). */
  const isolated = { ...rpcOpts, 'grpc.use_local_subchannel_pool': 1 };
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

  /** One unary call with a raw body (what the generated encoders refuse to write), any credentials. */
  const unary = (client: grpc.Client, method: string, body: Buffer, tok: string | undefined, deadlineMs = 8000) =>
    new Promise<{ ok: boolean; code: number; res?: Buffer }>((resolve) => {
      let m: grpc.Metadata;
      try {
        m = md(tok);
      } catch {
        return resolve({ ok: false, code: -1 }); // grpc-js refuses the header value itself
      }
      client.makeUnaryRequest<Buffer, Buffer>(
        method,
        (b) => b,
        (b) => b,
        body,
        m,
        { deadline: Date.now() + deadlineMs },
        (err, res) => resolve(err ? { ok: false, code: err.code } : { ok: true, code: 0, res }),
      );
    });
  const garbage = (n: number) => Buffer.from(Array.from({ length: n }, () => pickIndex(rand, 256)));
  const statusCodes: Record<string, Record<string, number>> = {};
  const count = (entry: string, code: number) => {
    const name = code === -1 ? 'BAD_HEADER' : (grpc.status[code] ?? String(code));
    const m = (statusCodes[entry] ??= {});
    m[name] = (m[name] ?? 0) + 1;
  };
  /** SetPolicy notes (hostile values) a control plane accepted. */
  const acceptedPolicies = new Set<string>();
  /** What the stream-report scenarios saw: real questions answered, kept text that was not plain, forged answers taken. */
  const reportFigures = { preflight_questions: 0, state_questions: 0, unsanitized: 0, forged_answers_taken: 0 };
  const checkPlain = (what: string, texts: readonly string[], max: number) => {
    // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
    const bad = texts.find((x) => /[\x00-\x1f\x7f-\x9f]/.test(x) || x.length > max);
    if (bad === undefined) return;
    reportFigures.unsanitized++;
    say(`  UNSANITIZED ${what}: ${JSON.stringify(bad.slice(0, 80))} (${bad.length} characters)`);
  };
  const helloBytes = (nodeId: string, protocolVersion: number, capabilities: string[] = []) =>
    Buffer.from(
      AgentMessage.encode(
        AgentMessage.fromPartial({
          hello: { nodeId, agentVersion: 'x', haproxyVersion: 'x', protocolVersion, capabilities },
        }),
      ).finish(),
    );
  const listAgents = (c: ControlPlaneAdminClient) =>
    new Promise<ListAgentsResponse | undefined>((resolve) =>
      c.listAgents({}, md(tokens.view), { deadline: Date.now() + 5000 }, (err, res) => resolve(err ? undefined : res)),
    );
  const rolloutStatusOf = () =>
    new Promise<RolloutStatus | undefined>((resolve) =>
      rollout2.status({}, md(tokens.view), { deadline: Date.now() + 5000 }, (err, res) =>
        resolve(err ? undefined : res),
      ),
    );
  /** Counters a control plane kept of an agent's Stats: at most 10,000, names plain, numbers finite and >= 0. */
  const checkCounters = async (c: ControlPlaneAdminClient, nodeId: string) => {
    const a = (await listAgents(c))?.agents.find((x) => x.nodeId === nodeId);
    if (!a) return;
    checkPlain(
      `counters of ${nodeId}`,
      a.counters.map((x) => x.service),
      253,
    );
    if (a.counters.length > 10_000) checkPlain(`counters of ${nodeId}`, ['x'.repeat(a.counters.length)], 10_000);
    const nums = a.counters.flatMap((x) => [x.requests, x.responses5xx, x.sessions, x.queue, x.servers]);
    const badNum = nums.find((n) => !Number.isFinite(n) || n < 0);
    if (badNum !== undefined) checkPlain(`counter value of ${nodeId}`, [`\u0000${badNum}`], 100);
  };
  let questionsMissed = 0;
  /** Inputs that never left this process (the generated encoder refused them): a bench bug if not 0. */
  let clientErrors = 0;
  const onClientError = (details: string) => {
    if (clientErrors++ < 3) say(`  CLIENT-SIDE ERROR (the input never reached the server): ${details.slice(0, 160)}`);
  };

  /** One conversation of section 5b; refused = the server ended the (first) stream with an error status. */
  const reportScenario = async (
    kind: number,
    i: number,
    raw1: grpc.Client,
    raw2: grpc.Client,
    trigger: string,
  ): Promise<StreamOutcome> => {
    if (kind === 0 || kind === 1) {
      // Hello capabilities: unknown names, more than 16, long strings, control characters.
      const s = openRaw(kind === 0 ? raw1 : raw2, tokens.attacker);
      s.write(helloBytes(`attacker-cap-${i}`, 2, hostileCapabilities(rand)));
      await sleep(400);
      return s.close();
    }
    if (kind === 2 || kind === 3) {
      // Stats with hostile counters, to both control planes (cp2 feeds its rollouts' traffic gates with them).
      const nodeId = `attacker-stats-${i % 4}`;
      const stats = hostileStats(rand);
      const s = openRaw(kind === 2 ? raw1 : raw2, tokens.attacker);
      s.write(helloBytes(nodeId, 2, ['settings']));
      s.write(stats.message);
      await sleep(stats.services > 1 ? 900 : 400);
      const outcome = await s.close();
      await checkCounters(kind === 2 ? admin1 : admin2, nodeId);
      return outcome;
    }
    if (kind === 4) {
      // Stats before the hello.
      const s = openRaw(raw1, tokens.attacker);
      s.write(hostileStats(rand).message);
      s.write(helloBytes(`attacker-${i}`, 2));
      await sleep(400);
      return s.close();
    }
    if (kind === 5 || kind === 8) {
      // Reports nobody asked for: PreflightReports with unknown ids and huge lists (protocol 2, or protocol 0 where
      // no question is ever asked), plus on protocol 0 a Stats and a StateReport too.
      const report = hostilePreflightReport(rand);
      const state = hostileStateReport(rand);
      const s = openRaw(i % 2 === 0 ? raw1 : raw2, tokens.attacker);
      s.write(helloBytes(`attacker-pr-${i}`, kind === 5 ? 2 : 0, ['preflight']));
      s.write(report());
      if (kind === 8) {
        s.write(hostileStats(rand).message);
        s.write(state(`q${pickIndex(rand, 100)}`));
      }
      await sleep(500);
      return s.close();
    }
    if (kind === 6 || kind === 9) {
      // A real preflight question (cp2, a new revision written to its file source): the wrong agent answers it
      // first (ok), then the agent asked answers with a hostile report (6) or with the wrong id (9).
      const pNode = `attacker-pf-${i}`;
      const report = hostilePreflightReport(rand);
      const p = openRaw(raw2, tokens.attacker);
      const w = openRaw(raw2, tokens.attacker);
      p.write(helloBytes(pNode, 2, ['preflight', 'settings']));
      w.write(helloBytes(`attacker-pw-${i}`, 2, ['preflight']));
      await sleep(300);
      writeFileSync(
        trigger,
        JSON.stringify({ type: 'static', port: free(), listen_options: ['mode http'], hosts: [`127.0.0.1:${free()}`] }),
      );
      const q = await p.next((m) => m.preflightRequest !== undefined, questionsMissed > 3 ? 1000 : 3000);
      if (!q?.preflightRequest) {
        questionsMissed++;
        p.write(report());
      } else {
        reportFigures.preflight_questions++;
        const id = q.preflightRequest.id;
        w.write(new RawPb().bytes(7, new RawPb().bytes(1, id).varint(2, true)).finish());
        if (kind === 6) {
          p.write(report(id));
          p.write(report(id)); // twice
        } else p.write(report(`${id}x`));
        await sleep(kind === 9 ? 1500 : 700); // 9: past the preflight timeout (1 s): the question went unanswered
        const a = (await rolloutStatusOf())?.agents.find((x) => x.nodeId === pNode);
        if (a) {
          checkPlain('Rollout/Status agent error', [a.error], 1000);
          if (kind === 9 && a.preflight === 'passed') {
            reportFigures.forged_answers_taken++;
            say(`  FORGED preflight answer taken for ${pNode}`);
          }
        }
      }
      await w.close();
      return p.close();
    }
    // kind 7: GetAgentView asks an attacker agent what its HAProxy has; another attacker answers first with a
    // forged report, then the agent asked answers with a hostile one. The view must hold neither raw.
    const aNode = `attacker-sv-${i % 8}`;
    const state = hostileStateReport(rand);
    const a = openRaw(raw1, tokens.attacker);
    const w = openRaw(raw1, tokens.attacker);
    a.write(helloBytes(aNode, 2));
    w.write(helloBytes(`attacker-sw-${i % 8}`, 2));
    await a.next((m) => m.push !== undefined, 1000);
    const view = new Promise<AgentView | undefined>((resolve) =>
      admin1.getAgentView({ nodeId: aNode }, md(tokens.view), { deadline: Date.now() + 8000 }, (err, res) =>
        resolve(err ? undefined : res),
      ),
    );
    const q = await a.next((m) => m.stateRequest !== undefined, 2000);
    if (q?.stateRequest) {
      reportFigures.state_questions++;
      const forged = new RawPb()
        .bytes(1, q.stateRequest.id)
        .bytes(2, new RawPb().bytes(1, 'FORGED').bytes(2, 'x').bytes(3, '10.9.9.9').varint(4, 1n));
      w.write(new RawPb().bytes(5, forged).finish());
      a.write(state(q.stateRequest.id));
    }
    const v = await view;
    if (v) {
      checkPlain(
        'GetAgentView',
        v.haproxy.flatMap((s) => [s.backend, s.name, s.address, s.adminState, s.operState]),
        256,
      );
      checkPlain('GetAgentView haproxy_error', [v.haproxyError], 4200);
      if (v.haproxy.some((s) => s.backend === 'FORGED')) {
        reportFigures.forged_answers_taken++;
        say(`  FORGED state report taken for ${aNode}`);
      }
    }
    await w.close();
    return a.close();
  };

  // Shares of the inputs in 64ths, at the default 3,200: 550 / 150 / 250 / 350 / 150 / 150 / 150 / 150 / 150 / 100,
  // 100 for each of the four target classes, 50 each for foreign ensembles, labels and gate floods, and the rest
  // (about 500) for proxymgr.yml.
  const share = (n: number) => Math.round((target * n) / 64);
  const tallies: Record<string, Tally> = {};
  const tally = (name: string) => (tallies[name] ??= { inputs: 0, rejected: 0, accepted: 0, crashes: 0 });
  let namesNotInErrors = 0;

  /**
   * Service configs written to ZooKeeper in batches of 25: each batch is waited for until every config is served
   * or reported (scanning both haproxy.cfg files), then removed.
   */
  const zkConfigBatches = async (
    t: Tally,
    total: number,
    next: (i: number) => { name: string; text: string },
    /** A config served with a problem reported (a host left out) counts as rejected. */
    problemIsRejection = false,
  ) => {
    for (let i = 0; i < total;) {
      const batch: string[] = [];
      for (let j = 0; j < 25 && i < total; j++, i++) {
        const { name, text } = next(i);
        t.inputs++;
        try {
          await zkc.put(`/service_config/${name}`, text);
          batch.push(name);
        } catch {
          t.rejected++; // ZooKeeper itself refused the node name or size
        }
      }
      const verdicts = await settle(() => listServices(admin1), batch);
      scan();
      for (const name of batch) {
        if (verdicts.served.has(name) && !(problemIsRejection && verdicts.errors.has(name))) t.accepted++;
        else {
          t.rejected++;
          if (!verdicts.errors.has(name)) namesNotInErrors++;
        }
      }
      for (const name of batch) await zkc.remove(`/service_config/${name}`).catch(() => undefined);
      await sleep(50);
    }
  };

  // 1. Service configs in ZooKeeper.
  {
    const t = tally('zk_service_config');
    await zkConfigBatches(t, share(11), (i) => ({
      name: oddName(rand, i),
      text: serviceConfigText(rand, i, portsFor),
    }));
    say(`  zk service configs: ${JSON.stringify(t)}`);
  }

  // 1b. The traffic options of a service config (canary, drain_timeout_ms, slow_start_ms, zone_label) in ZooKeeper:
  // served through agent A's real HAProxy when valid (canary weights computed from the labelled hosts).
  {
    const t = tally('zk_service_options');
    await zkConfigBatches(t, share(3), (i) => ({
      name: `opt-${i}`,
      text: serviceOptionsText(rand, i, portsFor, canaryPath),
    }));
    say(`  zk service options: ${JSON.stringify(t)}`);
  }

  // 2. Service configs in files (second control plane).
  {
    const t = tally('file_service_config');
    const total = share(5);
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
    const total = share(7);
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
    const total = share(3);
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
    const total = share(3);
    const client = new AgentStreamClient(`127.0.0.1:${cp1Port}`, grpc.credentials.createInsecure(), rpcOpts);
    for (let i = 0; i < total; i++) {
      t.inputs++;
      const outcome = await streamScenario(client, pickIndex(rand, 16), i, tokens, onClientError);
      if (outcome === 'refused') t.rejected++;
      else t.accepted++;
    }
    client.close();
    say(`  agent stream messages: ${JSON.stringify(t)}`);
  }

  // 5b. AgentStream messages added since the first campaign: hello capabilities, Stats with hostile counters,
  // PreflightReports (ids nobody asked, the wrong agent's answer to a real question, huge lists) and StateReports
  // answering a real GetAgentView question with hostile text. What the control plane keeps of them is read back
  // (ListAgents, Rollout/Status, GetAgentView) and must be plain text within its bounds.
  {
    const t = tally('agent_stream_reports');
    const total = share(3);
    const raw1 = new grpc.Client(`127.0.0.1:${cp1Port}`, grpc.credentials.createInsecure(), rpcOpts);
    const raw2 = new grpc.Client(`127.0.0.1:${cp2Port}`, grpc.credentials.createInsecure(), rpcOpts);
    const trigger = path.join(fileConfigs, 'pftrigger.json');
    for (let i = 0; i < total; i++) {
      t.inputs++;
      const kind = pickIndex(rand, 10);
      const outcome = await reportScenario(kind, i, raw1, raw2, trigger);
      if (outcome === 'refused') t.rejected++;
      else t.accepted++;
    }
    rmSync(trigger, { force: true });
    raw1.close();
    raw2.close();
    say(`  agent stream reports: ${JSON.stringify(t)} ${JSON.stringify(reportFigures)}`);
  }

  // 6. Admin requests with odd arguments and odd credentials.
  {
    const t = tally('admin');
    const total = share(3);
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
      // Each request on a connection of its own: a request that stalls its HTTP/2 connection (an answer too large
      // to send) must not make the next ones look refused.
      const a1 = new ControlPlaneAdminClient(`127.0.0.1:${cp1Port}`, grpc.credentials.createInsecure(), isolated);
      const a2 = new ControlPlaneAdminClient(`127.0.0.1:${cp2Port}`, grpc.credentials.createInsecure(), isolated);
      const r2 = new RolloutClient(`127.0.0.1:${cp2Port}`, grpc.credentials.createInsecure(), isolated);
      const done = new Promise<boolean>((resolve) => {
        const cb = (err: grpc.ServiceError | null) => {
          if (err && /serializ/i.test(err.details)) onClientError(err.details);
          resolve(err === null);
        };
        const opts = { deadline: Date.now() + 5000 };
        let m: grpc.Metadata;
        try {
          m = md(tok);
        } catch {
          return resolve(false); // grpc-js refuses the header value itself
        }
        if (call === 0) {
          // Written raw: the generated encoder refuses a negative or 2^40 uint32 before it reaches the server.
          const req = new RawPb();
          for (const w of pick([
            ['0'],
            ['-1'],
            ['101%'],
            ['abc'],
            ['1e309'],
            Array.from({ length: 10_000 }, () => '1'),
            ['1', '100%'],
          ]))
            req.bytes(1, w);
          req.varint(2, true).varint(3, pick([0n, -1n, 2n ** 31n, 10n ** 12n]));
          req.varint(4, true).varint(5, pick([0n, 1_000_000n, -5n]));
          req.varint(8, rand() < 0.5);
          void unary(r2, '/proxymgr.v1.Rollout/SetPolicy', req.finish(), tok, 5000).then((r) => resolve(r.ok));
        } else if (call === 1)
          r2[pick(['pause', 'resume', 'promote', 'abort'] as const)]({ rolloutId: odd }, m, opts, cb);
        else if (call === 2) r2.history({ limit: pick([0, 1, 2 ** 31 - 1, 4e9]) }, m, opts, cb);
        else if (call === 3) a1.getAgentState({ nodeId: odd }, m, opts, cb);
        else if (call === 4) a2.getAgentState({ nodeId: odd }, m, opts, cb);
        else if (call === 5) a1.listAgents({}, m, opts, cb);
        else r2.status({}, m, opts, cb);
      });
      const ok = await done;
      for (const c of [a1, a2, r2]) c.close();
      if (ok) t.accepted++;
      else t.rejected++;
    }
    say(`  admin requests: ${JSON.stringify(t)}`);
  }

  // 6b. Rollout/SetPolicy (hostile gate and preflight values), Rollout/Plan and ControlPlaneAdmin/GetAgentView
  // (odd, huge, unknown node ids), with every kind of credential, and garbage request bodies.
  {
    const t = tally('rollout_admin');
    const total = share(3);
    // Each request on a connection of its own (see section 6).
    const cp1Addr = `127.0.0.1:${cp1Port}`;
    const cp2Addr = `127.0.0.1:${cp2Port}`;
    let deadlines = 0;
    const methods = [
      '/proxymgr.v1.Rollout/SetPolicy',
      '/proxymgr.v1.Rollout/Plan',
      '/proxymgr.v1.ControlPlaneAdmin/GetAgentView',
    ];
    for (let i = 0; i < total; i++) {
      t.inputs++;
      // Half with the operator's token (so the values reach validation), half with every other credential.
      const tok =
        rand() < 0.5
          ? tokens.ops
          : pick([
              tokens.view,
              tokens.attacker,
              tokens.agent,
              undefined,
              'wrong-token-0123456789abcdef',
              'Bearer',
              '\u00ff'.repeat(10),
            ]);
      const call = pickIndex(rand, 4);
      let method: string;
      let body: Buffer;
      let note = '';
      let addr = cp2Addr;
      if (call === 0) {
        const p = hostileSetPolicy(rand);
        method = methods[0]!;
        body = p.body;
        note = p.note;
      } else if (call === 1) {
        method = methods[1]!;
        body = pick([Buffer.alloc(0), new RawPb().bytes(15, 'x'.repeat(1000)).varint(3, -1n).finish()]);
        addr = pick([cp1Addr, cp2Addr]);
      } else if (call === 2) {
        method = methods[2]!;
        body = new RawPb().bytes(1, oddNodeId(rand, i)).finish();
        addr = pick([cp1Addr, cp2Addr]);
      } else {
        method = pick(methods);
        body = garbage(1 + pickIndex(rand, 64));
      }
      const client = new grpc.Client(addr, grpc.credentials.createInsecure(), isolated);
      const r = await unary(client, method, body, tok);
      client.close();
      count('rollout_admin', r.code);
      if (r.code === (grpc.status.DEADLINE_EXCEEDED as number) && (deadlines++ < 3 || process.env.BENCH_VERBOSE))
        say(`  no answer in 8 s: ${method} with a ${body.length}-byte request`);
      if (!r.ok) {
        t.rejected++;
        continue;
      }
      t.accepted++;
      if (method === methods[0] && note !== 'valid') acceptedPolicies.add(note);
      if (method === methods[2] && r.res) {
        const v = AgentView.decode(r.res);
        checkPlain(
          'GetAgentView',
          v.haproxy.flatMap((s) => [s.backend, s.name, s.address, s.adminState, s.operState]),
          256,
        );
        checkPlain('GetAgentView haproxy_error', [v.haproxyError], 4200);
      }
    }
    say(`  rollout admin requests: ${JSON.stringify(t)} ${JSON.stringify(statusCodes.rollout_admin ?? {})}`);
    if (acceptedPolicies.size > 0) say(`  SetPolicy values accepted: ${[...acceptedPolicies].sort().join(' | ')}`);
  }

  // 6c. Agent A's own admin server (AgentAdmin, bearer tokens, viewer role): every method, methods it does not
  // serve, odd limits, garbage and oversized bodies, with every kind of credential.
  let agentAdminAlive = false;
  {
    const t = tally('agent_admin');
    const total = share(2);
    const agentAddr = `127.0.0.1:${agentAdminPort}`;
    for (let i = 0; i < total; i++) {
      t.inputs++;
      const tok = pick([
        tokens.view,
        tokens.view,
        tokens.ops,
        tokens.attacker,
        tokens.agent,
        undefined,
        'wrong-token-0123456789abcdef',
        'Bearer',
        '\u00ff'.repeat(10),
      ]);
      const method = pick([
        '/proxymgr.v1.AgentAdmin/Status',
        '/proxymgr.v1.AgentAdmin/HaproxyState',
        '/proxymgr.v1.AgentAdmin/RecentActions',
        '/proxymgr.v1.AgentAdmin/RecentActions',
        '/proxymgr.v1.AgentAdmin/RecentActions',
        '/proxymgr.v1.AgentAdmin/Evil',
        '/proxymgr.v1.ControlPlaneAdmin/ListServices',
        '/proxymgr.v1.Rollout/SetPolicy',
        '/grpc.health.v1.Health/Check',
        '/proxymgr.v1.AgentStream/Stream',
      ]);
      const shape = pickIndex(rand, 8);
      const body =
        shape === 0
          ? Buffer.alloc(0)
          : shape === 1
            ? new RawPb().varint(1, pick(HOSTILE_INTEGERS)).finish() // RecentActions.limit
            : shape === 2
              ? new RawPb().varint(1, pick([0n, 1n, 50n, 4_294_967_295n])).finish()
              : shape === 3
                ? new RawPb().double(1, pick([NaN, Infinity, -1])).finish() // the wrong wire type
                : shape === 4
                  ? Buffer.from([0x08, 0xff]) // a truncated varint
                  : shape === 5
                    ? garbage(1 + pickIndex(rand, 64))
                    : shape === 6
                      ? new RawPb().bytes(15, 'x'.repeat(1_000_000)).finish() // 1 MB unknown field
                      : new RawPb().bytes(15, 'x'.repeat(5_000_000)).finish(); // past the 4 MB limit
      const client = new grpc.Client(agentAddr, grpc.credentials.createInsecure(), isolated); // see section 6
      const r = await unary(client, method, body, tok);
      client.close();
      count('agent_admin', r.code);
      if (r.ok) t.accepted++;
      else t.rejected++;
    }
    const last = new grpc.Client(agentAddr, grpc.credentials.createInsecure(), isolated);
    agentAdminAlive = (await unary(last, '/proxymgr.v1.AgentAdmin/Status', Buffer.alloc(0), tokens.view)).ok;
    last.close();
    say(
      `  agent admin requests: ${JSON.stringify(t)} ${JSON.stringify(statusCodes.agent_admin ?? {})}; final Status ${agentAdminAlive ? 'ok' : 'FAILED'}`,
    );
  }

  // 8. The control classes: service configs aimed at the control itself (health checks at sockets and own ports,
  // relays, loopback and link-local targets, references to other services), watchers naming foreign ZooKeeper
  // ensembles — each through the first control plane and agent A, whose haproxy.cfg is scanned — hello labels the
  // attacker's identity may not claim, and Stats floods that try to sway a gate.
  const ownTargetPorts = [cp1Port, agentAdminPort];
  const raw1 = new grpc.Client(`127.0.0.1:${cp1Port}`, grpc.credentials.createInsecure(), rpcOpts);
  const raw2 = new grpc.Client(`127.0.0.1:${cp2Port}`, grpc.credentials.createInsecure(), rpcOpts);
  for (const [name, generate] of Object.entries(HOSTILE_TARGET_CLASSES)) {
    const t = tally(name);
    await zkConfigBatches(
      t,
      share(2),
      (i) => ({ name: `${name.replace(/_/g, '-')}-${i}`, text: onFreePort(generate(rand, ownTargetPorts)) }),
      true,
    );
    say(`  ${name}: ${JSON.stringify(t)}`);
  }
  {
    const t = tally('foreign_ensembles');
    await zkConfigBatches(t, share(1), (i) => ({
      name: `foreign-${i}`,
      text: onFreePort(foreignEnsembleConfig(rand, [zk.connectString])),
    }));
    say(`  foreign ensembles: ${JSON.stringify(t)}`);
  }
  {
    const t = tally('labels');
    const total = share(1);
    for (let i = 0; i < total; i++) {
      t.inputs++;
      const s = openRaw(i % 2 === 0 ? raw1 : raw2, tokens.attacker);
      s.write(
        Buffer.from(
          AgentMessage.encode(
            AgentMessage.fromPartial({
              hello: {
                nodeId: `attacker-labels-${i}`,
                agentVersion: 'x',
                haproxyVersion: 'x',
                protocolVersion: 2,
                labels: hostileLabels(rand),
              },
            }),
          ).finish(),
        ),
      );
      await s.next(() => false, 1500);
      if ((await s.close()) === 'refused') t.rejected++;
      else {
        t.accepted++;
        say(`  LABELS TAKEN for attacker-labels-${i}`);
      }
    }
    say(`  labels: ${JSON.stringify(t)}`);
  }
  let gateFloodsSwayed = 0;
  {
    const t = tally('gate_flooding');
    const total = share(1);
    for (let i = 0; i < total; i++) {
      t.inputs++;
      const c = gateFloodCase(seed * 10_000 + i);
      // The verdict, from the control plane's own ledger and judge over the case's timeline.
      const r = judgeGateFlood(c);
      if (r.verdict === 'fail') t.rejected++;
      else {
        t.accepted++;
        gateFloodsSwayed++;
        say(`  GATE SWAYED by ${c.strategy} (seed ${c.seed}): ${r.verdict}`);
      }
      // And the flood itself at the second control plane (rollouts on), as fast as it goes: it must stay up.
      const s = openRaw(raw2, tokens.attacker);
      s.write(helloBytes(`attacker-flood-${i % 4}`, 2));
      for (const m of c.messages.filter((x) => x.hostile).slice(0, 200)) s.write(encodeFloodStats(m));
      await s.next(() => false, 100);
      await s.close();
    }
    say(`  gate flooding: ${JSON.stringify(t)}`);
  }
  raw1.close();
  raw2.close();

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
  // A crash that did not (yet) end a process: an unhandled rejection or uncaught exception printed to its log
  // (every log line of ours is JSON; node's own crash output is not).
  const logCrashes = children.flatMap((c) => {
    const lines = c
      .logs()
      .split('\n')
      .filter((l) => !l.startsWith('{') && /Unhandled|Uncaught|FATAL ERROR|^\s+at /.test(l));
    return lines.length > 0 ? [`${path.basename(c.logFile)}: ${lines.slice(0, 6).join(' | ').slice(0, 600)}`] : [];
  });
  const crashes =
    dead.length +
    logCrashes.filter((l) => !dead.some((d) => d.startsWith(l.split(':')[0]!))).length +
    Object.values(tallies).reduce((n, x) => n + x.crashes, 0);
  for (const l of logCrashes) say(`  CRASH OUTPUT in ${l}`);
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
    client_side_errors: clientErrors,
    unsanitized_texts_kept: reportFigures.unsanitized,
    forged_answers_taken: reportFigures.forged_answers_taken,
    preflight_questions_answered: reportFigures.preflight_questions,
    state_questions_answered: reportFigures.state_questions,
    agent_admin_alive: agentAdminAlive,
    setpolicy_hostile_values_accepted: [...acceptedPolicies].sort(),
    gate_floods_swayed: gateFloodsSwayed,
    status_codes: statusCodes,
    by_class: tallies,
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
  onClientError: (details: string) => void,
): Promise<StreamOutcome> {
  const md = new grpc.Metadata();
  if (kind !== 0) md.set('authorization', `Bearer ${kind === 1 ? tokens.agent : tokens.attacker}`);
  const call = client.stream(md, { deadline: Date.now() + 5000 });
  // Every message through fromPartial: fields the generated encoder needs (added to the protocol since these
  // conversations were written) get their defaults, so the message reaches the server instead of failing to
  // serialize in this process.
  const send = (m: object) => call.write(AgentMessage.fromPartial(m));
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
    call.on('error', (err: grpc.ServiceError) => {
      if (/serializ/i.test(err.details)) onClientError(err.details);
      finish(err.code === grpc.status.CANCELLED ? 'taken' : 'refused');
    });
    call.on('end', () => finish('taken'));
    const pushes: ControlMessage[] = [];
    call.on('data', (m: ControlMessage) => {
      pushes.push(m);
      const p = m.push;
      if (!p) return;
      if (kind === 8)
        send({
          ack: { version: p.version, nonce: p.nonce, method: 1, reasons: [], warnings: [], durationMs: 0 },
        });
      if (kind === 8)
        send({
          ack: { version: p.version, nonce: p.nonce, method: 1, reasons: [], warnings: [], durationMs: 0 },
        }); // replayed
      if (kind === 9)
        send({
          ack: { version: 'other', nonce: p.nonce, method: 1, reasons: [], warnings: [], durationMs: 0 },
        });
      if (kind === 10)
        send({
          nack: {
            version: p.version,
            nonce: p.nonce,
            reason: 'r'.repeat(1_000_000),
            runningVersion: 'v'.repeat(10_000),
          },
        });
      if (kind === 13) {
        // Protocol 2: Resync spam (unknown nonces, the real one twice, then one for the full push that answers it).
        for (let k = 0; k < 50; k++) send({ resync: { nonce: `forged-${k}`, reason: 'x'.repeat(k * 100) } });
        send({ resync: { nonce: p.nonce, reason: p.full ? 'cannot take even a full push' : 'does not fit' } });
        send({ resync: { nonce: p.nonce, reason: 'again' } });
      }
    });
    switch (kind) {
      case 0:
        send(hello(`attacker-${i}`)); // no token
        break;
      case 1:
        send(hello('attacker-1')); // the honest agent's token, another node id
        break;
      case 2:
        send(hello('honest-a')); // impersonation of the honest agent
        break;
      case 3:
        send(
          hello(`attacker-${i}`, {
            labels: Object.fromEntries(Array.from({ length: 1000 }, (_, k) => [`k${k}`, 'v'])),
          }),
        );
        break;
      case 4:
        send(hello(`attacker-${i}`, { labels: { zone: 'x'.repeat(100_000) } }));
        break;
      case 5:
        send(hello(['', 'attacker- x', `attacker-${'x'.repeat(300)}`, 'attacker-\n', 'attacker-ü'][i % 5]!));
        break;
      case 6:
        send({
          ack: { version: 'v', nonce: 'n', method: 1, reasons: [], warnings: [], durationMs: 0 },
        }); // before hello
        break;
      case 7:
        send(hello(`attacker-${i}`));
        send(hello(`attacker-${i}`)); // twice
        break;
      case 12: // protocol 2 with a declared base that is junk
        send(
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
        send(
          hello(`attacker-${i}`, {
            protocolVersion: 2,
            baseVersion: 'v1',
            baseResources: { web: 'a'.repeat(32) },
            baseGlobalsVersion: 'b'.repeat(32),
          }),
        );
        break;
      case 14:
        send(hello(`attacker-${i}`, { protocolVersion: 99 }));
        break;
      case 15: // a StateReport nobody asked for, with a big server list
        send(hello(`attacker-${i}`, { protocolVersion: 2 }));
        send({
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
        send(hello(`attacker-${i}`));
        send({
          ack: { version: 'v', nonce: `unknown-${i}`, method: 1, reasons: [], warnings: [], durationMs: 0 },
        });
        send({});
        break;
      default:
        send(hello(`attacker-${i}`));
    }
  });
}

/** A raw AgentStream: messages written as bytes (RawPb or the generated encoder), answers decoded. */
interface RawStream {
  write(b: Buffer): void;
  /** The first control message so far or to come that matches `f`; undefined after `ms` or once the stream ended. */
  next(f: (m: ControlMessage) => boolean, ms: number): Promise<ControlMessage | undefined>;
  /** Cancels the stream; refused when the server had ended it with an error status first. */
  close(): Promise<StreamOutcome>;
}

function openRaw(client: grpc.Client, token: string | undefined): RawStream {
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  const call = client.makeBidiStreamRequest<Buffer, ControlMessage>(
    '/proxymgr.v1.AgentStream/Stream',
    (b) => b,
    (b) => ControlMessage.decode(b),
    md,
    { deadline: Date.now() + 30_000 },
  );
  let settle!: (o: StreamOutcome) => void;
  let done = false;
  const outcome = new Promise<StreamOutcome>((resolve) => {
    settle = (o) => {
      if (done) return;
      done = true;
      resolve(o);
    };
  });
  const seen: ControlMessage[] = [];
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of [...waiters]) w();
  };
  call.on('data', (m: ControlMessage) => {
    seen.push(m);
    wake();
  });
  // The status says how the stream ended; 'error' must be listened to (or it throws) but says the same.
  call.on('status', (st: grpc.StatusObject) => {
    settle(st.code === grpc.status.OK || st.code === grpc.status.CANCELLED ? 'taken' : 'refused');
    wake();
  });
  call.on('error', () => undefined);
  return {
    write(b) {
      if (!done) call.write(b);
    },
    next(f, ms) {
      return new Promise((resolve) => {
        const timer = setTimeout(() => finish(undefined), ms);
        const finish = (m: ControlMessage | undefined) => {
          clearTimeout(timer);
          waiters.delete(check);
          resolve(m);
        };
        const check = () => {
          const m = seen.find(f);
          if (m || done) finish(m);
        };
        waiters.add(check);
        check();
      });
    },
    close() {
      call.cancel();
      return outcome;
    },
  };
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await listening(port)) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${port}`);
}

export { attackLines };

export const benchmark = defineBenchmark({
  name: 'hostile',
  summary:
    'seeded hostile inputs at every entry point of real processes: rejected with a message, nothing crashes or leaks',
  options,
  smoke: { inputs: 60 },
  fields: ['inputs', 'rejected', 'accepted', 'crashes', 'injected_lines_rendered', 'honest_failed_requests'],
  run,
  targets: (r, o) => [
    { name: 'crashes = 0', held: r.crashes === 0, value: r.crashes, smoke: true },
    {
      name: 'injected_lines_rendered = 0',
      held: r.injected_lines_rendered === 0,
      value: r.injected_lines_rendered,
      smoke: true,
    },
    { name: 'honest_failed_requests = 0', held: r.honest_failed_requests === 0, value: r.honest_failed_requests },
    { name: 'client_side_errors = 0', held: r.client_side_errors === 0, value: r.client_side_errors, smoke: true },
    {
      name: 'unsanitized_texts_kept = 0',
      held: r.unsanitized_texts_kept === 0,
      value: r.unsanitized_texts_kept,
      smoke: true,
    },
    {
      name: 'forged_answers_taken = 0',
      held: r.forged_answers_taken === 0,
      value: r.forged_answers_taken,
      smoke: true,
    },
    {
      name: 'the agent admin API still answers',
      held: r.agent_admin_alive === true,
      value: String(r.agent_admin_alive),
      smoke: true,
    },
    { name: 'gate_floods_swayed = 0', held: r.gate_floods_swayed === 0, value: r.gate_floods_swayed, smoke: true },
    { name: 'inputs ≥ --inputs', held: num(r.inputs) >= o.inputs, value: r.inputs, smoke: true },
  ],
});
