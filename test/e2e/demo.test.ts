import { spawn } from 'node:child_process';
import * as path from 'node:path';

jest.setTimeout(180_000);

/** "traffic  agent1 40 ok (a b c)  |  agent2 38 ok (a b), 2 x 503  |  …" → per agent: backends seen, and failures. */
function parseTraffic(line: string): { backends: string; failures: number }[] {
  return line
    .replace(/^traffic\s+/, '')
    .split('  |  ')
    .map((part) => {
      const m = /^agent\d+ \d+ ok \(([a-c ]*)\)(.*)$/.exec(part.trim());
      if (!m) throw new Error(`not a traffic entry: ${JSON.stringify(part)}`);
      const failures = [...m[2]!.matchAll(/(\d+) x /g)].reduce((n, x) => n + Number(x[1]), 0);
      return { backends: m[1]!.split(' ').filter(Boolean).sort().join(''), failures };
    });
}

/**
 * The README's first command, run until both of its rollouts are done: four agents serve all three backends, a host
 * change shows (and in `ctl changes`, applied by all four agents), a config change rolls out in three waves with the traffic gate passing each, a change that answers
 * 503 is halted at the canary by the gate and rolled back (no other agent ever fails a request), and it stops cleanly.
 */
test('npm run demo: host churn, a waved rollout, a gate-halted bad change; it stops cleanly', async () => {
  const demo = path.join(__dirname, '..', '..', 'dist', 'deploy', 'demo.js');
  const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const p = spawn(process.execPath, [demo, '--duration', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (c) => (out += c));
    p.stderr.on('data', (c) => (out += c));
    p.on('exit', (code) => resolve({ code, out }));
  });
  expect(code).toBe(0);
  const lines = out.split('\n');
  const traffic = lines.filter((l) => l.startsWith('traffic'));
  // Once every agent served, each reaches all three backends; right after backend-c left, none reaches it.
  expect(parseTraffic(traffic[1]!).map((a) => a.backends)).toEqual(['abc', 'abc', 'abc', 'abc']);
  const afterRemoval = lines[lines.findIndex((l) => l.startsWith('zookeeper: removed /services/web/backend-c')) + 1]!;
  expect(parseTraffic(afterRemoval).map((a) => a.backends)).toEqual(['ab', 'ab', 'ab', 'ab']);

  // `ctl changes` after the churn: the control plane's trace has both host changes, each applied by all four agents.
  const trace = out.split('the change trace:')[1]!.split('gets a response header')[0]!;
  expect(trace).toMatch(/hosts \+0 -1 \(3 → 2\) +4\/4 agents applied/);
  expect(trace).toMatch(/hosts \+1 -0 \(2 → 3\) +4\/4 agents applied/);

  // The good change: preflight on all four, three waves (canary first), the gate passing the two that bake.
  const good = out.split('gets a response header')[1]!.split('gets a rule that answers 503')[0]!;
  expect(good).toMatch(/preflight on every agent: 4 passed, 0 failed/);
  expect(good).toMatch(/wave 1 \(1\) released to agent\d\n/);
  expect(good).toMatch(/wave 1 gate PASS/);
  expect(good).toMatch(/wave 2 \(50%\) released to agent\d\n/);
  expect(good).toMatch(/wave 2 gate PASS/);
  expect(good).toMatch(/wave 3 \(100%\) released to agent\d, agent\d\n/);
  expect(good).toMatch(/rollout {2}COMPLETED: released to every agent \(4\)/);
  expect(good).not.toMatch(/ x /); // no request failed anywhere

  // The bad change: the canary alone gets it and fails requests; the gate halts it at wave 1 and rolls it back.
  const bad = out.split('gets a rule that answers 503')[1]!;
  const canary = /wave 1 \(1\) released to agent(\d)\n/.exec(bad)?.[1];
  expect(canary).toBeDefined();
  expect(bad).not.toMatch(/wave 2 /);
  expect(bad).toMatch(/wave 1 gate FAIL: traffic gate: .*5xx 100%/);
  expect(bad).toMatch(/rollout {2}ROLLED_BACK: wave 1: traffic gate/);
  const during = bad
    .split('\n')
    .filter((l) => l.startsWith('traffic'))
    .map(parseTraffic);
  expect(during.some((agents) => agents[Number(canary) - 1]!.failures > 0)).toBe(true);
  for (const agents of during)
    for (const [i, a] of agents.entries()) if (i !== Number(canary) - 1) expect(a.failures).toBe(0);

  expect(out).toMatch(/status page http:\/\/127\.0\.0\.1:\d+\//);
  expect(out).toMatch(/stopped; logs were in/);
  expect(out).not.toMatch(/exited \(/);
});
