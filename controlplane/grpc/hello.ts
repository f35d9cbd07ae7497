import { status } from '@grpc/grpc-js';
import { Decision, Identity, labelRefusal, mayStreamAs } from '../../common/platform/auth';
import { MAX_DECLARED_RESOURCES, PROTOCOL_VERSION } from '../../common/protocol/resources';
import { Hello } from '../../common/gen/proxymgr/v1/stream';
import { AgentRegistry } from './registry';
import { MAX_VERSION_FIELD } from './agent-input';

const NODE_ID_RE = /^[A-Za-z0-9_.:@-]{1,253}$/;
const LABEL_KEY_RE = /^[A-Za-z0-9_./-]{1,63}$/;
export const MAX_LABELS = 64;
const MAX_LABEL_VALUE = 256;
const MAX_CAPABILITIES = 16;
const RESOURCE_NAME_RE = /^[A-Za-z0-9_.:-]{1,253}$/;
const RESOURCE_VERSION_RE = /^[0-9a-f]{1,64}$/;

/** Why a hello's protocol version is refused (FAILED_PRECONDITION), or undefined. */
export function protocolProblem(hello: Hello): string | undefined {
  if (hello.protocolVersion === 0 || hello.protocolVersion === PROTOCOL_VERSION) return undefined;
  return `the agent speaks stream protocol ${hello.protocolVersion}; this control plane speaks ${PROTOCOL_VERSION} (and 0, whole states, for agents from before incremental pushes): upgrade the control plane first (docs/protocol.md)`;
}

/** What is wrong with a hello (node id, labels, version strings), or undefined: the first message is hostile input. */
export function helloProblem(hello: Hello): string | undefined {
  if (!hello.nodeId) return 'hello.node_id is required';
  if (!NODE_ID_RE.test(hello.nodeId))
    return `hello.node_id: ${JSON.stringify(hello.nodeId.slice(0, 60))} is not a node id (1-253 of A-Z a-z 0-9 _ . : @ -)`;
  const labels = Object.entries(hello.labels);
  if (labels.length > MAX_LABELS) return `hello.labels: ${labels.length} labels, at most ${MAX_LABELS}`;
  for (const [k, v] of labels) {
    if (!LABEL_KEY_RE.test(k))
      return `hello.labels: key ${JSON.stringify(k.slice(0, 60))} is not a label name (1-63 of A-Z a-z 0-9 _ . / -)`;
    // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
    if (v.length > MAX_LABEL_VALUE || /[\x00-\x1f\x7f]/.test(v))
      return `hello.labels.${k}: value longer than ${MAX_LABEL_VALUE} characters or with control characters`;
  }
  for (const [name, v] of [
    ['agent_version', hello.agentVersion],
    ['haproxy_version', hello.haproxyVersion],
    ['running_version', hello.runningVersion],
    ['base_version', hello.baseVersion],
  ] as const) {
    // eslint-disable-next-line no-control-regex -- control characters are what this pattern finds
    if (v.length > MAX_VERSION_FIELD || /[\x00-\x1f\x7f]/.test(v))
      return `hello.${name}: longer than ${MAX_VERSION_FIELD} characters or with control characters`;
  }
  const declared = Object.entries(hello.baseResources);
  if (declared.length > MAX_DECLARED_RESOURCES)
    return `hello.base_resources: ${declared.length} resources, at most ${MAX_DECLARED_RESOURCES}`;
  for (const [name, version] of declared) {
    if (!RESOURCE_NAME_RE.test(name))
      return `hello.base_resources: key ${JSON.stringify(name.slice(0, 60))} is not a service name (1-253 of A-Z a-z 0-9 _ . : -)`;
    if (!RESOURCE_VERSION_RE.test(version))
      return `hello.base_resources.${name}: ${JSON.stringify(version.slice(0, 60))} is not a resource version (1-64 lowercase hex digits)`;
  }
  if (hello.baseGlobalsVersion !== '' && !RESOURCE_VERSION_RE.test(hello.baseGlobalsVersion))
    return `hello.base_globals_version: ${JSON.stringify(hello.baseGlobalsVersion.slice(0, 60))} is not a resource version (1-64 lowercase hex digits)`;
  if (hello.capabilities.length > MAX_CAPABILITIES)
    return `hello.capabilities: ${hello.capabilities.length} entries, at most ${MAX_CAPABILITIES}`;
  for (const c of hello.capabilities)
    if (!/^[a-z0-9_.-]{1,32}$/.test(c))
      return `hello.capabilities: ${JSON.stringify(c.slice(0, 40))} is not a capability name (1-32 of a-z 0-9 _ . -)`;
  return undefined;
}

/** A hello refused: the status the stream ends with and, for refusals an operator should see, the line to log. */
export interface HelloRefusal {
  readonly ok: false;
  readonly code: number;
  readonly details: string;
  readonly warn?: { readonly fields: Record<string, unknown>; readonly msg: string };
}

/** What decides whether a hello is admitted, besides the hello itself. */
export interface HelloContext {
  /** grpc-js `getPeer()` of the stream. */
  readonly peer: string;
  /** Who the caller is (the interceptor authenticated it and checked its role); asked once the hello is well-formed. */
  identify(): Decision;
  readonly registry: AgentRegistry;
}

/**
 * Whether a hello may open a session: well-formed, a protocol this control plane speaks, a node id and labels its
 * identity may claim, and room among the node ids that identity may hold. Admitted, the caller's identity.
 */
export function admitHello(
  hello: Hello,
  ctx: HelloContext,
): { readonly ok: true; readonly identity: Identity } | HelloRefusal {
  const bad = helloProblem(hello);
  if (bad) return { ok: false, code: status.INVALID_ARGUMENT, details: bad };
  const mismatch = protocolProblem(hello);
  if (mismatch)
    return {
      ok: false,
      code: status.FAILED_PRECONDITION,
      details: mismatch,
      warn: {
        fields: { node_id: hello.nodeId, protocol: hello.protocolVersion, peer: ctx.peer },
        msg: 'agent stream refused: protocol version',
      },
    };
  const who = ctx.identify();
  if (!who.ok) return { ok: false, code: who.code, details: who.details };
  const fields = { identity: who.identity.name, via: who.identity.via, node_id: hello.nodeId, peer: ctx.peer };
  if (!mayStreamAs(who.identity, hello.nodeId))
    return {
      ok: false,
      code: status.PERMISSION_DENIED,
      details: `${who.identity.name} (${who.identity.via}) may not stream as node_id "${hello.nodeId}" (see auth.clients node_ids)`,
      warn: { fields, msg: 'agent stream refused: node id not allowed for this identity' },
    };
  const refused =
    labelRefusal(who.identity, hello.labels) ??
    (who.identity.maxNodeIds !== undefined
      ? ctx.registry.admit(hello.nodeId, who.identity.name, who.identity.maxNodeIds)
      : undefined);
  if (refused)
    return {
      ok: false,
      code: status.PERMISSION_DENIED,
      details: refused,
      warn: { fields, msg: `agent stream refused: ${refused}` },
    };
  return { ok: true, identity: who.identity };
}

/**
 * Connects the agent of an admitted hello in the registry. With auth on (`authOn`) the record keeps the identity's
 * credential; an identity with max_node_ids owns the node id while its stream is open.
 */
export function connectAgent(registry: AgentRegistry, hello: Hello, peer: string, identity: Identity, authOn: boolean) {
  return registry.connect(
    {
      nodeId: hello.nodeId,
      labels: { ...hello.labels },
      agentVersion: hello.agentVersion,
      haproxyVersion: hello.haproxyVersion,
      peer,
      runningVersion: hello.runningVersion,
      capabilities: [...new Set(hello.capabilities)].sort(),
      ...(authOn ? { credential: identity.credential } : {}),
    },
    identity.maxNodeIds !== undefined ? identity.name : undefined,
  );
}
