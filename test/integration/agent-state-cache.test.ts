import { existsSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Logger } from '../../common/platform/log';
import { stateJsonText } from '../../common/protocol/state-codec';
import { createAgentProcess } from '../../agent/wiring';
import { ApplyFn } from '../../agent/ports';
import { Backend, startBackends } from '../../testkit/backends';
import { eventually, freePort, listening, tally } from '../../testkit/net';
import { server, service, startTestAgent, state } from '../../testkit/agent';

jest.setTimeout(60_000);

const DAY = 24 * 3_600_000;

/**
 * The state cache at start, with a real HAProxy: one older than agent.cache_max_age_ms does not start a HAProxy
 * after a reboot (no HAProxy runs), but a HAProxy still running is taken over whatever the cache's age.
 */
describe('the state cache at start (real HAProxy)', () => {
  let backends: Backend[];
  beforeAll(async () => {
    backends = await startBackends(['a']);
  });
  afterAll(async () => {
    await Promise.all((backends ?? []).map((b) => b.close()));
  });

  function capture(lines: string[]): Logger {
    const rec = (level: string) => (fields: object, msg: string) =>
      void lines.push(`${level} ${msg} ${JSON.stringify(fields)}`);
    return {
      debug: () => undefined,
      info: rec('info'),
      warn: rec('warn'),
      error: rec('error'),
      child: () => capture(lines),
    };
  }

  async function setUp(ageMs: number) {
    const t = await startTestAgent(`  cache_max_age_ms: ${DAY}\n`);
    const port = await freePort();
    const cached = state([service('web', port, [server('a', backends[0]!.port)])]);
    const file = path.join(t.dir, 'desired-state.json');
    writeFileSync(file, stateJsonText(cached));
    const at = new Date(Date.now() - ageMs);
    utimesSync(file, at, at);
    return { t, port, cached, file };
  }

  function agentProcess(t: Awaited<ReturnType<typeof startTestAgent>>, lines: string[]) {
    let apply: ApplyFn | undefined;
    const proc = createAgentProcess(t.config, capture(lines), {
      // A control plane that does not answer (yet): nothing but the cache could start HAProxy.
      source: { start: async (fn) => void (apply = fn), stop: async () => undefined },
    });
    return { proc, apply: () => apply! };
  }

  test('a cache older than the max age and no HAProxy running: HAProxy is not started from it, said as an error; the first state from the source starts it', async () => {
    const { t, port, cached, file } = await setUp(3 * DAY);
    const lines: string[] = [];
    const { proc, apply } = agentProcess(t, lines);
    try {
      await proc.start();
      expect(proc.agent.supervisor.running).toBe(false);
      expect(await listening(port)).toBe(false);
      expect(lines.join('\n')).toContain(
        `error not starting HAProxy from the state cache ${file} (version ${cached.version}): it was last confirmed 3d ago; agent.cache_max_age_ms is 86400000 (24h)`,
      );
      const r = await apply()(cached);
      expect(r.outcome).toBe('reload');
      expect((await tally(port, 4)).get('a')).toBe(4);
    } finally {
      await proc.stop();
      await t.close();
    }
  });

  test('a cache within the max age starts HAProxy at once', async () => {
    const { t, port } = await setUp(2 * 3_600_000);
    const lines: string[] = [];
    const { proc } = agentProcess(t, lines);
    try {
      await proc.start();
      expect(proc.agent.supervisor.running).toBe(true);
      expect((await tally(port, 4)).get('a')).toBe(4);
    } finally {
      await proc.stop();
      await t.close();
    }
  });

  test('while the agent runs a state from its source, the cache is stamped as current', async () => {
    const t = await startTestAgent('  cache_max_age_ms: 4000\n'); // stamped every second
    const port = await freePort();
    const file = path.join(t.dir, 'desired-state.json');
    const { proc, apply } = agentProcess(t, []);
    try {
      await proc.start();
      await apply()(state([service('web', port, [server('a', backends[0]!.port)])]));
      expect(await eventually(() => existsSync(file), 5000)).toBe(true);
      const old = new Date(Date.now() - 3 * DAY);
      utimesSync(file, old, old);
      expect(await eventually(() => Date.now() - statSync(file).mtimeMs < 60_000, 5000)).toBe(true);
    } finally {
      await proc.stop();
      await t.close();
    }
  });

  test('a HAProxy still running (an agent restart) is taken over even when the cache is older than the max age', async () => {
    const { t, port, file } = await setUp(0);
    const first = agentProcess(t, []);
    let second: ReturnType<typeof agentProcess> | undefined;
    const lines: string[] = [];
    try {
      await first.proc.start();
      const pid = first.proc.agent.supervisor.pid;
      expect(pid).toBeDefined();
      await first.proc.handOver();
      const at = new Date(Date.now() - 3 * DAY);
      utimesSync(file, at, at);
      second = agentProcess(t, lines);
      await second.proc.start();
      expect(second.proc.agent.supervisor.pid).toBe(pid); // the same process, taken over
      expect((await tally(port, 4)).get('a')).toBe(4);
      expect(lines.join('\n')).toMatch(
        /warn the state cache .* was last confirmed 3d ago; .* still runs: taking it over/,
      );
    } finally {
      await second?.proc.stop();
      await t.close();
    }
  });
});
