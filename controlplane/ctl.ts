import { ageText, clipText, percent, plainText } from '../common/text';
import { isIP } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import {
  GatePolicy,
  PreflightPolicy,
  RolloutClient,
  RolloutHistoryResponse,
  RolloutInfo,
  RolloutPlan,
  RolloutStatus,
} from '../common/gen/proxymgr/v1/rollout';
import { AgentView, ControlPlaneAdminClient, ListAgentsResponse } from '../common/gen/proxymgr/v1/admin';
import { figureText } from './rollout/gate';
import { revisionOfVersion } from './rollout/revision';
import { FlagSpec, parseArgs, UsageError } from '../common/args';
import { channelCredentials } from '../common/grpc';
import { readTokenFile } from '../common/auth';

export const CTL_HELP = `usage: proxymgr ctl --controlplane HOST:PORT rollout COMMAND [options]
       proxymgr ctl --controlplane HOST:PORT agents [--json]
       proxymgr ctl --controlplane HOST:PORT agent NODE [--json]

Operates rollouts through any control-plane replica (the state lives in ZooKeeper; any replica answers), and
shows the fleet.

commands:
  agents              every agent this replica knows: state (SYNCED, STALE, NACKED, DISCONNECTED), revision and
                      version it runs and should run, age of its last ACK, labels, last error
  agent NODE          one agent three ways: what the control plane wants it to run, what it ACKed, and what its
                      HAProxy has (asked of the agent), server by server, with the differences marked "!" 
  rollout status      the current (or last) rollout: waves, and per agent the revision, ACK/NACK and error
  rollout pause       start no new wave; agents that have the revision keep it
  rollout resume      continue a paused rollout (or a halted one, forgiving the NACKs so far)
  rollout promote     release the revision to every agent now (no more waves, no bake time)
  rollout abort       roll back: every agent gets the last fully released revision
  rollout history     finished rollouts, newest first
  rollout plan        what the pending revision changes: services added, removed, changed; which agents get
                      them; per agent its preflight (passed/failed, reload or runtime and why)
  rollout policy      change the current rollout's policy (--next: the next rollout's)

options:
  --controlplane HOST:PORT   a control plane (default 127.0.0.1:7000)
  --json                     machine-readable output (one JSON object; with --watch one per line)
  --watch                    status: redraw until the rollout finishes (live progress bar and table)
  --interval-ms N            --watch refresh period (default 500)
  --id ROLLOUT_ID            pause/resume/promote/abort only if this is the current rollout
  --limit N                  history: how many (default 20)
  --waves 1,10%,50%,100%     policy: wave sizes (counts or cumulative shares)
  --bake-ms N  --max-nacks N  --auto-rollback true|false  --next
  --preflight on|off  --preflight-max-failures N
  --gate on|off  --gate-min-requests N  --gate-on-insufficient pass|halt
  --gate-threshold METRIC=X[,METRIC=X]   http_5xx, errors, retries, servers_down (shares, 0.05 = 5 points), queue
  --cacert FILE              TLS: the CA that signed the control plane's certificate
  --cert FILE --key FILE     mTLS: this client's certificate and key (its identity: auth.clients cert)
  --token-file FILE          a file holding a bearer token (its identity: auth.clients token_file)
  --timeout-ms N             give up on a call after this long (default 10000)
  --help                     show this help`;

const FLAGS: FlagSpec = {
  controlplane: 'string',
  json: 'boolean',
  watch: 'boolean',
  'interval-ms': 'string',
  id: 'string',
  limit: 'string',
  waves: 'string',
  'bake-ms': 'string',
  'max-nacks': 'string',
  'auto-rollback': 'string',
  next: 'boolean',
  preflight: 'string',
  'preflight-max-failures': 'string',
  gate: 'string',
  'gate-min-requests': 'string',
  'gate-on-insufficient': 'string',
  'gate-threshold': 'string',
  cacert: 'string',
  cert: 'string',
  key: 'string',
  'token-file': 'string',
  'timeout-ms': 'string',
  help: 'boolean',
};

type Flags = Record<string, string | boolean | undefined>;

type UnaryFn<Req, Res> = (
  req: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  cb: (err: grpc.ServiceError | null, res: Res) => void,
) => unknown;

/** Calls are bounded by --timeout-ms: a control plane that does not answer must not hang a script. */
let callTimeoutMs = 10_000;
/** `authorization: Bearer …` from --token-file, on every call. */
let callMetadata = new grpc.Metadata();
const unary = <Req, Res>(fn: UnaryFn<Req, Res>, req: Req) =>
  new Promise<Res>((resolve, reject) =>
    fn(req, callMetadata.clone(), { deadline: Date.now() + callTimeoutMs }, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );

function int(flags: Flags, name: string): number | undefined {
  const v = flags[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^\d+$/.test(v))
    throw new UsageError(`--${name}: expected a non-negative integer, got "${String(v)}"`);
  return Number(v);
}

/** `proxymgr ctl …`. */
export async function runCtlCommand(
  argv: string[],
  out: (s: string) => void = (s) => process.stdout.write(s),
): Promise<number> {
  let positional: string[];
  let flags: Flags;
  try {
    ({ positional, flags } = parseArgs(argv, FLAGS));
    if (flags.help) {
      out(CTL_HELP + '\n');
      return 0;
    }
    const isFleet =
      (positional[0] === 'agents' && positional.length === 1) || (positional[0] === 'agent' && positional.length === 2);
    if (!isFleet && (positional[0] !== 'rollout' || positional.length !== 2))
      throw new UsageError('expected "rollout COMMAND", "agents" or "agent NODE"');
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`proxymgr ctl: ${err.message}\n\n${CTL_HELP}`);
    return 2;
  }
  const address = typeof flags.controlplane === 'string' ? flags.controlplane : '127.0.0.1:7000';
  const str = (name: string) => (typeof flags[name] === 'string' ? flags[name] : undefined);
  const tls =
    str('cacert') || str('cert') || str('key') ? { ca: str('cacert'), cert: str('cert'), key: str('key') } : undefined;
  let client: InstanceType<typeof RolloutClient>;
  try {
    callTimeoutMs = int(flags, 'timeout-ms') ?? 10_000;
    callMetadata = new grpc.Metadata();
    const tokenFile = str('token-file');
    if (tokenFile) callMetadata.set('authorization', `Bearer ${readTokenFile(tokenFile, '--token-file')}`);
    if (positional[0] === 'agents')
      return await agentsCommand(
        new ControlPlaneAdminClient(address, channelCredentials(tls), {
          'grpc.max_receive_message_length': 64 * 1024 * 1024,
        }),
        flags.json === true,
        out,
      );
    if (positional[0] === 'agent')
      return await agentCommand(
        new ControlPlaneAdminClient(address, channelCredentials(tls), {
          'grpc.max_receive_message_length': 64 * 1024 * 1024,
        }),
        positional[1]!,
        flags.json === true,
        out,
      );
    client = new RolloutClient(address, channelCredentials(tls));
  } catch (err) {
    if (typeof (err as { code?: unknown }).code !== 'number') {
      console.error(`proxymgr ctl: ${(err as Error).message}`);
      return 2;
    }
    return callFailed(err as grpc.ServiceError);
  }
  const json = flags.json === true;
  const print = (s: RolloutStatus) =>
    out(json ? JSON.stringify(RolloutStatus.toJSON(s)) + '\n' : printableText(renderStatus(s)));
  try {
    const cmd = positional[1]!;
    switch (cmd) {
      case 'status':
        if (!flags.watch) {
          print(await unary(client.status.bind(client), {}));
          return 0;
        }
        return await watch(client, json, int(flags, 'interval-ms') ?? 500, out);
      case 'pause':
      case 'resume':
      case 'promote':
      case 'abort':
        print(await unary(client[cmd].bind(client), { rolloutId: typeof flags.id === 'string' ? flags.id : '' }));
        return 0;
      case 'history': {
        const h = await unary<{ limit: number }, RolloutHistoryResponse>(client.history.bind(client), {
          limit: int(flags, 'limit') ?? 20,
        });
        out(json ? JSON.stringify(RolloutHistoryResponse.toJSON(h)) + '\n' : printableText(renderHistory(h.rollouts)));
        return 0;
      }
      case 'plan': {
        const plan = await unary<object, RolloutPlan>(client.plan.bind(client), {});
        out(json ? JSON.stringify(RolloutPlan.toJSON(plan)) + '\n' : printableText(renderPlan(plan)));
        return 0;
      }
      case 'policy': {
        const ar = flags['auto-rollback'];
        if (ar !== undefined && ar !== 'true' && ar !== 'false')
          throw new UsageError('--auto-rollback: expected true or false');
        const bake = int(flags, 'bake-ms');
        const nacks = int(flags, 'max-nacks');
        // Gate and preflight policies are replaced whole: start from the policy they change.
        const wantsGate = ['gate', 'gate-min-requests', 'gate-on-insufficient', 'gate-threshold'].some(
          (f) => flags[f] !== undefined,
        );
        const wantsPreflight = flags.preflight !== undefined || flags['preflight-max-failures'] !== undefined;
        let gate: GatePolicy | undefined;
        let preflight: PreflightPolicy | undefined;
        if (wantsGate || wantsPreflight) {
          const st = await unary(client.status.bind(client), {});
          const base = flags.next === true ? (st.nextPolicy ?? st.defaultPolicy) : st.rollout?.policy;
          if (!base?.gate || !base.preflight)
            throw new UsageError(
              flags.next === true
                ? 'the control plane did not say its policy'
                : 'no current rollout to change (use --next)',
            );
          if (wantsGate) gate = gateFlags(flags, base.gate);
          if (wantsPreflight)
            preflight = {
              ...base.preflight,
              ...(flags.preflight !== undefined ? { enabled: onOff(flags, 'preflight') } : {}),
              ...(int(flags, 'preflight-max-failures') !== undefined
                ? { maxFailures: int(flags, 'preflight-max-failures')! }
                : {}),
            };
        }
        print(
          await unary(client.setPolicy.bind(client), {
            ...(gate ? { gate } : {}),
            ...(preflight ? { preflight } : {}),
            waves: typeof flags.waves === 'string' ? flags.waves.split(',').map((w) => w.trim()) : [],
            hasBakeMs: bake !== undefined,
            bakeMs: bake ?? 0,
            hasMaxNacks: nacks !== undefined,
            maxNacks: nacks ?? 0,
            hasAutoRollback: ar !== undefined,
            autoRollback: ar === 'true',
            next: flags.next === true,
          }),
        );
        return 0;
      }
      default:
        throw new UsageError(`unknown rollout command "${cmd}"`);
    }
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`proxymgr ctl: ${err.message}\n\n${CTL_HELP}`);
      return 2;
    }
    return callFailed(err as grpc.ServiceError);
  } finally {
    client.close();
  }
}

function onOff(flags: Flags, name: string): boolean {
  const v = flags[name];
  if (v !== 'on' && v !== 'off') throw new UsageError(`--${name}: expected on or off, got "${String(v)}"`);
  return v === 'on';
}

/** The gate policy `base` with the --gate* flags applied (the control plane checks the values). */
function gateFlags(flags: Flags, base: GatePolicy): GatePolicy {
  const g: GatePolicy = {
    ...base,
    thresholds: { ...(base.thresholds ?? { http5xx: 0, errors: 0, retries: 0, serversDown: 0, queue: 0 }) },
  };
  if (flags.gate !== undefined) g.enabled = onOff(flags, 'gate');
  const min = int(flags, 'gate-min-requests');
  if (min !== undefined) g.minRequests = min;
  const ins = flags['gate-on-insufficient'];
  if (ins !== undefined) {
    if (ins !== 'pass' && ins !== 'halt')
      throw new UsageError(`--gate-on-insufficient: expected pass or halt, got "${String(ins)}"`);
    g.onInsufficientTraffic = ins;
  }
  const names: Record<string, keyof NonNullable<GatePolicy['thresholds']>> = {
    http_5xx: 'http5xx',
    errors: 'errors',
    retries: 'retries',
    servers_down: 'serversDown',
    queue: 'queue',
  };
  const spec = flags['gate-threshold'];
  if (spec !== undefined) {
    for (const part of String(spec).split(',')) {
      const m = /^\s*([a-z_0-9]+)\s*=\s*([0-9.]+)\s*$/.exec(part);
      const key = m ? names[m[1]!] : undefined;
      if (!m || !key || !Number.isFinite(Number(m[2])))
        throw new UsageError(
          `--gate-threshold: expected METRIC=NUMBER with METRIC one of ${Object.keys(names).join(', ')}, got "${part}"`,
        );
      g.thresholds![key] = Number(m[2]);
    }
  }
  return g;
}

/** A gate verdict with the figures that decided it. */
function renderGate(w: RolloutInfo['waves'][number]): string {
  const g = w.gate;
  if (!g) return '';
  let text = `  wave ${w.index} gate: ${g.verdict.toUpperCase()}${g.overridden ? ' (overridden by operator)' : ''}${g.reason ? `: ${g.reason}` : ''}\n`;
  if (g.figures.length === 0) return text;
  text += table([
    ['    KEY', 'METRIC', 'NEW', 'STABLE', 'BEFORE', 'ALLOWED', 'REQUESTS', ''],
    ...g.figures.map((f) => {
      const fmt = (x: number) => figureText(f.metric, x);
      return [
        `    ${f.key}`,
        f.metric,
        fmt(f.canary),
        f.hasStable ? fmt(f.stable) : '-',
        f.hasBefore ? fmt(f.before) : '-',
        `+${fmt(f.threshold)}`,
        String(f.requests),
        f.regressed ? '! regressed' : '',
      ];
    }),
  ]);
  return text;
}

/** `ctl rollout plan` as text. */
export function renderPlan(p: RolloutPlan): string {
  if (!p.pending) return 'nothing pending: the revision discovery has is the stable one\n';
  let text = `revision ${p.fromRevision || '(none)'} -> ${p.toRevision}${p.rolloutId ? `  rollout ${p.rolloutId} ${p.state.toUpperCase()}` : '  (no rollout started yet)'}\n`;
  if (p.changes.length) text += `changes: ${p.changes.join('; ')}\n`;
  text += `services added: ${p.servicesAdded.join(', ') || '-'}\nservices removed: ${p.servicesRemoved.join(', ') || '-'}\nservices changed: ${p.servicesChanged.join(', ') || '-'}\n\n`;
  text += table([
    ['AGENT', 'GETS', 'PREFLIGHT', 'APPLY', 'WHY'],
    ...p.agents.map((a) => [
      a.nodeId,
      a.services.join(',') || '-',
      a.preflight,
      a.method || '-',
      (a.error ? `${a.error}` : a.reasons.join('; ')).replace(/\s+/g, ' ').slice(0, 200),
    ]),
  ]);
  return text;
}

function callFailed(e: grpc.ServiceError): number {
  const auth =
    e.code === grpc.status.PERMISSION_DENIED || e.code === grpc.status.UNAUTHENTICATED
      ? `${grpc.status[e.code]}: `
      : '';
  console.error(`proxymgr ctl: ${auth}${e.details ?? e.message}`);
  return 1;
}

/** `ctl agents`: the fleet as this replica sees it. */
async function agentsCommand(
  client: InstanceType<typeof ControlPlaneAdminClient>,
  json: boolean,
  out: (s: string) => void,
): Promise<number> {
  try {
    const list = await unary<object, ListAgentsResponse>(client.listAgents.bind(client), {});
    out(json ? JSON.stringify(ListAgentsResponse.toJSON(list)) + '\n' : printableText(renderAgents(list, Date.now())));
    return 0;
  } finally {
    client.close();
  }
}

/** `ctl agent NODE`: the three-way view. */
async function agentCommand(
  client: InstanceType<typeof ControlPlaneAdminClient>,
  nodeId: string,
  json: boolean,
  out: (s: string) => void,
): Promise<number> {
  try {
    // The control plane waits up to 5 s for the agent's answer: the call gets longer than that.
    callTimeoutMs = Math.max(callTimeoutMs, 8000);
    const view = await unary<{ nodeId: string }, AgentView>(client.getAgentView.bind(client), { nodeId });
    out(json ? JSON.stringify(AgentView.toJSON(view)) + '\n' : printableText(renderAgentView(view, Date.now())));
    return 0;
  } finally {
    client.close();
  }
}

/** Differences between what is wanted and what HAProxy has, per server (a `!` note each), and the table. */
export function renderAgentView(view: AgentView, now: number): string {
  const a = view.agent!;
  let text = `agent ${a.nodeId}  ${a.state}  ${a.connected ? `connected since ${a.connectedSince.slice(0, 19)} from ${a.peer}` : 'disconnected'}`;
  const labels = Object.entries(a.labels).map(([k, v]) => `${k}=${v}`);
  if (labels.length) text += `  labels ${labels.join(',')}`;
  text += `\n  runs        ${a.runningVersion || '-'}  (last ACK ${ageText(a.lastAckTime, now)}${a.lastAckTime ? ' ago' : ''})\n`;
  text += `  should run  ${a.desiredVersion || '(no desired state yet)'}\n`;
  if (a.lastNackedVersion) text += `  last NACK   ${a.lastNackedVersion}\n`;
  if (a.lastError) text += `  last error  ${a.lastError.replace(/\s+/g, ' ').slice(0, 300)}\n`;
  const rows: string[][] = [['SERVICE', 'SERVER', 'WANTED', 'HAPROXY', 'DIFFERENCE']];
  let differences = 0;
  const note = (s: string) => {
    differences++;
    return `! ${s}`;
  };
  const live = new Map<string, Map<string, AgentView['haproxy'][number]>>();
  for (const s of view.haproxy) {
    if (!live.has(s.backend)) live.set(s.backend, new Map());
    live.get(s.backend)!.set(s.name, s);
  }
  const known = view.haproxyError === '';
  for (const svc of view.desired?.services ?? []) {
    const have = live.get(svc.name);
    if (known && !have)
      rows.push([svc.name, '*', `${svc.servers.length} servers`, '-', note('service missing in HAProxy')]);
    for (const want of svc.servers) {
      const cur = have?.get(want.name);
      const wanted = `${want.address}:${want.port} w${want.weight ?? 1}`;
      if (!known) {
        rows.push([svc.name, want.name, wanted, '?', '']);
        continue;
      }
      if (!cur) {
        if (have) rows.push([svc.name, want.name, wanted, '-', note('missing in HAProxy')]);
        continue;
      }
      const diffs: string[] = [];
      // A hostname server shows its resolved IP in HAProxy: only the port can be compared.
      if ((isIP(want.address) !== 0 && cur.address !== want.address) || cur.port !== want.port)
        diffs.push(`address ${cur.address}:${cur.port}`);
      if (cur.weight !== (want.weight ?? 1)) diffs.push(`weight ${cur.weight}, wanted ${want.weight ?? 1}`);
      if (cur.adminState !== 'ready') diffs.push(cur.adminState);
      if (cur.operState === 'down') diffs.push('DOWN (health check)');
      rows.push([
        svc.name,
        want.name,
        wanted,
        `${cur.address}:${cur.port} w${cur.weight} ${cur.adminState} ${cur.operState}`,
        diffs.length ? note(diffs.join('; ')) : '',
      ]);
    }
    if (!have) continue;
    const wantedNames = new Set(svc.servers.map((s) => s.name));
    for (const cur of have.values()) {
      if (wantedNames.has(cur.name)) continue;
      const where = `${cur.address}:${cur.port} w${cur.weight} ${cur.adminState} ${cur.operState}`;
      rows.push([
        svc.name,
        cur.name,
        '-',
        where,
        cur.adminState === 'drain'
          ? '(removed; draining until its drain timeout, then deleted)'
          : cur.adminState === 'maint'
            ? '(removed; in maint, being deleted)'
            : note('in service but not wanted'),
      ]);
    }
  }
  const wantedServices = new Set((view.desired?.services ?? []).map((s) => s.name));
  for (const [backend, servers] of live)
    if (!wantedServices.has(backend))
      rows.push([backend, '*', '-', `${servers.size} servers`, note('service in HAProxy but not wanted')]);
  text += known
    ? `HAProxy (from the agent): ${view.haproxy.length} servers in ${live.size} backends; ${differences} difference(s)\n\n`
    : `HAProxy: unknown (${view.haproxyError})\n\n`;
  text += rows.length > 1 ? table(rows) : 'no services\n';
  if (a.counters.length > 0) {
    text += `\nTraffic (HAProxy's counters since the agent started, reported ${ageText(a.countersTime, now)}${a.countersTime ? ' ago' : ''}):\n`;
    text += table([
      ['SERVICE', 'REQUESTS', '5XX', 'SESSIONS', 'CONN ERRORS', 'RESP ERRORS', 'RETRIES', 'DOWN', 'QUEUE'],
      ...a.counters.map((c) => [
        c.service,
        String(c.requests),
        String(c.responses5xx),
        String(c.sessions),
        String(c.connectionErrors),
        String(c.responseErrors),
        String(c.retries),
        `${c.serversDown}/${c.servers}`,
        String(c.queue),
      ]),
    ]);
  }
  return text;
}

const shortVersion = (version: string) => (version ? clipText(version, 20) : '-');

/** The human view of ListAgents: one line per agent, states first so that trouble stands out. */
export function renderAgents(list: ListAgentsResponse, now: number): string {
  if (list.agents.length === 0) return 'no agents have connected to this control plane\n';
  const order: Record<string, number> = { NACKED: 0, STALE: 1, DISCONNECTED: 2, SYNCED: 3 };
  const agents = [...list.agents].sort(
    (a, b) => (order[a.state] ?? 9) - (order[b.state] ?? 9) || (a.nodeId < b.nodeId ? -1 : 1),
  );
  const counts = ['SYNCED', 'STALE', 'NACKED', 'DISCONNECTED']
    .map((s) => `${agents.filter((a) => a.state === s).length} ${s}`)
    .join(', ');
  return (
    `${agents.length} agents: ${counts}\n\n` +
    table([
      ['AGENT', 'STATE', 'REVISION', 'RUNS', 'SHOULD RUN', 'LAST ACK', 'LABELS', 'ERROR'],
      ...agents.map((a) => [
        a.nodeId,
        a.state,
        revisionOfVersion(a.runningVersion) || '-',
        shortVersion(a.runningVersion),
        a.desiredVersion === a.runningVersion ? '=' : shortVersion(a.desiredVersion),
        ageText(a.lastAckTime, now),
        Object.entries(a.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(',') || '-',
        a.lastError.replace(/\s+/g, ' ').slice(0, 160),
      ]),
    ])
  );
}

const ACTIVE = ['running', 'paused', 'halted'];

/** Redraws the status until the rollout is no longer active; with --json prints each changed status on a line. */
async function watch(
  client: InstanceType<typeof RolloutClient>,
  json: boolean,
  intervalMs: number,
  out: (s: string) => void,
): Promise<number> {
  let last = '';
  let sawActive = false;
  for (;;) {
    const s = await unary<object, RolloutStatus>(client.status.bind(client), {});
    const text = json ? JSON.stringify(RolloutStatus.toJSON(s)) : printableText(renderStatus(s));
    if (text !== last) {
      out(json ? text + '\n' : (process.stdout.isTTY ? '\x1b[2J\x1b[H' : '') + text + '\n');
      last = text;
    }
    const active = ACTIVE.includes(s.rollout?.state ?? '');
    sawActive ||= active;
    if (!active) return 0;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

function bar(done: number, total: number, width = 30): string {
  const filled = total === 0 ? width : Math.round((done / total) * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total}`;
}

/** Text from the fleet (NACK messages, names an agent reports) cannot drive the operator's terminal. */
const printable = (s: string) => plainText(s);
/** The same for a whole rendered text: line breaks stay. */
const printableText = (s: string) => plainText(s, true);

function table(rows: string[][]): string {
  rows = rows.map((r) => r.map(printable));
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

const time = (iso: string) => (iso ? iso.slice(11, 23) : '-');

/** The human view of a status: header, progress bar, waves, agents. */
export function renderStatus(s: RolloutStatus): string {
  if (!s.enabled) return 'rollouts are off on this control plane (no rollout section in proxymgr.yml)\n';
  let text = `replica ${s.replica}  leader ${s.leader || '(none)'}  stable revision ${s.stableRevision || '(none)'}\n`;
  const r = s.rollout;
  if (!r) return text + 'no rollout yet\n';
  text += `rollout ${r.id}: ${r.fromRevision} -> ${r.toRevision}  ${r.state.toUpperCase()}  (${r.reason})\n`;
  if (r.changes.length) text += `changes: ${r.changes.join('; ')}\n`;
  const p = r.policy;
  if (p) {
    text += `policy: waves ${p.waves.join(',')}  bake ${p.bakeMs} ms  max_nacks ${p.maxNacks}  auto_rollback ${p.autoRollback}${p.spreadBy ? `  spread_by ${p.spreadBy}` : ''}`;
    text += `  preflight ${p.preflight?.enabled ? 'on' : 'off'}`;
    const g = p.gate;
    text +=
      g?.enabled && g.thresholds
        ? `  gate on (min_requests ${g.minRequests}; 5xx +${percent(g.thresholds.http5xx)}, errors +${percent(g.thresholds.errors)}, retries +${percent(g.thresholds.retries)}, servers_down +${percent(g.thresholds.serversDown)}, queue +${g.thresholds.queue})\n`
        : '  gate off\n';
  }
  const total = s.agents.length;
  const on = s.agents.filter((a) => a.runningRevision === r.toRevision).length;
  text += `${bar(on, total)} agents on ${r.toRevision}; ${r.agentsNacked} NACK(s)\n\n`;
  text += table([
    ['WAVE', 'SPEC', 'AGENTS', 'ACKED', 'NACKED', 'STARTED', 'ACKED_AT', 'COMPLETED'],
    ...r.waves.map((w) => [
      String(w.index),
      w.spec,
      String(w.agents.length),
      String(w.acked),
      String(w.nacked),
      time(w.startedAt),
      time(w.ackedAt),
      time(w.completedAt),
    ]),
    ...r.pendingWaves.map((spec) => ['-', spec, '-', '-', '-', 'pending', '-', '-']),
  ]);
  for (const w of r.waves) text += renderGate(w);
  const pf = r.preflight;
  if (pf) {
    text += `preflight: ${pf.passed} passed, ${pf.failed} failed, ${pf.unanswered} unanswered${pf.completedAt ? '' : ' (running)'}${pf.overridden ? ' (overridden by operator)' : ''}\n`;
    for (const f of pf.failures) text += `  ${f.nodeId}: ${f.error.replace(/\s+/g, ' ').slice(0, 300)}\n`;
  }
  text += '\n';
  text += table([
    ['AGENT', 'WAVE', 'RELEASED', 'RUNNING', 'STATUS', 'REPLICA', 'ERROR'],
    ...s.agents.map((a) => [
      a.nodeId,
      a.wave ? String(a.wave) : '-',
      a.releasedRevision,
      a.runningRevision || '-',
      a.connected ? a.status : `${a.status} (disconnected)`,
      a.replica || '-',
      a.error.replace(/\s+/g, ' ').slice(0, 160),
    ]),
  ]);
  return text;
}

function renderHistory(rollouts: readonly RolloutInfo[]): string {
  if (rollouts.length === 0) return 'no finished rollouts\n';
  return table([
    ['ROLLOUT', 'FROM', 'TO', 'STATE', 'WAVES', 'ACKED', 'NACKED', 'CREATED', 'FINISHED', 'REASON'],
    ...rollouts.map((r) => [
      r.id,
      r.fromRevision,
      r.toRevision,
      r.state,
      String(r.waves.length),
      String(r.agentsAcked),
      String(r.agentsNacked),
      r.createdAt,
      r.finishedAt,
      r.reason,
    ]),
  ]);
}
