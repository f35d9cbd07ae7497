import { AGENT_MESSAGE_LIMIT_BYTES } from '../../common/platform/grpc';
import { RuntimeServer } from '../../common/gen/proxymgr/v1/admin';
import { ServiceCounters } from '../../common/gen/proxymgr/v1/counters';
import { AgentMessage, Hello, ServiceRefusal } from '../../common/gen/proxymgr/v1/stream';
import { MAX_COUNTED_SERVICES, MAX_DECLARED_RESOURCES } from '../../common/protocol/resources';

/**
 * What one message to the control plane may take: its receive limit less a margin for the note on what was cut
 * (added to an ACK's or a preflight report's warnings after the fit).
 */
export const AGENT_MESSAGE_BUDGET_BYTES = AGENT_MESSAGE_LIMIT_BYTES - 64 * 1024;

/** A string entry of a list (a reason, a warning) is cut to this many characters once a message is over budget. */
const MAX_ENTRY_CHARS = 1024;
/** A list cut to fit keeps at least this many entries (if it had them) before the next list is cut. */
const LIST_FLOOR = 20;

export interface FittedMessage {
  readonly msg: AgentMessage;
  /** What was left out, one sentence each (empty when the message fit as it was). */
  readonly cut: readonly string[];
  /** The encoded size of `msg`. */
  readonly bytes: number;
}

const sizeOf = (m: AgentMessage) => AgentMessage.encode(m).finish().length;

/** Bytes a varint of `n` takes. */
function varintBytes(n: number): number {
  let b = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    b++;
  }
  return b;
}

/** Bytes one entry of a repeated string or message field adds (tag, length, body; field numbers below 16). */
const entryBytes = (body: number) => 1 + varintBytes(body) + body;
const stringBytes = (s: string) => entryBytes(Buffer.byteLength(s));

/**
 * The longest prefix of `items` that fits in `room` bytes given each entry's cost, and never fewer than `floor`
 * entries (a floor the next field's cut pays for).
 */
function prefixThatFits<T>(items: readonly T[], cost: (t: T) => number, room: number, floor: number): number {
  let used = 0;
  let k = 0;
  for (; k < items.length; k++) {
    const c = cost(items[k]!);
    if (used + c > room && k >= floor) break;
    used += c;
  }
  return k;
}

/**
 * A message to the control plane made to fit its receive limit (grpc-js refuses a larger one and ends the stream,
 * and the agent would reconnect and fail the same way for ever). Nothing is cut from a message that fits. Otherwise,
 * least needed first:
 * - a hello declares no base (the control plane then sends a full state instead of what changed);
 * - reasons and warnings are clipped, then cut to what fits with a last entry saying how many were left out;
 * - counters keep the services first by name (a stable set: a service that flickered in and out of the samples
 *   would be counted from zero each time it came back);
 * - a partial apply's rejected services are cut last (the note in the warnings says how many);
 * - a state report too large for the stream says so, as one too long by count does (AgentAdmin/HaproxyState has it).
 */
export function fitAgentMessage(original: AgentMessage, budget = AGENT_MESSAGE_BUDGET_BYTES): FittedMessage {
  const cut: string[] = [];
  const msg = withinCounts(original, cut);
  const bytes = sizeOf(msg);
  if (bytes <= budget) return { msg, cut, bytes };
  const over = `${bytes} bytes, over the ${budget}-byte budget of a message to the control plane`;

  if (msg.hello) {
    cut.push(
      `hello: the ${Object.keys(msg.hello.baseResources).length} services held (version ${msg.hello.baseVersion}) are not declared (${over}): the control plane sends a full state`,
    );
    return finish({ hello: withoutBase(msg.hello) }, cut, budget);
  }

  if (msg.stats) {
    const counters = fitCounters(msg.stats.counters, (c) => sizeOf({ stats: { ...msg.stats!, counters: c } }), budget);
    if (counters.cut) cut.push(`stats: ${counters.cut} (${over})`);
    return finish({ stats: { ...msg.stats, counters: counters.kept } }, cut, budget);
  }

  if (msg.ack) {
    let ack = {
      ...msg.ack,
      reasons: clipEntries(msg.ack.reasons),
      warnings: clipEntries(msg.ack.warnings),
      refusals: clipRefusals(msg.ack.refusals),
    };
    const size = () => sizeOf({ ack });
    for (const field of ['reasons', 'warnings'] as const) {
      const r = fitStrings(ack[field], budget - (size() - listBytes(ack[field])), LIST_FLOOR);
      if (r.cut > 0) cut.push(`ack: ${r.cut} of ${ack[field].length} ${field} left out`);
      ack = { ...ack, [field]: r.kept };
    }
    const counters = fitCounters(ack.counters, (c) => sizeOf({ ack: { ...ack, counters: c } }), budget);
    if (counters.cut) cut.push(`ack: ${counters.cut}`);
    ack = { ...ack, counters: counters.kept };
    const rejected = fitNames(ack.rejectedServices, budget - (size() - listBytes(ack.rejectedServices)));
    if (rejected.length < ack.rejectedServices.length) {
      cut.push(
        `ack: ${ack.rejectedServices.length - rejected.length} of ${ack.rejectedServices.length} rejected services left out`,
      );
      ack = { ...ack, rejectedServices: rejected };
    }
    if (size() > budget && ack.refusals.length > 0) {
      // The names stay in rejected_services; only why is lost.
      cut.push(`ack: the messages of ${ack.refusals.length} refused services left out`);
      ack = { ...ack, refusals: [] };
    }
    cut.push(`(the ACK was ${over})`);
    return finish({ ack }, cut, budget);
  }

  if (msg.preflightReport) {
    let report = {
      ...msg.preflightReport,
      error: clipped(msg.preflightReport.error, 64 * 1024),
      haproxyOutput: clipped(msg.preflightReport.haproxyOutput, 1024 * 1024),
      reasons: clipEntries(msg.preflightReport.reasons),
      warnings: clipEntries(msg.preflightReport.warnings),
    };
    const size = () => sizeOf({ preflightReport: report });
    for (const field of ['reasons', 'warnings'] as const) {
      const r = fitStrings(report[field], budget - (size() - listBytes(report[field])), LIST_FLOOR);
      if (r.cut > 0) cut.push(`preflight report: ${r.cut} of ${report[field].length} ${field} left out`);
      report = { ...report, [field]: r.kept };
    }
    const rejected = fitNames(report.rejectedServices, budget - (size() - listBytes(report.rejectedServices)));
    if (rejected.length < report.rejectedServices.length) {
      cut.push(
        `preflight report: ${report.rejectedServices.length - rejected.length} of ${report.rejectedServices.length} rejected services left out`,
      );
      report = { ...report, rejectedServices: rejected };
    }
    cut.push(`(the preflight report was ${over})`);
    return finish({ preflightReport: report }, cut, budget);
  }

  if (msg.nack) {
    const nack = {
      ...msg.nack,
      reason: clipped(msg.nack.reason, 64 * 1024),
      refusals: clipRefusals(msg.nack.refusals).slice(0, 100),
    };
    const room = Math.max(0, budget - sizeOf({ nack: { ...nack, haproxyOutput: '' } }) - 256);
    cut.push(`nack: HAProxy's output cut to ${room} bytes (${over})`);
    return finish({ nack: { ...nack, haproxyOutput: clippedBytes(nack.haproxyOutput, room) } }, cut, budget);
  }

  if (msg.stateReport) {
    const n = msg.stateReport.servers.length;
    cut.push(`state report: ${n} servers left out (${over})`);
    const stateReport = {
      ...msg.stateReport,
      servers: [] as RuntimeServer[],
      error: `HAProxy has ${n} servers, more than an answer over the agent stream may hold (${bytes} bytes); ask the agent's AgentAdmin/HaproxyState`,
    };
    return finish({ stateReport }, cut, budget);
  }

  if (msg.resync) {
    cut.push(`resync: reason cut (${over})`);
    return finish({ resync: { ...msg.resync, reason: clipped(msg.resync.reason, 64 * 1024) } }, cut, budget);
  }
  return { msg, cut: [`a message of ${over} that nothing can be cut from`], bytes };
}

const withoutBase = (hello: Hello): Hello => ({ ...hello, baseVersion: '', baseResources: {}, baseGlobalsVersion: '' });

/**
 * The control plane's limits by count: a hello declaring more than MAX_DECLARED_RESOURCES is refused (so it declares
 * none), and counters beyond MAX_COUNTED_SERVICES are dropped (so the agent keeps the first by name itself, a stable
 * set, rather than whichever the control plane happens to be sent first).
 */
function withinCounts(msg: AgentMessage, cut: string[]): AgentMessage {
  if (msg.hello) {
    const n = Object.keys(msg.hello.baseResources).length;
    if (n <= MAX_DECLARED_RESOURCES) return msg;
    cut.push(
      `hello: the ${n} services held (version ${msg.hello.baseVersion}) are not declared (a hello declares at most ${MAX_DECLARED_RESOURCES}): the control plane sends a full state`,
    );
    return { hello: withoutBase(msg.hello) };
  }
  const counters = msg.stats?.counters ?? msg.ack?.counters;
  if (!counters || counters.length <= MAX_COUNTED_SERVICES) return msg;
  const kept = byService(counters).slice(0, MAX_COUNTED_SERVICES);
  const kind = msg.stats ? 'stats' : 'ack';
  cut.push(
    `${kind}: counters of ${counters.length - kept.length} of ${counters.length} services left out (the control plane counts at most ${MAX_COUNTED_SERVICES}; kept the first by name, up to ${JSON.stringify(kept[kept.length - 1]?.service ?? '')})`,
  );
  return msg.stats ? { stats: { ...msg.stats, counters: kept } } : { ack: { ...msg.ack!, counters: kept } };
}

const byService = (counters: readonly ServiceCounters[]) =>
  [...counters].sort((a, b) => (a.service < b.service ? -1 : a.service > b.service ? 1 : 0));

function finish(msg: AgentMessage, cut: string[], budget: number): FittedMessage {
  const bytes = sizeOf(msg);
  if (bytes > budget) cut.push(`still ${bytes} bytes after the cuts: the control plane will refuse it`);
  return { msg, cut, bytes };
}

/** Refusals with each message cut to MAX_ENTRY_CHARS. */
const clipRefusals = (list: readonly ServiceRefusal[]): ServiceRefusal[] =>
  list.map((r) => ({ ...r, message: clipped(r.message, MAX_ENTRY_CHARS) }));

function clipped(s: string, maxChars: number): string {
  return s.length <= maxChars
    ? s
    : `${s.slice(0, Math.floor(maxChars))}… (${s.length} characters, cut to fit the message limit)`;
}

/** `s` cut to at most about `maxBytes` bytes of UTF-8, marked. */
function clippedBytes(s: string, maxBytes: number): string {
  const b = Buffer.from(s);
  if (b.length <= maxBytes) return s;
  return `${b.subarray(0, maxBytes).toString()}… (${b.length} bytes, cut to fit the message limit)`;
}

/** A list of names cut to the prefix that fits `room` bytes (no note: every entry is read as a name). */
const fitNames = (list: readonly string[], room: number) => list.slice(0, prefixThatFits(list, stringBytes, room, 0));

const clipEntries = (list: readonly string[]) => list.map((s) => clipped(s, MAX_ENTRY_CHARS));
const listBytes = (list: readonly string[]) => list.reduce((n, s) => n + stringBytes(s), 0);

/** A string list cut to `room` bytes (at least `floor` entries), its last entry saying how many were left out. */
function fitStrings(list: readonly string[], room: number, floor: number): { kept: string[]; cut: number } {
  if (listBytes(list) <= room) return { kept: [...list], cut: 0 };
  const note = (n: number) => `… and ${n} more left out to fit the control plane's message limit`;
  const k = prefixThatFits(list, stringBytes, room - stringBytes(note(list.length)), floor);
  return { kept: [...list.slice(0, k), note(list.length - k)], cut: list.length - k };
}

/** Counters cut to the services first by name that fit (`size` measures the message with a given list). */
function fitCounters(
  counters: readonly ServiceCounters[],
  size: (c: ServiceCounters[]) => number,
  budget: number,
): { kept: ServiceCounters[]; cut: string } {
  if (size([...counters]) <= budget) return { kept: [...counters], cut: '' };
  const sorted = byService(counters);
  const cost = (c: ServiceCounters) => entryBytes(ServiceCounters.encode(c).finish().length);
  const k = prefixThatFits(sorted, cost, budget - size([]), 0);
  const kept = sorted.slice(0, k);
  const first = sorted[k]?.service ?? '';
  return {
    kept,
    cut: `counters of ${counters.length - k} of ${counters.length} services left out (kept the first ${k} by name; the first left out is ${JSON.stringify(first)})`,
  };
}
