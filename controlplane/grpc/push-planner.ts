import { createHash } from 'node:crypto';
import { Delta, diff, fullDelta, PROTOCOL_VERSION, ResourceSet, resourceSet } from '../../common/protocol/resources';
import { DesiredState } from '../../common/protocol/types';
import { Hello } from '../../common/gen/proxymgr/v1/stream';
import { HeldResources } from '../service-status';
import { cachedBody, pushBody } from './push-encoding';

/**
 * What to push to an agent, decided from what its stream knows the agent holds (docs/protocol.md). The decisions are
 * pure functions of a Holding and the desired state; encodePush only adds the shared encoding cache (push-encoding.ts).
 */

/** How a push takes the agent to the desired state: what changed, everything, or a whole state (protocol 0). */
export type PushKind = 'delta' | 'full' | 'protocol 0';

/**
 * What an agent declared it holds. `key` is a sha256 of the whole declaration (not the XOR digest, which a hostile
 * agent could make collide with another set): two agents with the same key hold the same set and share a delta.
 */
export interface Declared extends ResourceSet {
  readonly key: string;
}

/** What the control plane knows an agent holds: a state object it sent, or the set the agent declared in its hello. */
export type Held = { readonly state: DesiredState } | { readonly declared: Declared };

/** What a stream knows its agent holds: everything the planner reads. */
export interface Holding {
  /** The stream protocol the hello named: 0 (whole states) or PROTOCOL_VERSION (incremental pushes). */
  readonly protocol: number;
  /** Protocol 2: what the agent holds (what it was sent last, or declared in its hello). */
  readonly held: Held | undefined;
  /** Protocol 2: the agent asked for a full push (Resync). */
  readonly needFull: boolean;
  /** Protocol 0: what the agent runs or was last sent. */
  readonly sentVersion: string;
  /** Protocol 0: the version NACKed by the last answer, not sent again while it is the last word (no resend loop). */
  readonly nackedVersion: string;
}

/** Deltas from a declared base larger than this are encoded for their stream only. */
const MAX_CACHED_DECLARED_BYTES = 256 * 1024;

/** The resource set an agent declared in its hello (checked by helloProblem): one hash, not one per resource. */
export function declaredSet(hello: Hello): Declared {
  const entries = Object.entries(hello.baseResources).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const h = createHash('sha256').update(hello.baseVersion).update('\0').update(hello.baseGlobalsVersion);
  for (const [name, version] of entries) h.update(`\n${name}\0${version}`);
  return {
    version: hello.baseVersion,
    globalsVersion: hello.baseGlobalsVersion,
    resources: new Map(entries),
    key: h.digest('hex'),
  };
}

/** Whether a declared set is exactly `desired` (same version, globals and resource versions). */
export function holdsExactly(declared: Declared, desired: DesiredState): boolean {
  const want = resourceSet(desired);
  if (
    declared.version !== desired.version ||
    declared.globalsVersion !== want.globalsVersion ||
    declared.resources.size !== want.resources.size
  )
    return false;
  for (const [name, version] of want.resources) if (declared.resources.get(name) !== version) return false;
  return true;
}

/** What an agent holds when its hello arrives: the version it runs and, in protocol 2, the base it declared. */
export function holdingOf(hello: Hello): Holding {
  const protocol = hello.protocolVersion;
  return {
    protocol,
    held: protocol === PROTOCOL_VERSION && hello.baseVersion ? { declared: declaredSet(hello) } : undefined,
    needFull: false,
    sentVersion: hello.runningVersion,
    nackedVersion: '',
  };
}

/** Whether the agent lacks `desired`: a push is due. */
export function lacks(h: Holding, desired: DesiredState): boolean {
  if (h.protocol === 0) return desired.version !== h.sentVersion && desired.version !== h.nackedVersion;
  const held = h.held;
  if (h.needFull || !held) return true;
  if ('state' in held)
    return (
      held.state !== desired &&
      (held.state.version !== desired.version || resourceSet(held.state).digest !== resourceSet(desired).digest)
    );
  return !holdsExactly(held.declared, desired);
}

/**
 * The agent was pushed `desired`: it holds it whether it applies it or not, and a different version having gone out,
 * a NACKed one is no longer the last word.
 */
export function afterPush(h: Holding, desired: DesiredState): Holding {
  return {
    protocol: h.protocol,
    held: { state: desired },
    needFull: false,
    sentVersion: desired.version,
    nackedVersion: '',
  };
}

/** The agent NACKed `version` and keeps running `runningVersion` (what a protocol 0 agent holds). */
export function afterNack(h: Holding, nack: { readonly version: string; readonly runningVersion: string }): Holding {
  return { ...h, nackedVersion: nack.version, sentVersion: nack.runningVersion };
}

/** The agent retried the last push after a transient failure and ACKed `version` this time. */
export function afterAckAgain(h: Holding, version: string): Holding {
  return { ...h, sentVersion: h.protocol === 0 ? version : h.sentVersion, nackedVersion: '' };
}

/** The agent could not take a delta (Resync): it takes nothing until a full push. */
export function afterResync(h: Holding): Holding {
  return { ...h, needFull: true };
}

/** What the agent holds as service versions (protocol 2), for the service status of its first ACK here. */
export function heldResources(h: Holding): HeldResources | undefined {
  const held = h.held;
  if (!held || h.needFull) return undefined;
  if ('state' in held) {
    const set = resourceSet(held.state);
    return { key: `s${set.version}\0${set.digest}`, resources: set.resources };
  }
  return { key: `d${held.declared.key}`, resources: held.declared.resources };
}

/** How long until a push sent at `sentAt` is overdue (answerTimeoutMs); zero or less: it is. */
export function msUntilOverdue(sentAt: number, answerTimeoutMs: number, now: number): number {
  return sentAt + answerTimeoutMs - now;
}

/** The encoded push (without nonce) that takes the agent from what it holds to `desired`, and its kind. */
export function encodePush(h: Holding, desired: DesiredState): { body: Buffer; kind: PushKind } {
  if (h.protocol === 0) return { body: pushBody(desired, '\0protocol-0', () => 'protocol-0'), kind: 'protocol 0' };
  const held = h.held;
  if (h.needFull || !held) return { body: pushBody(desired, '\0full', () => fullDelta(desired)), kind: 'full' };
  if ('state' in held) {
    const base = held.state;
    return {
      body: pushBody(desired, base.version, (): Delta => diff(resourceSet(base), desired)),
      kind: 'delta',
    };
  }
  // After a control-plane restart most agents declare the same base: one encoding for all of them. A base that
  // shares little with the desired state gets the full push (encoded once per state), and a large delta is
  // not kept: declarations cannot fill the cache with near-full bodies.
  const declared = held.declared;
  const key = `\0declared\0${declared.key}`;
  const cached = cachedBody(desired, key);
  if (cached) return { body: cached, kind: 'delta' };
  const d = diff(declared, desired);
  if (d.upserted.length * 2 > desired.services.length && d.upserted.length > 1)
    return { body: pushBody(desired, '\0full', () => fullDelta(desired)), kind: 'full' };
  return { body: pushBody(desired, key, () => d, MAX_CACHED_DECLARED_BYTES), kind: 'delta' };
}
