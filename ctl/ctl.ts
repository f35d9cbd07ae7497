/**
 * `proxymgr ctl`: a gRPC client of a control plane's Rollout and ControlPlaneAdmin services. It shares the generated
 * contract and common/ with the control plane, never its code (test/unit/layout.test.ts).
 */
import * as grpc from '@grpc/grpc-js';
import {
  GatePolicy,
  PreflightPolicy,
  RolloutClient,
  RolloutHistoryResponse,
  RolloutPlan,
  RolloutStatus,
} from '../common/gen/proxymgr/v1/rollout';
import {
  AgentView,
  ChangeDetail,
  ControlPlaneAdminClient,
  GetServiceRequest,
  ListChangesResponse,
  ListAgentsResponse,
  ServiceStatus,
} from '../common/gen/proxymgr/v1/admin';
import { FlagSpec, parseArgs, UsageError } from '../common/platform/args';
import { channelCredentials } from '../common/platform/grpc';
import { readTokenFile } from '../common/platform/auth';
import { Flags, gateFlags, int, onOff } from './flags';
import { renderAgents, renderAgentView } from './render-agents';
import { renderChange, renderChanges } from './render-changes';
import { renderHistory, renderPlan, renderStatus } from './render-rollout';
import { renderService } from './render-service';
import { printableText } from './table';

export const CTL_HELP = `usage: proxymgr ctl --controlplane HOST:PORT rollout COMMAND [options]
       proxymgr ctl --controlplane HOST:PORT agents [--json]
       proxymgr ctl --controlplane HOST:PORT agent NODE [--json]
       proxymgr ctl --controlplane HOST:PORT service NAME [--json] [--limit N]
       proxymgr ctl --controlplane HOST:PORT changes [--json] [--limit N]
       proxymgr ctl --controlplane HOST:PORT change ID [--json]

Operates rollouts through any control-plane replica (the state lives in ZooKeeper; any replica answers), and
shows the fleet.

commands:
  agents              every agent this replica knows: state (SYNCED, STALE, NACKED, DISCONNECTED), revision and
                      version it runs and should run, age of its last ACK, labels, last error
  agent NODE          one agent three ways: what the control plane wants it to run, what it ACKed, and what its
                      HAProxy has (asked of the agent), server by server, with the differences marked "!" 
  service NAME        one service across the fleet: per agent the version of it that runs, by which apply method
                      (runtime, reload, nothing), the version it should run, and a refusal with HAProxy's message
  changes             recent changes from the sources, newest first: where each came from and when, how many of the
                      agents that should run it applied it, source → applied p50/p99/max, the slowest agents, those
                      still behind, who refused it and why; and the age of the oldest change not yet applied
  change ID           one change agent by agent: applied, refused or pending, by which method, source → applied
                      and of it the time it waited on the agent, connected or not, HAProxy's message
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
  --limit N                  history: how many (default 20); service: agents listed (default 200); changes: how
                             many (default 50)
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
      (positional[0] === 'agents' && positional.length === 1) ||
      (positional[0] === 'agent' && positional.length === 2) ||
      (positional[0] === 'service' && positional.length === 2) ||
      (positional[0] === 'changes' && positional.length === 1) ||
      (positional[0] === 'change' && positional.length === 2);
    if (!isFleet && (positional[0] !== 'rollout' || positional.length !== 2))
      throw new UsageError(
        'expected "rollout COMMAND", "agents", "agent NODE", "service NAME", "changes" or "change ID"',
      );
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
    if (positional[0] === 'service')
      return await serviceCommand(
        new ControlPlaneAdminClient(address, channelCredentials(tls), {
          'grpc.max_receive_message_length': 64 * 1024 * 1024,
        }),
        { name: positional[1]!, limit: int(flags, 'limit') ?? 0 },
        flags.json === true,
        out,
      );
    if (positional[0] === 'changes' || positional[0] === 'change')
      return await changesCommand(
        new ControlPlaneAdminClient(address, channelCredentials(tls), {
          'grpc.max_receive_message_length': 64 * 1024 * 1024,
        }),
        positional[0] === 'change' ? { id: positional[1]! } : { limit: int(flags, 'limit') ?? 0 },
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

/** `ctl service NAME`: which agents run which version of it, how, and who refused it. */
async function serviceCommand(
  client: InstanceType<typeof ControlPlaneAdminClient>,
  req: GetServiceRequest,
  json: boolean,
  out: (s: string) => void,
): Promise<number> {
  try {
    const s = await unary<GetServiceRequest, ServiceStatus>(client.getService.bind(client), req);
    out(json ? JSON.stringify(ServiceStatus.toJSON(s)) + '\n' : printableText(renderService(s)));
    return 0;
  } finally {
    client.close();
  }
}

/** `ctl changes` (recent changes and how far each got) and `ctl change ID` (one change agent by agent). */
async function changesCommand(
  client: InstanceType<typeof ControlPlaneAdminClient>,
  req: { id: string } | { limit: number },
  json: boolean,
  out: (s: string) => void,
): Promise<number> {
  try {
    if ('id' in req) {
      const d = await unary<{ id: string }, ChangeDetail>(client.getChange.bind(client), req);
      out(json ? JSON.stringify(ChangeDetail.toJSON(d)) + '\n' : printableText(renderChange(d)));
    } else {
      const r = await unary<{ limit: number }, ListChangesResponse>(client.listChanges.bind(client), req);
      out(json ? JSON.stringify(ListChangesResponse.toJSON(r)) + '\n' : printableText(renderChanges(r)));
    }
    return 0;
  } finally {
    client.close();
  }
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
