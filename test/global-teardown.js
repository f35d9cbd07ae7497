// No test may leave a process behind: HAProxy, ZooKeeper, dnsmasq or the proxymgr CLI started during the run and
// still running once every test file has finished fails the run (after a short grace for processes still exiting),
// naming them; they are killed so that nothing outlives the run.
const { readFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const path = require('node:path');
const { ours } = require('./global-setup');

module.exports = async () => {
  const file = path.join(tmpdir(), `proxymgr-jest-${process.pid}.json`);
  let before = [];
  try {
    before = JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return; // setup did not run (a single file run with --config override)
  }
  rmSync(file, { force: true });
  const known = new Set(before);
  const left = () => ours().filter((p) => !known.has(p.pid));
  const deadline = Date.now() + 5000;
  while (left().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const leftover = left();
  if (leftover.length === 0) return;
  for (const p of leftover) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(
    `tests left ${leftover.length} process(es) running (killed now):\n${leftover.map((p) => `  ${p.pid} ${p.cmd}`).join('\n')}`,
  );
};
