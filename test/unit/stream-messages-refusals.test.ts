import { HaproxyConfigError } from '../../common/platform/errors';
import { ackOf, nackOf } from '../../agent/sources/stream-messages';
import { fitAgentMessage } from '../../agent/sources/message-fit';
import { ApplyResult } from '../../agent/results';
import { Push } from '../../common/gen/proxymgr/v1/stream';

const push = { version: 'v2', nonce: 'n1' } as Push;
const result = (over: Partial<ApplyResult>): ApplyResult => ({
  version: 'v2',
  outcome: 'reload',
  reasons: [],
  commands: [],
  problems: [],
  durationMs: 5,
  ...over,
});

describe('ACK and NACK name the services refused, each with its message', () => {
  test('a partial ACK: one refusal per service left out whole (servers left out are only warnings)', () => {
    const msg = ackOf(
      push,
      result({
        outcome: 'runtime',
        problems: [
          {
            service: 'web',
            where: 'service web',
            message: "haproxy -c rejected it (kept its previous version): bad 's'",
          },
          { service: 'api', where: 'service api', message: 'haproxy -c rejected it (left out): x', leftOut: true },
          { service: 'db', server: 'h1', where: 'service db server h1', message: 'ca-file outside' },
        ],
      }) as ApplyResult & { outcome: 'runtime' },
      [],
    );
    expect(msg.ack!.rejectedServices).toEqual(['web', 'api']);
    expect(msg.ack!.refusals).toEqual([
      { service: 'web', message: "haproxy -c rejected it (kept its previous version): bad 's'", leftOut: false },
      { service: 'api', message: 'haproxy -c rejected it (left out): x', leftOut: true },
    ]);
  });

  test("a NACK names the services HAProxy's message blames, with their alerts", () => {
    const err = new HaproxyConfigError(
      'haproxy -c failed',
      '[ALERT] ...',
      ['web'],
      [],
      new Map([['web', ["unexpected character 's'"]]]),
    );
    const msg = nackOf(push, result({ outcome: 'rejected', error: err }), 'v1');
    expect(msg.nack!.refusals).toEqual([{ service: 'web', message: "unexpected character 's'", leftOut: false }]);
    expect(msg.nack!.runningVersion).toBe('v1');
  });

  test('an ACK over the message limit keeps the names and drops the messages last', () => {
    const problems = Array.from({ length: 50 }, (_, i) => ({
      service: `s${i}`,
      where: `service s${i}`,
      message: 'm'.repeat(5000),
    }));
    const msg = ackOf(push, result({ problems }) as ApplyResult & { outcome: 'reload' }, []);
    const fitted = fitAgentMessage(msg, 200_000);
    expect(fitted.bytes).toBeLessThanOrEqual(200_000);
    expect(fitted.msg.ack!.rejectedServices).toHaveLength(50);
    for (const r of fitted.msg.ack!.refusals) expect(r.message.length).toBeLessThan(1100);
  });
});
