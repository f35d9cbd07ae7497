import { serviceToProto, toProto } from '../../common/protocol/state-codec';
import { Delta, resourceVersion } from '../../common/protocol/resources';
import { DesiredState } from '../../common/protocol/types';
import { AgentStreamService, ControlMessage, Push } from '../../common/gen/proxymgr/v1/stream';

/**
 * Pushes are encoded once and the same bytes go to every agent that gets the same change (docs/protocol.md): the
 * protobuf encoding of a Push without its nonce is cached per (target state, base version), and each agent's
 * message is that body with its nonce and change ids appended (protobuf fields may come in any order) inside the
 * ControlMessage's length-delimited `push` field. Per agent that is two small headers and one copy of the body.
 */

const PRE_ENCODED = Symbol('pre-encoded push');

interface PreEncoded {
  readonly [PRE_ENCODED]: { readonly body: Buffer; readonly nonce: string; readonly changeIds: readonly string[] };
}

/**
 * At most this many bases per target state keep their encoded delta. Quiet fleets are on one or two; under a stream
 * of changes agents hold any of the last few dozen versions (each push carries what changed since the agent's last),
 * and a cache smaller than that recomputes the same deltas over and over.
 */
const MAX_BASES_PER_TARGET = 128;
const cache = new WeakMap<DesiredState, Map<string, Buffer>>();
export const encodingStats = { encoded: 0, reused: 0 };

/**
 * The Push body (no nonce) of `make()`'s delta, encoded once per (target, key) while `target` lives; a body larger
 * than `maxCachedBytes` is encoded for this caller only.
 */
export function pushBody(
  target: DesiredState,
  key: string,
  make: () => Delta | 'protocol-0',
  maxCachedBytes = Infinity,
): Buffer {
  const cached = cachedBody(target, key);
  if (cached) return cached;
  const d = make();
  const body = Buffer.from(
    Push.encode(
      d === 'protocol-0' ? { ...emptyPush(target.version), state: toProto(target) } : deltaToPush(d),
    ).finish(),
  );
  encodingStats.encoded++;
  if (body.length > maxCachedBytes) return body;
  let byBase = cache.get(target);
  if (!byBase) cache.set(target, (byBase = new Map<string, Buffer>()));
  if (byBase.size >= MAX_BASES_PER_TARGET) byBase.delete(byBase.keys().next().value!);
  byBase.set(key, body);
  return body;
}

/** The body encoded for (target, key), if it is still kept. */
export function cachedBody(target: DesiredState, key: string): Buffer | undefined {
  const body = cache.get(target)?.get(key);
  if (body) encodingStats.reused++;
  return body;
}

/** A ControlMessage to `call.write` that the serializer below turns into `body` + `nonce` without re-encoding. */
export function preEncodedPush(body: Buffer, nonce: string, changeIds: readonly string[] = []): ControlMessage {
  return { [PRE_ENCODED]: { body, nonce, changeIds } } as unknown as ControlMessage;
}

function emptyPush(version: string): Push {
  return {
    version,
    nonce: '',
    state: undefined,
    baseVersion: '',
    full: false,
    haproxy: undefined,
    globalsVersion: '',
    upserted: [],
    removed: [],
    digest: '',
    changeIds: [],
  };
}

export function deltaToPush(d: Delta): Push {
  return {
    ...emptyPush(d.version),
    baseVersion: d.baseVersion,
    full: d.full,
    haproxy: d.haproxy ? { global: [...d.haproxy.global], defaults: [...d.haproxy.defaults] } : undefined,
    globalsVersion: d.globalsVersion,
    upserted: d.upserted.map((s) => ({ name: s.name, version: resourceVersion(s), service: serviceToProto(s) })),
    removed: [...d.removed],
    digest: d.digest,
  };
}

function varintLength(n: number): number {
  let len = 1;
  while (n > 0x7f) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n > 0x7f) {
    buf[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[at++] = n;
  return at;
}

const PUSH_FIELD = 0x0a; // ControlMessage.push: field 1, length-delimited

function serializeControl(value: ControlMessage): Buffer {
  const pre = (value as unknown as Partial<PreEncoded>)[PRE_ENCODED];
  if (!pre) return Buffer.from(ControlMessage.encode(value).finish());
  // This agent's fields (nonce, change_ids): a Push of only them encodes only them (proto3 omits empty fields).
  const tail = Push.encode(Push.fromPartial({ nonce: pre.nonce, changeIds: [...pre.changeIds] })).finish();
  // One allocation per agent: [push tag][push length][body][tail].
  const pushLen = pre.body.length + tail.length;
  const out = Buffer.allocUnsafe(1 + varintLength(pushLen) + pushLen);
  out[0] = PUSH_FIELD;
  let at = writeVarint(out, 1, pushLen);
  at += pre.body.copy(out, at);
  out.set(tail, at);
  return out;
}

/** AgentStreamService with the serializer that understands pre-encoded pushes (register this one). */
export const AgentStreamDefinition = {
  ...AgentStreamService,
  stream: { ...AgentStreamService.stream, responseSerialize: serializeControl },
} as const;
