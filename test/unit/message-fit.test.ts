import { ServiceCounters } from '../../common/gen/proxymgr/v1/counters';
import { AgentMessage, Hello } from '../../common/gen/proxymgr/v1/stream';
import { MAX_COUNTED_SERVICES, MAX_DECLARED_RESOURCES } from '../../common/protocol/resources';
import { AGENT_MESSAGE_BUDGET_BYTES, fitAgentMessage } from '../../agent/sources/message-fit';

const size = (m: AgentMessage) => AgentMessage.encode(m).finish().length;
/** A realistic long service name of a large fleet. */
const name = (i: number) => `team-payments-eu-west-checkout-backend-${String(i).padStart(6, '0')}`;
const counter = (service: string, requests = 1): ServiceCounters => ({
  service,
  requests,
  responses5xx: 3,
  sessions: 123_456,
  connectionErrors: 7,
  responseErrors: 1,
  retries: 2,
  serversDown: 1,
  servers: 20,
  queue: 0,
  rtimeMs: 0,
});
const hello = (resources: number): Hello =>
  Hello.fromPartial({
    nodeId: 'n1',
    agentVersion: 't',
    haproxyVersion: '2.6',
    runningVersion: 'v1',
    protocolVersion: 2,
    baseVersion: 'v1',
    baseGlobalsVersion: 'abcdef0123456789',
    baseResources: Object.fromEntries(Array.from({ length: resources }, (_, i) => [name(i), 'abcdef0123456789'])),
  });

describe('messages to the control plane fit its receive limit', () => {
  test('a message that fits is sent as it is', () => {
    const msg: AgentMessage = { hello: hello(1000) };
    const f = fitAgentMessage(msg);
    expect(f.msg).toBe(msg);
    expect(f.cut).toEqual([]);
  });

  test("a hello declaring a large fleet's services declares no base (a full state comes), and says so", () => {
    const msg: AgentMessage = { hello: hello(80_000) };
    expect(size(msg)).toBeGreaterThan(4 * 1024 * 1024); // the control plane would refuse it
    const f = fitAgentMessage(msg);
    expect(size(f.msg)).toBeLessThanOrEqual(AGENT_MESSAGE_BUDGET_BYTES);
    expect(f.msg.hello).toMatchObject({ nodeId: 'n1', runningVersion: 'v1', baseVersion: '', baseResources: {} });
    expect(f.cut.join()).toMatch(/hello: the 80000 services held \(version v1\) are not declared .*full state/);
  });

  test('a hello declaring more services than the control plane takes declares none (it would be refused)', () => {
    const small = Hello.fromPartial({
      ...hello(0),
      baseResources: Object.fromEntries(Array.from({ length: MAX_DECLARED_RESOURCES + 1 }, (_, i) => [`s${i}`, 'ab'])),
    });
    const f = fitAgentMessage({ hello: small });
    expect(Object.keys(f.msg.hello!.baseResources)).toHaveLength(0);
    expect(f.cut.join()).toMatch(/declares at most 100000/);
  });

  test('counters beyond what the control plane counts keep the first services by name, whatever order they came in', () => {
    const all = Array.from({ length: 60_000 }, (_, i) => counter(name(i), i));
    const shuffled = [...all].reverse();
    const a = fitAgentMessage({ stats: { counters: all, runningVersion: 'v1' } });
    const b = fitAgentMessage({ stats: { counters: shuffled, runningVersion: 'v1' } });
    expect(a.msg.stats!.counters).toHaveLength(MAX_COUNTED_SERVICES);
    expect(a.msg.stats!.counters.map((c) => c.service)).toEqual(b.msg.stats!.counters.map((c) => c.service));
    expect(a.msg.stats!.counters[0]!.service).toBe(name(0));
    expect(a.cut.join()).toMatch(/stats: counters of 50000 of 60000 services left out/);
  });

  test('counters with long names cut by bytes, to a stable prefix by name', () => {
    const long = (i: number) => `${'x'.repeat(240)}-${String(i).padStart(6, '0')}`;
    const counters = Array.from({ length: MAX_COUNTED_SERVICES }, (_, i) => counter(long(i)));
    // A budget a quarter of the real one: 10,000 counters of ~290 bytes do not fit in it.
    const budget = AGENT_MESSAGE_BUDGET_BYTES / 4;
    const f = fitAgentMessage({ stats: { counters: [...counters].reverse(), runningVersion: 'v1' } }, budget);
    expect(size(f.msg)).toBeLessThanOrEqual(budget);
    const kept = f.msg.stats!.counters;
    expect(kept.length).toBeGreaterThan(1000);
    expect(kept.map((c) => c.service)).toEqual(counters.slice(0, kept.length).map((c) => c.service));
    expect(f.cut.join()).toMatch(/counters of \d+ of 10000 services left out \(kept the first \d+ by name/);
  });

  test('an ACK of a partial apply with a flood of warnings keeps its rejected services and counters; the warnings are cut and counted', () => {
    const warnings = Array.from({ length: 40_000 }, (_, i) => `server web/s${i}: left out: ${'why '.repeat(40)}`);
    const msg: AgentMessage = {
      ack: {
        version: 'v2',
        nonce: 'n7',
        method: 2,
        reasons: ['set server web/s1 weight 3', 'x'.repeat(100_000)],
        runtimeCommands: 3,
        durationMs: 12,
        warnings,
        rejectedServices: ['web', 'api'],
        counters: Array.from({ length: 5000 }, (_, i) => counter(name(i))),
        refusals: [],
        changes: [],
        appliedAgoMs: 0,
      },
    };
    expect(size(msg)).toBeGreaterThan(4 * 1024 * 1024);
    const f = fitAgentMessage(msg);
    const ack = f.msg.ack!;
    expect(size(f.msg)).toBeLessThanOrEqual(AGENT_MESSAGE_BUDGET_BYTES);
    expect(ack).toMatchObject({ version: 'v2', nonce: 'n7', rejectedServices: ['web', 'api'] });
    expect(ack.counters).toHaveLength(5000);
    expect(ack.reasons[0]).toBe('set server web/s1 weight 3');
    expect(ack.reasons[1]!.length).toBeLessThan(1200); // clipped, marked
    expect(ack.reasons[1]).toMatch(/100000 characters, cut to fit/);
    expect(ack.warnings.length).toBeLessThan(40_000);
    expect(ack.warnings[ack.warnings.length - 1]).toMatch(
      /… and \d+ more left out to fit the control plane's message limit/,
    );
    expect(f.cut.join()).toMatch(/ack: \d+ of 40000 warnings left out/);
  });

  test('a state report too large says so in its error instead of ending the stream', () => {
    const servers = Array.from({ length: 39_000 }, (_, i) => ({
      backend: name(i),
      name: `server-${i}-${'n'.repeat(60)}`,
      address: '10.0.0.1',
      port: 8080,
      weight: 1,
      adminState: 'ready',
      operState: 'up',
    }));
    const f = fitAgentMessage({ stateReport: { id: 'q1', servers, error: '', runningVersion: 'v1' } });
    expect(f.msg.stateReport).toMatchObject({ id: 'q1', servers: [], runningVersion: 'v1' });
    expect(f.msg.stateReport!.error).toMatch(
      /HAProxy has 39000 servers, more than an answer .* AgentAdmin\/HaproxyState/,
    );
  });

  test("a NACK's HAProxy output is cut to fit", () => {
    const output = '[WARNING] a line of haproxy -c output\n'.repeat(200_000);
    const f = fitAgentMessage({
      nack: {
        version: 'v2',
        nonce: 'n',
        reason: 'rejected',
        haproxyOutput: output,
        runningVersion: 'v1',
        refusals: [],
      },
    });
    expect(size(f.msg)).toBeLessThanOrEqual(AGENT_MESSAGE_BUDGET_BYTES);
    expect(f.msg.nack!.haproxyOutput).toMatch(/^\[WARNING\] a line/);
    expect(f.msg.nack!.haproxyOutput).toMatch(/bytes, cut to fit the message limit\)$/);
  });
});
