import { spawn } from 'node:child_process';
import * as path from 'node:path';

jest.setTimeout(90_000);

/** The README's first command, run for a few seconds: traffic flows through both agents and everything stops. */
test('npm run demo: both agents serve all three backends, a host change shows, it stops cleanly', async () => {
  const demo = path.join(__dirname, '..', '..', 'dist', 'deploy', 'demo.js');
  const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const p = spawn(process.execPath, [demo, '--duration', '9'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (c) => (out += c));
    p.stderr.on('data', (c) => (out += c));
    p.on('exit', (code) => resolve({ code, out }));
  });
  expect(code).toBe(0);
  // "traffic  agent1 127.0.0.1:8080 → b c a b c a   |   agent2 127.0.0.2:8080 → …": which backends each agent reached.
  const rounds = out
    .split('\n')
    .filter((l) => l.startsWith('traffic'))
    .map((l) => [...l.matchAll(/→ ([a-c -]+?)(?= {3}\||$)/g)].map((m) => [...new Set(m[1]!.split(' '))].sort().join('')));
  expect(rounds[0]).toEqual(['abc', 'abc']);
  const afterRemoval = out.split('zookeeper: removed /services/web/backend-c\n')[1]?.split('\n')[0] ?? '';
  expect([...afterRemoval.matchAll(/→ ([a-c -]+?)(?= {3}\||$)/g)].map((m) => [...new Set(m[1]!.split(' '))].sort().join(''))).toEqual(['ab', 'ab']);
  expect(out).toMatch(/stopped; logs were in/);
  expect(out).not.toMatch(/exited \(/);
});
