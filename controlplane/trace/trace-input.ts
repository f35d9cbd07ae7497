import { applyMethodFromWire } from '../../common/protocol/apply-method';
import { DesiredState } from '../../common/protocol/types';
import { Ack } from '../../common/gen/proxymgr/v1/stream';
import { checkedRefusals } from '../grpc/agent-input';
import { AppliedReport } from './change-trace';

/** A push names at most this many changes (the newest); older ones are traced from the ACK's state alone. */
export const MAX_TRACED_PER_PUSH = 1000;

/**
 * What an ACK of the push of `state` (sent at `sentAt`) says of the changes it brings, read as hostile input: the
 * apply is put at the ACK's arrival less the agent's "applied so long ago", but never before the push was sent; a
 * change's time on the agent counts only for ids it names at most once each, up to what a push may carry, and never
 * more than the time since the push; refusals only for services of `state` (checkedRefusals).
 */
export function tracedAck(ack: Ack, state: DesiredState, sentAt: number, now: number): AppliedReport {
  const sincePush = Math.max(0, now - sentAt);
  const queued = new Map<string, number>();
  // Entries read, not distinct ids, are bounded: a message of one id repeated a million times costs no more.
  for (const c of ack.changes.slice(0, 2 * MAX_TRACED_PER_PUSH)) {
    if (typeof c.id === 'string' && c.id.length <= 64 && !queued.has(c.id))
      queued.set(c.id, Math.min(c.queuedMs, sincePush));
  }
  return {
    method: applyMethodFromWire(ack.method),
    at: now - Math.min(ack.appliedAgoMs, sincePush),
    queued,
    refusals: new Map(checkedRefusals(ack.refusals, state).map((r) => [r.service, r.message])),
  };
}
